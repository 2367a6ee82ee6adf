"""The operations MLflow tracking queues, and which errors of the store are worth a retry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search import JobState, sqlite_file

PARAMS_PER_BATCH = 100
MAX_KEY_LENGTH = 250
"""MLflow's limit on a key's length."""
KEY_SUFFIX_ROOM = 16
"""Characters a key leaves for the suffix the tracker adds (the longest: ``.relative_high``)."""
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
    table_done: bool = False


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


def metric_key(name: str, room: int = KEY_SUFFIX_ROOM) -> str:
    """A task label, job name or spec key as an MLflow metric or parameter key.

    MLflow takes letters, digits, ``_ - . / :`` and spaces, and refuses a key that reads as
    a path going elsewhere (``../x``, ``/x``, ``a//b``); a key refused mid-job would cost the
    job its runs. So only ASCII letters, digits and ``_ - .`` and spaces are kept, anything
    else becomes ``_``, as do dots at the start; the key is cut to leave ``room`` characters
    for a suffix (a parameter's key needs none).

    Example:
        >>> metric_key("../../etc/passwd"), metric_key("xml-small"), metric_key("")
        ('___.._etc_passwd', 'xml-small', '_')
    """
    key = "".join(c if (c.isascii() and c.isalnum()) or c in "_-. " else "_" for c in name)
    key = "_" * (len(key) - len(key.lstrip("."))) + key.lstrip(".")
    return key[: MAX_KEY_LENGTH - room] or "_"
