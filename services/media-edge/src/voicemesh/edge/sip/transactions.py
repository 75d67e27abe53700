"""The parts of RFC 3261's transaction layer (§17) the SIP library leaves out, pure.

- `ServerTransactions`: a request that arrives again over UDP (the same Call-ID, top Via
  branch, CSeq and method: the caller's timer A or E fired before our answer reached it) is
  a retransmission, not a new request. It is answered with the last response sent for it,
  or absorbed while none has been sent yet, and never reaches the call logic twice.
- `retransmit_offsets`: when a request we send over UDP goes again if no final response
  has come (timers E and F for a BYE: T1, doubling up to T2, for at most 64×T1).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T1 = 0.5
T2 = 4.0
TIMER_F = 64 * T1
# How long a server transaction is remembered after its last activity: long enough to
# catch every retransmission a caller's timer B/F allows (64×T1).
LINGER_S = 64 * T1
MAX_TRANSACTIONS = 20_000

R = TypeVar("R")


@dataclass(frozen=True)
class TransactionKey:
    call_id: str
    branch: str
    cseq: int
    method: str


@dataclass
class _Entry(Generic[R]):
    response: R | None
    touched: float


@dataclass(frozen=True)
class Retransmission(Generic[R]):
    """The request was seen before: resend `response` (None: not answered yet, absorb)."""

    response: R | None


class ServerTransactions(Generic[R]):
    def __init__(self, linger_s: float = LINGER_S, max_entries: int = MAX_TRANSACTIONS) -> None:
        self._entries: OrderedDict[TransactionKey, _Entry[R]] = OrderedDict()
        self._linger_s = linger_s
        self._max = max_entries
        self.absorbed = 0  # retransmissions seen (a metric)

    def received(self, key: TransactionKey, now: float) -> Retransmission[R] | None:
        """None for a new request (now remembered); a Retransmission for one seen before."""
        self._expire(now)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(None, now)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return None
        entry.touched = now
        self._entries.move_to_end(key)
        self.absorbed += 1
        return Retransmission(entry.response)

    def responded(self, key: TransactionKey, response: R, now: float) -> None:
        """Remember the latest response to `key` (what a retransmission gets)."""
        entry = self._entries.get(key)
        if entry is None:
            return  # a response to a request that did not come through `received`
        entry.response = response
        entry.touched = now
        self._entries.move_to_end(key)

    def __len__(self) -> int:
        return len(self._entries)

    def _expire(self, now: float) -> None:
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if now - entry.touched <= self._linger_s:
                return
            del self._entries[key]


def retransmit_offsets(t1: float = T1, t2: float = T2, timeout: float = TIMER_F) -> list[float]:
    """Seconds after the first send at which a non-INVITE request over UDP is sent again
    while no final response has come (timer E), ending at timer F."""
    offsets: list[float] = []
    at, interval = 0.0, t1
    while at + interval < timeout:
        at += interval
        offsets.append(at)
        interval = min(interval * 2, t2)
    return offsets
