#!/usr/bin/env bash
# fanout 1000 x 10 ev/s for 20 s on ours; worker utime/stime split and a py-spy profile
cd "$(git rev-parse --show-toplevel)/bench"; source lib.sh
ROOT=${CG_ROOT:-$(cd .. && pwd)}
peers/chatgenius/stop.sh >/dev/null 2>&1; sleep 0.5
CG_ROOT=$ROOT peers/chatgenius/start.sh >/dev/null 2>&1 || exit 1
source peers/chatgenius/target.env; TOKEN=$(cat run/chatgenius/token)
P=$(cat run/chatgenius/gunicorn.pid); W=$(ps -o pid= --ppid $P | tr -d ' ')
ssebench/ssebench run -label x -scenario fanout -sub-url "http://127.0.0.1:$CG_PORT/stream?channels={chan}" -chan 'bench:b{run}c{c}' -payload '{"channel":"{chan}","type":"message.created","data":{"bseq":{seq},"bts":{ts}}}' -ready prime -server-pids $P -out /tmp/f10.jsonl -pub http -pub-url "http://127.0.0.1:$CG_PORT/events" -pub-conc 16 -H-rotate run/chatgenius/sub-headers -pub-H "Authorization: Bearer $TOKEN" -pub-H "Content-Type: application/json" -n 1000 -rates 10,10 -duration 20s -max-time 3m >/dev/null 2>/tmp/f10.log &
gen=$!
until grep -q "step 2: rate" /tmp/f10.log 2>/dev/null; do sleep 0.2; done
st() { for w in $W; do python3 -c "import sys; f=open('/proc/$w/stat').read().rsplit(')',1)[1].split(); print(f[11], f[12])"; done | awk '{u+=$1; s+=$2} END {print u, s}'; }
a=$(st); 
if [[ -n ${PROFILE:-} ]]; then for w in $W; do ../.venv/bin/py-spy record --pid $w --rate 500 --duration 15 --format raw --nonblocking --output results/spy-$w.txt >/dev/null 2>&1 & done; fi
sleep 15; b=$(st)
wait $gen
echo "utime stime (ticks) over 15 s: $a -> $b" 
python3 -c "a='$a'.split(); b='$b'.split(); u=int(b[0])-int(a[0]); s=int(b[1])-int(a[1]); print('user %.2f s, sys %.2f s, per delivery (150,000): user %.1f us, sys %.1f us' % (u/100, s/100, u/100/150000*1e6, s/100/150000*1e6))"
grep "step 2: delivered" /tmp/f10.log
peers/chatgenius/stop.sh >/dev/null 2>&1
