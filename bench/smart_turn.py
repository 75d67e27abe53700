"""Smart Turn v3.2: how long one end-of-turn prediction takes, and what it says (issue 11).

Times `SmartTurnModel.predict` (features + inference) on one thread for 1, 3, 5 and 8 s of
speech (the model always hears an 8 s window, so the input's length changes only the
feature step), `--runs` times each after a warm-up, the lengths interleaved; p50/p95/p99 in
ms. The machine is shared: read them beside the load average printed before and after.

Then the probability that the turn is complete, and what a threshold of 0.5 would decide,
for utterances whose answer is known: JFK at 16 kHz whole and cut mid-phrase (cut points
from faster-whisper word timings and the level), the same recording as 8 kHz μ-law phone
audio decoded and upsampled to 16 kHz, the e2e caller turns (espeak-ng, all complete), and
sentences with a 0.8 s pause in the middle (bench/data/smart_turn: espeak-ng and piper),
whole and cut at the pause. Each is followed by digital silence, as the edge would ask
after the VAD's silence began: first at 0.2 s, then a sweep of that silence. Prints
figures; never fails.

    .venv/bin/python bench/smart_turn.py --runs 30
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from figures import cpu_model, load_average, percentile

from voicemesh.audio.frames import SAMPLE_RATE, rms_dbfs
from voicemesh.audio.g711 import ulaw_decode
from voicemesh.audio.resample import resample
from voicemesh.audio.smart_turn import SmartTurnModel, smart_turn_model_path
from voicemesh.audio.wav import read_wav

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "e2e" / "fixtures"
PAUSES = REPO / "bench" / "data" / "smart_turn"
THRESHOLD = 0.5
SILENCE_S = 0.2
SWEEP_S = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
TIMED_S = (1, 3, 5, 8)
FRAME = 640  # 20 ms of PCM16
QUIET_DBFS = -45.0
MIN_PAUSE_S = 0.5


def assets_dir() -> Path:
    for candidate in (os.environ.get("VOICEMESH_ASSETS", ""), REPO.parent / "shared" / "assets"):
        if candidate and (Path(candidate) / "audio" / "jfk16k.wav").exists():
            return Path(candidate)
    return Path("/work/shared/assets")


@dataclass(frozen=True)
class Utterance:
    name: str
    pcm: bytes
    complete: bool  # what a listener would say: has the caller finished?


def upto(pcm: bytes, seconds: float) -> bytes:
    return pcm[: int(seconds * SAMPLE_RATE) * 2]


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * SAMPLE_RATE) * 2)


def pause_start(pcm: bytes) -> int | None:
    """Byte offset where the longest quiet stretch inside the speech begins (>= 0.5 s)."""
    loud = [rms_dbfs(pcm[i : i + FRAME]) > QUIET_DBFS for i in range(0, len(pcm) - FRAME + 1, FRAME)]
    best, best_len, i = None, 0, loud.index(True) if any(loud) else len(loud)
    while i < len(loud):
        if loud[i]:
            i += 1
            continue
        j = i
        while j < len(loud) and not loud[j]:
            j += 1
        if j < len(loud) and j - i > best_len:
            best, best_len = i, j - i
        i = j
    return best * FRAME if best is not None and best_len * FRAME >= MIN_PAUSE_S * 2 * SAMPLE_RATE else None


def utterances(assets: Path) -> list[Utterance]:
    jfk, _ = read_wav(assets / "audio" / "jfk16k.wav")
    ulaw = np.frombuffer(ulaw_decode((assets / "audio" / "jfk8k.ulaw").read_bytes()), dtype="<i2")
    phone = resample(ulaw, 8000, SAMPLE_RATE).astype("<i2").tobytes()
    out: list[Utterance] = []
    # JFK: "And so my fellow Americans, | ask not | what your country | can do for you, |
    # ask what you can do for your country." Word ends (s): Americans 2.2, not 4.3,
    # country 6.4, you 7.5, the last word 10.5; the recording runs to 11.0 (room tone).
    for label, pcm in (("jfk", jfk), ("jfk phone 8k->16k", phone)):
        out.append(Utterance(f"{label} whole (+0.5 s room)", pcm, True))
        out.append(Utterance(f"{label} to 'your country.' 10.5 s", upto(pcm, 10.5), True))
        out.append(Utterance(f"{label} to 'fellow Americans' 2.3 s", upto(pcm, 2.3), False))
        out.append(Utterance(f"{label} to 'ask not' 4.35 s", upto(pcm, 4.35), False))
        out.append(Utterance(f"{label} to 'what your country' 6.4 s", upto(pcm, 6.4), False))
        out.append(Utterance(f"{label} to '...can do for you' 7.6 s", upto(pcm, 7.6), False))
    for wav in sorted(FIXTURES.glob("caller_*.wav")):
        pcm, _ = read_wav(wav)
        out.append(Utterance(f"e2e {wav.stem}", pcm, True))
    for wav in sorted(PAUSES.glob("*.wav")):
        pcm, _ = read_wav(wav)
        out.append(Utterance(f"pause {wav.stem} whole", pcm, True))
        cut = pause_start(pcm)
        if cut is not None:
            at = cut / 2 / SAMPLE_RATE
            out.append(Utterance(f"pause {wav.stem} to the pause {at:.2f} s", pcm[:cut], False))
    return out


def decide(p: float) -> str:
    return "complete" if p >= THRESHOLD else "wait"


def timing(model: SmartTurnModel, speech: bytes, runs: int) -> None:
    """The lengths take turns run by run, so a burst of load elsewhere hits them alike."""
    inputs = {seconds: upto(speech, seconds) for seconds in TIMED_S}
    for pcm in inputs.values():
        for _ in range(3):
            model.predict(pcm)
    feats: dict[int, list[float]] = {seconds: [] for seconds in TIMED_S}
    preds: dict[int, list[float]] = {seconds: [] for seconds in TIMED_S}
    for _ in range(runs):
        for seconds, pcm in inputs.items():
            t0 = time.perf_counter()
            model.features(pcm)
            t1 = time.perf_counter()
            model.predict(pcm)
            t2 = time.perf_counter()
            feats[seconds].append((t1 - t0) * 1e3)
            preds[seconds].append((t2 - t1) * 1e3)
    print(f"## predict() on 1 thread, {runs} runs each (ms); features() alone beside it\n")
    print("| input s | features p50 | predict p50 | p95 | p99 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for seconds in TIMED_S:
        f, p = feats[seconds], preds[seconds]
        print(
            f"| {seconds} | {percentile(f, 0.5):.1f} | {percentile(p, 0.5):.1f} "
            f"| {percentile(p, 0.95):.1f} | {percentile(p, 0.99):.1f} |"
        )


def probabilities(model: SmartTurnModel, items: list[Utterance]) -> None:
    print(f"\n## P(complete) after {SILENCE_S} s of silence; threshold {THRESHOLD}\n")
    print("| utterance | truly | P | 0.5 decides | right? |")
    print("| --- | --- | ---: | --- | --- |")
    right = {True: [0, 0], False: [0, 0]}
    for u in items:
        p = model.predict(u.pcm + silence(SILENCE_S))
        ok = (p >= THRESHOLD) == u.complete
        right[u.complete][0] += ok
        right[u.complete][1] += 1
        truly = "complete" if u.complete else "unfinished"
        print(f"| {u.name} | {truly} | {p:.3f} | {decide(p)} | {'yes' if ok else 'NO'} |")
    print(
        f"\nright at {SILENCE_S} s: complete {right[True][0]}/{right[True][1]}, "
        f"unfinished {right[False][0]}/{right[False][1]}"
    )

    print("\n## P(complete) against the silence after the speech (C: 0.5 says complete, w: wait)\n")
    print("| utterance | truly | " + " | ".join(f"{s} s" for s in SWEEP_S) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in SWEEP_S) + " |")
    for u in items:
        cells = []
        for s in SWEEP_S:
            p = model.predict(u.pcm + silence(s))
            cells.append(f"{p:.2f} {'C' if p >= THRESHOLD else 'w'}")
        truly = "complete" if u.complete else "unfinished"
        print(f"| {u.name} | {truly} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="timed predictions per input length")
    args = parser.parse_args()

    path = smart_turn_model_path()
    t0 = time.perf_counter()
    model = SmartTurnModel.load(path, threads=1)
    load_ms = (time.perf_counter() - t0) * 1e3
    assets = assets_dir()
    jfk, _ = read_wav(assets / "audio" / "jfk16k.wav")

    print(f"load average before timing: {load_average()}\n")
    timing(model, jfk, args.runs)
    probabilities(model, utterances(assets))

    print(f"\nmodel: {path} ({path.stat().st_size / 1e6:.1f} MB), loaded in {load_ms:.0f} ms")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load average now {load_average()}")


if __name__ == "__main__":
    main()
