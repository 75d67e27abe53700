"""The edge's channel pool: channels in use are shared and never closed under a call;
idle ones are kept for the next call up to a bound, so dead instances are forgotten."""

from __future__ import annotations

import pytest

from voicemesh.edge.channels import ChannelPool

pytestmark = pytest.mark.unit


async def test_a_channel_is_shared_while_in_use_and_kept_when_idle() -> None:
    pool = ChannelPool(max_idle=2)
    a = pool.acquire("127.0.0.1:1001", "stt")
    assert pool.acquire("127.0.0.1:1001", "stt") is a and pool.users("127.0.0.1:1001") == 2
    await pool.release("127.0.0.1:1001")
    await pool.release("127.0.0.1:1001")
    assert pool.acquire("127.0.0.1:1001", "stt") is a  # the next call reuses it
    await pool.release("127.0.0.1:1001")
    await pool.close()


async def test_idle_channels_past_the_bound_are_closed_oldest_first() -> None:
    pool = ChannelPool(max_idle=2)
    busy = pool.acquire("127.0.0.1:2000", "stt")  # a live call's channel
    dead = [f"127.0.0.1:{3000 + i}" for i in range(5)]  # instances replaced one after another
    for address in dead:
        pool.acquire(address, "stt")
        await pool.release(address)
    assert pool.addresses == ["127.0.0.1:2000", *dead[-2:]]
    assert pool.acquire("127.0.0.1:2000", "stt") is busy  # never closed under its call
    await pool.release("127.0.0.1:2000")
    await pool.release("127.0.0.1:2000")
    assert len(pool.addresses) == 2  # now idle too, and within the bound
    await pool.release("127.0.0.1:9999")  # releasing what was never acquired does nothing
    await pool.close()
    assert pool.addresses == []


def test_the_bound_is_checked() -> None:
    with pytest.raises(ValueError):
        ChannelPool(max_idle=-1)
