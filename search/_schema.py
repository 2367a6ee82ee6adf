"""The results database schema: its tables (SQLAlchemy 2 ORM), their migrations (Alembic) and
the check that a database is at the revision this code expects.

Every table is prefixed ``cs_`` and the migration history lives in
``cs_alembic_version``, so Optuna's RDB storage (its own ``studies``, ``trials``, ...
tables and its own ``alembic_version``) shares the same database without a clash.

Tables: ``cs_jobs`` (one per job file launched), ``cs_architectures`` (every distinct
cell, unique by canonical hash across jobs), ``cs_job_architectures`` (a job's view of
an architecture: score, generation, filter and list state), ``cs_evaluations`` (one per
job, architecture and task key: the best value so far and trial counts) and
``cs_trials`` (one per training run).

The Alembic scripts ship inside the package (``search/migrations``, configured by
``search/alembic.ini``), so an installed ``cellsearch`` upgrades a database without a
checkout.

Example (plain SQL over the results, best architectures of job 1):
    SELECT a.id, a.library_name, ja.score FROM cs_job_architectures ja
    JOIN cs_architectures a ON a.id = ja.architecture_id
    WHERE ja.job_id = 1 ORDER BY ja.score DESC LIMIT 10;

Example (the revision this code expects):
    >>> head_revision()
    '0004_final_round'
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from search._engine import database_error_reason, make_engine
from search._states import EvaluationStatus, JobState
from search._store_errors import DatabaseRevisionError, NoDatabaseError, StoreError

TABLE_PREFIX = "cs_"
VERSION_TABLE = "cs_alembic_version"

TRIAL_RUNNING = "running"
"""The status of a trial that has not ended (the store's word; no ``TrialStatus`` has it)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Job(Base):
    __tablename__ = "cs_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(20), default=JobState.CREATED.value)
    error: Mapped[str | None] = mapped_column(Text)
    code_version: Mapped[str] = mapped_column(String(200), default="")
    strategy_state: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class Architecture(Base):
    __tablename__ = "cs_architectures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    canonical_hash: Mapped[str] = mapped_column(String(64), unique=True)
    graph: Mapped[dict[str, Any]]
    equations: Mapped[str] = mapped_column(Text, default="")
    num_states: Mapped[int]
    """The previous states the cell reads (``CellGraph.states_read``): a state it writes but
    never reads is not carried, so not counted (the graph's own ``num_states`` may be higher)."""
    num_nodes: Mapped[int]
    op_counts: Mapped[dict[str, Any]]
    requires_input_equals_hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cs_architectures.id", ondelete="SET NULL"))
    mutation: Mapped[str | None] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(default=0)
    library_name: Mapped[str | None] = mapped_column(String(100))
    first_job_id: Mapped[int | None] = mapped_column(ForeignKey("cs_jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobArchitecture(Base):
    """A job's view of an architecture: the population / top-K list state."""

    __tablename__ = "cs_job_architectures"
    __table_args__ = (Index("ix_cs_job_architectures_job_score", "job_id", "score"),)

    job_id: Mapped[int] = mapped_column(ForeignKey("cs_jobs.id", ondelete="CASCADE"), primary_key=True)
    architecture_id: Mapped[int] = mapped_column(
        ForeignKey("cs_architectures.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    generation: Mapped[int] = mapped_column(default=0)
    score: Mapped[float | None] = mapped_column(Float)
    score_low: Mapped[float | None] = mapped_column(Float)
    score_high: Mapped[float | None] = mapped_column(Float)
    """Bounds of ``score`` (``docs/uncertainty.md``); ``None`` where a task had too few trials."""
    final_score: Mapped[float | None] = mapped_column(Float)
    final_low: Mapped[float | None] = mapped_column(Float)
    final_high: Mapped[float | None] = mapped_column(Float)
    """The final round's score (its worst final task, seed means relative to the best baseline's)
    and its bounds; ``None`` for an architecture the round did not take."""
    filter_passed: Mapped[bool | None] = mapped_column(Boolean)
    """``None`` until the filter tasks are done, then whether the candidate passed them."""
    evaluated: Mapped[bool] = mapped_column(Boolean, default=False)
    """Every stage it qualified for is done (its score is final until refined)."""
    listed: Mapped[bool] = mapped_column(Boolean, default=False)
    """On the strategy's list (the top-K list, or the living population)."""
    duplicate: Mapped[bool] = mapped_column(Boolean, default=False)
    """Proposed again after it was already known (the proposal cost no training)."""
    proposed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Evaluation(Base):
    """Results of one architecture on one task (by task key) within one job."""

    __tablename__ = "cs_evaluations"
    __table_args__ = (
        UniqueConstraint("job_id", "architecture_id", "task_key", name="uq_cs_evaluations_job_arch_task"),
        Index("ix_cs_evaluations_arch_task_key", "architecture_id", "task_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("cs_jobs.id", ondelete="CASCADE"), index=True)
    architecture_id: Mapped[int] = mapped_column(ForeignKey("cs_architectures.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(100))
    """The registered task name (``arith``, ``text``, ...)."""
    task_label: Mapped[str] = mapped_column(String(100))
    """The task entry's id in the job that created the row (its label, else the task name)."""
    task_key: Mapped[str] = mapped_column(String(64))
    task_settings: Mapped[dict[str, Any]]
    metric: Mapped[str] = mapped_column(String(100))
    direction: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default=EvaluationStatus.PENDING.value)
    best_value: Mapped[float | None] = mapped_column(Float)
    relative_score: Mapped[float | None] = mapped_column(Float)
    best_low: Mapped[float | None] = mapped_column(Float)
    best_high: Mapped[float | None] = mapped_column(Float)
    """Bootstrap bounds of ``best_value`` over the ``ok`` trials (``None`` with fewer than 2)."""
    relative_low: Mapped[float | None] = mapped_column(Float)
    relative_high: Mapped[float | None] = mapped_column(Float)
    """Bounds of ``relative_score``: ``best_*`` against the best baseline's, by interval arithmetic."""
    mean_value: Mapped[float | None] = mapped_column(Float)
    """A final task's mean over its seeds (then ``best_*`` bound it and ``relative_score`` is
    relative to the best baseline's mean); ``None`` for a search evaluation."""
    verdict: Mapped[str | None] = mapped_column(String(20))
    """A final task against its best baseline: ``better``, ``worse`` or ``indistinguishable``."""
    p_value: Mapped[float | None] = mapped_column(Float)
    """The two-sided p-value of the paired t-test behind ``verdict``."""
    best_trial_id: Mapped[int | None]
    """The trial that set ``best_value`` (no foreign key: trials already point at evaluations)."""
    trials_completed: Mapped[int] = mapped_column(default=0)
    trials_pruned: Mapped[int] = mapped_column(default=0)
    trials_failed: Mapped[int] = mapped_column(default=0)
    trials_diverged: Mapped[int] = mapped_column(default=0)
    reused_from_id: Mapped[int | None] = mapped_column(ForeignKey("cs_evaluations.id", ondelete="SET NULL"))
    """Copied from this evaluation of an earlier job with the same task key (not retrained)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Trial(Base):
    """One training run of one cell on one task with one set of hyperparameters."""

    __tablename__ = "cs_trials"
    __table_args__ = (Index("ix_cs_trials_job_status", "job_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("cs_jobs.id", ondelete="CASCADE"))
    architecture_id: Mapped[int] = mapped_column(ForeignKey("cs_architectures.id", ondelete="CASCADE"))
    evaluation_id: Mapped[int] = mapped_column(
        ForeignKey("cs_evaluations.id", ondelete="CASCADE"), index=True
    )
    task: Mapped[str] = mapped_column(String(100))
    study_name: Mapped[str | None] = mapped_column(String(300))
    optuna_trial_number: Mapped[int | None]
    hparams: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(20), default=TRIAL_RUNNING)
    value: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None]
    curve: Mapped[list[Any] | None]
    num_params: Mapped[int | None]
    steps: Mapped[int | None]
    seconds: Mapped[float | None] = mapped_column(Float)
    device: Mapped[str | None] = mapped_column(String(50))
    worker_node: Mapped[str | None] = mapped_column(String(100))
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_pid: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(default=1)
    launch: Mapped[int | None]
    """The job's launch (one Ray task: a trial alone or a population) the trial belongs to, in
    the driver's order of decisions; a retry keeps it. A resumed job replays its launches."""
    ordinal: Mapped[int | None]
    """The trial's place among its evaluation's trials (0, 1, ...): its seed derives from it."""
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


TABLES: tuple[str, ...] = tuple(Base.metadata.tables)
"""Names of the tables this package owns (all start with ``cs_``)."""


# -- migrations -----------------------------------------------------------------------------

_PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = _PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = _PACKAGE_DIR / "migrations"


def alembic_config(migrations: str | Path | None = None) -> Config:
    """The packaged Alembic configuration; ``migrations`` points at another script folder (tests)."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(migrations or MIGRATIONS_DIR))
    return config


def head_revision(migrations: str | Path | None = None) -> str:
    """The revision this code expects."""
    head = ScriptDirectory.from_config(alembic_config(migrations)).get_current_head()
    assert head is not None, "the migration history is empty"
    return head


def known_revisions(migrations: str | Path | None = None) -> set[str]:
    """Every revision in this code's history."""
    script = ScriptDirectory.from_config(alembic_config(migrations))
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, ``None`` when it has never been migrated."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def existing_tables(connection: Connection) -> list[str]:
    """Tables of this package found in the database (whether stamped or not)."""
    names = set(inspect(connection).get_table_names())
    return [t for t in TABLES if t in names]


def migrate(engine: Engine, revision: str = "head", migrations: str | Path | None = None) -> None:
    """Migrate the database to ``revision`` in one transaction (all or nothing where DDL is transactional)."""
    config = alembic_config(migrations)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def stamp(engine: Engine, revision: str, migrations: str | Path | None = None) -> None:
    """Record ``revision`` without running migrations (for a schema built by other means)."""
    config = alembic_config(migrations)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.stamp(config, revision)


# -- the revision check ----------------------------------------------------------------------


def ensure_schema(
    engine: Engine, *, upgrade: bool = True, create: bool = True, migrations: str | Path | None = None
) -> str:
    """Check (and create or upgrade, as allowed) the schema; returns the revision now in place."""
    shown = engine.url.render_as_string(hide_password=True)
    head = head_revision(migrations)
    try:
        with engine.connect() as conn:
            revision = current_revision(conn)
            ours = existing_tables(conn)
    except OperationalError as exc:
        raise StoreError(f"cannot open the results database {shown}: {database_error_reason(exc)}") from None
    if revision is None:
        if ours:
            raise DatabaseRevisionError(
                f"{shown} has tables named like cellsearch's ({', '.join(ours)}) but no schema "
                f"revision in cs_alembic_version: not a cellsearch database; refusing to touch it"
            )
        if not create:
            raise NoDatabaseError(f"no cellsearch results in {shown}")
        migrate(engine, head, migrations)
        return head
    if revision == head:
        return head
    if revision not in known_revisions(migrations):
        raise DatabaseRevisionError(
            f"{shown} is at schema revision {revision!r}, unknown to this cellsearch (expects {head!r}): "
            f"it was written by a newer cellsearch; upgrade cellsearch to read it"
        )
    if not upgrade:
        raise DatabaseRevisionError(
            f"database at revision {revision}, code expects {head}: run `cellsearch db upgrade`"
        )
    migrate(engine, head, migrations)
    return head


def upgrade_database(url: str, *, migrations: str | Path | None = None) -> tuple[str | None, str]:
    """Create or upgrade the schema at ``url``; returns ``(revision before, revision after)``."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            before = current_revision(conn)
        after = ensure_schema(engine, upgrade=True, create=True, migrations=migrations)
        return before, after
    except OperationalError as exc:
        raise StoreError(f"cannot open the results database: {database_error_reason(exc)}") from None
    finally:
        engine.dispose()
