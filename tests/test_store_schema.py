"""The results database's schema: migrations, sharing the database with Optuna, refusing a
foreign or newer layout, and crash safety. Every test runs on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from _store_data import REPO, job_spec, table_names

from search import DatabaseRevisionError, NoDatabaseError, ResultStore, _schema, make_engine
from search._schema import TABLES, VERSION_TABLE, Base

# -- schema and migrations -------------------------------------------------------------------


def test_fresh_database_gets_the_schema_at_head(db_url: str) -> None:
    with ResultStore.open(db_url) as store, store.engine.connect() as conn:
        assert _schema.current_revision(conn) == _schema.head_revision() == "0004_final_round"
    assert set(TABLES) | {"cs_alembic_version"} <= table_names(db_url)


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    ResultStore.open(db_url).close()
    engine = make_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": VERSION_TABLE,
                "include_name": lambda name, kind, _: kind != "table" or name.startswith("cs_"),
            },
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_optuna_shares_the_database(db_url: str) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna first, then the store, then Optuna again: neither disturbs the other's tables.
    study = optuna.create_study(storage=optuna.storages.RDBStorage(db_url), study_name="before")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with ResultStore.open(db_url) as store:
        job_id = store.create_job(job_spec())
        storage = optuna.storages.RDBStorage(db_url)
        later = optuna.create_study(storage=storage, study_name="after", direction="maximize")
        later.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
        assert len(optuna.load_study(study_name="before", storage=storage).trials) == 2
        assert store.get_job(job_id).name == "job"
    assert {"trials", "studies", "alembic_version", "cs_trials", "cs_alembic_version"} <= table_names(db_url)
    with ResultStore.open(db_url, upgrade=False) as store:
        assert [j.id for j in store.list_jobs()] == [job_id]


def test_schema_built_elsewhere_and_stamped_is_accepted(db_url: str) -> None:
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    _schema.stamp(engine, "head")
    engine.dispose()
    with ResultStore.open(db_url, upgrade=False) as store:
        assert store.create_job(job_spec()) == 1


def _migrations_with_a_second_revision(tmp_path: Path) -> Path:
    """A copy of the packaged migrations plus a revision after the head that adds a column."""
    folder = tmp_path / "migrations"
    shutil.copytree(_schema.MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "versions" / "9999_notes.py").write_text(
        textwrap.dedent(
            '''
            """Add cs_jobs.notes."""
            import sqlalchemy as sa
            from alembic import op

            revision = "9999_notes"
            down_revision = "{head}"
            branch_labels = None
            depends_on = None


            def upgrade() -> None:
                with op.batch_alter_table("cs_jobs") as batch:
                    batch.add_column(sa.Column("notes", sa.Text(), nullable=True))


            def downgrade() -> None:
                with op.batch_alter_table("cs_jobs") as batch:
                    batch.drop_column("notes")
            '''
        ).replace("{head}", _schema.head_revision())
    )
    return folder


def test_older_revision_is_refused_or_upgraded(db_url: str, tmp_path: Path) -> None:
    head = _schema.head_revision()
    with ResultStore.open(db_url) as store:  # a database written by the code at its head
        job_id = store.create_job(job_spec())
    newer = _migrations_with_a_second_revision(tmp_path)
    with pytest.raises(DatabaseRevisionError) as info:
        ResultStore.open(db_url, upgrade=False, migrations=newer)
    assert str(info.value) == (
        f"database at revision {head}, code expects 9999_notes: run `cellsearch db upgrade`"
    )
    with ResultStore.open(db_url, migrations=newer) as store:
        assert store.get_job(job_id).name == "job"  # the data survived the upgrade
        with store.engine.connect() as conn:
            assert _schema.current_revision(conn) == "9999_notes"
            assert "notes" in {c["name"] for c in sa.inspect(conn).get_columns("cs_jobs")}
    # Now the packaged code meets a newer database: refused, naming both revisions.
    with pytest.raises(DatabaseRevisionError, match=r"revision '9999_notes', unknown to this cellsearch"):
        ResultStore.open(db_url)


def test_a_database_before_the_score_intervals_gains_empty_bounds(db_url: str) -> None:
    engine = make_engine(db_url)
    _schema.migrate(engine, "0001_initial")  # what the code before the intervals wrote
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO cs_jobs (name, spec, state, code_version, created_at) "
                "VALUES ('old', '{}', 'finished', '', '2026-01-01')"
            )
        )
    engine.dispose()
    with ResultStore.open(db_url) as store, store.engine.connect() as conn:
        assert _schema.current_revision(conn) == _schema.head_revision()
        trial = {c["name"] for c in sa.inspect(conn).get_columns("cs_trials")}
        assert {"launch", "ordinal"} <= trial
        evaluation = {c["name"] for c in sa.inspect(conn).get_columns("cs_evaluations")}
        member = {c["name"] for c in sa.inspect(conn).get_columns("cs_job_architectures")}
        assert {"best_low", "best_high", "relative_low", "relative_high"} <= evaluation
        assert {"score_low", "score_high"} <= member
        assert store.get_job(1).name == "old"


def test_foreign_layout_is_refused_and_unrelated_tables_are_left_alone(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE inventory (sku TEXT PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO inventory VALUES ('a')"))
    with ResultStore.open(db_url) as store:  # unrelated tables do not stop cellsearch
        store.create_job(job_spec())
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT sku FROM inventory")).scalars().all() == ["a"]
        # Someone's own cs_jobs without our revision stamp: not ours, refuse to touch it.
        for table in reversed(TABLES):
            conn.execute(sa.text(f"DROP TABLE {table}"))
        conn.execute(sa.text("DROP TABLE cs_alembic_version"))
        conn.execute(sa.text("CREATE TABLE cs_jobs (job TEXT)"))
    engine.dispose()
    with pytest.raises(
        DatabaseRevisionError, match=r"tables named like cellsearch's \(cs_jobs\).*not a cellsearch"
    ):
        ResultStore.open(db_url)


def test_missing_sqlite_file_is_not_created_without_create(tmp_path: Path) -> None:
    target = tmp_path / "none.db"
    with pytest.raises(NoDatabaseError, match="no results database at"):
        ResultStore.open(f"sqlite:///{target}", create=False)
    assert not target.exists()


def test_empty_database_without_create_is_refused(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        Path(db_url.removeprefix("sqlite:///")).touch()
    with pytest.raises(NoDatabaseError, match="no cellsearch results"):
        ResultStore.open(db_url, create=False)


# -- crash safety ----------------------------------------------------------------------------

WRITER = """
import sys
from cells import library
from search._jobspec import JobSpec
from search import ResultStore
from workers import TrialResult

store = ResultStore.open(sys.argv[1])
spec = JobSpec.from_dict({"name": "kill", "strategy": {"kind": "random"}, "tasks": [{"name": "arith"}],
                          "budget": {"max_trials": 1000}})
job_id = store.create_job(spec)
arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.tasks[0])
for i in range(100_000):
    trial_id = store.start_trial(evaluation.id, hparams={"i": i})
    store.finish_trial(trial_id, TrialResult(status="ok", task="arith", metric="m", direction="maximize",
                                             value=i / 1e5, curve=[(1, 0.0)] * 50))
    print(i + 1, flush=True)
"""


def test_committed_trials_survive_sigkill(db_url: str, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), db_url], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    assert proc.stdout is not None
    reported = 0
    try:
        while reported < 30:
            line = proc.stdout.readline()
            assert line, f"the writer stopped early (exit code {proc.poll()})"
            reported = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)  # mid-transaction, most likely: no cleanup runs
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with ResultStore.open(db_url) as store:
        ok = store.trials(job_id=1, status="ok")
        assert len(ok) >= reported  # every trial the writer saw committed is there
        evaluation = store.evaluations(1)[0]
        # Never half-written: the evaluation's counts and best match its finished trials exactly.
        assert evaluation.trials_completed == len(ok)
        assert evaluation.best_value == max(t.value for t in ok if t.value is not None)
        assert len(store.trials(job_id=1, status="running")) <= 1
        assert store.mark_running_trials_interrupted(1) <= 1
