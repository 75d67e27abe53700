"""Coverage-guided fuzzing of the SIP edge with atheris (libFuzzer), issue 7.

One target per run, each driving the real shell exactly as the hypothesis tests in
services/media-edge/tests/test_sip_fuzz.py do (imported from there, so the two cannot drift
apart): a fresh `SipCallTransport` on loopback ports for every input, bytes fed straight
into its listeners, what it sends recorded, each message's fate judged by `check`.

- sip:  `through_the_edge`: the first input byte picks the caller (bit 0: outside the
        allowed networks, over UDP) and the transport (bit 1: TCP, the rest one
        connection's stream); the rest is the datagram or the stream.
- sdp:  `check_offer`: the input, decoded as the shell decodes a body, as an INVITE's offer
        (pure: `answer_offer` alone).
- rtp:  `through_a_call`: the input as datagrams (a length byte, then that many bytes,
        again and again) into a live call's RTP port, then the caller's voice, which the call
        must still hear.
- rtcp: the same, the input one datagram, seeded with compound RTCP.

aiosipua, aiortp and voicemesh.edge.sip are instrumented for coverage; the tests'
well-formed messages are the seeds, SIP/SDP tokens a dictionary. An exception out of a
target is a crash: whatever escaped the shell, or the `EdgeFault` naming a promise it broke
(a message neither answered nor counted, a reply sent elsewhere than its source, an error
at the event loop, a call that stops hearing its caller). By default libFuzzer stops at the
first and writes its input to the work directory; with `--keep-going` each distinct crash
is written once and the run goes on. Any other `-flag=value` goes to libFuzzer.

Prints libFuzzer's progress (cov: edges covered, ft: features) and, at exit, the figures:
executions, executions per second, distinct crashes (0 expected) with their inputs and
where they were raised. Never fails on time.

    .venv/bin/python bench/fuzz_sip.py --target sip -max_total_time=45
    .venv/bin/python bench/fuzz_sip.py --target rtp --keep-going -runs=20000
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import logging
import os
import re
import struct
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import atheris

# first imported here, instrumented for coverage; the tests module below reuses them
with atheris.instrument_imports(include=["aiosipua", "aiortp", "voicemesh.edge.sip"]):
    import aiortp  # noqa: F401
    import aiosipua.transport  # noqa: F401
    from aiortp.packet import (
        RtcpByePacket,
        RtcpReceiverInfo,
        RtcpRrPacket,
        RtcpSdesPacket,
        RtcpSenderInfo,
        RtcpSourceInfo,
        RtcpSrPacket,
    )

    import voicemesh.edge.sip.listeners
    import voicemesh.edge.sip.offer
    import voicemesh.edge.sip.port
    import voicemesh.edge.sip.transport  # noqa: F401

from figures import cpu_model, load_average

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services" / "media-edge" / "tests"))
import test_sip_fuzz as edge  # the real shell, as the tests drive and judge it

DICTIONARY = [
    *edge.METHODS, "SIP/2.0", "SIP/2.0/UDP ", "SIP/2.0/TCP ", "\r\n", "\r\n\r\n", "Via: ", "v: ", "From: ",
    "To: ", "Call-ID: ", "i: ", "CSeq: ", "Contact: ", "Content-Length: ", "l: ", "Content-Type: ",
    "application/sdp", "Authorization: ", "Digest ", 'username="alice"', 'realm="voicemesh"', "nonce=",
    "response=", "qop=auth", "nc=", "cnonce=", "algorithm=SHA-256", "X-Room-ID: ", ";branch=z9hG4bK", ";tag=",
    ";rport", ";received=", "sip:", "sips:", "<sip:restaurant@127.0.0.1>", "127.0.0.1", "[::1]", ":5060",
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 ", "c=IN IP6 ", "t=0 0", "m=audio ", " RTP/AVP ",
    "a=rtpmap:", "telephone-event/8000", "PCMU/8000", "a=fmtp:101 0-16", "a=sendonly", "a=recvonly",
    "a=inactive", "a=ptime:20", "b=AS:", "²", "٣", "５",  # digits in other scripts: isdigit(), and int()?
]  # fmt: skip
_AT_EXIT: list[object] = []  # the C callback, kept alive
RUNNER = asyncio.Runner()  # one event loop for the run; each input gets its own edge on it


def datagrams(data: bytes) -> list[bytes]:
    """The input as datagrams: a length byte, then that many bytes, again and again."""
    out = []
    while data:
        out.append(data[1 : 1 + data[0]])
        data = data[1 + data[0] :]
    return out


def sip(data: bytes) -> None:
    if data:
        source = edge.OUTSIDE if data[0] & 1 else edge.ALLOWED
        over = "tcp" if data[0] & 2 else "udp"
        RUNNER.run(edge.through_the_edge(data[1:], source if over == "udp" else ("127.0.0.1", 40001), over))


def sdp(data: bytes) -> None:
    edge.check_offer(data.decode("utf-8", errors="replace"))  # SipMessage.text


def rtp(data: bytes) -> None:
    RUNNER.run(edge.through_a_call(datagrams(data)))


def rtcp(data: bytes) -> None:
    RUNNER.run(edge.through_a_call([data]))


TARGETS = {"sip": sip, "sdp": sdp, "rtp": rtp, "rtcp": rtcp}


def seeds(target: str) -> list[bytes]:
    if target == "sip":  # the flag byte: 1 a caller outside the allowed networks, 2 over TCP
        udp, tcp = edge.well_formed("seed-1", 5062), edge.well_formed("seed-2", 5062, "TCP")
        return [bytes([flag]) + m for m in udp for flag in (0, 1)] + [bytes([2]) + m for m in tcp]
    if target == "sdp":
        return [edge.OFFER.encode(), edge.OFFER.replace("RTP/AVP 0 101", "RTP/AVP 8").encode(), b"v=0\r\n"]
    voice = [struct.pack("!BBHLL", 0x80, 0, n, 160 * n, 7) + edge.VOICE[:100] for n in range(3)]
    events = [struct.pack("!BBHLL", 0x80, 101, 3, 480, 7) + bytes([5, 0x8A, 0, 160])]
    noise = [struct.pack("!BBHLL", 0x80, 13, 4, 640, 7) + b"\x40"]
    report = RtcpReceiverInfo(
        ssrc=7, fraction_lost=0, packets_lost=1, highest_sequence=3, jitter=2, lsr=0, dlsr=0
    )
    sender = RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=160, packet_count=3, octet_count=480)
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=7, items=[(1, b"caller")])])
    compound = [
        bytes(RtcpSrPacket(ssrc=7, sender_info=sender, reports=[report])) + bytes(sdes),
        bytes(RtcpRrPacket(ssrc=7, reports=[report])) + bytes(RtcpByePacket(sources=[7])),
    ]
    if target == "rtcp":
        return compound
    return [b"".join(bytes([len(p)]) + p for p in voice + events + noise + compound[:1])]


def signature(exc: BaseException) -> str:
    """One crash per kind: an EdgeFault by the promise broken (numbers and quoted text
    left out), anything else by its type and the line that raised it."""
    if isinstance(exc, edge.EdgeFault):
        return "EdgeFault: " + re.sub(r"\d+|'[^']*'|\([^)]*\)", "…", str(exc).split(";")[0])[:120]
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno} ({frame.name})"


@dataclass
class Run:
    target: str
    keep_going: bool
    workdir: Path
    executions: int = 0
    started: float = 0.0
    crashes: dict[str, bytes] = field(default_factory=dict)  # by signature: the first input
    reported: bool = False

    def one(self, data: bytes) -> None:
        if not self.executions:
            self.started = time.monotonic()
        self.executions += 1
        try:
            TARGETS[self.target](data)
        except Exception as exc:  # escaped the shell, or a promise broken: a crash
            self.crashed(data, exc)
            if not self.keep_going:
                self.report()
                raise

    def crashed(self, data: bytes, exc: Exception) -> None:
        key = signature(exc)
        if key in self.crashes:
            return
        self.crashes[key] = data
        path = self.workdir / f"crash-{self.target}-{len(self.crashes)}"
        path.write_bytes(data)
        print(f"\n== crash {len(self.crashes)}: {key}; input in {path}", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)

    def report(self, _arg: object = None) -> None:
        if self.reported:
            return
        self.reported = True
        seconds = time.monotonic() - self.started if self.executions else 0.0
        rate = self.executions / seconds if seconds else 0.0
        print(
            f"\nfuzz_sip --target {self.target}: {self.executions} executions in {seconds:.1f} s, "
            f"{rate:.0f} exec/s, {len(self.crashes)} distinct crashes (0 expected)",
            flush=True,
        )
        for key, data in self.crashes.items():
            print(f"  {key}; input {data[:160]!r}", flush=True)
        print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load average {load_average()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", choices=list(TARGETS), default="sip")
    parser.add_argument("--keep-going", action="store_true", help="record each distinct crash and go on")
    parser.add_argument(
        "--workdir", type=Path, help="corpus, dictionary and crash inputs (default: a new temp dir)"
    )
    args, libfuzzer = parser.parse_known_args()
    logging.disable(logging.CRITICAL)  # every dropped message is logged: not what is measured
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"fuzz_sip-{args.target}-"))
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds(args.target)):
        (corpus / f"seed-{n}").write_bytes(seed)
    flags = [f"-artifact_prefix={workdir}/"]
    if args.target in ("sip", "sdp"):
        escaped = ("".join(f"\\x{b:02x}" for b in token.encode()) for token in DICTIONARY)
        (workdir / "tokens.dict").write_text("".join(f'"{token}"\n' for token in escaped))
        flags.append(f"-dict={workdir / 'tokens.dict'}")
    print(f"fuzz_sip --target {args.target}: work directory {workdir}", flush=True)

    run = Run(args.target, args.keep_going, workdir)
    atheris.Setup([sys.argv[0], *flags, *libfuzzer, str(corpus)], run.one)
    # libFuzzer ends a run with exit(): C's atexit handlers run, Python's do not
    _AT_EXIT.append(ctypes.CFUNCTYPE(None, ctypes.c_void_p)(run.report))
    ctypes.CDLL(None).__cxa_atexit(_AT_EXIT[-1], None, None)
    atheris.Fuzz()
    run.report()
    os._exit(0)  # (not reached) and never into the C handler after the interpreter is gone


if __name__ == "__main__":
    main()
