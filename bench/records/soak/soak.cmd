# 2026-12-06, 04:50-06:53Z, this 2-core machine, code at 3aa870f (a checkout of main before the
# seams refactor and the Redis Cluster backend; see docs/RELIABILITY.md, "Soak").
# The box was shared: helper test runs, two full test suites and bench/publish_cost.py ran during it.
.venv/bin/python bench/soak.py --minutes 120 --churn 0.02 --sample 60 --clients 200 --rate 40 --out <dir>/soak
