#!/usr/bin/env bash
# usage: split.sh chatgenius|nchan RATE [chat]: 1,000 streams on one channel, RATE ev/s, two 20 s steps;
# the server processes' utime/stime from /proc over 15 s of the second step, per delivery.
# With `chat` (added in the seventh session): the chat shape (5,000 streams on 500 channels, 8
# publishers to random channels), per publish.
T=$1; R=$2; MODE=${3:-fanout}
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh
ROOT=${CG_ROOT:-$(cd .. && pwd)}
peers/$T/stop.sh >/dev/null 2>&1; sleep 0.5
CG_ROOT=$ROOT peers/$T/start.sh >/dev/null 2>&1 || { echo start failed; exit 1; }
source peers/$T/target.env
if [[ $T == chatgenius ]]; then
  TOKEN=$(cat run/chatgenius/token); P=$(cat run/chatgenius/gunicorn.pid); W=$(ps -o pid= --ppid $P | tr -d ' ')
  EXTRA=(-H-rotate run/chatgenius/sub-headers -pub-H "Authorization: Bearer $TOKEN" -pub-H "Content-Type: application/json")
  PAY='{"channel":"{chan}","type":"message.created","data":{"bseq":{seq},"bts":{ts}}}'
  SUB="http://127.0.0.1:$CG_PORT/stream?channels={chan}"; PUB="http://127.0.0.1:$CG_PORT/events"; CH='bench:b{run}c{c}'
else
  P=$(cat $SERVER_PIDFILE); W="$P $(ps -o pid= --ppid $P | tr -d ' ')"; EXTRA=()
  PAY='{"bseq":{seq},"bts":{ts}}'; SUB="http://127.0.0.1:$NCHAN_PORT/sub/{chan}"; PUB="http://127.0.0.1:$NCHAN_PORT/pub/{chan}"; CH='bench{run}c{c}'
fi
if [[ $MODE == chat ]]; then
  raise_nofile
  SHAPE=(-scenario chat -pub-conc 8 -pub-random -n 5000 -channels 500 -conn-conc 200 -connect-timeout 150s); PER=1; UNIT=publish
else
  SHAPE=(-scenario fanout -pub-conc 16 -n 1000); PER=1000; UNIT=delivery
fi
ssebench/ssebench run -label x "${SHAPE[@]}" -sub-url "$SUB" -chan "$CH" -payload "$PAY" -ready prime -server-pids $P -out /tmp/s2.jsonl -pub http -pub-url "$PUB" "${EXTRA[@]}" -rates $R,$R -duration 20s -max-time 4m >/dev/null 2>/tmp/s2.log &
gen=$!
until grep -q "step 2: rate" /tmp/s2.log 2>/dev/null; do sleep 0.2; done
st() { for w in $W; do python3 -c "import sys; f=open('/proc/$w/stat').read().rsplit(')',1)[1].split(); print(f[11], f[12])"; done | awk '{u+=$1; s+=$2} END {print u, s}'; }
a=$(st); sleep 15; b=$(st)
wait $gen
python3 -c "a='$a'.split(); b='$b'.split(); u=int(b[0])-int(a[0]); s=int(b[1])-int(a[1]); d=15*$PER*$R; print('$T${3:+ $3} rate $R: user %.3f s/s, sys %.3f s/s; per $UNIT user %.2f us, sys %.2f us, total %.2f' % (u/100/15, s/100/15, u/100/d*1e6, s/100/d*1e6, (u+s)/100/d*1e6))"
grep "step 2: delivered" /tmp/s2.log
peers/$T/stop.sh >/dev/null 2>&1
