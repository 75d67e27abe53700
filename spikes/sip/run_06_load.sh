#!/bin/bash
# Proof step 6: 20 concurrent SIPp calls, each streaming jfk8k.ulaw twice (~22.5 s), caller BYE.
# Measures the UAS process CPU (utime+stime from /proc/PID/stat) over the run, and the load average.
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" 06_load
N=${N:-20}
start_uas ${UAS_EXTRA:-}
tcpdump -i lo -nn -s 64 -w "$OUT/rtp.pcap" 'udp dst port 6000' 2>/dev/null & TD=$!
sleep 1
HZ=$(getconf CLK_TCK); T0=$(cpu_ticks $UAS_PID); W0=$(date +%s.%N)
sippc uac_stream_bye.xml -m $N -l $N -r $N -rp 1000 & SP=$!
sleep 12; echo "load average mid-run: $(cut -d' ' -f1-3 /proc/loadavg)"; echo "UAS threads: $(ls /proc/$UAS_PID/task | wc -l)  RSS: $(awk '/VmRSS/{print $2" "$3}' /proc/$UAS_PID/status)"
top -b -n 1 | head -15 | tail -9
wait $SP; R=$?
T1=$(cpu_ticks $UAS_PID); W1=$(date +%s.%N)
sleep 1; kill $TD; wait $TD 2>/dev/null; stop_uas
python3 -c "
hz=$HZ; cpu=($T1-$T0)/hz; wall=$W1-$W0; n=$N
print(f'UAS CPU {cpu:.2f} s over {wall:.1f} s wall for {n} calls of ~22.5 s: {cpu/n*1000:.0f} ms CPU per call, {cpu/n/22.5*100:.2f} % of a core per concurrent call, {cpu/wall*100:.1f} % of a core in total')"
echo "calls with media / ended at the UAS: $(grep -c "\"media\"" "$OUT/uas.jsonl") / $(grep -c "\"ended\"\|DISCONNECTED" "$OUT/uas.jsonl")"
$PY "$HERE/tools/rtpcheck.py" "$OUT/rtp.pcap" --json | python3 -c "
import json,sys; s=json.load(sys.stdin)
print(f'reply RTP streams to SIPp: {len(s)}; packets per stream min/max {min(x[\"packets\"] for x in s)}/{max(x[\"packets\"] for x in s)}; seq gaps total {sum(x[\"seq_discontinuities\"] for x in s)}; gap p99 max {max(x[\"gap_ms_p99\"] for x in s)} ms; gap max {max(x[\"gap_ms_max\"] for x in s)} ms')"
exit $R
