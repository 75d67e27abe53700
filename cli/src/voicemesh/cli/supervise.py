"""The restart policy of `voicemesh up`, as Kubernetes applies it to a pod's containers.

A service instance that exits without being asked to is started again after a back-off that
doubles with each crash in a row (0.5 s, 1 s, 2 s, ... up to a cap), like CrashLoopBackOff;
a run that lasted `stable_after_s` resets the back-off. An instance that crashes
`crash_limit` times within `crash_window_s` is given up on, and `up` stops the mesh.

Pure: the `Supervisor` is fed events with their times (any monotonic clock) and returns
decisions; the caller runs the processes. No clock reads, no I/O.
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Exit:
    """How a process ended: `returncode` as subprocess reports it (negative: killed by a signal)."""

    returncode: int

    @property
    def signal(self) -> signal.Signals | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode)
        except ValueError:
            return None

    def describe(self) -> str:
        """'was killed by SIGKILL' / 'exited with code 3' (follows the instance's name)."""
        if self.returncode >= 0:
            return f"exited with code {self.returncode}"
        sig = self.signal
        return f"was killed by {sig.name}" if sig is not None else f"was killed by signal {-self.returncode}"


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 16.0
    # A run at least this long counts as healthy: the next crash starts the back-off afresh.
    stable_after_s: float = 30.0
    # Give up when an instance has crashed this many times within the window.
    crash_limit: int = 5
    crash_window_s: float = 120.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError(
                f"backoff: need 0 < initial ({self.initial_backoff_s}) <= max ({self.max_backoff_s})"
            )
        if self.crash_limit < 1:
            raise ValueError(f"crash_limit {self.crash_limit} < 1")
        if self.crash_window_s <= 0 or self.stable_after_s <= 0:
            raise ValueError("crash_window_s and stable_after_s must be positive")

    def backoff_s(self, crashes_in_a_row: int) -> float:
        """The wait before restart number `crashes_in_a_row` (1 = the first crash)."""
        return min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** max(0, crashes_in_a_row - 1))


@dataclass(frozen=True)
class Restart:
    """Start `instance` again at `at` (after `delay_s`); it has crashed `crashes` times in the window."""

    instance: str
    exit: Exit
    at: float
    delay_s: float
    crashes: int


@dataclass(frozen=True)
class GiveUp:
    """`instance` crashed `crashes` times within `window_s`: stop restarting it."""

    instance: str
    exit: Exit
    crashes: int
    window_s: float

    def describe(self) -> str:
        return (
            f"{self.instance} {self.exit.describe()}; it crashed {self.crashes} times "
            f"within {self.window_s:.0f} s, giving up"
        )


Decision = Restart | GiveUp


@dataclass
class _Instance:
    started_at: float | None = None
    in_a_row: int = 0
    crashes: deque[float] = field(default_factory=deque)
    due_at: float | None = None
    gave_up: bool = False


class Supervisor:
    """Restart decisions for a set of named instances."""

    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self._instances: dict[str, _Instance] = {}

    def started(self, instance: str, at: float) -> None:
        """`instance` (new or restarted) was started at `at`."""
        state = self._instances.setdefault(instance, _Instance())
        if state.gave_up:
            raise ValueError(f"{instance} was given up on")
        state.started_at = at
        state.due_at = None

    def exited(self, instance: str, returncode: int, at: float) -> Decision:
        """`instance` ended by itself at `at`: when to start it again, or to give up."""
        state = self._instances.get(instance)
        if state is None or state.started_at is None:
            raise ValueError(f"{instance} exited but was not running")
        policy = self.policy
        if at - state.started_at >= policy.stable_after_s:
            state.in_a_row = 0
        state.in_a_row += 1
        state.started_at = None
        state.crashes.append(at)
        while state.crashes and state.crashes[0] <= at - policy.crash_window_s:
            state.crashes.popleft()
        exit_ = Exit(returncode)
        if len(state.crashes) >= policy.crash_limit:
            state.gave_up = True
            return GiveUp(instance, exit_, len(state.crashes), policy.crash_window_s)
        delay = policy.backoff_s(state.in_a_row)
        state.due_at = at + delay
        return Restart(instance, exit_, state.due_at, delay, len(state.crashes))

    def tick(self, now: float) -> list[str]:
        """Instances whose restart is due at `now`, each returned once; call `started` for each."""
        due = sorted(
            (s.due_at, name)
            for name, s in self._instances.items()
            if s.due_at is not None and s.due_at <= now
        )
        for _, name in due:
            self._instances[name].due_at = None
        return [name for _, name in due]

    def next_due(self) -> float | None:
        """When the next pending restart is due, if any."""
        pending = [s.due_at for s in self._instances.values() if s.due_at is not None]
        return min(pending) if pending else None
