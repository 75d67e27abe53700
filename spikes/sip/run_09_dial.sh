#!/bin/bash
# Outbound call (UAC) from the candidate to SIPp's built-in UAS (-sn uas) on 127.0.0.1:5090:
# INVITE, 200, ACK, ~3 s of RTP, BYE from the candidate.
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" 09_dial
( cd "$HERE/sipp" && timeout 30 sipp -sn uas -i 127.0.0.1 -p 5090 -mi 127.0.0.1 -mp 6020 -m 1 -nostdin -trace_err -error_file "$OUT/uas_sipp.err" >"$OUT/sipp_uas.txt" 2>&1 ) & SP=$!
sleep 0.5
start_uas --dial sip:sipp@127.0.0.1:5090
wait $SP; R=$?
stop_uas
grep -E '"dial|"uas_bye|"state"|"media"' "$OUT/uas.jsonl" | cut -c1-160
echo "SIPp UAS rc=$R ($([ $R = 0 ] && echo PASS || echo FAIL)): $(grep -E '^\s+Successful call' "$OUT/sipp_uas.txt" | tail -1 | tr -s ' ')"
exit $R
