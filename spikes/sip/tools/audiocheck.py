"""Was the reference speech heard? Re-encode a received 8 kHz PCM16 WAV to mu-law and report the share
of 16-byte windows that occur bit-exactly in the reference mu-law file (G.711 round-trips losslessly),
plus RMS. usage: audiocheck.py RECEIVED.wav REF.ulaw"""
import audioop, sys, wave, json
w = wave.open(sys.argv[1]); assert w.getframerate() == 8000 and w.getsampwidth() == 2, (w.getframerate(), w.getsampwidth())
pcm = w.readframes(w.getnframes()); ref = open(sys.argv[2], "rb").read()
u = audioop.lin2ulaw(pcm, 2)
grams = {ref[i:i + 16] for i in range(len(ref) - 16)}
wins = [u[i:i + 16] for i in range(0, len(u) - 16, 16)]
speech = [x for x in wins if len(set(x)) > 4]  # skip silence-ish windows
hit = sum(1 for x in speech if x in grams)
print(json.dumps(dict(file=sys.argv[1], seconds=round(len(pcm) / 16000, 2), rms=audioop.rms(pcm, 2),
                      speech_windows=len(speech), bit_exact_ref_windows=hit,
                      share=round(hit / max(1, len(speech)), 3), ref_seconds_recovered=round(hit * 16 / 8000, 2))))
