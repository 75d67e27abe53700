#!/bin/bash
# Proof step 5: SIP over TLS (self-signed cert in certs/, trusted by baresip via sip_cafile) + SRTP SDES.
# Also shows the SIP port carries no plaintext SIP (tcpdump on 5071).
export STEPNAME=05_tls BCONF="$(cd "$(dirname "$0")" && pwd)/baresip/srtp_tls"
export TARGET="sip:agent@127.0.0.1:5071;transport=tls"
H="$(cd "$(dirname "$0")" && pwd)"
export UAS_EXTRA="--cert $H/certs/uas.crt --key $H/certs/uas.key"
tcpdump -i lo -nn -s 0 -w "$H/out/${1:-pjsua2}-tls-sig.pcap" 'tcp port 5071' 2>/dev/null & TD=$!
"$H/run_04_srtp.sh" "${1:-pjsua2}"
sleep 0.5; kill $TD; wait $TD 2>/dev/null
echo "--- TLS signalling: plaintext 'INVITE sip:' occurrences on tcp/5071 (must be 0):"
tcpdump -r "$H/out/${1:-pjsua2}-tls-sig.pcap" -A 2>/dev/null | grep -c 'INVITE sip:'
tcpdump -r "$H/out/${1:-pjsua2}-tls-sig.pcap" -nn 2>/dev/null | wc -l | sed 's/$/ TCP segments on 5071/'
grep -E 'TLS|tls' "$H/out/${1:-pjsua2}/05_tls/baresip.log" | head -5
