"""The UDP impairment relay: the pure model driven by hand, then the relay on real sockets."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from typing import Any, cast

import pytest

from voicemesh.cli import impair
from voicemesh.cli.impair import Impairment, ImpairmentModel, UdpImpairmentRelay

GAP = 0.02  # one RTP packet every 20 ms
T0 = 1000.0
unit = pytest.mark.unit
integration = pytest.mark.integration


def run(model: ImpairmentModel, n: int, gap: float = GAP) -> list[tuple[float, float, bytes]]:
    """Feed n numbered packets; every (arrival, send time, packet) the model returns."""
    out = []
    for i in range(n):
        now = T0 + i * gap
        out += [(now, when, packet) for when, packet in model.arrive(i.to_bytes(4, "big"), now)]
    return out


def wire_order(sent: list[tuple[float, float, bytes]]) -> list[int]:
    """The order the packets leave in: by send time, ties in the order returned (as the relay)."""
    return [int.from_bytes(p, "big") for _, _, p in sorted(sent, key=lambda s: s[1])]


EVERYTHING = Impairment(
    loss=0.1, delay_ms=5, jitter_ms=30, spike_prob=0.02, spike_ms=80, reorder=0.1, duplicate=0.05
)


@unit
def test_no_impairment_sends_everything_at_once_in_order() -> None:
    model = ImpairmentModel(Impairment(), seed=3)
    assert model.arrive(b"a", 5.0) == [(5.0, b"a")]
    assert model.arrive(b"b", 5.02) == [(5.02, b"b")]
    assert model.stats == impair.ImpairmentStats(packets_in=2)


@unit
def test_same_seed_same_output_different_seed_different_output() -> None:
    first = run(ImpairmentModel(EVERYTHING, seed=42), 2000)
    again = ImpairmentModel(EVERYTHING, seed=42)
    assert run(again, 2000) == first
    other = run(ImpairmentModel(EVERYTHING, seed=43), 2000)
    assert other != first
    assert wire_order(other) != wire_order(first)


@unit
def test_decisions_depend_on_the_seed_and_sequence_not_on_other_settings() -> None:
    # Every packet draws the same numbers whatever the settings: 5 % loss drops a subset of
    # what 10 % drops, and adding jitter changes no loss decision.
    def lost(imp: Impairment) -> set[int]:
        kept = {int.from_bytes(p, "big") for _, _, p in run(ImpairmentModel(imp, seed=9), 3000)}
        return set(range(3000)) - kept

    assert lost(Impairment(loss=0.05)) < lost(Impairment(loss=0.1))
    assert lost(Impairment(loss=0.1)) == lost(Impairment(loss=0.1, jitter_ms=40, duplicate=0.2))


@unit
def test_loss_rate_is_close_to_the_setting() -> None:
    model = ImpairmentModel(Impairment(loss=0.05), seed=1)
    sent = run(model, 10_000)
    assert model.stats.packets_in == 10_000
    assert 0.04 <= model.stats.dropped / 10_000 <= 0.06
    assert len(sent) == 10_000 - model.stats.dropped
    assert all(when == now for now, when, _ in sent)  # loss alone delays nothing


@unit
def test_duplicate_rate_and_the_copy_follows_the_original() -> None:
    model = ImpairmentModel(Impairment(duplicate=0.1), seed=2)
    order = wire_order(run(model, 10_000))
    assert 0.09 <= model.stats.duplicated / 10_000 <= 0.11
    assert len(order) == 10_000 + model.stats.duplicated
    assert sorted(set(order)) == list(range(10_000))
    assert order == sorted(order)  # each copy right behind its original


@unit
def test_reordering_puts_a_packet_behind_the_next_one() -> None:
    model = ImpairmentModel(Impairment(reorder=0.1, delay_ms=10), seed=3)
    sent = run(model, 10_000)
    last = model.release(T0 + 10_000 * GAP)  # held at the end: nothing came to overtake it
    sent += [(T0 + 10_000 * GAP, when, p) for when, p in last]
    order = wire_order(sent)
    assert sorted(order) == list(range(10_000))
    swapped = [i for i in range(len(order) - 1) if order[i] > order[i + 1]]
    assert 0.08 <= len(swapped) / 10_000 <= 0.12
    assert len(swapped) == model.stats.reordered - len(last)
    for i in swapped:  # held back exactly one place: ...k+1, k...
        assert order[i] == order[i + 1] + 1
    # and the late one really leaves later than the one that overtook it
    when = {int.from_bytes(p, "big"): w for _, w, p in sent}
    assert all(when[order[i + 1]] >= when[order[i]] for i in swapped)


@unit
def test_a_held_packet_goes_out_with_the_next_or_at_its_deadline() -> None:
    model = ImpairmentModel(Impairment(reorder=1.0), seed=0)
    assert model.arrive(b"0", 1.0) == []
    assert model.hold_deadline == pytest.approx(1.0 + impair.REORDER_HOLD_S)
    assert model.arrive(b"1", 1.02) == [(1.02, b"1"), (1.02, b"0")]
    assert model.hold_deadline is None
    assert model.arrive(b"2", 1.04) == []  # nothing follows:
    assert model.release(1.14) == [(1.14, b"2")]
    assert model.release(1.2) == []
    # a held packet behind a lost one still goes out
    lossy = ImpairmentModel(Impairment(reorder=1.0, loss=0.5), seed=5)
    out = [lossy.arrive(bytes([i]), 2.0 + i * GAP) for i in range(200)]
    lossy_out = {p for batch in out for _, p in batch} | {p for _, p in lossy.release(10.0)}
    assert len(lossy_out) == 200 - lossy.stats.dropped


@unit
def test_a_spike_delays_a_burst_which_then_drains() -> None:
    spike_s = 0.09  # 4.5 packet gaps: the packets at +0, 20, 40, 60, 80 ms are stalled
    model = ImpairmentModel(Impairment(spike_prob=0.01, spike_ms=spike_s * 1000), seed=4)
    sent = run(model, 5000)
    delays = [when - now for now, when, _ in sent]
    assert len(sent) == 5000
    assert all(0 <= d <= spike_s + 1e-9 for d in delays)
    starts = [i for i, d in enumerate(delays) if d == pytest.approx(spike_s)]
    assert len(starts) == model.stats.spikes > 10
    isolated = [s for s in starts if not any(s < t <= s + 6 for t in starts) and s + 6 < 5000]
    assert len(isolated) > 10
    for s in isolated:
        release = sent[s][1]
        assert [w for _, w, _ in sent[s : s + 5]] == pytest.approx([release] * 5)  # one burst
        assert delays[s + 1 : s + 5] == pytest.approx([spike_s - k * GAP for k in (1, 2, 3, 4)])
        assert delays[s + 5] == 0 and delays[s + 6] == 0  # after the stall: not delayed by it
    assert model.stats.delayed == sum(d > 0 for d in delays)
    assert wire_order(sent) == list(range(5000))  # a stall alone keeps the order


@unit
@pytest.mark.parametrize("seed", range(5))
def test_send_times_are_never_before_arrival(seed: int) -> None:
    model = ImpairmentModel(EVERYTHING, seed=seed)
    rng = random.Random(seed)
    now = 0.0
    for i in range(3000):
        now += rng.choice([0.0, 0.001, 0.02, 0.02, 0.2])  # bursts, steady flow and gaps
        assert all(when >= now for when, _ in model.arrive(bytes([i % 256]), now))
        if i % 97 == 0:
            assert all(when >= now for when, _ in model.release(now))


@unit
def test_parse() -> None:
    assert Impairment.parse("") == Impairment()
    assert Impairment.parse(" loss=0.05, spike_prob=0.02,spike_ms=40 ") == Impairment(
        loss=0.05, spike_prob=0.02, spike_ms=40.0
    )
    assert Impairment.parse("loss=1,duplicate=0,reorder=0.5,delay_ms=20,jitter_ms=5") == Impairment(
        loss=1.0, duplicate=0.0, reorder=0.5, delay_ms=20.0, jitter_ms=5.0
    )


@unit
@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("los=0.1", "'los'"),
        ("loss=abc", "loss='abc'"),
        ("loss=", "loss=''"),
        ("loss", "loss: expected"),
        ("loss=1.5", "loss=1.5"),
        ("duplicate=-0.1", "duplicate=-0.1"),
        ("reorder=nan", "reorder=nan"),
        ("spike_ms=-1", "spike_ms=-1"),
        ("delay_ms=inf", "delay_ms=inf"),
        ("loss=0.1,loss=0.2", "loss: given twice"),
    ],
)
def test_parse_errors_name_the_bad_key_or_value(text: str, named: str) -> None:
    with pytest.raises(ValueError, match="impairment") as error:
        Impairment.parse(text)
    assert named in str(error.value)


@unit
async def test_main_rejects_a_bad_impairment_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        await impair.main(["--target", "127.0.0.1:9", "--upstream", "loss=0.1,jiter_ms=3"])
    assert exit_.value.code == 2
    assert "'jiter_ms'" in capsys.readouterr().err


# --- the relay on real sockets ----------------------------------------------------------------


class Endpoint(asyncio.DatagramProtocol):
    """A UDP endpoint on a free port that keeps what it receives, with whom from and when."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any, float]] = []
        self.changed = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append((data, addr, asyncio.get_running_loop().time()))
        self.changed.set()

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    @property
    def packets(self) -> list[bytes]:
        return [data for data, _, _ in self.got]

    async def send(self, packets: list[bytes], to: tuple[str, int]) -> None:
        assert self.transport is not None
        for packet in packets:
            self.transport.sendto(packet, to)
            await asyncio.sleep(0)  # let the relay read as we go, as a paced RTP sender does

    async def wait_for(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.got) < n:
                self.changed.clear()
                await self.changed.wait()


async def endpoint() -> Endpoint:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    return protocol


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def peers() -> Any:
    caller, target = await endpoint(), await endpoint()
    yield caller, target
    for peer in (caller, target):
        assert peer.transport is not None
        peer.transport.close()


@integration
async def test_a_clean_relay_carries_both_ways_in_order(peers: tuple[Endpoint, Endpoint]) -> None:
    caller, target = peers
    up = [b"up-%03d" % i + bytes(range(i % 200)) for i in range(100)]
    down = [b"down-%03d" % i for i in range(100)]
    async with UdpImpairmentRelay(target.address) as relay:
        await caller.send(up, relay.address)
        await target.wait_for(100)
        assert target.packets == up
        assert {addr for _, addr, _ in target.got} == {relay.target_side_address}
        await target.send(down, target.got[0][1])  # symmetric RTP: answer where it came from
        await caller.wait_for(100)
        assert caller.packets == down
        assert {addr for _, addr, _ in caller.got} == {relay.address}
        assert relay.stats.upstream.sent == relay.stats.downstream.sent == 100


@integration
async def test_total_loss_upstream_leaves_downstream_working(peers: tuple[Endpoint, Endpoint]) -> None:
    caller, target = peers
    async with UdpImpairmentRelay(target.address, upstream=Impairment(loss=1.0), seed=5) as relay:
        await caller.send([b"up"] * 20, relay.address)
        await until(lambda: relay.stats.upstream.impairment.packets_in == 20)
        await target.send([b"down-%d" % i for i in range(20)], relay.target_side_address)
        await caller.wait_for(20)
        assert caller.packets == [b"down-%d" % i for i in range(20)]
        assert relay.stats.upstream.impairment.dropped == 20 and relay.stats.upstream.sent == 0
    assert target.got == []


@integration
async def test_delay_holds_packets_back_and_in_flight_is_bounded(
    peers: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    caller, target = peers
    monkeypatch.setattr(impair, "MAX_IN_FLIGHT", 3)
    loop = asyncio.get_running_loop()
    async with UdpImpairmentRelay(target.address, upstream=Impairment(delay_ms=200)) as relay:
        sent_at = loop.time()
        await caller.send([b"late-%d" % i for i in range(10)], relay.address)
        await target.wait_for(3)
        assert target.packets == [b"late-0", b"late-1", b"late-2"]
        assert all(at - sent_at >= 0.2 for _, _, at in target.got)
        assert relay.stats.upstream.overflow == 7 and relay.stats.upstream.sent == 3


@integration
async def test_the_command_prints_its_address_and_stops_on_sigterm(peers: tuple[Endpoint, Endpoint]) -> None:
    caller, target = peers
    host, port = target.address
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voicemesh.cli.impair",
        "--target",
        f"{host}:{port}",
        "--upstream",
        "delay_ms=1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            assert proc.stdout is not None
            listen_host, _, listen_port = (await proc.stdout.readline()).decode().strip().rpartition(":")
            await caller.send([b"hello"], (listen_host, int(listen_port)))
            await target.wait_for(1)
            assert target.packets == [b"hello"]
            proc.send_signal(signal.SIGTERM)
            _, err = await proc.communicate()
        assert proc.returncode == 0
        assert b"packets_in=1" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@integration
async def test_replies_go_to_the_callers_latest_address(peers: tuple[Endpoint, Endpoint]) -> None:
    caller, target = peers
    moved = await endpoint()  # the caller's RTP comes from a new port (NAT rebinding, re-INVITE)
    try:
        async with UdpImpairmentRelay(target.address) as relay:
            await caller.send([b"first"], relay.address)
            await target.wait_for(1)
            await target.send([b"to-first"], relay.target_side_address)
            await caller.wait_for(1)
            await moved.send([b"second"], relay.address)
            await target.wait_for(2)
            await target.send([b"to-second"], relay.target_side_address)
            await moved.wait_for(1)
            assert (caller.packets, moved.packets) == ([b"to-first"], [b"to-second"])
    finally:
        assert moved.transport is not None
        moved.transport.close()
