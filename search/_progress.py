"""Job progress: one feed of the driver's events, counted for the live display (and MLflow).

The driver's parts (the architecture book, the trial scheduler, the loop) report every event
to a :class:`ProgressFeed` by calling its event methods (``trial_finished``,
``architecture_done``, ...), never by writing its counts. The terminal display
(:class:`ProgressDisplay`) and any tracker read the same counts (:meth:`ProgressFeed.metrics`)
so they never disagree. Observers (the MLflow tracker is one) get the events as they happen
(``feed.subscribe``, or ``run_job(observers=...)``).

Example:
    >>> feed = ProgressFeed(job_id=1, job_name="demo")
    >>> feed.trial_submitted("t1")
    >>> feed.trial_on_worker("t1", {"pid": 123})
    >>> feed.workers["t1"]["pid"]
    123
    >>> feed.trial_finished("t1", "pruned")
    >>> feed.metrics()["trials_pruned"], feed.metrics()["trials_running"]
    (1.0, 0.0)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from search._intervals import Interval, format_estimate
from search._states import JobState
from workers import TrialStatus

if TYPE_CHECKING:
    from search._records import TrialCounts

Subscriber = Callable[[str, dict[str, Any]], None]
"""Called with an event name and its data: ``trial_started`` (key, worker: pid, host, node),
``trial_finished`` (key, status), ``architecture`` (arch_id, outcome), ``best`` (arch_id, score,
interval: the score's :class:`~search._intervals.Interval` or ``None``), ``warning`` (message)."""

_COUNTED = frozenset({TrialStatus.OK, TrialStatus.DIVERGED, TrialStatus.PRUNED, TrialStatus.FAILED})
"""Trial statuses that end a trial for good (``interrupted`` runs again)."""


@dataclass
class ProgressFeed:
    """The counts of a running job. Only the driver writes; readers may be other threads."""

    job_id: int | None = None
    job_name: str = ""
    architectures_proposed: int = 0
    architectures_filtered: int = 0
    """Stopped by a filter task."""
    architectures_stopped: int = 0
    """Stopped at a search task's threshold."""
    architectures_evaluated: int = 0
    evaluations_reused: int = 0
    """Evaluations (architecture, task) taken from earlier jobs instead of training."""
    duplicates: int = 0
    trials_done: int = 0
    trials_running: int = 0
    trials_pruned: int = 0
    trials_failed: int = 0
    trials_diverged: int = 0
    trials_interrupted: int = 0
    trials_retried: int = 0
    best_score: float | None = None
    best_arch_id: int | None = None
    best_interval: Interval | None = None
    """The best score's interval (``docs/uncertainty.md``), ``None`` without one."""
    best_label: str = ""
    """Library name or mutation of the best architecture."""
    best_equations: str = ""
    state: str = "starting"
    elapsed_before: float = 0.0
    """Seconds of earlier runs of the job (a resumed job continues its clock)."""
    started: float = field(default_factory=time.monotonic)
    workers: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Running trial key -> worker (pid, host, node)."""
    warnings: list[str] = field(default_factory=list)
    """What the driver found, while running, that makes the job unlikely to be useful."""
    _subscribers: list[Subscriber] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- the driver's events ------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: str, **data: Any) -> None:
        for subscriber in list(self._subscribers):
            subscriber(event, data)

    def job_opened(self, job_id: int, job_name: str) -> None:
        """The driver runs job ``job_id`` (a tracker following the feed opens its run now)."""
        self.job_id, self.job_name = job_id, job_name

    def state_changed(self, state: str) -> None:
        """The job's state: a :class:`JobState` (``running``, ``interrupted``, ``finished``,
        ``failed``), or ``interrupting`` while the driver cancels what runs after a stop signal."""
        self.state = state

    def resumed(self, elapsed_before: float, proposed: int, trials: TrialCounts) -> None:
        """A resumed job's counts so far, from the store: its clock, proposals and trials."""
        with self._lock:
            self.elapsed_before = elapsed_before
            self.architectures_proposed = proposed
            self.trials_done = trials.finished
            self.trials_pruned, self.trials_failed = trials.pruned, trials.failed
            self.trials_diverged = trials.diverged

    def trials_interrupted_on_resume(self, count: int) -> None:
        """Trials a stopped or crashed run left running, recorded interrupted by the resume."""
        with self._lock:
            self.trials_interrupted += count

    def architecture_proposed(self) -> None:
        with self._lock:
            self.architectures_proposed += 1

    def duplicates_skipped(self, total: int) -> None:
        """The strategy's count of proposals it skipped as already seen."""
        with self._lock:
            self.duplicates = total

    def evaluation_reused(self) -> None:
        with self._lock:
            self.evaluations_reused += 1

    def trial_submitted(self, key: str) -> None:
        with self._lock:
            self.trials_running += 1

    def trial_on_worker(self, key: str, worker: dict[str, Any]) -> None:
        """A worker reported that it started the trial (pid, host, node)."""
        with self._lock:
            self.workers[key] = worker
        self.emit("trial_started", key=key, worker=worker)

    def trial_finished(self, key: str, status: str, retried: bool = False) -> None:
        with self._lock:
            self.trials_running -= 1
            self.workers.pop(key, None)
            if retried:
                self.trials_retried += 1
            elif status in _COUNTED:
                self.trials_done += 1
                self.trials_pruned += status == TrialStatus.PRUNED
                self.trials_failed += status == TrialStatus.FAILED
                self.trials_diverged += status == TrialStatus.DIVERGED
            elif status == TrialStatus.INTERRUPTED:
                self.trials_interrupted += 1
        self.emit("trial_finished", key=key, status=status, retried=retried)

    def architecture_done(self, arch_id: int, outcome: str, score: float | None) -> None:
        """``outcome``: ``evaluated``, ``filtered`` or ``stopped``."""
        with self._lock:
            if outcome == "filtered":
                self.architectures_filtered += 1
            elif outcome == "stopped":
                self.architectures_stopped += 1
            else:
                self.architectures_evaluated += 1
        self.emit("architecture", arch_id=arch_id, outcome=outcome, score=score)

    def warned(self, message: str) -> None:
        """Something the job could only learn once running, and the user must hear at once
        (``launch`` prints it as it comes; ``warning`` event with ``message``)."""
        with self._lock:
            self.warnings.append(message)
        self.emit("warning", message=message)

    def new_best(
        self, arch_id: int, score: float, label: str, equations: str, interval: Interval | None = None
    ) -> None:
        with self._lock:
            self.best_arch_id, self.best_score, self.best_interval = arch_id, score, interval
            self.best_label, self.best_equations = label, equations
        self.emit("best", arch_id=arch_id, score=score, interval=interval)

    # -- read by displays and trackers ---------------------------------------------------

    @property
    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def metrics(self) -> dict[str, float]:
        """Every count as a number, under stable names (what a tracker logs)."""
        with self._lock:
            values = {
                "architectures_proposed": self.architectures_proposed,
                "architectures_filtered": self.architectures_filtered,
                "architectures_stopped": self.architectures_stopped,
                "architectures_evaluated": self.architectures_evaluated,
                "evaluations_reused": self.evaluations_reused,
                "duplicates": self.duplicates,
                "trials_done": self.trials_done,
                "trials_running": self.trials_running,
                "trials_pruned": self.trials_pruned,
                "trials_failed": self.trials_failed,
                "trials_diverged": self.trials_diverged,
                "trials_interrupted": self.trials_interrupted,
                "trials_retried": self.trials_retried,
            }
            best = self.best_score
        out = {name: float(value) for name, value in values.items()}
        if best is not None:
            out["best_score"] = float(best)
        elapsed = self.elapsed
        out["elapsed_seconds"] = elapsed
        out["trials_per_minute"] = 60.0 * self.trials_done / elapsed if elapsed > 0 else 0.0
        return out


def clock_text(seconds: float) -> str:
    """``h:mm:ss`` of a duration (the job's clock in the display and the progress lines)."""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def render(feed: ProgressFeed) -> RenderableType:
    """The progress panel of a feed (what ``cellsearch launch`` shows while it runs)."""
    m = feed.metrics()
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "architectures",
        f"{m['architectures_proposed']:.0f} proposed   {m['architectures_filtered']:.0f} filtered   "
        f"{m['architectures_stopped']:.0f} stopped at a threshold   "
        f"{m['architectures_evaluated']:.0f} evaluated   {m['duplicates']:.0f} duplicates skipped   "
        f"{m['evaluations_reused']:.0f} evaluations reused",
    )
    table.add_row(
        "trials",
        f"{m['trials_done']:.0f} done   {m['trials_running']:.0f} running   "
        f"{m['trials_pruned']:.0f} pruned   "
        f"{m['trials_failed']:.0f} failed   {m['trials_diverged']:.0f} diverged   "
        f"{m['trials_retried']:.0f} retried",
    )
    table.add_row("elapsed", f"{clock_text(m['elapsed_seconds'])}   {m['trials_per_minute']:.1f} trials/min")
    if feed.best_score is None:
        table.add_row("best", "none scored yet")
    else:
        score = format_estimate(feed.best_score, feed.best_interval, 4)
        table.add_row("best", f"arch {feed.best_arch_id}  score {score}  {feed.best_label}")
    title = Text(f"job {feed.job_id} {feed.job_name}: {feed.state}", style="bold cyan")
    parts: list[RenderableType] = [title, table]
    if feed.best_equations:
        parts.append(Text(feed.best_equations, style="dim"))
    if feed.state == JobState.RUNNING and feed.job_id is not None:
        parts.append(
            Text(f"Ctrl-C stops cleanly; continue with: cellsearch resume {feed.job_id}", style="dim")
        )
    return Group(*parts)


class ProgressDisplay:
    """A live terminal view of a feed; a context manager (nothing shown when not a terminal).

    Example:
        >>> with ProgressDisplay(ProgressFeed(job_id=1), console=Console(file=open("/dev/null", "w"))):
        ...     pass
    """

    def __init__(
        self, feed: ProgressFeed, console: Console | None = None, refresh_per_second: float = 2
    ) -> None:
        self.feed = feed
        self.console = console or Console(stderr=True)
        self._live = Live(
            get_renderable=lambda: render(feed),
            console=self.console,
            refresh_per_second=refresh_per_second,
            transient=False,
        )
        self._enabled = self.console.is_terminal

    def __enter__(self) -> ProgressDisplay:
        if self._enabled:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            self._live.__exit__(None, None, None)
