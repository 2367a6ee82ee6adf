"""The leaderboard's order, written once: every ranking of a job's architectures uses it.

``cellsearch status``, the table ``cellsearch launch`` prints at the end, ``cellsearch
results top`` (and the exports and reports built on it), the ``leaderboard`` SQL view and
a job's best architecture all rank by :func:`by_score`, and ``results show`` counts an
architecture's rank with :func:`ranked_ahead`, the same rule as a condition.

A job with a final round (``docs/final-round.md``) is shown ranked by :func:`by_final_score`:
the architectures the round re-evaluated first, by their final score, then the rest by their
search score. Without a final round the two orders agree. The driver picks the round's
architectures by :func:`by_score`, the search's own order.

The tie rule: the higher score first; equal scores go to the lower architecture id, that
is to the architecture recorded first in the database. An architecture keeps the id it
got when a job first proposed it, so within one job this is the earliest proposed, except
for an architecture an earlier job had already recorded (it ranks as of that first
proposal). Ranking every job together, equal scores go to the earlier job first.

Example:
    >>> leaderboard_rank_sql()  # doctest: +NORMALIZE_WHITESPACE
    'ROW_NUMBER() OVER (PARTITION BY ja.job_id ORDER BY CASE WHEN (ja.final_score IS NULL)
    THEN 1 ELSE 0 END, coalesce(ja.final_score, ja.score) DESC, ja.architecture_id)'
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_
from sqlalchemy.orm import aliased

from search._schema import JobArchitecture


def by_score(ja: Any = JobArchitecture, *, across_jobs: bool = False) -> tuple[ColumnElement[Any], ...]:
    """The ``ORDER BY`` of a leaderboard over the job architectures ``ja`` (the table or an
    alias of it): best score first, ties by architecture id (by job first ``across_jobs``)."""
    jobs = (ja.job_id,) if across_jobs else ()
    return (ja.score.desc(), *jobs, ja.architecture_id)


def by_final_score(ja: Any = JobArchitecture, *, across_jobs: bool = False) -> tuple[ColumnElement[Any], ...]:
    """The ``ORDER BY`` of a leaderboard of a job with a final round: the architectures with a
    final score first, by it, then the rest by their search score; equal scores by the same
    tie rule as :func:`by_score`. Without a final round it orders as :func:`by_score`."""
    jobs = (ja.job_id,) if across_jobs else ()
    unfinalized = case((ja.final_score.is_(None), 1), else_=0)
    return (unfinalized, func.coalesce(ja.final_score, ja.score).desc(), *jobs, ja.architecture_id)


def ranked_ahead(
    ja: Any, job_id: int, arch_id: int, score: float, final_score: float | None = None
) -> ColumnElement[bool]:
    """The job's scored architectures that :func:`by_final_score` puts ahead of ``arch_id``
    (scored ``score``, with final score ``final_score``): counting them gives its rank minus one."""
    if final_score is not None:
        return and_(
            ja.job_id == job_id,
            ja.score.is_not(None),
            ja.final_score.is_not(None),
            or_(
                ja.final_score > final_score,
                and_(ja.final_score == final_score, ja.architecture_id < arch_id),
            ),
        )
    return and_(
        ja.job_id == job_id,
        ja.score.is_not(None),
        or_(
            ja.final_score.is_not(None),
            and_(
                ja.final_score.is_(None),
                or_(ja.score > score, and_(ja.score == score, ja.architecture_id < arch_id)),
            ),
        ),
    )


def leaderboard_rank_sql(alias: str = "ja") -> str:
    """:func:`by_final_score` as the SQL of a ``rank`` column over ``cs_job_architectures``
    named ``alias``, 1 the best in each job (what the ``leaderboard`` view selects)."""
    ja = aliased(JobArchitecture, name=alias)
    rank = func.row_number().over(partition_by=ja.job_id, order_by=by_final_score(ja))
    return str(rank.compile(compile_kwargs={"literal_binds": True})).replace("row_number()", "ROW_NUMBER()")
