#!/bin/bash
# Extra checks: SIP over TCP (SIPp -t t1), malformed SIP over UDP (does it answer 400, does it survive?),
# a call with a broken SDP body, then a normal call to prove the process is still fine.
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" 07_misc
start_uas
R=0
echo "--- TCP transport"
sippc uac_short_bye.xml -m 1 -t t1 || R=1
SRC=5100
send() {  # label, payload: send over UDP from a fresh source port, print the first response line
  SRC=$((SRC+1)); printf '%-34s -> ' "$1"
  local r; r=$(printf "$2" | timeout 2 nc -u -w 1 -p $SRC 127.0.0.1 $SIP_PORT 2>/dev/null | head -1 | tr -d '\r')
  echo "${r:-<no response>}"
}
V='Via: SIP/2.0/UDP 127.0.0.1;rport;branch=z9hG4bK-garbage-'
echo "--- malformed SIP over UDP"
send "binary garbage" '\x00\xff\x13garbage\r\n\r\n'
send "request line only" 'INVITE sip:agent@127.0.0.1 SIP/2.0\r\n\r\n'
send "missing Call-ID/CSeq/From/To" "INVITE sip:agent@127.0.0.1 SIP/2.0\r\n${V}1\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
send "bad CSeq" "OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n${V}2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: g3\r\nCSeq: abc OPTIONS\r\nContent-Length: 0\r\n\r\n"
send "Content-Length larger than body" "OPTIONS sip:agent@127.0.0.1 SIP/2.0\r\n${V}4\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: g4\r\nCSeq: 1 OPTIONS\r\nContent-Length: 500\r\n\r\nabc"
send "INVITE with garbage SDP" "INVITE sip:agent@127.0.0.1 SIP/2.0\r\n${V}5\r\nFrom: <sip:a@127.0.0.1:5099>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: g5\r\nCSeq: 1 INVITE\r\nContact: <sip:a@127.0.0.1:5099>\r\nContent-Type: application/sdp\r\nContent-Length: 20\r\n\r\nv=0\r\nm=audio x y z\r\n"
send "unknown method" "FOO sip:agent@127.0.0.1 SIP/2.0\r\n${V}6\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@127.0.0.1>\r\nCall-ID: g6\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n"
send "BYE for unknown dialog" "BYE sip:agent@127.0.0.1 SIP/2.0\r\n${V}7\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:agent@127.0.0.1>;tag=nope\r\nCall-ID: g7\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
echo "--- UAS stderr lines mentioning errors: $(grep -ciE "error|exception|traceback" "$OUT/uas.err")"; grep -E "^[A-Za-z]*Error|Exception" "$OUT/uas.err" | sort | uniq -c | head -5
echo "--- still alive? process $UAS_PID: $(kill -0 $UAS_PID 2>/dev/null && echo running || echo DEAD)"
sippc uac_short_bye.xml -m 1 || R=1
sleep 0.5; stop_uas
exit $R
