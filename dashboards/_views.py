"""SQL views over the results tables, for people who query with ``sqlite3`` or ``psql``.

The views are plain SQL that SQLite and PostgreSQL both accept; :func:`ensure_views`
creates them (and replaces one whose columns changed) and is cheap when they are already
in place, so every ``cellsearch results`` command and every tracked job calls it. They are
kept out of the Alembic history on purpose: a view holds no data, so recreating one is
always safe, and the ``search`` package (which owns the migrations) does not have to know
about the dashboards. See ``docs/querying.md`` for what each column means.

- ``leaderboard``: one row per scored architecture of a job, ``rank`` 1 the best, ranked
  as ``cellsearch results top`` ranks them (ties: :mod:`search._ranking`), with the score's
  interval (``score_low``, ``score_high``; ``docs/uncertainty.md``) and the final round's
  score (``final_score``, ``final_low``, ``final_high``; ``docs/final-round.md``), which ranks
  first where there is one.
- ``architecture_tasks``: one row per job, architecture and task: best value, relative score,
  their intervals, trials; a final task (``arith.final``) its seed mean (``mean_value``), its
  ``verdict`` against the best baseline and the test's ``p_value``.
- ``trial_summary``: one row per job, architecture and task, aggregated from the trials
  themselves (counts by status, best and mean value, seconds trained).

Example:
    >>> from search import ResultStore
    >>> store = ResultStore.open("sqlite://")
    >>> ensure_views(store.engine)
    ['leaderboard', 'architecture_tasks', 'trial_summary']
    >>> ensure_views(store.engine)  # already there: nothing to do
    []
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from search import leaderboard_rank_sql

logger = logging.getLogger(__name__)

LEADERBOARD_COLUMNS = (
    "job_id",
    "job_name",
    "rank",
    "arch_id",
    "library_name",
    "score",
    "score_low",
    "score_high",
    "final_score",
    "final_low",
    "final_high",
    "generation",
    "parent_id",
    "mutation",
    "num_states",
    "num_nodes",
    "listed",
    "canonical_hash",
    "equations",
)

ARCHITECTURE_TASKS_COLUMNS = (
    "job_id",
    "arch_id",
    "task",
    "task_name",
    "metric",
    "direction",
    "status",
    "best_value",
    "best_low",
    "best_high",
    "relative_score",
    "relative_low",
    "relative_high",
    "mean_value",
    "verdict",
    "p_value",
    "trials",
    "trials_completed",
    "trials_pruned",
    "trials_failed",
    "trials_diverged",
    "best_trial_id",
    "reused_from_id",
    "task_key",
)

TRIAL_SUMMARY_COLUMNS = (
    "job_id",
    "arch_id",
    "task",
    "metric",
    "direction",
    "trials",
    "ok",
    "pruned",
    "failed",
    "diverged",
    "interrupted",
    "running",
    "best_value",
    "mean_value",
    "total_seconds",
    "mean_seconds",
    "max_params",
    "first_started",
    "last_finished",
)

VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    "leaderboard": (
        LEADERBOARD_COLUMNS,
        f"""
SELECT
    ja.job_id,
    j.name AS job_name,
    {leaderboard_rank_sql("ja")} AS rank,
    a.id AS arch_id,
    a.library_name,
    ja.score,
    ja.score_low,
    ja.score_high,
    ja.final_score,
    ja.final_low,
    ja.final_high,
    ja.generation,
    a.parent_id,
    a.mutation,
    a.num_states,
    a.num_nodes,
    ja.listed,
    a.canonical_hash,
    a.equations
FROM cs_job_architectures ja
JOIN cs_architectures a ON a.id = ja.architecture_id
JOIN cs_jobs j ON j.id = ja.job_id
WHERE ja.score IS NOT NULL
""",
    ),
    "architecture_tasks": (
        ARCHITECTURE_TASKS_COLUMNS,
        """
SELECT
    e.job_id,
    e.architecture_id AS arch_id,
    e.task_label AS task,
    e.task AS task_name,
    e.metric,
    e.direction,
    e.status,
    e.best_value,
    e.best_low,
    e.best_high,
    e.relative_score,
    e.relative_low,
    e.relative_high,
    e.mean_value,
    e.verdict,
    e.p_value,
    e.trials_completed + e.trials_pruned + e.trials_failed + e.trials_diverged AS trials,
    e.trials_completed,
    e.trials_pruned,
    e.trials_failed,
    e.trials_diverged,
    e.best_trial_id,
    e.reused_from_id,
    e.task_key
FROM cs_evaluations e
""",
    ),
    "trial_summary": (
        TRIAL_SUMMARY_COLUMNS,
        """
SELECT
    t.job_id,
    t.architecture_id AS arch_id,
    e.task_label AS task,
    e.metric,
    e.direction,
    COUNT(*) AS trials,
    SUM(CASE WHEN t.status = 'ok' THEN 1 ELSE 0 END) AS ok,
    SUM(CASE WHEN t.status = 'pruned' THEN 1 ELSE 0 END) AS pruned,
    SUM(CASE WHEN t.status = 'failed' THEN 1 ELSE 0 END) AS failed,
    SUM(CASE WHEN t.status = 'diverged' THEN 1 ELSE 0 END) AS diverged,
    SUM(CASE WHEN t.status = 'interrupted' THEN 1 ELSE 0 END) AS interrupted,
    SUM(CASE WHEN t.status = 'running' THEN 1 ELSE 0 END) AS running,
    CASE WHEN e.direction = 'maximize'
        THEN MAX(CASE WHEN t.status = 'ok' THEN t.value END)
        ELSE MIN(CASE WHEN t.status = 'ok' THEN t.value END)
    END AS best_value,
    AVG(CASE WHEN t.status = 'ok' THEN t.value END) AS mean_value,
    SUM(t.seconds) AS total_seconds,
    AVG(t.seconds) AS mean_seconds,
    MAX(t.num_params) AS max_params,
    MIN(t.started_at) AS first_started,
    MAX(t.finished_at) AS last_finished
FROM cs_trials t
JOIN cs_evaluations e ON e.id = t.evaluation_id
GROUP BY t.job_id, t.architecture_id, e.id, e.task_label, e.metric, e.direction
""",
    ),
}
"""View name -> (its columns, its SELECT)."""

VIEW_NAMES: tuple[str, ...] = tuple(VIEWS)


def view_sql(name: str) -> str:
    """The ``CREATE VIEW`` statement of a view (what ``docs/querying.md`` documents)."""
    return f"CREATE VIEW {name} AS{VIEWS[name][1].rstrip()}"


def ensure_views(engine: Engine) -> list[str]:
    """Create the views where missing or out of date; returns the names (re)created.

    A view is replaced when its columns differ from this version's. The database must
    hold the cellsearch schema already (open it with
    :meth:`search.ResultStore.open` first). A database the caller may not write to
    (a read-only PostgreSQL role) is left as it is, with a warning.
    """
    try:
        inspector = inspect(engine)
        existing = set(inspector.get_view_names())
        stale = [
            name
            for name, (columns, _) in VIEWS.items()
            if name not in existing or tuple(c["name"] for c in inspector.get_columns(name)) != columns
        ]
        if not stale:
            return []
        with engine.begin() as conn:
            for name in stale:
                if name in existing:
                    conn.execute(text(f"DROP VIEW {name}"))
                conn.execute(text(view_sql(name)))
    except SQLAlchemyError as exc:
        logger.warning("could not create the SQL views (%s); `cellsearch results` still works", exc)
        return []
    return stale
