#!/usr/bin/env bash
# The before/after series of docs/PERFORMANCE.md "Cost per event": chat at 400 and 800 ev/s,
# 15 s steps, in the order base main main base base main main base (ran as three calls:
# p1 = base main, p2 = main base, p3 = base main main base).
#   BASE_CHECKOUT=<checkout of 652f3d8 with this venv linked> bash run-series.sh
cd "$(git rev-parse --show-toplevel)"
i=0
for side in base main main base base main main base; do
  i=$((i+1)); root=$PWD; [[ $side == base ]] && root="$BASE_CHECKOUT"
  CG_ROOT=$root TARGETS=chatgenius SCENARIOS=chat CHAT_RATES=400,800 CHAT_DUR=15s \
    OUT_DIR=bench/results/s-$i-$side bench/run.sh >bench/results/s-$i-$side.out 2>&1
  grep '^| chatgenius | 5,000' bench/results/s-$i-$side/summary.md | sed "s/^/$side /"
done
