"""The SQL views (``leaderboard``, ``architecture_tasks``, ``trial_summary``) and the SQL
examples of ``docs/querying.md``, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from _dashboard_data import REPO, Synthetic, build_synthetic
from _final_data import BY_FINAL, build_final_job
from _postgres import postgres_database

from dashboards import VIEW_NAMES, ensure_views, top_architectures
from dashboards._links import ensure_links_table, record_run
from search import ResultStore

DOC = REPO / "docs" / "querying.md"


def sql_examples() -> list[str]:
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 6, "docs/querying.md lost its SQL examples"
    return [b.strip().rstrip(";") for b in blocks]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def synthetic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Synthetic]:
    if request.param == "sqlite":
        data = build_synthetic(f"sqlite:///{tmp_path_factory.mktemp('views') / 'views.db'}")
        _prepare(data)
        yield data
    else:
        with postgres_database() as url:
            data = build_synthetic(url)
            _prepare(data)
            yield data


FINAL_JOBS: dict[str, int] = {}
"""Database URL -> the job with a final round added next to the synthetic ones (the final
round's SQL example reads it)."""


def _prepare(data: Synthetic) -> None:
    FINAL_JOBS[data.url] = build_final_job(data.url).job
    engine = sa.create_engine(data.url)
    assert ensure_views(engine) == list(VIEW_NAMES)
    ensure_links_table(engine)
    record_run(
        engine, "sqlite:///mlflow.db", job_id=data.search_job, arch_id=None, experiment_id="1", run_id="r0"
    )
    engine.dispose()


@pytest.fixture
def engine(synthetic: Synthetic) -> Iterator[sa.Engine]:
    engine = sa.create_engine(synthetic.url)
    yield engine
    engine.dispose()


def rows(engine: sa.Engine, sql: str, **params: object) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]


@pytest.mark.parametrize("index", range(len(sql_examples())))
def test_documented_sql_runs(engine: sa.Engine, synthetic: Synthetic, index: int) -> None:
    sql = sql_examples()[index]
    assert "job_id = 1" in sql or "FROM" in sql
    job = FINAL_JOBS[synthetic.url] if "final_score IS NOT NULL" in sql else synthetic.search_job
    result = rows(engine, sql.replace("job_id = 1", f"job_id = {job}"))
    assert result, f"example {index + 1} returned no rows:\n{sql}"


def test_documented_examples_give_the_expected_answers(engine: sa.Engine, synthetic: Synthetic) -> None:
    examples = [s.replace("job_id = 1", f"job_id = {synthetic.search_job}") for s in sql_examples()]
    ids = synthetic.ids
    top10 = rows(engine, examples[0])
    assert [r["arch_id"] for r in top10] == [
        ids[n] for n in ["child", "grandchild", "tie", "gru", "lstm", "stopped"]
    ]
    per_task = rows(engine, examples[1])
    assert {(r["arch_id"], r["task"]) for r in per_task} >= {
        (ids["child"], "xml-small"),
        (ids["gru"], "arith"),
    }
    best_arith = rows(engine, examples[2])
    assert [r["arch_id"] for r in best_arith] == [
        ids[n] for n in ["child", "grandchild", "tie", "gru", "lstm", "stopped"]
    ]
    trials = {r["task"]: r for r in rows(engine, examples[3])}
    assert trials["memorize"]["trials"] == 8  # one per architecture, plus the filtered one's failed trial
    assert trials["arith"]["pruned"] == 1
    assert trials["xml-small"]["failed_or_diverged"] == 1
    children = rows(engine, examples[4])
    assert {r["arch_id"] for r in children} == {ids["child"], ids["tie"]}
    assert {r["arch_id"]: r["parent_id"] for r in children}[ids["child"]] == ids["lstm"]


def test_leaderboard_agrees_with_results_top(engine: sa.Engine, synthetic: Synthetic) -> None:
    view = rows(
        engine, "SELECT * FROM leaderboard WHERE job_id = :job ORDER BY rank", job=synthetic.search_job
    )
    with ResultStore.open(synthetic.url, upgrade=False, create=False) as store:
        top = top_architectures(store, synthetic.search_job, limit=100)
    assert [(r["rank"], r["arch_id"], r["score"]) for r in view] == [
        (t.rank, t.arch_id, t.score) for t in top
    ]
    intervals = [(r["score_low"], r["score_high"]) for r in view]
    assert intervals == [
        (None, None) if t.score_interval is None else (t.score_interval.low, t.score_interval.high)
        for t in top
    ]
    assert intervals[0] == (1.02, 1.16)  # the child's; the others have none
    assert all(r["job_name"] == "synthetic" for r in view)
    both_jobs = rows(
        engine,
        "SELECT job_id, rank FROM leaderboard WHERE arch_id = :a ORDER BY job_id",
        a=synthetic.ids["gru"],
    )
    assert both_jobs == [
        {"job_id": synthetic.search_job, "rank": 4},
        {"job_id": synthetic.fixed_job, "rank": 2},
        {"job_id": FINAL_JOBS[synthetic.url], "rank": 2},  # behind mut1's final score
    ]


def test_architecture_tasks_and_trial_summary(engine: sa.Engine, synthetic: Synthetic) -> None:
    child = synthetic.ids["child"]
    tasks = {
        r["task"]: r
        for r in rows(
            engine,
            "SELECT * FROM architecture_tasks WHERE arch_id = :a AND job_id = :j",
            a=child,
            j=synthetic.search_job,
        )
    }
    assert set(tasks) == {"memorize", "arith", "xml-small"}
    assert tasks["xml-small"]["task_name"] == "xml"
    assert tasks["arith"]["trials"] == 2 and tasks["arith"]["trials_pruned"] == 1
    assert tasks["arith"]["best_value"] == pytest.approx(0.88)
    assert tasks["arith"]["relative_score"] == pytest.approx(1.1)
    assert (tasks["arith"]["best_low"], tasks["arith"]["best_high"]) == (0.85, 0.88)
    assert (tasks["xml-small"]["relative_low"], tasks["xml-small"]["relative_high"]) == (1.1, 1.3)
    assert tasks["memorize"]["relative_low"] is None
    summary = {
        r["task"]: r
        for r in rows(
            engine,
            "SELECT * FROM trial_summary WHERE arch_id = :a AND job_id = :j",
            a=child,
            j=synthetic.search_job,
        )
    }
    arith = summary["arith"]
    assert (arith["trials"], arith["ok"], arith["pruned"]) == (2, 1, 1)
    assert arith["best_value"] == pytest.approx(0.88)  # the pruned trial's 0.1 is not an ok value
    assert arith["mean_value"] == pytest.approx(0.88)
    assert arith["total_seconds"] == pytest.approx(3.0)
    tie = {
        r["task"]: r
        for r in rows(engine, "SELECT * FROM trial_summary WHERE arch_id = :a", a=synthetic.ids["tie"])
    }
    assert (tie["xml-small"]["diverged"], tie["xml-small"]["ok"]) == (1, 1)


def test_ensure_views_replaces_a_stale_view_and_is_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "stale.db"
    data = build_synthetic(f"sqlite:///{db}")
    engine = sa.create_engine(data.url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE VIEW leaderboard AS SELECT 1 AS old_column"))
    assert ensure_views(engine) == list(VIEW_NAMES)  # the stale one replaced, the others created
    assert ensure_views(engine) == []
    engine.dispose()
    with sqlite3.connect(db) as conn:  # plain sqlite3, as a user would
        first = conn.execute(
            "SELECT arch_id, rank FROM leaderboard WHERE job_id = ? AND rank = 1", (data.search_job,)
        )
        assert first.fetchall() == [(data.ids["child"], 1)]


def test_views_carry_the_final_round(tmp_path: Path) -> None:
    data = build_final_job(f"sqlite:///{tmp_path / 'final.db'}")
    engine = sa.create_engine(data.url)
    try:
        ensure_views(engine)
        by_id = {v: k for k, v in data.ids.items()}
        board = rows(engine, "SELECT * FROM leaderboard ORDER BY rank")
        assert [by_id[r["arch_id"]] for r in board] == BY_FINAL  # ranked as results top ranks them
        assert [(r["final_score"], r["final_low"], r["final_high"]) for r in board] == [
            (1.02, 0.98, 1.06),
            (1.0, 0.95, 1.04),
            (0.9, 0.85, 0.95),
            (None, None, None),
        ]
        [example] = [s for s in sql_examples() if "final_score IS NOT NULL" in s]
        finals = rows(engine, example.replace("job_id = 1", f"job_id = {data.job}"))
        assert [(by_id[r["arch_id"]], r["task"], r["verdict"], r["p_value"]) for r in finals] == [
            ("mut1", "arith.final", "indistinguishable", 0.2),
            ("mut1", "xml.final", "better", 0.04),
            ("gru", "arith.final", None, None),
            ("gru", "xml.final", None, None),
            ("lstm", "arith.final", "better", 0.003),
            ("lstm", "xml.final", "worse", 0.0004),
        ]
        assert {r["mean_value"] for r in finals if by_id[r["arch_id"]] == "lstm"} == {0.55, 0.54}
        search_rows = rows(engine, "SELECT mean_value, verdict FROM architecture_tasks WHERE task = 'arith'")
        assert search_rows and all(r == {"mean_value": None, "verdict": None} for r in search_rows)
    finally:
        engine.dispose()
