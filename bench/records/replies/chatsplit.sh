#!/usr/bin/env bash
# usage: bash bench/records/replies/chatsplit.sh chatgenius|nchan RATE: chat shape (5000 streams x 500 channels), two 20 s steps at RATE;
# server processes' utime/stime over 15 s of the second step, per publish.
T=$1; R=$2
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh
ROOT=${CG_ROOT:-$(cd .. && pwd)}
peers/$T/stop.sh >/dev/null 2>&1; sleep 0.5
CG_ROOT=$ROOT peers/$T/start.sh >/dev/null 2>&1 || { echo start failed; exit 1; }
source peers/$T/target.env
raise_nofile
if [[ $T == chatgenius ]]; then
  TOKEN=$(cat run/chatgenius/token); P=$(cat run/chatgenius/gunicorn.pid); W=$(ps -o pid= --ppid $P | tr -d ' ')
  EXTRA=(-H-rotate run/chatgenius/sub-headers -pub-H "Authorization: Bearer $TOKEN" -pub-H "Content-Type: application/json")
  PAY='{"channel":"{chan}","type":"message.created","data":{"bseq":{seq},"bts":{ts}}}'
  SUB="http://127.0.0.1:$CG_PORT/stream?channels={chan}"; PUB="http://127.0.0.1:$CG_PORT/events"; CH='bench:b{run}c{c}'
else
  P=$(cat $SERVER_PIDFILE); W="$P $(ps -o pid= --ppid $P | tr -d ' ')"; EXTRA=()
  PAY='{"bseq":{seq},"bts":{ts}}'; SUB="http://127.0.0.1:$NCHAN_PORT/sub/{chan}"; PUB="http://127.0.0.1:$NCHAN_PORT/pub/{chan}"; CH='bench{run}c{c}'
fi
ssebench/ssebench run -label x -scenario chat -sub-url "$SUB" -chan "$CH" -payload "$PAY" -ready prime -server-pids $P -out /tmp/cs.jsonl -pub http -pub-url "$PUB" -pub-conc 8 -pub-random "${EXTRA[@]}" -n 5000 -channels 500 -conn-conc 200 -connect-timeout 150s -rates $R,$R -duration 20s -max-time 4m >/dev/null 2>/tmp/cs.log &
gen=$!
until grep -q "step 2: rate" /tmp/cs.log 2>/dev/null; do sleep 0.2; done
st() { for w in $W; do python3 -c "import sys; f=open('/proc/$w/stat').read().rsplit(')',1)[1].split(); print(f[11], f[12])"; done | awk '{u+=$1; s+=$2} END {print u, s}'; }
a=$(st); sleep 15; b=$(st)
wait $gen
python3 -c "a='$a'.split(); b='$b'.split(); u=int(b[0])-int(a[0]); s=int(b[1])-int(a[1]); d=15*$R; print('$T chat rate $R: user %.3f s/s, sys %.3f s/s; per publish user %.0f us, sys %.0f us, total %.0f' % (u/100/15, s/100/15, u/100/d*1e6, s/100/d*1e6, (u+s)/100/d*1e6))"
grep "step 2: delivered\|step 2" /tmp/cs.log | tail -2
peers/$T/stop.sh >/dev/null 2>&1
