"""What MLflow tracking logs: a finished architecture's run (params, metrics, tags, artifacts)
and a job spec as flat parameters, cut to MLflow's limits."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from dashboards._run_pages import run_page
from dashboards._tracking_ops import MAX_KEY_LENGTH, metric_key
from search import EvaluationStatus, Interval, ResultStore

logger = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
"""MLflow's limit on a parameter's value (longer values are cut, with a marker)."""


def architecture_payload(store: ResultStore, job_id: int, arch_id: int) -> dict[str, Any] | None:
    """The run of a finished architecture of a job: run name, params, metrics, tags and
    artifacts (file name -> text); ``None`` when it is not part of the job or not finished."""
    from cells import CellGraph, to_dot, to_equations
    from dashboards._queries import describe_architecture, job_tasks

    member = store.job_architecture(job_id, arch_id)
    if member is None or not (member.evaluated or member.filter_passed is False or member.score is not None):
        return None
    details = describe_architecture(store, arch_id, job_id=job_id)
    parent = details.lineage[1] if len(details.lineage) > 1 else None
    [membership] = details.jobs
    params: dict[str, str] = {
        "arch_id": str(arch_id),
        "canonical_hash": details.canonical_hash,
        "parent_id": str(parent.arch_id) if parent else "",
        "parent_hash": parent.canonical_hash if parent else "",
        "mutation": details.lineage[0].mutation or "",
        "generation": str(membership.generation),
        "num_states": str(details.num_states),
        "num_nodes": str(details.num_nodes),
        "parameter_count": str(details.parameter_count),
        "parameter_hidden": str(details.parameter_hidden),  # the size it is counted at
        "origin": details.lineage[0].origin,
        "library_name": details.library_name or "",
        **{f"ops.{op}": str(count) for op, count in sorted(details.op_counts.items())},
    }
    metrics = _metrics(membership)
    evaluated_tasks = {t.result.task for t in membership.tasks if t.result.status == EvaluationStatus.DONE}
    if membership.filter_passed is False:
        outcome = "filtered"
    elif set(job_tasks(store, job_id)) <= evaluated_tasks:
        outcome = "evaluated"
    else:
        outcome = "stopped"  # at a search task's threshold: the later tasks never ran
    tags = {
        "cellsearch.arch_id": str(arch_id),
        "cellsearch.outcome": outcome,
        "cellsearch.library_name": details.library_name or "",
        "cellsearch.listed": str(membership.listed).lower(),
        **{  # the final round's verdicts against the best baseline (docs/final-round.md)
            f"{metric_key(t.result.task)}.verdict": t.result.verdict
            for t in membership.tasks
            if t.result.final and t.result.verdict is not None
        },
    }
    graph = CellGraph.parse(details.graph)
    artifacts = {
        "cell.json": graph.model_dump_json(indent=2),
        "equations.txt": to_equations(graph) + "\n",
        "cell.dot": to_dot(graph),
    }
    name = f"arch-{arch_id}" + (f"-{details.library_name}" if details.library_name else "")
    evaluations = [(e, store.trials(evaluation_id=e.id)) for e in store.evaluations(job_id, arch_id=arch_id)]
    return {
        **run_page(name, graph, details, membership, evaluations),
        "run_name": name,
        "params": {metric_key(k, room=0): _truncate(v, MAX_PARAM_LENGTH) for k, v in params.items()},
        "metrics": metrics,
        "tags": tags,
        "artifacts": artifacts,
        "graph": graph,
        "score": (membership.score, membership.final_score),  # a change is logged again
    }


def _metrics(membership: Any) -> dict[str, float]:
    """An architecture's metrics in one job: its score, per task the best value, relative score
    and trials (a final task also its seed mean and p-value), the final round's score."""
    metrics: dict[str, float] = {}
    if membership.score is not None:
        metrics["score"] = float(membership.score)
        metrics.update(_bounds("score", membership.score_interval))
    for task in membership.tasks:
        result = task.result
        key = metric_key(result.task)
        if result.value is not None:
            metrics[f"{key}.best"] = float(result.value)
            metrics.update(_bounds(f"{key}.best", result.value_interval))
        if result.relative is not None:
            metrics[f"{key}.relative"] = float(result.relative)
            metrics.update(_bounds(f"{key}.relative", result.relative_interval))
        metrics[f"{key}.trials"] = float(result.trials)
        if result.final:
            if result.mean is not None:
                metrics[f"{key}.mean"] = float(result.mean)
            if result.p_value is not None:
                metrics[f"{key}.p_value"] = float(result.p_value)
    if membership.final_score is not None:
        metrics["final_score"] = float(membership.final_score)
        if membership.final_interval is not None:
            metrics["final_low"] = membership.final_interval.low
            metrics["final_high"] = membership.final_interval.high
    return metrics


def _bounds(key: str, interval: Interval | None) -> dict[str, float]:
    """An interval as two metrics, ``<key>_low`` and ``<key>_high`` (none without one:
    MLflow has no missing value; ``docs/uncertainty.md``)."""
    return {} if interval is None else {f"{key}_low": interval.low, f"{key}_high": interval.high}


def flatten_params(data: Any, prefix: str = "") -> dict[str, str]:
    """A nested mapping as MLflow parameters: dotted keys (list items by index), values as
    text cut to MLflow's limits.

    Example:
        >>> flatten_params({"strategy": {"kind": "fixed", "cells": ["gru", "lstm"]}, "seed": 0})
        {'strategy.kind': 'fixed', 'strategy.cells.0': 'gru', 'strategy.cells.1': 'lstm', 'seed': '0'}
    """
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        items: Any = data.items()
    elif isinstance(data, list | tuple):
        items = enumerate(data)
    else:
        return {metric_key(prefix or "value", room=0): _truncate(_text(data), MAX_PARAM_LENGTH)}
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping | list | tuple) and value:
            out.update(flatten_params(value, name))
        else:
            key = base = metric_key(name, room=0)
            count = 1
            while key in out:  # two keys that differ only in characters MLflow refuses
                count += 1
                key = f"{base[: MAX_KEY_LENGTH - len(str(count)) - 1]}_{count}"
            out[key] = _truncate(_text(value), MAX_PARAM_LENGTH)
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Mapping | list | tuple):
        return "{}" if isinstance(value, Mapping) else "[]"
    return str(value)


def _truncate(text: str, limit: int) -> str:
    marker = "...[cut]"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker
