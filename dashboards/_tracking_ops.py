"""The operations MLflow tracking queues, and which errors of the store are worth a retry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import JobState, sqlite_file

PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000

JOB_RUN_STATUS: dict[str, str] = {
    JobState.FINISHED: "FINISHED",
    JobState.FAILED: "FAILED",
    JobState.INTERRUPTED: "KILLED",
    JobState.STOPPED: "KILLED",
}
"""Job state -> MLflow run status (a job still ``running`` when the tracker closes: FAILED)."""

TRANSIENT_CODES = frozenset(
    {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED", "IO_ERROR"}
)


class Transient(Exception):
    """Wraps an error worth retrying (the store is down, slow or busy)."""


# -- operations on the queue -----------------------------------------------------------------
# Each is applied by the worker thread and may be retried after a transient error: steps
# that succeeded are remembered on the operation, so a retry continues where it stopped.


@dataclass
class JobStart:
    job_id: int


@dataclass
class ProgressSample:
    metrics: dict[str, float]
    step: int
    timestamp_ms: int


@dataclass
class ArchitectureDone:
    arch_id: int
    payload: dict[str, Any] | None = None
    run_id: str | None = None
    batch_done: bool = False
    artifacts_done: set[str] = field(default_factory=set)


@dataclass
class Sweep:
    """Log every finished architecture of the job that has no run yet (or a changed score)."""

    pending: list[ArchitectureDone] | None = None


@dataclass
class JobEnd:
    state: str | None
    close_running: bool = True
    """Close the job's run even if the job is not over (the tracker is closing)."""
    sweep: Sweep = field(default_factory=Sweep)


Operation = JobStart | ProgressSample | ArchitectureDone | Sweep | JobEnd


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite store go in ``mlartifacts`` beside the file (MLflow's default,
    ``./mlruns``, would depend on the working directory); a server decides for itself."""
    folder = artifacts_folder(tracking_uri)
    return None if folder is None else folder.as_uri()


def artifacts_folder(tracking_uri: str) -> Path | None:
    """The ``mlartifacts`` folder beside a SQLite store's file; ``None`` for any other store."""
    database = sqlite_file(tracking_uri)
    return None if database is None else Path(database).resolve().parent / "mlartifacts"


def is_transient(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", None)
    if code is not None:
        return code in TRANSIENT_CODES
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OSError | ConnectionError | TimeoutError | OperationalError) or type(
        exc
    ).__module__.startswith(("requests", "urllib3"))


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
