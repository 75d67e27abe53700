"""A request retransmitted over UDP reaches the call once, and gets our last response again."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import pytest

from voicemesh.edge.sip.transactions import (
    LINGER_S,
    T1,
    T2,
    TIMER_F,
    Retransmission,
    ServerTransactions,
    TransactionKey,
    retransmit_offsets,
)

pytestmark = pytest.mark.unit

INVITE = TransactionKey(
    call_id="a84b4c76e66710@pc33.example.com", branch="z9hG4bK776asdhds", cseq=1, method="INVITE"
)
NOW = 1_000.0


def test_a_new_request_is_not_a_retransmission() -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    assert transactions.received(INVITE, NOW) is None
    assert len(transactions) == 1


def test_a_retransmission_before_any_response_is_absorbed() -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    transactions.received(INVITE, NOW)
    assert transactions.received(INVITE, NOW + 0.5) == Retransmission(None)


def test_a_retransmission_gets_the_last_response_sent() -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    transactions.received(INVITE, NOW)
    transactions.responded(INVITE, "100 Trying", NOW + 0.01)
    assert transactions.received(INVITE, NOW + 0.5) == Retransmission("100 Trying")

    transactions.responded(INVITE, "180 Ringing", NOW + 0.6)
    transactions.responded(INVITE, "200 OK", NOW + 1.0)
    assert transactions.received(INVITE, NOW + 1.5) == Retransmission("200 OK")
    assert transactions.received(INVITE, NOW + 3.5) == Retransmission("200 OK")


@pytest.mark.parametrize(
    "other",
    [
        replace(INVITE, branch="z9hG4bK-other"),
        replace(INVITE, cseq=2),
        replace(INVITE, method="CANCEL"),
        replace(INVITE, method="ACK"),
        replace(INVITE, call_id="another-call@pc33.example.com"),
    ],
)
def test_a_request_differing_in_branch_cseq_method_or_call_is_another_transaction(
    other: TransactionKey,
) -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    transactions.received(INVITE, NOW)
    transactions.responded(INVITE, "200 OK", NOW)

    assert transactions.received(other, NOW + 0.1) is None
    assert transactions.received(other, NOW + 0.2) == Retransmission(None)
    assert transactions.received(INVITE, NOW + 0.3) == Retransmission("200 OK")
    assert transactions.absorbed == 2


def test_a_response_to_a_request_never_received_is_not_remembered() -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    transactions.responded(INVITE, "200 OK", NOW)
    assert len(transactions) == 0
    assert transactions.received(INVITE, NOW) is None


def test_a_transaction_is_forgotten_after_linger_s_without_activity() -> None:
    transactions: ServerTransactions[str] = ServerTransactions(linger_s=5.0)
    transactions.received(INVITE, NOW)
    assert transactions.received(INVITE, NOW + 5.0) == Retransmission(None)  # still remembered
    # activity (that retransmission) restarted the linger
    assert transactions.received(INVITE, NOW + 9.9) == Retransmission(None)
    assert transactions.received(INVITE, NOW + 9.9 + 5.01) is None
    assert transactions.absorbed == 2


def test_a_response_counts_as_activity() -> None:
    transactions: ServerTransactions[str] = ServerTransactions(linger_s=5.0)
    transactions.received(INVITE, NOW)
    transactions.responded(INVITE, "200 OK", NOW + 4.0)
    assert transactions.received(INVITE, NOW + 8.5) == Retransmission("200 OK")


def test_expired_transactions_are_dropped_as_others_arrive() -> None:
    transactions: ServerTransactions[str] = ServerTransactions(linger_s=5.0)
    for cseq in range(1, 11):
        transactions.received(replace(INVITE, cseq=cseq), NOW + cseq * 0.1)
    assert len(transactions) == 10
    transactions.received(replace(INVITE, method="BYE"), NOW + 100.0)
    assert len(transactions) == 1


def test_the_default_linger_covers_a_callers_whole_timer_f() -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    transactions.received(INVITE, NOW)
    transactions.responded(INVITE, "486 Busy Here", NOW)
    assert LINGER_S >= 64 * T1
    assert transactions.received(INVITE, NOW + 64 * T1) == Retransmission("486 Busy Here")


def test_the_bound_evicts_the_oldest() -> None:
    transactions: ServerTransactions[str] = ServerTransactions(max_entries=3)
    keys = [replace(INVITE, cseq=cseq) for cseq in range(1, 5)]
    for i, key in enumerate(keys):
        assert transactions.received(key, NOW + i) is None
    assert len(transactions) == 3

    for key in keys[1:]:  # the three newest are still known
        assert transactions.received(key, NOW + 10) == Retransmission(None)
    assert transactions.received(keys[0], NOW + 11) is None  # the oldest was forgotten


def test_the_bound_keeps_a_transaction_still_being_retransmitted() -> None:
    transactions: ServerTransactions[str] = ServerTransactions(max_entries=2)
    first, second, third = (replace(INVITE, cseq=cseq) for cseq in (1, 2, 3))
    transactions.received(first, NOW)
    transactions.received(second, NOW + 1)
    transactions.received(first, NOW + 2)  # retransmitted: recently active
    transactions.received(third, NOW + 3)

    assert transactions.received(first, NOW + 4) == Retransmission(None)
    assert transactions.received(third, NOW + 4) == Retransmission(None)
    assert transactions.received(second, NOW + 5) is None


def test_absorbed_counts_retransmissions_only() -> None:
    transactions: ServerTransactions[str] = ServerTransactions()
    bye = replace(INVITE, cseq=2, method="BYE")
    transactions.received(INVITE, NOW)
    transactions.received(bye, NOW)
    assert transactions.absorbed == 0
    for i in range(3):
        transactions.received(INVITE, NOW + 0.5 * (i + 1))
    transactions.received(bye, NOW + 0.5)
    assert transactions.absorbed == 4


# ---- timers E and F ----------------------------------------------------------------------


def test_retransmit_offsets_follow_timer_e_until_timer_f() -> None:
    assert retransmit_offsets() == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


def test_each_interval_doubles_up_to_t2_and_the_last_send_is_the_last_before_timer_f() -> None:
    offsets = retransmit_offsets()
    intervals = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]

    assert intervals[0] == T1
    for before, after in pairwise(intervals):
        assert after == min(2 * before, T2)
    assert all(at < TIMER_F for at in offsets)
    assert offsets[-1] + min(2 * intervals[-1], T2) >= TIMER_F


@pytest.mark.parametrize(
    ("t1", "t2", "timeout", "expected"),
    [(1.0, 4.0, 20.0, [1.0, 3.0, 7.0, 11.0, 15.0, 19.0]), (0.5, 4.0, 0.5, [])],
)
def test_retransmit_offsets_take_other_timers(
    t1: float, t2: float, timeout: float, expected: list[float]
) -> None:
    assert retransmit_offsets(t1, t2, timeout) == expected
