"""The results database's records: jobs, deduplication of architectures, evaluation reuse and
trial bookkeeping. Every test runs on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import pytest
from _store_data import job_spec, result

from cells import CellGraph, library
from search import ResultStore, StoreError, UnknownJobError

# -- jobs ------------------------------------------------------------------------------------


def test_job_lifecycle(store: ResultStore) -> None:
    spec = job_spec("life")
    job_id = store.create_job(spec, code_version="1.2.3")
    job = store.get_job(job_id)
    assert (job.name, job.state, job.code_version, job.started_at) == ("life", "created", "1.2.3", None)
    assert job.job_spec() == spec and store.load_job_spec(job_id) == spec
    store.set_job_state(job_id, "running")
    started = store.get_job(job_id).started_at
    assert started is not None and started.tzinfo is not None
    store.set_job_state(job_id, "interrupted")
    assert store.get_job(job_id).finished_at is not None
    store.set_job_state(job_id, "running")  # resumed: the first start is kept, the end cleared
    assert store.get_job(job_id).started_at == started and store.get_job(job_id).finished_at is None
    store.set_job_state(job_id, "failed", error="boom")
    assert (store.get_job(job_id).state, store.get_job(job_id).error) == ("failed", "boom")
    with pytest.raises(ValueError, match="state: expected one of"):
        store.set_job_state(job_id, "exploded")  # type: ignore[arg-type]
    other = store.create_job(job_spec("second"))
    assert store.latest_job_id() == other and [j.name for j in store.list_jobs()] == ["life", "second"]
    with pytest.raises(UnknownJobError, match="unknown job 99"):
        store.get_job(99)


def test_strategy_state_round_trips(store: ResultStore) -> None:
    job_id = store.create_job(job_spec())
    assert store.load_strategy_state(job_id) is None
    state = {"list": [3, 1, 2], "rng": {"state": [1, 2, 3]}, "step": 7}
    store.save_strategy_state(job_id, state)
    store.save_strategy_state(job_id, {**state, "step": 8})
    assert store.load_strategy_state(job_id) == {**state, "step": 8}
    with pytest.raises(UnknownJobError):
        store.save_strategy_state(42, state)


# -- architectures ---------------------------------------------------------------------------


def renamed(graph: CellGraph) -> CellGraph:
    """The same cell with every node renamed and the node list reversed where order allows."""
    data = graph.model_dump(mode="json")
    names = {n["name"]: f"node_{i}_{n['name']}" for i, n in enumerate(data["nodes"])}
    for node in data["nodes"]:
        node["name"] = names[node["name"]]
        node["inputs"] = [names.get(i, i) for i in node["inputs"]]
    data["outputs"] = [names.get(o, o) for o in data["outputs"]]
    return CellGraph.parse(data)


def test_architectures_are_deduplicated_across_jobs(store: ResultStore) -> None:
    first, second = store.create_job(job_spec("a")), store.create_job(job_spec("b"))
    lstm_id, created = store.add_architecture(library.get("lstm"), job_id=first, generation=0)
    assert created
    again, created_again = store.add_architecture(
        renamed(library.get("lstm")), job_id=second, library_name="lstm"
    )
    assert (again, created_again) == (lstm_id, False)
    record = store.get_architecture(lstm_id)
    assert record.first_job_id == first and record.library_name == "lstm"  # the name is filled in later
    assert record.num_states == 2 and record.op_counts["linear"] == 4 and record.cell().num_states == 2
    assert "c' = f ⊙ c + i ⊙ g" in record.equations
    assert store.find_architecture(renamed(library.get("lstm"))) == lstm_id
    assert store.find_architecture(library.get("gru")) is None
    gru_id, _ = store.add_architecture(library.get("gru"), job_id=second, parent_id=lstm_id, mutation="swap")
    assert store.get_architecture(gru_id).parent_id == lstm_id and gru_id != lstm_id
    assert [ja.architecture_id for ja in store.job_architectures(second)] == [lstm_id, gru_id]
    assert [ja.architecture_id for ja in store.job_architectures(first)] == [lstm_id]
    # Proposing a known architecture again in the same job adds no second membership row.
    store.add_architecture(library.get("gru"), job_id=second)
    assert len(store.job_architectures(second)) == 2


def test_job_architecture_flags_and_leaderboard(store: ResultStore) -> None:
    job_id = store.create_job(job_spec())
    ids = {
        name: store.add_architecture(library.get(name), job_id=job_id)[0]
        for name in ("gru", "lstm", "tanh", "mut1")
    }
    store.update_job_architecture(job_id, ids["gru"], score=1.0, filter_passed=True, evaluated=True)
    store.update_job_architecture(
        job_id, ids["mut1"], score=1.05, filter_passed=True, evaluated=True, generation=3
    )
    store.update_job_architecture(job_id, ids["lstm"], score=0.9, filter_passed=True)
    store.update_job_architecture(job_id, ids["tanh"], filter_passed=False)
    store.set_listed(job_id, [ids["mut1"], ids["gru"]])
    store.set_listed(job_id, [ids["mut1"], ids["lstm"]])  # replaces the list
    board = store.top_architectures(job_id, limit=2)
    assert [(e.rank, e.architecture_id, e.score) for e in board] == [
        (1, ids["mut1"], 1.05),
        (2, ids["gru"], 1.0),
    ]
    assert board[0].generation == 3 and board[0].listed and not board[1].listed
    assert {ja.architecture_id for ja in store.job_architectures(job_id, listed_only=True)} == {
        ids["mut1"],
        ids["lstm"],
    }
    summary = store.job_summary(job_id)
    assert (summary.best_arch_id, summary.best_score) == (ids["mut1"], 1.05)
    counts = summary.architectures
    assert (counts.proposed, counts.passed_filter, counts.filtered_out, counts.evaluated, counts.listed) == (
        4,
        3,
        1,
        2,
        2,
    )
    store.update_job_architecture(job_id, ids["mut1"], score=None)  # None is written on purpose
    assert store.job_architecture(job_id, ids["mut1"]).score is None  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="not part of job"):
        store.update_job_architecture(job_id, 9999, score=1.0)


# -- evaluations and trials ------------------------------------------------------------------


def test_trials_update_their_evaluation(store: ResultStore) -> None:
    spec = job_spec()
    job_id = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
    arith = store.get_or_create_evaluation(job_id, arch_id, spec.task("arith"))
    assert arith.status == "pending" and arith.best_value is None and arith.metric == "char_accuracy"
    assert store.get_or_create_evaluation(job_id, arch_id, spec.task("arith")).id == arith.id

    outcomes = [("ok", 0.4), ("ok", 0.7), ("ok", 0.6), ("pruned", 0.9), ("diverged", None), ("failed", None)]
    trial_ids = []
    for i, (status, value) in enumerate(outcomes):
        trial_id = store.start_trial(
            arith.id, hparams={"learning_rate": 0.01 * (i + 1)}, study_name="s", optuna_trial_number=i
        )
        assert store.get_evaluation(arith.id).status == "running"
        worker = {"node_id": "n1", "pid": 1234, "hostname": "h"}
        store.finish_trial(
            trial_id, result(status, value, worker=worker, curve=[(10, 0.1), (20, value or 0.0)])
        )
        trial_ids.append(trial_id)
    evaluation = store.get_evaluation(arith.id)
    assert (
        evaluation.best_value == 0.7 and evaluation.best_trial_id == trial_ids[1]
    )  # pruned 0.9 does not count
    counts = (
        evaluation.trials_completed,
        evaluation.trials_pruned,
        evaluation.trials_diverged,
        evaluation.trials_failed,
    )
    assert counts == (3, 1, 1, 1) and evaluation.trials_finished == 6
    trial = store.get_trial(trial_ids[1])
    assert (trial.status, trial.value, trial.worker_node, trial.worker_pid, trial.worker_host) == (
        "ok",
        0.7,
        "n1",
        1234,
        "h",
    )
    assert trial.hparams == {"learning_rate": 0.02} and trial.curve == [[10, 0.1], [20, 0.7]]
    assert (trial.study_name, trial.optuna_trial_number, trial.job_id, trial.architecture_id) == (
        "s",
        1,
        job_id,
        arch_id,
    )
    assert [t.status for t in store.trials(evaluation_id=arith.id, status="ok")] == ["ok"] * 3

    # A minimized metric keeps the lowest value; a non-finite value is stored as missing.
    text = store.get_or_create_evaluation(job_id, arch_id, spec.task("text"))
    for value in (150.0, 120.0, float("nan"), 130.0):
        store.finish_trial(store.start_trial(text.id, hparams={}), result("ok", value, task="text"))
    assert store.get_evaluation(text.id).best_value == 120.0
    assert sorted(t.value is None for t in store.trials(evaluation_id=text.id)) == [False, False, False, True]

    with pytest.raises(StoreError, match="already finished"):
        store.finish_trial(trial_ids[0], result())
    store.set_evaluation(arith.id, status="done", relative_score=0.93)
    assert (store.get_evaluation(arith.id).status, store.get_evaluation(arith.id).relative_score) == (
        "done",
        0.93,
    )
    with pytest.raises(ValueError, match="status: expected one of"):
        store.set_evaluation(arith.id, status="great")  # type: ignore[arg-type]


def test_a_population_is_started_and_finished_in_one_go(store: ResultStore) -> None:
    spec = job_spec()
    job_id = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
    arith = store.get_or_create_evaluation(job_id, arch_id, spec.task("arith"))
    lone = store.start_trial(arith.id, hparams={"learning_rate": 0.5})
    store.finish_trial(lone, result("ok", 0.65))

    hparams = [{"learning_rate": 0.01 * (i + 1)} for i in range(5)]
    ids = store.start_trials(arith.id, hparams, study_name="s", numbers=[1, 2, 3, 4, 5], attempt=2)
    assert len(set(ids)) == 5 and lone not in ids
    started = [store.get_trial(i) for i in ids]
    assert [(t.hparams, t.optuna_trial_number, t.attempt, t.status) for t in started] == [
        (hp, n, 2, "running") for hp, n in zip(hparams, [1, 2, 3, 4, 5], strict=True)
    ]

    outcomes = [("ok", 0.6), ("ok", 0.7), ("pruned", 0.9), ("diverged", None), ("ok", 0.4)]
    extra = {"batch_size": 64}
    records = store.finish_trials(
        [
            (trial_id, result(status, value, hparams=extra if k == 1 else {}))
            for k, (trial_id, (status, value)) in enumerate(zip(ids, outcomes, strict=True))
        ]
    )
    # Every member sees its evaluation as it stands after the whole population.
    assert {(r.id, r.best_value, r.best_trial_id) for r in records} == {(arith.id, 0.7, ids[1])}
    evaluation = store.get_evaluation(arith.id)
    counts = (evaluation.trials_completed, evaluation.trials_pruned, evaluation.trials_diverged)
    assert counts == (1 + 3, 1, 1) and evaluation.trials_finished == 6
    assert [store.get_trial(i).status for i in ids] == [status for status, _ in outcomes]
    assert store.get_trial(ids[1]).hparams == {**hparams[1], **extra}

    # All or nothing: one finished trial in the batch and none of the batch is recorded.
    more = store.start_trials(arith.id, [{}, {}])
    with pytest.raises(StoreError, match="already finished"):
        store.finish_trials([(more[0], result("ok", 0.99)), (ids[0], result("ok", 0.99))])
    with pytest.raises(StoreError, match="twice"):
        store.finish_trials([(more[0], result()), (more[0], result())])
    assert [store.get_trial(i).status for i in more] == ["running", "running"]
    assert store.get_evaluation(arith.id).best_value == 0.7
    with pytest.raises(ValueError, match="numbers: 1 given for 2 trials"):
        store.start_trials(arith.id, [{}, {}], numbers=[1])


def test_interrupted_trials(store: ResultStore) -> None:
    spec = job_spec()
    job_id = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
    evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.task("arith"))
    running = [store.start_trial(evaluation.id, hparams={"i": i}) for i in range(3)]
    store.finish_trial(running[0], result("ok", 0.5))
    assert store.mark_running_trials_interrupted(job_id) == 2
    assert store.mark_running_trials_interrupted(job_id) == 0
    assert store.job_summary(job_id).trials.interrupted == 2
    # A late result of an interrupted trial is still real work and is kept.
    store.finish_trial(running[1], result("ok", 0.8))
    failed = store.fail_trial(running[2], "RayActorError: worker died")
    assert (failed.best_value, failed.trials_completed, failed.trials_failed) == (0.8, 2, 1)
    assert store.get_trial(running[2]).error == "RayActorError: worker died"
    retry = store.start_trial(evaluation.id, hparams={"i": 2}, attempt=2)
    assert store.get_trial(retry).attempt == 2


def test_evaluations_are_reused_by_task_key(store: ResultStore) -> None:
    first_spec = job_spec("first")
    # Same settings written differently (defaults spelled out): the same task key.
    second_spec = job_spec("second", arith_settings={"max_digits": 3, "seed": 0})
    other_budget = job_spec("third", arith_steps=51)
    assert first_spec.task("arith").key == second_spec.task("arith").key != other_budget.task("arith").key

    first = store.create_job(first_spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=first)
    evaluation = store.get_or_create_evaluation(first, arch_id, first_spec.task("arith"))
    key = evaluation.task_key
    for value in (0.3, 0.6):
        store.finish_trial(store.start_trial(evaluation.id, hparams={}), result("ok", value))
    assert store.find_reusable_evaluation(arch_id, key) is None  # not done yet
    store.set_evaluation(evaluation.id, status="done", relative_score=1.0)

    second = store.create_job(second_spec)
    assert store.add_architecture(library.get("gru"), job_id=second) == (arch_id, False)
    reusable = store.find_reusable_evaluation(arch_id, key, exclude_job_id=second)
    assert reusable is not None and reusable.id == evaluation.id and reusable.best_value == 0.6
    copied = store.copy_evaluation_into_job(reusable.id, second, task_label="arith")
    assert copied.job_id == second and copied.id != evaluation.id and copied.reused_from_id == evaluation.id
    assert (copied.best_value, copied.trials_completed, copied.status, copied.relative_score) == (
        0.6,
        2,
        "done",
        1.0,
    )
    assert store.copy_evaluation_into_job(reusable.id, second).id == copied.id  # idempotent
    assert store.trials(job_id=second) == []  # nothing was retrained
    assert store.find_reusable_evaluation(arch_id, key, exclude_job_id=first).id == copied.id  # type: ignore[union-attr]
    # A copy of a copy points at the original.
    third = store.create_job(job_spec("fourth"))
    assert store.copy_evaluation_into_job(copied.id, third).reused_from_id == evaluation.id
    assert store.find_reusable_evaluation(arch_id, other_budget.task("arith").key) is None


def test_job_summary_counts(store: ResultStore) -> None:
    spec = job_spec()
    job_id = store.create_job(spec)
    arch_id, _ = store.add_architecture(library.get("gru"), job_id=job_id)
    evaluation = store.get_or_create_evaluation(job_id, arch_id, spec.task("arith"))
    for status in ("ok", "ok", "pruned", "failed", "diverged"):
        store.finish_trial(
            store.start_trial(evaluation.id, hparams={}), result(status, 0.5 if status == "ok" else None)
        )
    store.start_trial(evaluation.id, hparams={})
    store.update_job_architecture(job_id, arch_id, score=0.97)
    data = store.job_summary(job_id).to_dict()
    assert data["job_id"] == job_id and data["name"] == "job" and data["state"] == "created"
    assert data["architectures"] == 1
    assert data["trials"] == {
        "completed": 2,
        "running": 1,
        "pruned": 1,
        "failed": 1,
        "diverged": 1,
        "interrupted": 0,
        "total": 6,
    }
    assert data["best"] == {"arch_id": arch_id, "score": 0.97, "score_low": None, "score_high": None}
    with pytest.raises(UnknownJobError):
        store.job_summary(job_id + 1)
