#!/bin/bash
# Proof step 4: baresip (srtp module, mediaenc=srtp-mand, aufile mic) calls the UAS over UDP with SDES
# AES_CM_128_HMAC_SHA1_80. tcpdump shows payloads are not plaintext; audio decoded on both sides.
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" ${STEPNAME:-04_srtp}
BCONF=${BCONF:-$HERE/baresip/srtp_udp}; TARGET=${TARGET:-sip:agent@127.0.0.1:$SIP_PORT}
rm -f "$BCONF"/dump/*.wav
start_uas --srtp mandatory ${UAS_EXTRA:-}
tcpdump -i lo -nn -s 256 -w "$OUT/rtp.pcap" 'udp and portrange 30000-30100' 2>/dev/null & TD=$!
sleep 0.5
timeout 40 baresip -f "$BCONF" -e "/dial $TARGET" -t 16 2>&1 | tr '\r' '\n' | grep -v 'audio=' >"$OUT/baresip.log"
sleep 1; kill $TD; wait $TD 2>/dev/null; stop_uas
grep -E 'SRTP|established|terminated|SIP Progress|rror|packets|lost' "$OUT/baresip.log"
grep -E '"(media|ended)"' "$OUT/uas.jsonl" | cut -c1-260
echo "--- wire (baresip <-> UAS), plaintext_frames_matching_ref must be 0"
$PY "$HERE/tools/rtpcheck.py" "$OUT/rtp.pcap" --ref "$HERE/sipp/jfk8k.ulaw" --json
echo "--- decoded by the UAS (what baresip's aufile played):"
$PY "$HERE/tools/audiocheck.py" "$(ls -t "$OUT"/*.wav | head -1)" "$HERE/sipp/jfk8k.ulaw"
echo "--- decoded by baresip (what the UAS played from Python):"
$PY "$HERE/tools/audiocheck.py" "$(ls -t "$BCONF"/dump/*-dec.wav | head -1)" "$HERE/sipp/jfk8k.ulaw"
