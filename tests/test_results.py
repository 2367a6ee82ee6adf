"""``cellsearch results top/show/export``: rankings, lineage, exports, bad filter values.

Most tests read a hand-made database with known answers (built through the real store
API, on a SQLite file and on PostgreSQL); the last ones read the database of a real job
(real Ray, real training) run once per session.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from _dashboard_data import RealJob, Synthetic, build_synthetic, real_job
from _final_data import BY_FINAL, FinalJob, build_final_job
from _postgres import postgres_database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsearch._cli import app
from dashboards import (
    UnknownArchitectureError,
    UnknownTaskError,
    describe_architecture,
    export_job,
    top_architectures,
)
from search import ResultStore, UnknownJobError

runner = CliRunner()

BY_SCORE = ["child", "grandchild", "tie", "gru", "lstm", "stopped"]
BY_ARITH = ["child", "grandchild", "tie", "gru", "lstm", "stopped"]
BY_XML = ["child", "tie", "lstm", "grandchild", "gru"]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def synthetic(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Synthetic]:
    if request.param == "sqlite":
        yield build_synthetic(f"sqlite:///{tmp_path_factory.mktemp('results') / 'results.db'}")
    else:
        with postgres_database() as url:
            yield build_synthetic(url)


@pytest.fixture
def store(synthetic: Synthetic) -> Iterator[ResultStore]:
    with ResultStore.open(synthetic.url, upgrade=False, create=False) as s:
        yield s


def names(data: Synthetic, arch_ids: list[int]) -> list[str]:
    by_id = {v: k for k, v in data.ids.items()}
    return [by_id[i] for i in arch_ids]


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})  # wide enough for every table column
    return result.exit_code, result.stdout, result.stderr


# -- top -------------------------------------------------------------------------------------


def test_top_ranks_by_score_with_ties_broken_by_id(synthetic: Synthetic, store: ResultStore) -> None:
    rows = top_architectures(store, synthetic.search_job, limit=100)
    assert names(synthetic, [r.arch_id for r in rows]) == BY_SCORE
    assert [r.rank for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.score for r in rows] == [synthetic.scores[n] for n in BY_SCORE]
    assert [r.arch_id for r in top_architectures(store, synthetic.search_job, limit=2)] == [
        synthetic.ids["child"],
        synthetic.ids["grandchild"],
    ]


def test_top_json_has_the_documented_shape(synthetic: Synthetic) -> None:
    code, out, err = cli(
        "results", "top", "--job", str(synthetic.search_job), "-n", "3", "-f", "json", "--db", synthetic.url
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["arch_id"] for r in rows] == [synthetic.ids[n] for n in BY_SCORE[:3]]
    child = rows[0]
    assert child["job_id"] == synthetic.search_job
    assert child["parent_id"] == synthetic.ids["lstm"]
    assert child["library_name"] is None
    assert child["score"] == pytest.approx(1.1)
    assert "h'" in child["equations"]  # the rendered equations of the stored graph
    assert (child["score_low"], child["score_high"]) == (1.02, 1.16)
    assert child["per_task"]["arith"] == {
        "metric": "char_accuracy",  # arith's primary metric
        "value": pytest.approx(0.88),
        "value_low": 0.85,
        "value_high": 0.88,
        "relative": pytest.approx(1.1),
        "relative_low": 1.02,
        "relative_high": 1.16,
        "trials": 2,  # one ok, one pruned
        "status": "done",
    }
    others = rows[1]  # an architecture without intervals: the bounds are there, and null
    assert (others["score_low"], others["score_high"]) == (None, None)
    assert others["per_task"]["arith"]["relative_low"] is None
    assert set(child["per_task"]) == {"memorize", "arith", "xml-small"}
    assert child["parameter_count"] > 0


def test_top_by_task_accepts_label_or_name(synthetic: Synthetic, store: ResultStore) -> None:
    by_arith = top_architectures(store, synthetic.search_job, task="arith", limit=100)
    assert names(synthetic, [r.arch_id for r in by_arith]) == BY_ARITH
    by_label = top_architectures(store, synthetic.search_job, task="xml-small", limit=100)
    by_name = top_architectures(store, synthetic.search_job, task="xml", limit=100)
    assert names(synthetic, [r.arch_id for r in by_label]) == BY_XML
    assert [r.arch_id for r in by_name] == [r.arch_id for r in by_label]


def test_top_defaults_to_the_latest_job_and_can_rank_all_jobs(
    synthetic: Synthetic, store: ResultStore
) -> None:
    latest = top_architectures(store)
    assert {r.job_id for r in latest} == {synthetic.fixed_job}
    assert [r.library_name for r in latest] == ["lstm", "gru"]
    everything = top_architectures(store, all_jobs=True, limit=100)
    assert len(everything) == len(BY_SCORE) + 2
    assert [r.score for r in everything] == sorted((r.score for r in everything), reverse=True)
    # gru and lstm are the same architectures in both jobs (deduplicated by canonical hash)
    gru_rows = [r for r in everything if r.arch_id == synthetic.ids["gru"]]
    assert sorted(r.job_id for r in gru_rows) == [synthetic.search_job, synthetic.fixed_job]


def test_top_csv_parses_and_matches_json(synthetic: Synthetic) -> None:
    code, out, err = cli(
        "results", "top", "-j", str(synthetic.search_job), "-f", "csv", "--db", synthetic.url
    )
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [int(r["arch_id"]) for r in rows] == [synthetic.ids[n] for n in BY_SCORE]
    assert float(rows[0]["xml-small_relative"]) == pytest.approx(1.2)
    assert rows[-1]["xml-small_value"] == ""  # the stopped cell never reached xml


def test_top_table_lists_the_tasks(synthetic: Synthetic) -> None:
    code, out, err = cli("results", "top", "-j", str(synthetic.search_job), "--db", synthetic.url)
    assert code == 0, err
    assert "xml-small" in out and "gru" in out
    lines = out.splitlines()
    # The score and each relative score with its interval; the point alone where there is none.
    [child] = [line for line in lines if "1.100 [1.02, 1.16]" in line]
    assert "1.200 [1.10, 1.30] (0.8400)" in child
    assert "relative [interval] (value)" in out
    [gru] = [line for line in lines if " gru " in line]
    assert "1.000 (0.8000)" in gru and "[" not in gru


@pytest.mark.parametrize("bad", ["x' OR 1=1 --", "arith'; DROP TABLE cs_trials; --", '" OR ""="', "%", "_"])
def test_filter_values_with_sql_metacharacters_are_data(synthetic: Synthetic, bad: str) -> None:
    code, out, err = cli(
        "results", "top", "-j", str(synthetic.search_job), "--task", bad, "--db", synthetic.url
    )
    assert code == 1
    assert out == ""
    assert f"has no task {bad!r}" in err and "memorize, arith, xml-small" in err
    engine = sa.create_engine(synthetic.url)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT COUNT(*) FROM cs_trials")).scalar() == 24
        )  # 22 + 2, all still there
    engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(task=st.text(min_size=1, max_size=30))
def test_any_task_text_is_looked_up_not_executed(synthetic: Synthetic, store: ResultStore, task: str) -> None:
    known = {"memorize", "arith", "xml-small", "xml"}
    if task in known:
        assert top_architectures(store, synthetic.search_job, task=task)
        return
    with pytest.raises(UnknownTaskError, match="has no task"):
        top_architectures(store, synthetic.search_job, task=task)


def test_unknown_job_and_bad_limit(synthetic: Synthetic, store: ResultStore) -> None:
    with pytest.raises(UnknownJobError):
        top_architectures(store, 999)
    with pytest.raises(ValueError, match="limit"):
        top_architectures(store, synthetic.search_job, limit=0)
    code, _, err = cli("results", "top", "--job", "999", "--db", synthetic.url)
    assert code == 1 and "unknown job 999" in err


def test_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "none.db"
    code, _, err = cli("results", "top", "--db", f"sqlite:///{db}")
    assert code == 1 and "no results database" in err
    assert not db.exists()


# -- show ------------------------------------------------------------------------------------


def test_show_gives_lineage_results_and_best_hyperparameters(
    synthetic: Synthetic, store: ResultStore
) -> None:
    details = describe_architecture(store, synthetic.ids["grandchild"])
    assert [s.arch_id for s in details.lineage] == [
        synthetic.ids["grandchild"],
        synthetic.ids["child"],
        synthetic.ids["lstm"],
    ]
    assert [s.mutation for s in details.lineage] == [
        "rewired node 'r' input 0 to x",
        "replaced node 'f' = sigmoid(...) by one_minus(i)",
        None,
    ]
    assert details.lineage[-1].library_name == "lstm"
    [job] = details.jobs
    assert (job.job_id, job.score, job.rank) == (synthetic.search_job, pytest.approx(1.05), 2)
    assert [t.result.task for t in job.tasks] == ["memorize", "arith", "xml-small"]

    child = describe_architecture(store, synthetic.ids["child"])
    arith = next(t for t in child.jobs[0].tasks if t.result.task == "arith")
    assert arith.best_hparams == {
        "learning_rate": 0.0123,
        "hidden_size": 16,
    }  # the ok trial, not the pruned one
    assert arith.best_trial_params == 1012

    gru = describe_architecture(store, synthetic.ids["gru"])
    assert [j.job_id for j in gru.jobs] == [synthetic.search_job, synthetic.fixed_job]
    assert gru.lineage[0].mutation is None and len(gru.lineage) == 1
    only_fixed = describe_architecture(store, synthetic.ids["gru"], job_id=synthetic.fixed_job)
    assert [j.job_id for j in only_fixed.jobs] == [synthetic.fixed_job]


def test_show_cli_table_and_json(synthetic: Synthetic) -> None:
    arch = synthetic.ids["grandchild"]
    code, out, err = cli("results", "show", str(arch), "--db", synthetic.url)
    assert code == 0, err
    assert "rewired node 'r' input 0 to x" in out
    assert "generation 0: library cell lstm" in out and "(lstm)" in out
    assert "learning_rate=0.02" in out
    code, out, err = cli("results", "show", str(arch), "-f", "json", "--db", synthetic.url)
    assert code == 0, err
    data = json.loads(out)
    assert [s["arch_id"] for s in data["lineage"]] == [arch, synthetic.ids["child"], synthetic.ids["lstm"]]
    assert data["jobs"][0]["per_task"]["arith"]["best_hparams"]["learning_rate"] == 0.02
    assert data["mlflow_runs"] == []
    assert (data["jobs"][0]["score_low"], data["jobs"][0]["score_high"]) == (None, None)
    code, out, err = cli("results", "show", str(synthetic.ids["child"]), "--db", synthetic.url)
    assert code == 0, err
    assert "score 1.100 [1.02, 1.16], rank 1" in out
    [arith] = [line for line in out.splitlines() if line.strip().startswith("arith")]
    assert "0.8800 [0.850, 0.880]" in arith and "1.100 [1.02, 1.16]" in arith
    code, out, err = cli("results", "show", str(synthetic.ids["child"]), "-f", "json", "--db", synthetic.url)
    job = json.loads(out)["jobs"][0]
    assert (job["score_low"], job["score_high"]) == (1.02, 1.16)
    assert (job["per_task"]["xml-small"]["value_low"], job["per_task"]["xml-small"]["relative_high"]) == (
        0.8,
        1.3,
    )


def test_show_filtered_architecture_and_unknown_id(synthetic: Synthetic, store: ResultStore) -> None:
    details = describe_architecture(store, synthetic.ids["filtered"])
    [job] = details.jobs
    assert job.score is None and job.rank is None and job.filter_passed is False
    assert [t.result.status for t in job.tasks] == ["filtered-out"]
    assert job.tasks[0].result.trials == 2  # the ok trial and the failed one
    with pytest.raises(UnknownArchitectureError):
        describe_architecture(store, 10_000)
    code, _, err = cli("results", "show", "10000", "--db", synthetic.url)
    assert code == 1 and "unknown architecture 10000" in err


# -- export ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_export_round_trips(synthetic: Synthetic, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"job{suffix}"
    code, stdout, err = cli(
        "results", "export", "-j", str(synthetic.search_job), "-o", str(out), "--db", synthetic.url
    )
    assert code == 0, err
    assert "wrote 7 architectures" in stdout
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        arch_ids = [r["arch_id"] for r in rows]
        child = rows[0]
        assert child["per_task"]["xml-small"]["relative"] == pytest.approx(1.2)
    else:
        rows = list(csv.DictReader(out.open())) if suffix == ".csv" else pq.read_table(out).to_pylist()
        arch_ids = [int(r["arch_id"]) for r in rows]
        child = rows[0]
        assert float(child["xml-small_relative"]) == pytest.approx(1.2)
        assert (float(child["score_low"]), float(child["xml-small_relative_high"])) == (1.02, 1.3)
        assert rows[1]["score_low"] in ("", None)  # no interval: an empty cell
        assert int(child["arith_trials"]) == 2
    # scored ones best first, then the unscored (filtered) one
    assert arch_ids == [synthetic.ids[n] for n in [*BY_SCORE, "filtered"]]
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left behind


def test_export_parquet_types(synthetic: Synthetic, tmp_path: Path, store: ResultStore) -> None:
    out = tmp_path / "x.parquet"
    export_job(store, synthetic.search_job, out)
    schema = pq.read_schema(out)
    assert str(schema.field("score").type) == "double"
    assert str(schema.field("arch_id").type) == "int64"
    assert str(schema.field("library_name").type) == "string"
    table = pq.read_table(out).to_pylist()
    assert table[-1]["rank"] is None and table[-1]["score"] is None


def test_export_replaces_whole_file_and_refuses_bad_targets(synthetic: Synthetic, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    out.write_text("old content that is longer than nothing\n" * 1000)
    code, _, err = cli(
        "results", "export", "-j", str(synthetic.fixed_job), "-o", str(out), "--db", synthetic.url
    )
    assert code == 0, err
    assert out.read_text().startswith("job_id,arch_id,rank,score")
    assert [r["library_name"] for r in csv.DictReader(out.open())] == ["lstm", "gru"]

    code, _, err = cli("results", "export", "-o", str(tmp_path / "x.xlsx"), "--db", synthetic.url)
    assert code == 2 and "unknown extension '.xlsx'" in err and ".csv, .parquet, .jsonl" in err
    code, _, err = cli("results", "export", "-o", str(tmp_path / "missing" / "x.csv"), "--db", synthetic.url)
    assert code == 1 and "does not exist" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


# -- a real job ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> RealJob:
    return real_job(tmp_path_factory, pytestconfig)


def test_real_job_top_agrees_with_the_store(real: RealJob) -> None:
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        leaders = store.top_architectures(real.job_id, 100)
        top = top_architectures(store, real.job_id, limit=100)
        assert [t.arch_id for t in top] == [e.architecture_id for e in leaders]
        assert [t.score for t in top] == [e.score for e in leaders]
        for row in top:
            [evaluation] = store.evaluations(real.job_id, arch_id=row.arch_id)
            result = row.per_task["memorize"]
            assert (result.value, result.relative, result.trials) == (
                evaluation.best_value,
                evaluation.relative_score,
                1,
            )
            assert row.equations == store.get_architecture(row.arch_id).equations != ""


def test_real_job_show_walks_back_to_a_seed_cell(real: RealJob) -> None:
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        mutants = [r for r in top_architectures(store, real.job_id, limit=100) if r.parent_id is not None]
        assert mutants, "the search proposed no mutant"
        details = describe_architecture(store, mutants[0].arch_id)
        expected, arch_id = [], mutants[0].arch_id
        while arch_id is not None:
            record = store.get_architecture(arch_id)
            expected.append((record.id, record.mutation))
            arch_id = record.parent_id
        assert [(s.arch_id, s.mutation) for s in details.lineage] == expected
        assert details.lineage[-1].mutation is None and details.lineage[-1].library_name in ("gru", "tanh")
        [task] = details.jobs[0].tasks
        assert task.result.best_trial_id is not None
        assert task.best_hparams == store.get_trial(task.result.best_trial_id).hparams
        assert task.best_trial_params and task.best_trial_params > 0


def test_real_job_export(real: RealJob, tmp_path: Path) -> None:
    out = tmp_path / "real.jsonl"
    code, _, err = cli("results", "export", "-j", str(real.job_id), "-o", str(out), "--db", real.db_url)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with ResultStore.open(real.db_url, upgrade=False, create=False) as store:
        assert sorted(r["arch_id"] for r in rows) == sorted(
            m.architecture_id for m in store.job_architectures(real.job_id)
        )


# -- a job with a final round ----------------------------------------------------------------


@pytest.fixture(scope="module")
def final_job(tmp_path_factory: pytest.TempPathFactory) -> FinalJob:
    return build_final_job(f"sqlite:///{tmp_path_factory.mktemp('final') / 'final.db'}")


def test_top_ranks_a_final_round_first_by_its_final_score(final_job: FinalJob) -> None:
    with ResultStore.open(final_job.url, upgrade=False, create=False) as store:
        rows = top_architectures(store, final_job.job, limit=10)
        search_order = [r.arch_id for r in top_architectures(store, final_job.job, final_first=False)]
    by_id = {v: k for k, v in final_job.ids.items()}
    assert [by_id[r.arch_id] for r in rows] == BY_FINAL  # lstm's best search score does not count
    assert [by_id[i] for i in search_order] == ["lstm", "mut1", "gru", "tanh"]
    assert [r.final_score for r in rows] == [1.02, 1.0, 0.9, None]


def test_top_table_shows_the_final_round_apart_with_marks_and_a_legend(final_job: FinalJob) -> None:
    code, out, err = cli("results", "top", "--db", final_job.url)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "rank" in line)
    assert header.count("verdict relative") == 2  # arith.final and xml.final, after the search columns
    lines = {line.split("│")[3].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert "1.020 [0.98, 1.06]" in lines["mut1"] and "= 1.040" in lines["mut1"] and "+ 1.020" in lines["mut1"]
    assert "+ 1.100" in lines["lstm"] and "- 0.900" in lines["lstm"]
    assert lines["gru"].count("b 1.000") == 2
    assert [n for n in lines] == BY_FINAL
    assert "best baseline (gru)" in out and "95%, paired over 3 seeds" in out


def test_top_json_carries_the_final_round(final_job: FinalJob) -> None:
    code, out, err = cli("results", "top", "-f", "json", "--db", final_job.url)
    assert code == 0, err
    rows = {r["library_name"]: r for r in json.loads(out)}
    lstm = rows["lstm"]
    assert (lstm["final_score"], lstm["final_low"], lstm["final_high"]) == (0.9, 0.85, 0.95)
    assert lstm["per_task"]["arith.final"] | {"value": None} == {
        "metric": "char_accuracy",  # arith's primary metric
        "value": None,
        "value_low": 0.525,
        "value_high": 0.575,
        "relative": 1.1,
        "relative_low": 1.0,
        "relative_high": 1.2,
        "trials": 3,
        "status": "done",
        "mean": 0.55,
        "mean_low": 0.525,
        "mean_high": 0.575,
        "verdict": "better",
        "p_value": 0.003,
    }
    assert lstm["per_task"]["arith.final"]["value"] == pytest.approx(0.56)  # the best seed
    assert rows["gru"]["per_task"]["xml.final"]["verdict"] is None
    assert rows["tanh"]["final_score"] is None and "arith.final" not in rows["tanh"]["per_task"]
    assert "mean" not in lstm["per_task"]["arith"]  # search tasks keep their shape


def test_show_has_a_final_round_block_in_words(final_job: FinalJob) -> None:
    code, out, err = cli("results", "show", str(final_job.ids["lstm"]), "--db", final_job.url)
    assert code == 0, err
    block = out[out.index("final round") :]
    assert "mean over 3 seeds" in block and "final score 0.900 [0.85, 0.95]" in block
    assert "better than gru on arith (p = 0.003)" in block
    assert "worse than gru on xml (p < 0.001)" in block
    assert "0.5500 [0.525, 0.575]" in block and "1.100 [1.00, 1.20]" in block
    assert ", rank 3" in out  # ranked as results top ranks it
    main_table = out[: out.index("final round")]
    assert "arith.final" not in main_table
    code, out, err = cli("results", "show", str(final_job.ids["mut1"]), "-f", "json", "--db", final_job.url)
    [job] = json.loads(out)["jobs"]
    assert (job["final_score"], job["rank"]) == (1.02, 1)
    assert job["per_task"]["xml.final"]["verdict"] == "better"
    assert job["per_task"]["xml.final"]["p_value"] == 0.04


def test_status_ranks_by_the_final_score_and_shows_it(final_job: FinalJob) -> None:
    code, out, err = cli("status", "--db", final_job.url)
    assert code == 0, err
    board = out[out.index("top architectures") :]
    header = next(line for line in board.splitlines() if "rank" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")][:5] == [
        "rank",
        "arch",
        "name",
        "score",
        "final",
    ]
    names = [line.split("│")[3].strip() for line in board.splitlines() if line.count("│") > 5]
    assert names == BY_FINAL
    assert "1.0200 [0.980, 1.060]" in board and "1.2000" in board  # lstm keeps its search score
