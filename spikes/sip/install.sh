#!/bin/bash
# Everything the spike needs on a fresh Debian 12 machine (root). Peers from apt, stacks from PyPI.
set -e
cd "$(dirname "$0")"
apt-get update -qq
apt-get install -y sip-tester baresip-core tcpdump netcat-openbsd sox
[ -x venv/bin/python ] || python3.11 -m venv venv
venv/bin/pip install -q -r requirements.txt
[ -f certs/uas.crt ] || { mkdir -p certs; openssl req -x509 -newkey rsa:2048 -nodes -keyout certs/uas.key -out certs/uas.crt \
  -days 365 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost"; }
[ -f baresip/jfk8k.wav ] || sox -t ul -r 8000 -c 1 sipp/jfk8k.ulaw -b 16 baresip/jfk8k.wav pad 0 3
