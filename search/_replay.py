"""A resumed job replays its recorded launches: the same decisions, the stored results.

A job's driver is a deterministic function of its job file, its seed and its trials' results
(:mod:`search._launch_order`). So a resumed job does not rebuild its state from what the
database holds at the stop; it runs the driver again from the start, and each launch the
interrupted run made is served from its records instead of Ray: a trial that finished gives
its stored result, one that was left running (or interrupted) trains again with the same
hyperparameters, Optuna number and seed. From the first launch the interrupted run never made,
the job goes on live. The architectures, hyperparameters and scores it ends with are those the
job would have ended with had it not been stopped.

A launch that does not match its record (the job file was changed, or the code changed how
it decides) stops the resume with :class:`ReplayError` naming the launch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from search._joblock import JobStateError
from search._records import TrialRecord
from search._result_store import ResultStore
from workers import TrialStatus

FINAL_STATUSES = frozenset({TrialStatus.OK, TrialStatus.PRUNED, TrialStatus.DIVERGED, TrialStatus.FAILED})
"""Trial statuses whose result a replay takes as stored (``interrupted`` and ``running`` train again)."""


class ReplayError(JobStateError):
    """A resumed job's driver decided differently from its recorded run."""


@dataclass
class RecordedLaunches:
    """The launches an earlier run of a job made: launch number -> the latest attempt of each
    of its trials, in their order."""

    launches: dict[int, list[TrialRecord]] = field(default_factory=dict)

    @classmethod
    def load(cls, store: ResultStore, job_id: int) -> RecordedLaunches:
        """The job's recorded launches (none for a new job)."""
        latest: dict[tuple[int, int], TrialRecord] = {}
        for trial in store.trials(job_id=job_id):
            if trial.launch is None or trial.ordinal is None:
                raise JobStateError(
                    f"job {job_id} was recorded by an earlier cellsearch that did not record its "
                    "launches; it cannot be resumed (launch the job again)"
                )
            key = (trial.launch, trial.ordinal)
            if key not in latest or latest[key].attempt <= trial.attempt:
                latest[key] = trial
        launches: dict[int, list[TrialRecord]] = {}
        for (launch, _), trial in sorted(latest.items()):
            launches.setdefault(launch, []).append(trial)
        return cls(launches)

    @property
    def count(self) -> int:
        """Launches to replay: every launch number below it was recorded."""
        return max(self.launches, default=-1) + 1

    def get(self, number: int) -> list[TrialRecord] | None:
        return self.launches.get(number)

    def study_numbers(self) -> dict[str, set[int]]:
        """Study name -> the Optuna numbers of the recorded trials (kept open for the replay)."""
        numbers: dict[str, set[int]] = {}
        for trials in self.launches.values():
            for trial in trials:
                if trial.study_name is not None and trial.optuna_trial_number is not None:
                    numbers.setdefault(trial.study_name, set()).add(trial.optuna_trial_number)
        return numbers

    def check(
        self, number: int, trials: list[TrialRecord], evaluation_id: int, count: int, what: str
    ) -> None:
        """Refuse a replayed launch that differs from its record."""
        recorded = {t.evaluation_id for t in trials}
        if len(trials) != count or recorded != {evaluation_id}:
            raise ReplayError(
                f"the job does not replay: launch {number} now starts {count} trial(s) of {what} "
                f"(evaluation {evaluation_id}), but the stopped run started {len(trials)} of evaluation "
                f"{', '.join(map(str, sorted(recorded)))} (was the job file or cellsearch changed?)"
            )
