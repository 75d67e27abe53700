#!/bin/bash
# Run every proof step for one candidate (default both); logs in out/run_all_<candidate>.txt
cd "$(dirname "$0")"
for c in ${1:-pjsua2 aiosipua}; do
  {
    echo "######## $c  $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
    for s in run_01_signalling.sh run_02_media.sh run_03_dtmf.sh run_04_srtp.sh run_05_tls.sh run_06_load.sh run_07_misc.sh run_08_retransmit.sh run_09_dial.sh; do
      echo "=== $s"; ./$s $c 2>&1 | grep -v -iE "deprecat|import audioop"; echo "=== $s exit=${PIPESTATUS[0]}"
    done
  } > out/run_all_$c.txt 2>&1
  grep -E '^=== .* exit=' out/run_all_$c.txt
done
