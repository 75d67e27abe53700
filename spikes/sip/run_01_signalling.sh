#!/bin/bash
# Proof step 1: INVITE/100/180/200/ACK/BYE both ways, PCMU + PCMA, CANCEL, OPTIONS, 488, re-INVITE hold
. "$(dirname "$0")/lib.sh" "${1:-pjsua2}" 01_signalling
start_uas
R=0
sippc uac_options.xml -m 1 || R=1
sippc uac_short_bye.xml -m 1 || R=1
sippc uac_pcma_bye.xml -m 1 || R=1
sippc uac_uas_hangs_up.xml -m 1 || R=1
sippc uac_cancel.xml -m 1 || R=1
sippc uac_488.xml -m 1 || R=1
sippc uac_hold.xml -m 1 || R=1
sleep 0.5; stop_uas
echo "--- UAS events"; grep -E '"(media|uas_bye|ended|state)"' "$OUT/uas.jsonl" | grep -vE '"(EARLY|CONNECTING|INCOMING)"' | cut -c1-220
exit $R
