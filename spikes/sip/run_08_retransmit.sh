#!/bin/bash
# Does the stack absorb a retransmitted INVITE (same branch, before the final answer), as an RFC 3261
# INVITE server transaction must, or does the application see a second call?
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" 08_retransmit
start_uas >/dev/null
INV="INVITE sip:agent@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5111;branch=z9hG4bK-retx-1\r\nFrom: <sip:a@127.0.0.1:5111>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: retx-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5111>\r\nX-Answer-Delay: 2\r\nContent-Type: application/sdp\r\nContent-Length: 94\r\n\r\nv=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6010 RTP/AVP 0\r\n"
( printf "$INV"; sleep 0.5; printf "$INV"; sleep 3 ) | timeout 5 nc -u -p 5111 127.0.0.1 $SIP_PORT | tr -d '\r' | grep '^SIP/2.0' | sort | uniq -c
stop_uas
echo "application saw $(grep -c '"incoming"' "$OUT/uas.jsonl") incoming call(s) for one Call-ID (want 1)"
