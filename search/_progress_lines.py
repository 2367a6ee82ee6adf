"""Plain progress lines of a running job, for output that is not a terminal (a pipe, a log, CI).

The live display (:class:`~search._progress.ProgressDisplay`) is drawn only on a terminal;
elsewhere ``cellsearch launch`` and ``cellsearch resume`` write one line of the same feed every
``every`` seconds once the job is recorded, and a last one when the driver returns, so a log
shows that the job is alive, what it has done and its best architecture so far:

    [0:00:12] job 1 running: architectures 3 proposed, 0 filtered, 3 evaluated; trials 8 done,
    2 running; best 1.2308 [1.231, 1.280] arch 2 (lstm)

(one line in the output). The counts are the display's (:meth:`ProgressFeed.metrics`), so the
two never disagree.

Example:
    >>> import io
    >>> feed = ProgressFeed(job_id=1, job_name="demo", architectures_proposed=2, trials_done=5)
    >>> feed.state = "running"
    >>> progress_line(feed, elapsed=72.0).split("; ")
    ['[0:01:12] job 1 running: architectures 2 proposed, 0 filtered, 0 evaluated',
     'trials 5 done, 0 running', 'best none yet']
    >>> out = io.StringIO()
    >>> lines = ProgressLines(feed, out, every=10, clock=lambda: 0.0)
    >>> lines.poll(now=9.9), lines.poll(now=10.0), lines.poll(now=15.0), lines.poll(now=20.5)
    (False, True, False, True)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import IO

from cells import clip
from search._intervals import format_estimate
from search._progress import ProgressFeed, clock_text

DEFAULT_EVERY = 10.0
"""Seconds between two progress lines unless ``--progress-every`` says otherwise."""
EVERY_RANGE = (1.0, 3600.0)
"""The interval ``--progress-every`` accepts, in seconds."""
_LABEL_WIDTH = 40
"""A mutation's description is cut to this many characters in a line."""


def progress_line(feed: ProgressFeed, elapsed: float | None = None) -> str:
    """One line of the feed's counts: the job's clock and state, its architectures, its trials
    and its best architecture. Counts that are zero and rare (stopped, pruned, failed, ...) are
    left out; the four main ones are always there."""
    m = feed.metrics()
    elapsed = m["elapsed_seconds"] if elapsed is None else elapsed
    job = "job" if feed.job_id is None else f"job {feed.job_id}"
    architectures = _counts(
        m,
        ("architectures_proposed", "proposed"),
        ("architectures_filtered", "filtered"),
        ("architectures_evaluated", "evaluated"),
        optional=(("architectures_stopped", "stopped at a threshold"), ("duplicates", "duplicates skipped")),
    )
    trials = _counts(
        m,
        ("trials_done", "done"),
        ("trials_running", "running"),
        optional=(
            ("trials_pruned", "pruned"),
            ("trials_failed", "failed"),
            ("trials_diverged", "diverged"),
            ("trials_retried", "retried"),
        ),
    )
    return (
        f"[{clock_text(elapsed)}] {job} {feed.state}: architectures {architectures}; "
        f"trials {trials}; best {_best(feed)}"
    )


def _counts(m: dict[str, float], *always: tuple[str, str], optional: tuple[tuple[str, str], ...]) -> str:
    shown = [f"{m[key]:.0f} {word}" for key, word in always]
    shown += [f"{m[key]:.0f} {word}" for key, word in optional if m[key]]
    return ", ".join(shown)


def _best(feed: ProgressFeed) -> str:
    score, arch_id = feed.best_score, feed.best_arch_id
    if score is None or arch_id is None:
        return "none yet"
    label = clip(" ".join(feed.best_label.split()), _LABEL_WIDTH)
    named = f" ({label})" if label else ""
    return f"{format_estimate(score, feed.best_interval, 4)} arch {arch_id}{named}"


def check_every(value: float) -> str | None:
    """Why ``value`` is not a progress interval (a finite number of seconds within
    :data:`EVERY_RANGE`), or ``None``."""
    low, high = EVERY_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        return f"expected seconds from {low:g} to {high:g}, got {value:g}"
    return None


class ProgressLines:
    """Writes :func:`progress_line` to ``stream`` every ``every`` seconds while entered, once the
    job is recorded (``feed.job_id`` set), and a last line when the block ends without an
    error. A context manager; a background thread keeps the interval, on a steady grid (a line
    that comes late does not shift the next ones). With ``enabled`` false it writes nothing.
    """

    def __init__(
        self,
        feed: ProgressFeed,
        stream: IO[str],
        every: float = DEFAULT_EVERY,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feed, self.stream, self.every, self.enabled = feed, stream, every, enabled
        self._clock = clock
        self._start = clock()
        self._next = self._start + every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lines = 0
        """Lines written so far (the final one included)."""

    def poll(self, now: float | None = None) -> bool:
        """Write a line if one is due at ``now`` (default: the clock); returns whether it wrote.
        The next line is due on the next multiple of ``every`` after ``now``."""
        now = self._clock() if now is None else now
        if now < self._next:
            return False
        ticks = math.floor((now - self._start) / self.every) + 1
        self._next = self._start + ticks * self.every
        if self.feed.job_id is None:  # Ray is starting: nothing of the job to say yet
            return False
        return self._write(progress_line(self.feed))

    def final(self) -> None:
        """The last line: the job's counts as the driver left them."""
        if self.feed.job_id is not None:
            self._write(progress_line(self.feed))

    def _write(self, line: str) -> bool:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or file: the job goes on without lines
            self.enabled = False
            return False
        self.lines += 1
        return True

    def _run(self) -> None:
        while self.enabled and not self._stop.wait(max(self._next - self._clock(), 0.0)):
            self.poll()

    def __enter__(self) -> ProgressLines:
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="cellsearch-progress-lines", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.enabled and exc_type is None:
            self.final()
