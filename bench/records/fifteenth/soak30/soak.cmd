# 2026-12-07, 13:59-14:30Z, this 2-core machine, service code of f7f480c (checkout 03508d8); a partial mutmut run (stopped) shared the box from about 14:01 to 14:14Z.
.venv/bin/python bench/soak.py --minutes 30 --churn 0.02 --sample 60 --clients 200 --rate 40 --out bench/records/fifteenth/soak30/soak
