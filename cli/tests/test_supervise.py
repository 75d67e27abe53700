"""The restart policy of `voicemesh up` on a virtual clock: no processes, no sleeps."""

from __future__ import annotations

import signal

import pytest

from voicemesh.cli.supervise import Exit, GiveUp, Restart, RestartPolicy, Supervisor

pytestmark = pytest.mark.unit


def crash_at(sup: Supervisor, name: str, at: float, returncode: int = -signal.SIGKILL) -> Restart | GiveUp:
    return sup.exited(name, returncode, at)


def test_exits_are_described_by_signal_or_code() -> None:
    assert Exit(-9).describe() == "was killed by SIGKILL"
    assert Exit(-int(signal.SIGSEGV)).describe() == "was killed by SIGSEGV"
    assert Exit(3).describe() == "exited with code 3"
    assert Exit(0).describe() == "exited with code 0"
    assert Exit(-200).describe() == "was killed by signal 200"
    assert Exit(-9).signal is signal.SIGKILL and Exit(1).signal is None


def test_backoff_doubles_from_half_a_second_to_the_cap() -> None:
    sup = Supervisor(RestartPolicy(initial_backoff_s=0.5, max_backoff_s=4.0, crash_limit=100))
    t = 0.0
    sup.started("stt-local", t)
    delays = []
    for _ in range(6):
        t += 1.0
        decision = crash_at(sup, "stt-local", t)
        assert isinstance(decision, Restart)
        delays.append(decision.delay_s)
        assert decision.at == t + decision.delay_s
        assert sup.tick(decision.at - 0.01) == []
        t = decision.at
        assert sup.tick(t) == ["stt-local"]
        assert sup.tick(t) == []  # each restart is handed out once
        sup.started("stt-local", t)
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_stable_run_resets_the_backoff() -> None:
    sup = Supervisor(RestartPolicy(stable_after_s=30.0, crash_limit=100))
    sup.started("tts-local", 0.0)
    first = crash_at(sup, "tts-local", 1.0)
    assert isinstance(first, Restart) and first.delay_s == 0.5
    sup.started("tts-local", first.at)
    second = crash_at(sup, "tts-local", first.at + 1.0)
    assert isinstance(second, Restart) and second.delay_s == 1.0
    sup.started("tts-local", second.at)
    # ran for 30 s: healthy, so the next crash waits the initial back-off again
    third = crash_at(sup, "tts-local", second.at + 30.0)
    assert isinstance(third, Restart) and third.delay_s == 0.5


def test_gives_up_after_the_crash_limit_within_the_window() -> None:
    sup = Supervisor(RestartPolicy(crash_limit=5, crash_window_s=120.0))
    sup.started("reasoning-local", 0.0)
    t = 0.0
    for n in range(1, 5):
        t += 1.0
        decision = crash_at(sup, "reasoning-local", t, returncode=2)
        assert isinstance(decision, Restart) and decision.crashes == n
        t = decision.at
        assert sup.tick(t) == ["reasoning-local"]
        sup.started("reasoning-local", t)
    final = crash_at(sup, "reasoning-local", t + 1.0, returncode=2)
    assert final == GiveUp("reasoning-local", Exit(2), crashes=5, window_s=120.0)
    assert final.describe() == (
        "reasoning-local exited with code 2; it crashed 5 times within 120 s, giving up"
    )
    assert sup.tick(t + 1000.0) == [] and sup.next_due() is None
    with pytest.raises(ValueError, match="given up"):
        sup.started("reasoning-local", t + 2.0)


def test_crashes_older_than_the_window_are_forgotten() -> None:
    sup = Supervisor(RestartPolicy(crash_limit=3, crash_window_s=60.0, stable_after_s=10.0))
    t = 0.0
    sup.started("stt-local-1", t)
    for _ in range(10):  # one crash every 40 s: never 3 within 60 s
        t += 40.0
        decision = crash_at(sup, "stt-local-1", t)
        assert isinstance(decision, Restart) and decision.crashes <= 2
        assert decision.delay_s == 0.5  # each run was stable
        t = decision.at
        sup.tick(t)
        sup.started("stt-local-1", t)


def test_instances_are_independent_and_due_in_time_order() -> None:
    sup = Supervisor(RestartPolicy(crash_limit=3))
    for name in ("stt-local-1", "stt-local-2", "tts-local"):
        sup.started(name, 0.0)
    a = crash_at(sup, "stt-local-1", 1.0)
    sup.tick(a.at if isinstance(a, Restart) else 0.0)
    sup.started("stt-local-1", 1.5)
    b = crash_at(sup, "stt-local-1", 2.0)  # second in a row: 1 s
    c = crash_at(sup, "tts-local", 2.2)  # its first: 0.5 s
    assert isinstance(b, Restart) and isinstance(c, Restart)
    assert (b.at, c.at) == (3.0, 2.7)
    assert sup.next_due() == 2.7
    assert sup.tick(5.0) == ["tts-local", "stt-local-1"]
    # stt-local-2 never crashed and is not affected
    d = crash_at(sup, "stt-local-2", 6.0)
    assert isinstance(d, Restart) and d.delay_s == 0.5 and d.crashes == 1


def test_an_exit_of_an_instance_that_is_not_running_is_a_caller_bug() -> None:
    sup = Supervisor()
    with pytest.raises(ValueError, match="not running"):
        sup.exited("stt-local", 1, 0.0)
    sup.started("stt-local", 0.0)
    crash_at(sup, "stt-local", 1.0)
    with pytest.raises(ValueError, match="not running"):
        sup.exited("stt-local", 1, 1.1)  # still waiting for its restart


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(initial_backoff_s=0)
    with pytest.raises(ValueError):
        RestartPolicy(initial_backoff_s=5, max_backoff_s=1)
    with pytest.raises(ValueError):
        RestartPolicy(crash_limit=0)
