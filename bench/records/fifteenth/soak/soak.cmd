# 2026-12-07, 13:49-13:59Z, this 2-core machine, code at 03508d8 (the lane); nothing else ran on the box.
.venv/bin/python bench/soak.py --minutes 10 --churn 0.02 --sample 30 --clients 200 --rate 40 --out bench/records/fifteenth/soak/soak
