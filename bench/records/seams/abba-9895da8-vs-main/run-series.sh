#!/usr/bin/env bash
cd "$(git rev-parse --show-toplevel)"  # main
i=0
for side in old main main old old main main old; do
  i=$((i+1)); root=$PWD; [[ $side == old ]] && root="$OLD_CHECKOUT"  # a worktree of 9895da8
  CG_ROOT=$root TARGETS=chatgenius SCENARIOS=chat CHAT_RATES=400,800 CHAT_DUR=15s \
    OUT_DIR=bench/results/y-$i-$side bench/run.sh >bench/results/y-$i-$side.out 2>&1
  grep '^| chatgenius | 5,000' bench/results/y-$i-$side/summary.md | sed "s/^/$side /"
done
echo done $(date -u +%T)
