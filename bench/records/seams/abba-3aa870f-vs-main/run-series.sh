#!/usr/bin/env bash
cd "$(git rev-parse --show-toplevel)"  # main
i=0
for side in before after after before before after after before; do
  i=$((i+1)); root=$PWD; [[ $side == before ]] && root="$BEFORE_CHECKOUT"  # a worktree of 3aa870f
  CG_ROOT=$root TARGETS=chatgenius SCENARIOS=chat CHAT_RATES=400,800 CHAT_DUR=15s \
    OUT_DIR=bench/results/z-$i-$side bench/run.sh >bench/results/z-$i-$side.out 2>&1
  grep '^| chatgenius | 5,000' bench/results/z-$i-$side/summary.md | sed "s/^/$side /"
  grep '^| chatgenius | chat' bench/results/z-$i-$side/summary.md | sed "s/^/$side machine /"
done
echo done $(date -u +%T)
