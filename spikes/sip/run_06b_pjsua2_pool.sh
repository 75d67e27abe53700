#!/bin/bash
# The PJSUA2 wheel caps a process at 4 calls (PJSUA_MAX_CALLS=4 compiled in). Workaround check:
# 5 UAS processes x 4 calls (ports 5070..5078), 5 SIPp instances in parallel, 20 calls of ~22.5 s.
# Gotcha: SIPp binds -mp, -mp+2 (video) and more: space parallel instances' -mp by 10.
HERE=$(cd "$(dirname "$0")" && pwd); OUT=$HERE/out/pjsua2/06b_pool; mkdir -p "$OUT"
PIDS=()
for i in 0 1 2 3 4; do
  $HERE/venv/bin/python -W ignore $HERE/pjsua2_uas/uas.py --port $((5070+2*i)) --rtp-port $((40000+400*i)) --out "$OUT" >"$OUT/uas$i.jsonl" 2>"$OUT/uas$i.err" &
  PIDS+=($!)
done
sleep 2
HZ=$(getconf CLK_TCK); T0=0; for p in "${PIDS[@]}"; do T0=$((T0+$(awk '{print $14+$15}' /proc/$p/stat))); done
SP=()
for i in 0 1 2 3 4; do
  ( cd "$HERE/sipp" && timeout 60 sipp -sf uac_stream_bye.xml 127.0.0.1:$((5070+2*i)) -i 127.0.0.1 -p $((5080+2*i)) -mi 127.0.0.1 -mp $((6000+10*i)) \
      -m 4 -l 4 -r 4 -nostdin -trace_err -error_file "$OUT/sipp$i.err" >"$OUT/sipp$i.txt" 2>&1 ) & SP+=($!)
done
sleep 12; echo "load average mid-run: $(cut -d' ' -f1-3 /proc/loadavg); RSS total: $(for p in "${PIDS[@]}"; do awk '/VmRSS/{print $2}' /proc/$p/status; done | paste -sd+ | bc) kB"
R=0; for p in "${SP[@]}"; do wait $p || R=1; done
T1=0; for p in "${PIDS[@]}"; do T1=$((T1+$(awk '{print $14+$15}' /proc/$p/stat))); done
kill "${PIDS[@]}"; wait "${PIDS[@]}" 2>/dev/null
OK=$(grep -hE '^\s+Successful call' "$OUT"/sipp*.txt | awk -F'|' '{gsub(/ /,"",$3); s+=$3} END{print s}')
echo "successful calls: $OK/20  sipp rc=$R $([ $R = 0 ] && echo PASS || echo FAIL)"
python3 -c "cpu=($T1-$T0)/$HZ; print(f'UAS CPU (5 processes) {cpu:.2f} s for 20 calls: {cpu/20*1000:.0f} ms per call, {cpu/20/22.5*100:.2f} % of a core per concurrent call')"
exit $R
