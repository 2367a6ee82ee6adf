"""The progress of ``cellsearch cells eval``: one line on stderr as each trial starts and ends.

A line says the trial's number (as the final table numbers it), its hyperparameters when it
starts, and its status, value, steps and training time when it ends, with the study's clock
and the best value so far; on a terminal a bar below the lines counts the finished trials (it
is gone when the study ends).

Example:
    >>> from workers._hparams import HyperParams
    >>> start_line(0, 2, HyperParams(learning_rate=0.003, hidden_size=32), elapsed=0.0)
    '[0:00:00] trial 0 (1 of 2) started: lr 0.003, layers 1, hidden 32, dropout 0'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from workers._hparams import HyperParams
    from workers._results import TrialResult


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def start_line(number: int, trials: int, hp: HyperParams, elapsed: float) -> str:
    """The line of a trial that starts: its number, then what it trains with."""
    size = f"hidden {hp.hidden_size}" if hp.hidden_size is not None else f"params {hp.param_budget}"
    return (
        f"[{_clock(elapsed)}] trial {number} ({number + 1} of {trials}) started: "
        f"lr {hp.learning_rate:.2g}, layers {hp.num_layers}, {size}, dropout {hp.dropout:.2g}"
    )


def end_line(number: int, trials: int, result: TrialResult, best: float | None, elapsed: float) -> str:
    """The line of a trial that ended: status, value (or the error's first line), steps, time
    it trained, and the best value of the study so far."""
    if result.value is not None:
        outcome = f"{result.metric} {result.value:.4g}"
    elif result.error:
        outcome = result.error.splitlines()[0][:120]
    else:
        outcome = "no value"
    shown_best = "-" if best is None else f"{best:.4g}"
    return (
        f"[{_clock(elapsed)}] trial {number} ({number + 1} of {trials}) {result.status}: {outcome} "
        f"after {result.steps} steps in {result.seconds:.1f} s; best {shown_best}"
    )


class TrialProgress:
    """Per-trial lines (and, on a terminal, a bar) on stderr while a study runs. Entering it
    gives the two callbacks of :func:`workers._evaluate.tune_cell`: ``on_start`` and ``on_trial``.
    """

    def __init__(self, description: str, trials: int, console: Console | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.console = console or Console(stderr=True)
        self._progress = Progress(*columns, console=self.console, transient=True)
        self._description = description
        self._trials = trials
        self._finished: list[TrialResult] = []
        self._number = 0

    def __enter__(self) -> tuple[Callable[[int, HyperParams], None], Callable[[TrialResult], None]]:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._progress.__enter__()
        self._bar = self._progress.add_task(self._description, total=self._trials)
        return self._start, self._advance

    def __exit__(self, *exc_info: object) -> None:
        self._progress.__exit__(None, None, None)

    def _elapsed(self) -> float:
        return self._progress.tasks[0].elapsed or 0.0

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def _start(self, number: int, hp: HyperParams) -> None:
        self._number = number
        self._print(start_line(number, self._trials, hp, self._elapsed()))

    def _advance(self, result: TrialResult) -> None:
        from workers._evaluate import best_result

        self._finished.append(result)
        best = best_result(self._finished)
        value = None if best is None else best.value
        self._print(end_line(self._number, self._trials, result, value, self._elapsed()))
        shown = "-" if value is None else f"{value:.4g}"
        self._progress.update(self._bar, advance=1, description=f"{self._description}: best {shown}")
