"""Whole jobs through the driver: real Ray (one local instance for the module), real training
on tiny budgets, real SQLite and PostgreSQL, then the database is read back."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa

from search import RankedArchitecture, ResultStore
from search._intervals import best_interval
from search._jobspec import JobSpec
from search._progress import ProgressFeed
from search._settings import resolve_settings
from workers import Direction

MEMORIZE = {"min_length": 3, "max_length": 5, "symbols": 4, "valid_size": 32, "test_size": 32}
ARITH = {"max_digits": 2, "valid_size": 32, "test_size": 32}
BUDGET = {"max_steps": 30, "eval_every": 15, "eval_batch_size": 32}
HPARAMS = {"hidden_size": 16, "num_layers": 1, "batch_size": 16}


def quickstart_spec(**overrides: Any) -> JobSpec:
    """The quickstart's shape (memorize filter, a search task, Jozefowicz search), much smaller."""
    data: dict[str, Any] = {
        "name": "quickstart-small",
        "strategy": {"kind": "jozefowicz", "top_k": 4, "p_refine": 0.25, "refine_trials": 1},
        "seed_cells": ["lstm", "gru"],
        "baselines": ["gru"],
        "tasks": [
            {"name": "memorize", "role": "filter", "threshold": 0.05, "settings": MEMORIZE, "budget": BUDGET},
            {"name": "arith", "threshold": 0.5, "settings": ARITH, "budget": BUDGET},
        ],
        "trials_per_task": 2,
        "hparams": HPARAMS,
        "budget": {"max_architectures": 4},
        "resources": {"cpus": 1},
        "device": "cpu",
        "seed": 3,
    }
    data.update(overrides)
    return JobSpec.from_dict(data)


def _run(spec: JobSpec, url: str) -> tuple[int, ProgressFeed]:
    from search._driver import run_job

    feed = ProgressFeed()
    job_id = run_job(spec, resolve_settings(db_url=url, env={}), progress=feed)
    return job_id, feed


def _trained(url: str) -> Counter[tuple[str, str]]:
    """How many evaluations trained (own trials) each (canonical hash, task key), over all jobs."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT a.canonical_hash, e.task_key FROM cs_evaluations e "
                    "JOIN cs_architectures a ON a.id = e.architecture_id "
                    "WHERE EXISTS (SELECT 1 FROM cs_trials t WHERE t.evaluation_id = e.id)"
                )
            ).all()
    finally:
        engine.dispose()
    return Counter((h, k) for h, k in rows)


def _check_job(url: str, job_id: int, spec: JobSpec, feed: ProgressFeed) -> None:
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        members = store.job_architectures(job_id)
        evaluations = store.evaluations(job_id)
        trials = store.trials(job_id=job_id)
        summary = store.job_summary(job_id)
        hashes = [store.get_architecture(m.architecture_id).canonical_hash for m in members]
        top = store.top_architectures(job_id)

    # One baseline plus at most four proposals (lstm, then mutants; gru is the baseline), each once.
    assert len(members) == len(set(hashes)) == 1 + feed.architectures_proposed
    assert feed.architectures_proposed == 4
    assert trials and all(t.status in ("ok", "diverged", "pruned", "failed") for t in trials)
    assert summary.trials.running == 0 and summary.trials.interrupted == 0

    # Every evaluation ran exactly its trials (plus refinements), each in its own Optuna study.
    studies = {s.study_name: s for s in optuna.get_all_study_summaries(storage=url)}
    per_evaluation = Counter(t.evaluation_id for t in trials)
    for evaluation in evaluations:
        if evaluation.reused_from_id is not None:
            continue
        ran = per_evaluation[evaluation.id]
        assert ran == evaluation.trials_finished
        assert ran == 2 or (evaluation.task == "arith" and ran > 2)  # arith may have been refined
        names = {t.study_name for t in trials if t.evaluation_id == evaluation.id}
        assert len(names) == 1
        (name,) = names
        assert name.startswith(f"job{job_id}-arch{evaluation.architecture_id}-{evaluation.task}-")
        assert studies[name].n_trials == ran
        assert evaluation.status in ("done", "filtered-out")
    # The best baseline scores 1 against itself; every scored architecture has a relative arith value.
    scored = [e for e in top if e.score is not None]
    assert scored and any(e.library_name == "gru" and e.score == pytest.approx(1.0) for e in scored)
    assert feed.best_score == pytest.approx(max(e.score for e in scored))
    # The same canonical cell was never trained twice for the same task settings.
    assert max(_trained(url).values()) == 1
    _check_intervals(url, job_id, top)


def _check_intervals(url: str, job_id: int, top: list[RankedArchitecture]) -> None:
    """Each evaluation's interval is the bootstrap of its ok trials and holds its best value;
    each score's interval holds the score."""
    with ResultStore.open(url) as store:
        evaluations = [(e, store.ok_trial_values(e.id)) for e in store.evaluations(job_id)]
    assert any(e.best_interval is not None for e, _ in evaluations)
    for evaluation, values in evaluations:
        if evaluation.status not in ("done", "filtered-out"):
            continue  # a stage left unfinished records no interval
        assert evaluation.best_interval == best_interval(values, Direction(evaluation.direction))
        if evaluation.best_interval is not None:
            assert evaluation.best_interval.contains(evaluation.best_value)  # type: ignore[arg-type]
        if evaluation.relative_interval is not None:
            assert evaluation.relative_interval.contains(evaluation.relative_score)  # type: ignore[arg-type]
    assert any(e.score_interval is not None for e in top)
    for entry in top:
        assert entry.score_interval is None or entry.score_interval.contains(entry.score)  # type: ignore[arg-type]


def test_quickstart_shaped_job_on_sqlite_then_a_second_job_reuses_it(
    ray_instance: None, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'results.db'}"
    spec = quickstart_spec()
    job_id, feed = _run(spec, url)
    _check_job(url, job_id, spec, feed)
    trained_before = _trained(url)

    # The same job again (without refinements, which would add trials on purpose): the cells it
    # meets again (the baseline, the seed lstm, mutants) are copied from the first job, not retrained.
    second, second_feed = _run(
        quickstart_spec(strategy={"kind": "jozefowicz", "top_k": 4, "p_refine": 0.0}), url
    )
    with ResultStore.open(url) as store:
        assert store.get_job(second).state == "finished"
        reused = [e for e in store.evaluations(second) if e.reused_from_id is not None]
        originals = {e.id: store.get_evaluation(e.reused_from_id) for e in reused}  # type: ignore[arg-type]
    assert all(e.best_interval == originals[e.id].best_interval for e in reused)  # carried over
    assert second_feed.evaluations_reused == len(reused) >= 4  # gru and lstm on both tasks
    assert max(_trained(url).values()) == 1
    assert all(_trained(url)[key] == 1 for key in trained_before)


@pytest.mark.postgres
def test_quickstart_shaped_job_on_postgresql(ray_instance: None, fresh_postgres_url: str) -> None:
    spec = quickstart_spec(strategy={"kind": "regularized_evolution", "population_size": 3, "sample_size": 2})
    job_id, feed = _run(spec, fresh_postgres_url)
    _check_job(fresh_postgres_url, job_id, spec, feed)


def test_paper_table_shaped_job_scores_every_cell_on_every_task(ray_instance: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'table.db'}"
    cells = ["lstm", "gru", "mut1"]
    spec = quickstart_spec(
        name="paper-table-small",
        strategy={"kind": "fixed", "cells": cells},
        seed_cells=[],
        tasks=[
            {"name": "memorize", "role": "report-only", "settings": MEMORIZE, "budget": BUDGET},
            {"name": "arith", "threshold": 5.0, "settings": ARITH, "budget": BUDGET},  # no gate for fixed
        ],
        trials_per_task=1,
        budget={},
    )
    job_id, _ = _run(spec, url)
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        members = store.job_architectures(job_id)
        names = {m.architecture_id: store.get_architecture(m.architecture_id).library_name for m in members}
        evaluations = store.evaluations(job_id)
        trials = store.trials(job_id=job_id)
    assert sorted(names.values()) == sorted(cells)  # gru is both a listed cell and the baseline: once
    assert all(m.score is not None for m in members)
    assert len(trials) == len(cells) * 2  # equal budgets: one trial per cell and task
    table = {(names[e.architecture_id], e.task_label): e for e in evaluations}
    assert set(table) == {(cell, task) for cell in cells for task in ("memorize", "arith")}
    assert all(e.trials_finished == 1 and e.relative_score is not None for e in table.values())
    assert table["gru", "arith"].relative_score == pytest.approx(1.0)
    assert table["gru", "memorize"].relative_score == pytest.approx(1.0)
    for member in members:  # score = the search task (arith) relative to gru; memorize only reported
        assert member.score == pytest.approx(table[names[member.architecture_id], "arith"].relative_score)
