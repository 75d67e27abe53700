"""A UDP impairment relay: seeded loss, delay, jitter spikes, reordering and duplication.

This kernel has no netem, so tests and benchmarks put this relay between a caller's RTP and
the SIP edge: `async with UdpImpairmentRelay(edge_rtp, upstream=Impairment.parse("loss=0.05"),
seed=1) as relay:` and the caller sends to `relay.address`. Or `python -m voicemesh.cli.impair
--target 127.0.0.1:4000 --upstream loss=0.05 --seed 1` (prints the address it listens on).

`ImpairmentModel` is the pure core: given a packet and its arrival time (seconds) it returns
when to send it: never, once or twice. Each packet draws the same five numbers from
`random.Random(seed)` whatever the settings, so every decision depends only on the seed and
the packet's place in the arrival sequence. In order:
- spike (`spike_prob`): the link stalls for `spike_ms`, then drains. A packet arriving t ms
  into a stall waits `spike_ms - t` extra, so stalled packets leave together as a burst and
  later ones wait nothing extra. A spike inside a stall extends it. Loss does not stop it;
- loss (`loss`): dropped;
- delay: `delay_ms` + uniform(0, `jitter_ms`) + what is left of the stall;
- duplicate (`duplicate`): sent twice, the copy right after the original;
- reorder (`reorder`): held back until the next packet arrives, then sent right after it. One
  is held at a time; if nothing follows, the shell lets it go at `hold_deadline` (`release`).
Send times are never before `now`; pairs due at the same time go out in the order returned.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import math
import random
import signal
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from types import TracebackType
from typing import Any

MAX_IN_FLIGHT = 10_000  # per direction; more waiting packets are dropped and counted
REORDER_HOLD_S = 0.1  # a held-back packet goes out this long after it came if nothing follows
_PROBABILITIES = frozenset({"loss", "spike_prob", "reorder", "duplicate"})

Timed = tuple[float, bytes]  # (when to send, on the clock `now` comes from; the packet)
Address = tuple[str, int]


@dataclass(frozen=True)
class Impairment:
    loss: float = 0.0  # probability a packet is dropped
    delay_ms: float = 0.0  # fixed one-way delay
    jitter_ms: float = 0.0  # uniform extra delay in [0, jitter_ms] per packet
    spike_prob: float = 0.0  # probability a packet starts a jitter spike
    spike_ms: float = 0.0  # how long a spike stalls the link (see the module docstring)
    reorder: float = 0.0  # probability a packet is held back behind the next one
    duplicate: float = 0.0  # probability a packet is sent twice

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _PROBABILITIES and not 0.0 <= value <= 1.0:
                raise ValueError(f"impairment {f.name}={value}: must be a probability in [0, 1]")
            if f.name not in _PROBABILITIES and not 0.0 <= value < math.inf:
                raise ValueError(f"impairment {f.name}={value}: must be milliseconds >= 0")

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """`"loss=0.05,spike_prob=0.02,spike_ms=40"`; an empty string is no impairment."""
        names = [f.name for f in fields(cls)]
        values: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, raw = (s.strip() for s in item.partition("="))
            if key not in names:
                raise ValueError(f"impairment: unknown key {key!r} (known: {', '.join(names)})")
            if not sep:
                raise ValueError(f"impairment {key}: expected {key}=value")
            if key in values:
                raise ValueError(f"impairment {key}: given twice")
            try:
                values[key] = float(raw)
            except ValueError:
                raise ValueError(f"impairment {key}={raw!r}: not a number") from None
        return cls(**values)


NO_IMPAIRMENT = Impairment()


@dataclass(frozen=True)
class ImpairmentStats:
    packets_in: int = 0
    dropped: int = 0  # lost
    duplicated: int = 0
    reordered: int = 0  # held back behind the next packet
    delayed: int = 0  # sent later than they arrived (delay, jitter or a stall)
    spikes: int = 0  # stalls started


class ImpairmentModel:
    """Decides, packet by packet, when each goes out. No sockets, no clock: time is `now`."""

    def __init__(self, impairment: Impairment, seed: int) -> None:
        self.impairment = impairment
        self._rng = random.Random(seed)
        self._stall_until = -math.inf
        self._held: list[Timed] = []
        self._held_at = 0.0
        self._counts: Counter[str] = Counter()

    @property
    def stats(self) -> ImpairmentStats:
        return ImpairmentStats(**self._counts)

    @property
    def hold_deadline(self) -> float | None:
        """When the held-back packet should go out anyway if no next packet has come."""
        return self._held_at + REORDER_HOLD_S if self._held else None

    def arrive(self, packet: bytes, now: float) -> list[Timed]:
        """(when to send, packet) pairs for this packet and any it releases; [] if dropped."""
        imp, count = self.impairment, self._counts
        u_spike, u_loss, u_jitter, u_dup, u_reorder = [self._rng.random() for _ in range(5)]
        count["packets_in"] += 1
        if u_spike < imp.spike_prob:
            count["spikes"] += 1
            self._stall_until = max(self._stall_until, now + imp.spike_ms / 1000)
        held, self._held = self._held, []
        if u_loss < imp.loss:
            count["dropped"] += 1
            return [(max(when, now), p) for when, p in held]
        extra = (imp.delay_ms + u_jitter * imp.jitter_ms) / 1000 + max(0.0, self._stall_until - now)
        if extra > 0:
            count["delayed"] += 1
        mine = [(now + extra, packet)]
        if u_dup < imp.duplicate:
            count["duplicated"] += 1
            mine.append((now + extra, packet))
        if not held and u_reorder < imp.reorder:
            count["reordered"] += 1
            self._held, self._held_at = mine, now
            return []
        return mine + [(max(when, now + extra), p) for when, p in held]

    def release(self, now: float) -> list[Timed]:
        """Let the held-back packet go (the shell calls this at `hold_deadline`)."""
        held, self._held = self._held, []
        return [(max(when, now), p) for when, p in held]


@dataclass(frozen=True)
class LaneStats:
    impairment: ImpairmentStats
    sent: int = 0
    overflow: int = 0  # dropped because MAX_IN_FLIGHT packets were already waiting
    unroutable: int = 0  # due downstream before any caller had sent


@dataclass(frozen=True)
class RelayStats:
    upstream: LaneStats  # caller -> target
    downstream: LaneStats  # target -> caller


class _Lane:
    """One direction: a model, the packets waiting for their send time, and two timers."""

    def __init__(self, model: ImpairmentModel, send: Callable[[bytes], bool]) -> None:
        self.model, self._send = model, send
        self._queue: list[tuple[float, int, bytes]] = []  # a heap; the counter keeps ties in order
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._hold_timer: asyncio.TimerHandle | None = None
        self.sent = self.overflow = self.unroutable = 0

    @property
    def stats(self) -> LaneStats:
        return LaneStats(self.model.stats, self.sent, self.overflow, self.unroutable)

    def push(self, packet: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._schedule(self.model.arrive(packet, loop.time()))
        if self._hold_timer is not None:
            self._hold_timer.cancel()
        deadline = self.model.hold_deadline
        self._hold_timer = None if deadline is None else loop.call_at(deadline, self._release)

    def close(self) -> None:
        for timer in (self._timer, self._hold_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._hold_timer = None
        self._queue.clear()

    def _release(self) -> None:
        self._hold_timer = None
        self._schedule(self.model.release(asyncio.get_running_loop().time()))

    def _schedule(self, timed: list[Timed]) -> None:
        for when, packet in timed:
            if len(self._queue) >= MAX_IN_FLIGHT:
                self.overflow += 1
            else:
                heapq.heappush(self._queue, (when, next(self._seq), packet))
        head = self._queue[0][0] if self._queue else None
        if head is not None and (self._timer is None or self._timer.when() > head):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(head, self._flush, head)

    def _flush(self, due: float) -> None:
        self._timer = None
        limit = max(due, asyncio.get_running_loop().time())
        while self._queue and self._queue[0][0] <= limit:
            if self._send(heapq.heappop(self._queue)[2]):
                self.sent += 1
            else:
                self.unroutable += 1
        self._schedule([])


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self._on_datagram = on_datagram
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP "port unreachable" from a peer not (yet) listening: UDP carries on

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class UdpImpairmentRelay:
    """Listens on (host, port; 0 = a free one) and forwards every datagram that arrives there
    (from "the caller") to `target`, and every datagram from `target` back to the caller's
    latest address. It faces the target from a second socket of its own (`target_side_address`),
    so with symmetric RTP the target answers through the relay. Each direction has its own
    impairment and model (seeded `seed` and `seed + 1`)."""

    def __init__(
        self,
        target: Address,
        *,
        upstream: Impairment = NO_IMPAIRMENT,
        downstream: Impairment = NO_IMPAIRMENT,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._target, self._listen_on = target, (host, port)
        self._up = _Lane(ImpairmentModel(upstream, seed), self._to_target)
        self._down = _Lane(ImpairmentModel(downstream, seed + 1), self._to_caller)
        self._caller: Any = None
        self._sockets: list[tuple[asyncio.DatagramTransport, _Socket]] = []  # [outbound, listening]

    @property
    def address(self) -> Address:
        """Where callers send to."""
        return self._sockets[1][0].get_extra_info("sockname")[:2]

    @property
    def target_side_address(self) -> Address:
        """The relay's own address as the target sees it."""
        return self._sockets[0][0].get_extra_info("sockname")[:2]

    @property
    def stats(self) -> RelayStats:
        return RelayStats(self._up.stats, self._down.stats)

    async def start(self) -> Address:
        loop = asyncio.get_running_loop()
        try:
            outbound = lambda: _Socket(self._from_target)  # noqa: E731
            self._sockets.append(await loop.create_datagram_endpoint(outbound, remote_addr=self._target))
            listening = lambda: _Socket(self._from_caller)  # noqa: E731
            self._sockets.append(await loop.create_datagram_endpoint(listening, local_addr=self._listen_on))
        except BaseException:
            await self.aclose()
            raise
        return self.address

    async def aclose(self) -> None:
        self._up.close()
        self._down.close()
        sockets, self._sockets = self._sockets, []
        for transport, _ in sockets:
            transport.close()
        for _, protocol in sockets:
            await protocol.closed

    async def __aenter__(self) -> UdpImpairmentRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    def _from_caller(self, data: bytes, addr: Any) -> None:
        self._caller = addr
        self._up.push(data)

    def _from_target(self, data: bytes, addr: Any) -> None:
        self._down.push(data)  # the outbound socket is connected: only the target gets here

    def _to_target(self, packet: bytes) -> bool:
        self._sockets[0][0].sendto(packet)
        return True

    def _to_caller(self, packet: bytes) -> bool:
        if self._caller is None:
            return False
        self._sockets[1][0].sendto(packet, self._caller)
        return True


def _address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected host:port")
    return host.strip("[]"), int(port)


def _impairment(text: str) -> Impairment:
    try:
        return Impairment.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voicemesh.cli.impair",
        description="Relay UDP (RTP) through seeded loss, delay, jitter spikes, reordering, duplication.",
    )
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 0), help="host:port (0: free)")
    parser.add_argument("--target", type=_address, required=True, help="host:port to forward to")
    example = "e.g. loss=0.05,jitter_ms=10,spike_prob=0.02,spike_ms=40"
    parser.add_argument(
        "--upstream", type=_impairment, default=NO_IMPAIRMENT, help=f"caller->target, {example}"
    )
    parser.add_argument("--downstream", type=_impairment, default=NO_IMPAIRMENT, help="target->caller")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    host, port = args.listen
    relay = UdpImpairmentRelay(
        args.target, upstream=args.upstream, downstream=args.downstream, seed=args.seed, host=host, port=port
    )
    address = await relay.start()
    print(f"{address[0]}:{address[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await relay.aclose()
    print(relay.stats, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
