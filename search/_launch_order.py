"""The order of a job's decisions: results reach the driver in the order their trials started.

Trials finish in whatever order the cluster runs them. If the strategy and Optuna learned
each result as it came, what a job proposes next would depend on timing, and two runs of one
job file (or a run and its resume) would part ways after the first few architectures. So the
driver's decisions go in a fixed sequence of *launches* (one decision to start trials of one
architecture on one task: a trial alone or a population), numbered 0, 1, 2, ..., and the
results of launch ``k`` are *released* to the architecture book, the strategy and Optuna only
after those of every launch before ``k``, however they arrive. With a window of ``W`` launches
in flight, the driver decides launch ``k`` knowing exactly the results of launches ``0 .. k-W``
and nothing else, releasing the oldest launch only when it cannot decide without it (the
window is full, or nothing can be started on what is known). The sequence of releases and
decisions is therefore a function of the job file, its seed and the trials' results, never of
when they arrived.

What a fixed order costs: a slot stays idle while the oldest launch holds the window and newer
ones are done. Results are still written to the database as they arrive, so none is lost.

Example:
    >>> order = LaunchOrder(window=2)
    >>> first, second = order.open(1), order.open(1)
    >>> order.has_room
    False
    >>> order.end(second, 0, "b")  # the second finishes first: it waits for the first
    >>> order.head_ready
    False
    >>> order.end(first, 0, "a")
    >>> order.release(), order.release(), order.all_released
    (['a'], ['b'], True)
"""

from __future__ import annotations

from typing import Any


class LaunchOrder:
    """Launch numbers, the results each launch waits for, and the release of the oldest."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"expected a window of at least 1 launch, got {window}")
        self.window = window
        self.opened = 0
        """Launches decided so far; the next one gets this number."""
        self.released = 0
        """Launches whose results the driver has learned; the oldest unreleased has this number."""
        self._sizes: dict[int, int] = {}
        self._ended: dict[int, dict[int, Any]] = {}

    def open(self, size: int) -> int:
        """Number a new launch of ``size`` trials."""
        number = self.opened
        self.opened += 1
        self._sizes[number] = size
        self._ended[number] = {}
        return number

    def end(self, launch: int, member: int, result: Any) -> None:
        """Trial ``member`` (its place in the launch's evaluation) of ``launch`` ended with ``result``."""
        if launch < self.released or launch not in self._ended:
            raise ValueError(f"launch {launch} is not waiting for results")
        self._ended[launch][member] = result

    @property
    def has_room(self) -> bool:
        """Whether another launch may be decided before the oldest is released."""
        return self.opened - self.released < self.window

    @property
    def head_ready(self) -> bool:
        """Whether every trial of the oldest unreleased launch has ended."""
        head = self.released
        return head < self.opened and len(self._ended[head]) == self._sizes[head]

    @property
    def all_released(self) -> bool:
        return self.released == self.opened

    def release(self) -> list[Any]:
        """The results of the oldest launch, in its members' order; it is released."""
        if not self.head_ready:
            raise ValueError(f"launch {self.released} has not ended")
        head = self.released
        ended = self._ended.pop(head)
        del self._sizes[head]
        self.released += 1
        return [ended[member] for member in sorted(ended)]
