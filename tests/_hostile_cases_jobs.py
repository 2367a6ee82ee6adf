"""Hostile job files: non-finite numbers, unbounded sizes, resources, stores and names (classes
1, 2, 3, 6, 7 and 10 of issue 12), and the helpers the other case tables use to write jobs."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from _hostile_runner import REAL_DB, Case

# A small valid job: a fixed cell and its baseline on one cheap task (nothing runs before Ray).
BASE: dict[str, Any] = {
    "name": "hostile",
    "strategy": {"kind": "fixed", "cells": ["tanh"]},
    "seed_cells": [],
    "baselines": ["gru"],
    "tasks": [
        {
            "name": "memorize",
            "settings": {"min_length": 2, "max_length": 3, "symbols": 4, "valid_size": 16, "test_size": 16},
            "budget": {"max_steps": 6, "eval_every": 3, "eval_batch_size": 16},
        }
    ],
    "hparams": {"hidden_size": 8, "num_layers": 1, "batch_size": 8},
    "trials_per_task": 1,
    "resources": {"cpus": 1},
    "device": "cpu",
    "seed": 0,
}
# The same with a strategy that has a budget and numbers of its own.
JOZ: dict[str, Any] = {
    **copy.deepcopy(BASE),
    "strategy": {"kind": "jozefowicz", "top_k": 2, "p_refine": 0.2, "refine_trials": 1},
    "seed_cells": ["tanh"],
    "budget": {"max_architectures": 2},
}
ARITH = {"name": "arith", "settings": {"max_digits": 2, "valid_size": 16, "test_size": 16}}
XML = {"name": "xml", "settings": {"max_depth": 2, "max_children": 2, "valid_size": 16, "test_size": 16}}

DELETE = object()
LAUNCH = ("launch", "{tmp}/job.yaml", "--no-mlflow", "--db", "sqlite:///{tmp}/r.db")
EVAL = (
    "cells",
    "eval",
    "tanh",
    "-t",
    "memorize",
    "--trials",
    "1",
    "--budget-steps",
    "2",
    "--eval-every",
    "1",
    "--device",
    "cpu",
)


class Raw(str):
    """A value written into the YAML text as it is (``1e9``, ``.inf`` in a string position)."""


def _set(data: Any, path: str, value: Any) -> None:
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        data = data[key]
    if value is DELETE:
        del data[keys[-1]]
    else:
        data[keys[-1]] = value


def job_text(*changes: tuple[str, Any], base: dict[str, Any] = BASE) -> str:
    """The YAML of ``base`` with each ``(dotted.path, value)`` change made."""
    data = copy.deepcopy(base)
    raws: dict[str, str] = {}
    for path, value in changes:
        if isinstance(value, Raw):
            raws[f"RAWVALUE{len(raws)}"] = str(value)
            value = f"RAWVALUE{len(raws) - 1}"
        _set(data, path, value)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    for placeholder, raw in raws.items():
        text = text.replace(f"'{placeholder}'", raw).replace(placeholder, raw)
    return text


def bad_job(
    case_id: str, cls: str, path: str, value: Any, *words: str, base: dict[str, Any] = BASE, **kw: Any
) -> Case:
    """``launch`` of a job with one bad field; the message must name ``words`` (default: the path)."""
    text = job_text((path, value), base=base)
    return Case(case_id, cls, LAUNCH, words=words or (path,), files={"job.yaml": text}, **kw)


def with_tasks(*tasks: dict[str, Any], base: dict[str, Any] = BASE) -> dict[str, Any]:
    data = copy.deepcopy(base)
    data["tasks"] = [copy.deepcopy(t) for t in tasks]
    return data


_MEM = BASE["tasks"][0]
TWO_TASKS = with_tasks(_MEM, ARITH)
XML_JOB = with_tasks(XML)
JOZ_FILTER = with_tasks({**_MEM, "role": "filter", "threshold": 0.3}, ARITH, base=JOZ)
INF, NAN = float("inf"), float("nan")

CLASS_1 = [  # need a local Ray to know what the cluster has
    bad_job("c1-cpus-1000", "1", "resources.cpus", 1000, "resources.cpus", ray=True, code=(1, 2)),
    bad_job("c1-gpus-1-on-cpu", "1", "resources.gpus", 1, "resources.gpus", ray=True, code=(1, 2)),
    bad_job(
        "c1-custom-resource", "1", "resources.custom", {"tpu_slot": 1}, "tpu_slot", ray=True, code=(1, 2)
    ),
]

CLASS_2 = [
    bad_job("c2-budget-max-seconds-inf", "2", "budget.max_seconds", INF, base=JOZ),
    bad_job("c2-budget-max-seconds-nan", "2", "budget.max_seconds", NAN, base=JOZ),
    bad_job("c2-fixed-budget-max-seconds-inf", "2", "budget", {"max_seconds": INF}, "budget.max_seconds"),
    bad_job("c2-task-budget-seconds-inf", "2", "tasks.0.budget.max_seconds", INF),
    bad_job("c2-task-budget-seconds-nan", "2", "tasks.0.budget.max_seconds", NAN),
    bad_job("c2-forget-bias-low-nan", "2", "hparams.forget_bias", {"low": NAN, "high": 2}, "forget_bias"),
    bad_job("c2-forget-bias-high-inf", "2", "hparams.forget_bias", {"low": 0, "high": INF}, "forget_bias"),
    bad_job("c2-forget-bias-nan", "2", "hparams.forget_bias", NAN, "forget_bias"),
    bad_job("c2-learning-rate-inf", "2", "hparams.learning_rate", INF, "learning_rate"),
    bad_job(
        "c2-learning-rate-range-nan", "2", "hparams.learning_rate", {"low": NAN, "high": 0.1}, "learning_rate"
    ),
    bad_job("c2-dropout-nan", "2", "hparams.dropout", NAN, "dropout"),
    bad_job("c2-init-scale-inf", "2", "hparams.init_scale", INF, "init_scale"),
    bad_job("c2-max-grad-norm-nan", "2", "hparams.max_grad_norm", NAN, "max_grad_norm"),
    bad_job("c2-task-hparams-lr-nan", "2", "tasks.0.hparams", {"learning_rate": NAN}, "learning_rate"),
    bad_job("c2-threshold-nan", "2", "tasks.0.threshold", NAN, "tasks.0.threshold", base=JOZ_FILTER),
    bad_job("c2-threshold-inf", "2", "tasks.0.threshold", INF, "tasks.0.threshold", base=JOZ_FILTER),
    bad_job("c2-threshold-minus-inf", "2", "tasks.0.threshold", -INF, "tasks.0.threshold", base=JOZ_FILTER),
    bad_job("c2-p-refine-nan", "2", "strategy.p_refine", NAN, base=JOZ),
    bad_job("c2-mutation-p-nan", "2", "strategy.mutation_p", NAN, base=JOZ),
    bad_job("c2-cpus-inf", "2", "resources.cpus", INF),
    bad_job("c2-cpus-nan", "2", "resources.cpus", NAN),
    bad_job("c2-gpus-nan", "2", "resources.gpus", NAN),
    bad_job("c2-custom-inf", "2", "resources.custom", {"slot": INF}, "resources.custom"),
    bad_job("c2-xml-text-probability-nan", "2", "tasks.0.settings.text_probability", NAN, base=XML_JOB),
    bad_job("c2-prefilter-fraction-nan", "2", "prefilter", {"fraction": NAN}, "prefilter.fraction"),
    bad_job("c2-yaml-inf-as-int", "2", "trials_per_task", Raw(".inf"), "trials_per_task"),
]

CLASS_3 = [
    bad_job("c3-memorize-max-length-1e9", "3", "tasks.0.settings.max_length", 10**9),
    bad_job("c3-memorize-min-length-1e9", "3", "tasks.0.settings.min_length", 10**9, "min_length"),
    bad_job("c3-memorize-valid-size-1e9", "3", "tasks.0.settings.valid_size", 10**9),
    bad_job("c3-memorize-test-size-1e12", "3", "tasks.0.settings.test_size", 10**12),
    bad_job("c3-arith-valid-size-1e9-float", "3", "tasks.1.settings.valid_size", 1e9, base=TWO_TASKS),
    bad_job("c3-arith-valid-size-yaml-1e9", "3", "tasks.1.settings.valid_size", Raw("1e9"), base=TWO_TASKS),
    bad_job("c3-arith-distractors-1e9", "3", "tasks.1.settings.distractors", 10**9, base=TWO_TASKS),
    bad_job("c3-xml-max-depth-100000", "3", "tasks.0.settings.max_depth", 100_000, base=XML_JOB),
    bad_job("c3-xml-max-children-1e6", "3", "tasks.0.settings.max_children", 10**6, base=XML_JOB),
    bad_job("c3-xml-max-tag-length-1e6", "3", "tasks.0.settings.max_tag_length", 10**6, base=XML_JOB),
    bad_job("c3-hidden-size-1e9", "3", "hparams.hidden_size", 10**9, "hidden_size"),
    bad_job("c3-hidden-size-range-1e9", "3", "hparams.hidden_size", {"low": 8, "high": 10**9}, "hidden_size"),
    bad_job("c3-batch-size-1e9", "3", "hparams.batch_size", 10**9, "batch_size"),
    bad_job("c3-param-budget-1e15", "3", "hparams.param_budget", 10**15, "param_budget"),
    bad_job("c3-trials-per-task-1e12", "3", "trials_per_task", 10**12),
    bad_job("c3-task-trials-1e12", "3", "tasks.0.trials", 10**12),
    bad_job("c3-max-architectures-1e30", "3", "budget.max_architectures", 10**30, base=JOZ),
    bad_job("c3-max-trials-1e30", "3", "budget.max_trials", 10**30, base=JOZ),
    bad_job("c3-max-seconds-1e30", "3", "budget.max_seconds", 1e30, base=JOZ),
    bad_job("c3-task-max-steps-1e30", "3", "tasks.0.budget.max_steps", 10**30),
    bad_job("c3-task-eval-every-1e30", "3", "tasks.0.budget.eval_every", 10**30),
    bad_job("c3-eval-batch-size-1e9", "3", "tasks.0.budget.eval_batch_size", 10**9),
    bad_job("c3-max-in-flight-1e30", "3", "resources.max_in_flight", 10**30),
    bad_job("c3-population-1e9", "3", "population", 10**9),
    bad_job("c3-prefilter-batch-1e9", "3", "prefilter", {"batch": 10**9}, "prefilter.batch"),
    bad_job("c3-prefilter-hidden-1e9", "3", "prefilter", {"hidden_size": 10**9}, "prefilter.hidden_size"),
    bad_job("c3-top-k-1e30", "3", "strategy.top_k", 10**30, base=JOZ),
    bad_job("c3-refine-trials-1e12", "3", "strategy.refine_trials", 10**12, base=JOZ),
    bad_job("c3-seed-2-64", "3", "seed", 2**64),
    bad_job("c3-cpus-1e30", "3", "resources.cpus", 1e30),
    bad_job("c3-gpus-1e30", "3", "resources.gpus", 1e30),
    Case(
        "c3-description-2mb",
        "3",
        LAUNCH,
        words=("description",),
        files={"job.yaml": job_text(("description", "x" * 2_000_000))},
    ),
    bad_job(
        "c3-control-max-digits-31",
        "3",
        "tasks.1.settings.max_digits",
        31,
        base=TWO_TASKS,
        note="already refused today: a documented upper bound",
    ),
    bad_job("c3-control-name-201", "3", "name", "n" * 201, note="already refused today"),
]

_MLFLOW = ("launch", "{tmp}/job.yaml", "--db", "sqlite:///{tmp}/r.db")
_JOB = {"job.yaml": job_text()}

CLASS_6 = [
    bad_job("c6-prefilter-batch-1", "6", "prefilter", {"batch": 1}, "prefilter.batch"),
    Case("c6-db-sqlite-memory", "6", (*LAUNCH[:3], "--db", "sqlite://"), words=("--db",), files=_JOB),
    Case(
        "c6-db-sqlite-memory-named",
        "6",
        (*LAUNCH[:3], "--db", "sqlite:///:memory:"),
        words=("--db",),
        files=_JOB,
    ),
    bad_job("c6-job-db-url-memory", "6", "db_url", "sqlite://", "db_url"),
    Case(
        "c6-db-is-directory",
        "6",
        (*LAUNCH[:3], "--db", "sqlite:///{tmp}/adir"),
        code=(1, 2),
        words=("adir",),
        files={**_JOB, "adir/keep": ""},
    ),
    Case(
        "c6-db-under-proc",
        "6",
        (*LAUNCH[:3], "--db", "sqlite:////proc/self/r.db"),
        code=(1, 2),
        words=("/proc/self/r.db",),
        files=_JOB,
    ),
    Case(
        "c6-db-under-regular-file",
        "6",
        (*LAUNCH[:3], "--db", "sqlite:///{tmp}/afile/r.db"),
        code=(1, 2),
        words=("afile",),
        files={**_JOB, "afile": "not a folder"},
    ),
    Case(
        "c6-mlflow-garbage-scheme",
        "6",
        (*_MLFLOW, "--mlflow", "garbage://"),
        code=(1, 2),
        words=("--mlflow",),
        files=_JOB,
    ),
    bad_job("c6-job-mlflow-uri-garbage", "6", "mlflow_uri", "garbage://x", "mlflow_uri", code=(1, 2)),
    Case(
        "c6-mlflow-unwritable-folder",
        "6",
        (*_MLFLOW, "--mlflow", "{tmp}/afile/mlruns"),
        code=(1, 2),
        words=("afile",),
        files={**_JOB, "afile": "not a folder"},
    ),
    Case(
        "c6-mlflow-sqlite-under-proc",
        "6",
        (*_MLFLOW, "--mlflow", "sqlite:////proc/self/mlflow.db"),
        code=(1, 2),
        words=("/proc/self/mlflow.db",),
        files=_JOB,
    ),
    Case(
        "c6-mlflow-env-garbage",
        "6",
        _MLFLOW,
        code=(1, 2),
        words=("MLFLOW_TRACKING_URI",),
        files=_JOB,
        env={"MLFLOW_TRACKING_URI": "garbage://"},
    ),
    Case(
        "c6-resume-mlflow-garbage",
        "6",
        ("resume", "1", "--db", f"sqlite:///{{tmp}}/{REAL_DB}", "--mlflow", "garbage://"),
        code=(1, 2),
        words=("--mlflow",),
        db=True,
    ),
    bad_job("c6-label-dotdot-passwd", "6", "tasks.0.label", "../../etc/passwd"),
    bad_job("c6-label-slash", "6", "tasks.0.label", "a/b"),
    bad_job("c6-label-space-colon", "6", "tasks.0.label", "a b:c"),
    bad_job("c6-label-newline", "6", "tasks.0.label", "a\nb"),
    bad_job(
        "c6-task-data-dir-proc",
        "6",
        "tasks.0.settings.data_dir",
        "/proc/self/nothing",
        code=(1, 2),
        note="memorize has no data_dir: an unknown setting",
    ),
]

_FILTER_ALL = with_tasks({**_MEM, "role": "filter", "threshold": 1.0}, ARITH)
_FAIL_ALL = job_text(("hparams.learning_rate", 1e6), ("hparams.max_grad_norm", None))

CLASS_7 = [  # honest endings: real small jobs (Ray), nothing scored must not end with exit 0
    Case(
        "c7-every-cell-filtered-out",
        "7",
        LAUNCH,
        code=1,
        words=("filter",),
        ray=True,
        writes=True,
        files={"job.yaml": job_text(base=_FILTER_ALL)},
    ),
    Case(
        "c7-every-trial-fails",
        "7",
        LAUNCH,
        code=(1, 2),
        ray=True,
        writes=True,
        files={"job.yaml": _FAIL_ALL},
        note="learning rate 1e6 without clipping: every trial diverges",
    ),
]

_EVOLUTION = {"kind": "regularized_evolution", "population_size": 4, "sample_size": 2}
_TEXT_FILTER = {"name": "text", "role": "filter", "threshold": 0.5, "settings": {"preset": "ptb"}}

CLASS_7_IDLE = [  # jobs that would run and do nothing useful: refused before anything is written
    bad_job(
        "c7-evolution-population-fills-budget",
        "7",
        "strategy",
        _EVOLUTION,
        "strategy.population_size",
        "max_architectures",
        base=JOZ,
        note="population 4, budget 2 architectures: every one is a seed or random cell, none a mutant",
    ),
    bad_job(
        "c7-evolution-default-population-over-budget",
        "7",
        "strategy",
        {"kind": "regularized_evolution"},
        "strategy.population_size",
        "100",
        base={**JOZ, "budget": {"max_architectures": 12}},
        note="the issue's case: the default population_size 100 with max_architectures 12",
    ),
    bad_job(
        "c7-evolution-population-equals-budget",
        "7",
        "budget.max_architectures",
        4,
        "strategy.population_size",
        base={**JOZ, "strategy": _EVOLUTION},
    ),
    bad_job(
        "c7-filter-accuracy-above-1",
        "7",
        "tasks.0.threshold",
        1.5,
        "tasks.0.threshold",
        "at most 1",
        base=JOZ_FILTER,
        note="memorize's accuracy is at most 1: no cell, no baseline passes",
    ),
    bad_job(
        "c7-filter-perplexity-below-1",
        "7",
        "tasks.0",
        _TEXT_FILTER,
        "tasks.0.threshold",
        "at least 1",
        base=JOZ_FILTER,
        note="a perplexity is at least 1: no cell, no baseline passes",
    ),
]

CLASS_10_JOBS = [
    bad_job("c10-trials-per-task-true", "10", "trials_per_task", True),
    bad_job("c10-trials-per-task-string", "10", "trials_per_task", "3"),
    bad_job("c10-trials-per-task-float", "10", "trials_per_task", 2.5),
    bad_job("c10-task-trials-true", "10", "tasks.0.trials", True),
    bad_job("c10-seed-true", "10", "seed", True),
    bad_job("c10-seed-string", "10", "seed", "7"),
    bad_job("c10-max-architectures-true", "10", "budget.max_architectures", True, base=JOZ),
    bad_job("c10-max-steps-string", "10", "tasks.0.budget.max_steps", "6"),
    bad_job("c10-cpus-true", "10", "resources.cpus", True),
    bad_job("c10-gpus-string", "10", "resources.gpus", "0"),
    bad_job("c10-max-length-true", "10", "tasks.0.settings.max_length", True),
    bad_job("c10-max-length-string", "10", "tasks.0.settings.max_length", "3"),
    bad_job("c10-hidden-size-true", "10", "hparams.hidden_size", True, "hidden_size"),
    bad_job("c10-num-layers-string", "10", "hparams.num_layers", "1", "num_layers"),
    bad_job("c10-threshold-true", "10", "tasks.0.threshold", True, base=JOZ_FILTER),
    bad_job("c10-threshold-string", "10", "tasks.0.threshold", "0.3", base=JOZ_FILTER),
    bad_job("c10-p-refine-true", "10", "strategy.p_refine", True, base=JOZ),
    bad_job("c10-top-k-string", "10", "strategy.top_k", "2", base=JOZ),
    bad_job("c10-name-nul", "10", "name", "job\x00x", "name"),
    bad_job("c10-name-bel", "10", "name", "job\x07", "name"),
    bad_job("c10-name-rlo", "10", "name", "job\u202egpj.exe", "name"),
    bad_job("c10-name-newline", "10", "name", "a\nb", "name"),
    bad_job("c10-label-bel", "10", "tasks.0.label", "m\x07"),
    bad_job("c10-label-rlo", "10", "tasks.0.label", "m\u202e"),
    bad_job("c10-description-nul", "10", "description", "a\x00b"),
    bad_job("c10-prefilter-enabled-string", "10", "prefilter", {"enabled": "yes"}, "prefilter.enabled"),
    bad_job(
        "c10-population-yaml-on", "10", "population", Raw("on"), "population", note="YAML reads on as true"
    ),
    Case(
        "c10-job-duplicate-key-control",
        "10",
        LAUNCH,
        words=("name",),
        files={"job.yaml": "name: a\nname: b\n" + job_text(("name", DELETE))},
        note="already refused today: the job YAML refuses repeated keys",
    ),
]

CASES = CLASS_1 + CLASS_2 + CLASS_3 + CLASS_6 + CLASS_7 + CLASS_7_IDLE + CLASS_10_JOBS
