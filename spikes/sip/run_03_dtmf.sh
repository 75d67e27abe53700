#!/bin/bash
# Proof step 3: RFC 4733 DTMF from SIPp's dtmf_2833_*.pcap (digits 1 2 3 # * 0) reach Python
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" 03_dtmf
start_uas
sippc uac_dtmf.xml -m 1; R=$?
sleep 0.5; stop_uas
D=$(grep '"dtmf"' "$OUT/uas.jsonl" | sed -E 's/.*"digit": "([^"]*)".*/\1/' | tr -d '\n')
echo "digits reported: '$D' (expected '123*#0')"
[ "$D" = "123*#0" ] && [ $R = 0 ] && echo PASS || { echo FAIL; exit 1; }
