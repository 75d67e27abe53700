# shared helpers for run_*.sh.  usage inside a script:  . ./lib.sh pjsua2|aiosipua STEPNAME
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAND=${1:-pjsua2}; STEP=${2:-step}
case $CAND in pjsua2|aiosipua) ;; *) echo "candidate must be pjsua2 or aiosipua"; exit 2;; esac
SIP_PORT=5070; TLS_PORT=5071; RTP_BASE=40000
OUT=$HERE/out/$CAND/$STEP; mkdir -p "$OUT"
PY=$HERE/venv/bin/python
start_uas() {  # extra args go to the UAS
  $PY -W ignore "$HERE/${CAND}_uas/uas.py" --port $SIP_PORT --tls-port $TLS_PORT --rtp-port $RTP_BASE --out "$OUT" "$@" >"$OUT/uas.jsonl" 2>"$OUT/uas.err" &
  UAS_PID=$!
  for _ in $(seq 50); do grep -q '"ready"' "$OUT/uas.jsonl" 2>/dev/null && break; sleep 0.1; done
  grep '"ready"' "$OUT/uas.jsonl" || { echo "UAS did not start"; cat "$OUT/uas.err"; exit 1; }
}
stop_uas() { kill "$UAS_PID" 2>/dev/null; wait "$UAS_PID" 2>/dev/null; }
# sippc SCENARIO [extra sipp args]: run a SIPp UAC against the UAS, print verdict
sippc() {
  local sc=$1; shift
  ( cd "$HERE/sipp" && timeout 120 sipp -sf "$sc" 127.0.0.1:$SIP_PORT -i 127.0.0.1 -p 5080 -mi 127.0.0.1 -mp 6000 \
      -nostdin -trace_err -error_file "$OUT/${sc%.xml}.err" -trace_stat -stf "$OUT/${sc%.xml}.csv" "$@" >"$OUT/${sc%.xml}.sipp.txt" 2>&1 )
  local rc=$?
  local ok=$(grep -E '^\s+Successful call' "$OUT/${sc%.xml}.sipp.txt" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  local bad=$(grep -E '^\s+Failed call' "$OUT/${sc%.xml}.sipp.txt" | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}')
  printf '%-24s sipp rc=%s successful=%s failed=%s  %s\n' "$sc" "$rc" "$ok" "$bad" "$([ $rc = 0 ] && echo PASS || echo FAIL)"
  return $rc
}
cpu_ticks() { awk '{print $14+$15}' /proc/$1/stat; }
