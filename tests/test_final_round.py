"""The final round: after the search, the best architectures and every baseline are trained again
with the same fresh seeds, scored on the test split and compared with the baseline pair by pair.

The driver test runs a real local Ray and real SQLite with an instant evaluator (the only
stand-in: ``run_job(evaluate=...)``) whose value is a known function of the cell, the split and
the seed, so the means, the verdicts and the ranking are certain. One test trains for real and
checks that a budget scoring on ``test`` reports the test split's value.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from search import ResultStore
from search._final_round import FinalRound, final_task
from search._job_tasks import TaskEntry
from search._jobspec import JobSpec
from search._settings import resolve_settings
from workers import Budget, TrialResult

SEEDS = 4


def quality(cell: Any) -> float:
    """A cell's true value: a checksum of its graph, 0.3 to 0.7."""
    graph = json.dumps(cell.model_dump(mode="json")["nodes"], sort_keys=True)
    return 0.3 + 0.4 * (zlib.crc32(graph.encode()) % 1000) / 1000


def make_instant() -> Any:
    """The stand-in for training: quality plus a seed effect every cell shares (paired seeds
    cancel it) and, on test, an offset. Made in a function so Ray ships it by value (the test
    module is not importable on the workers)."""

    def instant(cell: Any, task: Any, hparams: Any, budget: Any, report: Any, device: str) -> TrialResult:
        graph = json.dumps(cell.model_dump(mode="json")["nodes"], sort_keys=True)
        true_value = 0.3 + 0.4 * (zlib.crc32(graph.encode()) % 1000) / 1000
        shared = ((int(hparams["seed"]) % 97) / 97 - 0.5) * 0.1
        value = true_value + shared + (0.05 if budget.score_split == "test" else 0.0)
        return TrialResult(
            status="ok",
            task=task.name,
            metric="accuracy",
            direction="maximize",
            value=value,
            curve=[(1, value)],
        )

    return instant


def _spec() -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "final-round",
            "strategy": {"kind": "random", "max_nodes": 6},
            "seed_cells": [],
            "baselines": ["gru"],
            "tasks": [
                {
                    "name": "arith",
                    "settings": {"valid_size": 16, "test_size": 16},
                    "budget": {"max_steps": 5},
                },
                {"name": "memorize", "label": "copy", "settings": {"valid_size": 16, "test_size": 16}},
            ],
            "trials_per_task": 2,
            "hparams": {"hidden_size": 16, "num_layers": 1},
            "budget": {"max_architectures": 6},
            "final": {"top_k": 3, "seeds": SEEDS},
            "resources": {"cpus": 0.5},
            "device": "cpu",
            "seed": 3,
        }
    )


def test_the_final_round_retrains_the_top_and_the_baseline_on_paired_seeds(
    ray_instance: None, tmp_path: Path
) -> None:
    from search._driver import run_job

    url = f"sqlite:///{tmp_path / 'results.db'}"
    job_id = run_job(_spec(), resolve_settings(db_url=url, env={}), evaluate=make_instant())
    with ResultStore.open(url) as store:
        assert store.get_job(job_id).state == "finished"
        members = {m.architecture_id: m for m in store.job_architectures(job_id)}
        search_ranked = sorted(
            (m for m in members.values() if m.score is not None), key=lambda m: (-m.score, m.architecture_id)
        )
        gru = next(a for a in members if store.get_architecture(a).library_name == "gru")
        top3 = [m.architecture_id for m in search_ranked if m.architecture_id != gru][:3]
        finals = [e for e in store.evaluations(job_id) if e.task_label.endswith(".final")]
        assert {(e.architecture_id, e.task_label) for e in finals} == {
            (a, label) for a in [*top3, gru] for label in ("arith.final", "copy.final")
        }
        seeds_by_task: dict[str, set[tuple[int, ...]]] = {}
        for evaluation in finals:
            trials = sorted(store.trials(evaluation_id=evaluation.id), key=lambda t: t.ordinal or 0)
            assert [t.status for t in trials] == ["ok"] * SEEDS
            seeds_by_task.setdefault(evaluation.task_label, set()).add(
                tuple(t.hparams["seed"] for t in trials)
            )
            values = [t.value for t in trials]
            assert evaluation.mean_value == pytest.approx(sum(values) / SEEDS)
            assert evaluation.best_interval is not None and evaluation.best_interval.contains(
                evaluation.mean_value
            )
            search_best = store.get_trial(
                next(
                    e
                    for e in store.evaluations(job_id)
                    if e.architecture_id == evaluation.architecture_id
                    and e.task_label == evaluation.task_label.removesuffix(".final")
                ).best_trial_id
            ).hparams
            assert (
                trials[0].hparams["learning_rate"] == search_best["learning_rate"]
            )  # the search's best, again
            arch = store.get_architecture(evaluation.architecture_id)
            # Scored on test: quality, the seed's shared effect and the test offset, exactly.
            for trial in trials:
                shared = ((int(trial.hparams["seed"]) % 97) / 97 - 0.5) * 0.1
                assert trial.value == pytest.approx(quality(arch.cell()) + shared + 0.05)
            if evaluation.architecture_id == gru:
                assert evaluation.verdict is None and evaluation.relative_score == pytest.approx(1.0)
            else:
                # No noise but the shared seed effect: every difference is the quality gap, exactly.
                expected = (
                    "better"
                    if quality(arch.cell()) > quality(store.get_architecture(gru).cell())
                    else "worse"
                )
                assert (
                    evaluation.verdict == expected
                    and evaluation.p_value is not None
                    and evaluation.p_value < 1e-6
                )
        assert all(len(seeds) == 1 for seeds in seeds_by_task.values())  # every cell met the same seeds
        for arch_id in top3:
            relative = [e.relative_score for e in finals if e.architecture_id == arch_id]
            assert members[arch_id].final_score == pytest.approx(min(relative))
        assert all(m.final_score is None for a, m in members.items() if a not in [*top3, gru])


def test_final_results_pair_seeds_and_say_which_cells_beat_the_baseline() -> None:
    tasks = [TaskEntry(name="arith")]
    final = FinalRound(["cell", "equal", "base"], tasks, seeds=5)
    values = {
        "cell": [0.71, 0.74, 0.69, 0.77, 0.72],  # the baseline plus 0.05, give or take 0.005
        "equal": [0.66, 0.70, 0.64, 0.72, 0.665],
        "base": [0.665, 0.695, 0.645, 0.715, 0.67],
    }
    for arch, seeds in values.items():
        for value in seeds:
            final.started(arch, "arith.final")
            final.finished(arch, "arith.final", value)
    assert final.complete and final.next_launch() is None
    results, scores = final.results(["base"])
    by_arch = {r.arch_hash: r for r in results}
    assert by_arch["cell"].verdict is not None and by_arch["cell"].verdict.outcome == "better"
    assert by_arch["equal"].verdict is not None and by_arch["equal"].verdict.outcome == "indistinguishable"
    assert by_arch["base"].verdict is None
    assert by_arch["cell"].relative == pytest.approx(sum(values["cell"]) / sum(values["base"]))
    assert {s.arch_hash: s.score for s in scores}["base"] == pytest.approx(1.0)


def test_a_final_task_scores_on_the_test_split_of_its_search_task() -> None:
    search = TaskEntry(name="arith", label="sums", threshold=0.8, budget=Budget(max_steps=7))
    final = final_task(search, seeds=3)
    assert (final.id, final.role, final.trials, final.threshold) == ("sums.final", "report-only", 3, None)
    assert final.budget.score_split == "test" and final.budget.max_steps == 7
    assert final.key != search.key  # its own evaluations


def test_a_budget_that_scores_on_test_reports_the_test_value() -> None:
    from workers import evaluate_trial, make_task

    task = make_task("arith", max_digits=2, valid_size=24, test_size=24)
    hparams = {"hidden_size": 16, "num_layers": 1, "seed": 4}
    valid, test = (
        evaluate_trial(
            "gru", task, hparams, Budget(max_steps=20, eval_every=10, score_split=split), device="cpu"
        )
        for split in ("valid", "test")
    )
    assert valid.status == test.status == "ok"
    assert test.metrics["valid_value"] == pytest.approx(valid.value)  # the same training
    assert test.value == pytest.approx(test.metrics[f"test_{task.primary_metric}"])
    assert test.curve == valid.curve


@pytest.mark.parametrize(
    ("final", "extra", "expected"),
    [
        ({"top_k": 0}, {}, "final.top_k: "),
        ({"seeds": 1}, {}, "final.seeds: "),
        ({"seeds": 101}, {}, "final.seeds: "),
        ({"top_k": 2, "size": 3}, {}, "final.size: "),
        (
            {},
            {"label": "arith.final"},
            "final: the final round names its tasks '<task>.final'; rename 'arith.final'",
        ),
    ],
)
def test_a_bad_final_section_is_refused_naming_the_field(
    tmp_path: Path, final: dict[str, Any], extra: dict[str, Any], expected: str
) -> None:
    """Refused by `cellsearch launch` with one line naming the field, exit 2, no database written."""
    from typer.testing import CliRunner

    from cellsearch._cli import app

    job = _spec().model_dump(mode="json", exclude_none=True)
    job["final"] = final
    job["tasks"][0].update(extra)
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(job))
    db = tmp_path / "results.db"
    result = CliRunner().invoke(app, ["launch", str(path), "--db", f"sqlite:///{db}", "--no-mlflow"])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not db.exists()
