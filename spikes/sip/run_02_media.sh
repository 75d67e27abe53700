#!/bin/bash
# Proof step 2: caller's RTP reaches Python as 20 ms frames (WAV saved), Python's frames go back as RTP
# (22 s call, SIPp streams jfk8k.ulaw twice). tcpdump + tools/rtpcheck.py check seq/ts/marker/pacing.
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" ${STEPNAME:-02_media}
start_uas ${UAS_EXTRA:-}
tcpdump -i lo -nn -s 256 -w "$OUT/rtp.pcap" 'udp and not port 5070 and not port 5080' 2>/dev/null & TD=$!
sleep 1
sippc uac_stream_bye.xml -m 1; R=$?
sleep 1; kill $TD; wait $TD 2>/dev/null; stop_uas
grep '"ended"' "$OUT/uas.jsonl"
echo "--- UAS -> SIPp (dport 6000), plaintext check against the file we play"
$PY "$HERE/tools/rtpcheck.py" "$OUT/rtp.pcap" --dport 6000 --ref "$HERE/sipp/jfk8k.ulaw"
echo "--- SIPp -> UAS"
$PY "$HERE/tools/rtpcheck.py" "$OUT/rtp.pcap" --sport 6000 --ref "$HERE/sipp/jfk8k.ulaw" | head -30
W=$(ls -t "$OUT"/*.wav | head -1); soxi -D "$W"; sox "$W" -n stat 2>&1 | grep -E 'RMS +amp|Maximum amp'
exit $R
