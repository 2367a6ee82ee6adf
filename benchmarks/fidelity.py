"""How small a training budget can be trusted to rank cells? Rank agreement across budgets, measured.

Cells: the library (``cells.library``) plus seeded mutants of it (``cells.mutate``, chains of
one or two mutations from fixed seeds), duplicates (same canonical hash) removed and mutants
that fail to build and run a forward pass skipped: the same set on every run. Tasks
``arith`` and ``xml`` with quickstart settings (``examples/quickstart.yaml``), hidden 32, one
layer, Adam at a fixed learning rate 1e-2, batch 32, no dropout: only the budget and the
seed vary. Training is the real one (``workers.evaluate_trial``).

Budgets: the ladder B, 3B, 9B, 27B steps (``--base`` B, default 100). Each (cell, task, seed)
is ONE run of 27B steps validating every B steps, and the value at budget b is read from its
curve: the best validation value up to step b, what ``evaluate_trial`` reports for
``max_steps=b, eval_every=B``. This is exact because nothing in ``workers._train.train``
depends on ``max_steps``: the learning rate is constant (no schedule), the training batches
come from the task's own generator seeded by ``seed`` (not from the budget), validation
runs in eval mode under no_grad on fixed batches and draws no random numbers, and the loop
only consults the budget to decide when to stop. A run that diverged at or before step b
counts 0 at b (so does a failed run), as it would have diverged in a run of b steps too.

Printed, per task and for the combined score (each task's seed mean relative to GRU's seed
mean at the same budget, the worst task kept: the search's score): Kendall's tau between
the ranking (by seed mean) at each budget and at the largest, the first budget below the
largest where tau reaches 0.8, how many of each budget's top 5 are the top 5 at the largest,
the seed-to-seed agreement (mean tau between two seeds' rankings: the noise ceiling) and
spread (median over cells of the std over seeds, and of the range over seeds relative to
the mean), and a simulation of successive halving (eta 3) on
the measured table: at each rung keep the best ceil(n/eta) by the seed mean at that rung,
never fewer than the top k sought (5). Its cost in training steps is given both continued
(a survivor resumes its run: rung i costs survivors x (budget_i - budget_{i-1}), which is
what the table measures, the values coming from one run) and restarted (survivors x
budget_i), against all cells x 27B, with how many of the true top 5 (at 27B) it finds.

Time: one run of 27B steps with B 100 took 8 s alone on a core and 11 s on average on a
shared one (45 cells: 51 minutes); time grows with B, so B 170 fills an hour on a free core.

A row per run goes to ``benchmarks/results/fidelity.csv`` as it goes; ``--table`` reprints
the analysis of such a file without training (e.g. of a run cut short).

    nice -n 10 python benchmarks/fidelity.py [--base 100] [--cells 45] [--seeds 3]
    python benchmarks/fidelity.py --quick           # CI: a few cells, tiny budgets, < 1 min
    python benchmarks/fidelity.py --table benchmarks/results/fidelity.csv
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau

RESULTS = Path(__file__).parent / "results" / "fidelity.csv"
TASKS: dict[str, dict[str, Any]] = {
    "arith": {"max_digits": 2, "valid_size": 100, "test_size": 100},
    "xml": {"max_depth": 2, "max_children": 2, "max_tag_length": 2, "valid_size": 100, "test_size": 100},
}
BASELINE = "gru"
ETA = 3
RUNGS = 4
TAU_TARGET = 0.8


# --- the pure part: tables of values -> figures -------------------------------------------


def ladder(base: int, rungs: int = RUNGS, eta: int = ETA) -> list[int]:
    """The budgets of successive halving: ``base * eta**i``.

    Example:
        >>> ladder(100)
        [100, 300, 900, 2700]
    """
    return [base * eta**i for i in range(rungs)]


def value_at(curve: list[tuple[int, float]], step: int, diverged_at: int | None = None) -> float:
    """What a run of ``step`` steps would report: the best curve value up to ``step``; 0 when
    it had diverged by then or never validated.

    Example:
        >>> value_at([(10, 0.5), (20, 0.4), (30, 0.7)], 20), value_at([(10, 0.5)], 20, diverged_at=15)
        (0.5, 0.0)
    """
    if diverged_at is not None and diverged_at <= step:
        return 0.0
    seen = [value for at, value in curve if at <= step]
    return max(seen) if seen else 0.0


def taus_against_last(scores: np.ndarray) -> list[float]:
    """Kendall's tau between the ranking at each rung (column of ``scores [cells, rungs]``) and
    at the last one; nan where a column is constant."""
    last = scores[:, -1]
    return [float(kendalltau(scores[:, rung], last).statistic) for rung in range(scores.shape[1])]


def first_reaching(taus: list[float], budgets: list[int], target: float = TAU_TARGET) -> int | None:
    """The first budget below the last (the reference, tau 1 by definition) whose tau is at
    least ``target``, or None."""
    return next((b for tau, b in zip(taus[:-1], budgets[:-1], strict=True) if tau >= target), None)


def seed_taus(table: np.ndarray) -> list[float]:
    """Per rung of ``table [cells, rungs, seeds]``: the mean Kendall tau between the rankings
    of two seeds, over all pairs (how far one seed predicts another: the noise ceiling); nan
    with one seed."""
    seeds = table.shape[2]
    pairs = [(a, b) for a in range(seeds) for b in range(a + 1, seeds)]
    return [
        float(np.mean([kendalltau(table[:, r, a], table[:, r, b]).statistic for a, b in pairs]))
        if pairs
        else math.nan
        for r in range(table.shape[1])
    ]


def seed_spread(table: np.ndarray) -> tuple[list[float], list[float]]:
    """Per rung of ``table [cells, rungs, seeds]``: the median over cells of the std over seeds
    (ddof 1), and of (max - min) / |mean| over seeds (cells with mean 0 left out)."""
    std = np.std(table, axis=2, ddof=1) if table.shape[2] > 1 else np.zeros(table.shape[:2])
    mean = np.abs(table.mean(axis=2))
    spread = np.ptp(table, axis=2)
    relative = np.where(mean > 0, spread / np.where(mean > 0, mean, 1.0), np.nan)
    medians = [float(np.median(std[:, r])) for r in range(table.shape[1])]
    relative_medians = [
        float(np.nanmedian(relative[:, r])) if np.any(mean[:, r] > 0) else math.nan
        for r in range(table.shape[1])
    ]
    return medians, relative_medians


def best_indices(values: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` highest values, ties to the lower index."""
    order = sorted(range(len(values)), key=lambda i: (-float(values[i]), i))
    return order[:count]


def top_overlap(scores: np.ndarray, top: int) -> list[int]:
    """Per rung of ``scores [cells, rungs]``: how many of its best ``top`` are among the last rung's."""
    truth = set(best_indices(scores[:, -1], top))
    return [len(truth & set(best_indices(scores[:, r], top))) for r in range(scores.shape[1])]


@dataclass
class Halving:
    """What successive halving on a measured table did."""

    survivors: list[int]
    """How many cells trained at each rung."""
    steps_continued: int
    steps_restarted: int
    steps_full: int
    found: int
    """How many of the true top ``top`` are among the last rung's best ``top``."""
    top: int
    chosen: list[int] = field(default_factory=list)


def successive_halving(scores: np.ndarray, budgets: list[int], eta: int = ETA, top: int = 5) -> Halving:
    """Simulate successive halving on ``scores [cells, rungs]`` (higher is better).

    All cells train to the first budget; after each rung the best ``max(top, ceil(n / eta))``
    by the score at that rung go on. The true top is the best ``top`` at the last rung over
    all cells; ``found`` counts how many of them are the best ``top`` of the last rung's survivors.
    """
    n = scores.shape[0]
    top = min(top, n)
    alive = list(range(n))
    survivors: list[int] = []
    continued = restarted = 0
    previous = 0
    for rung, budget in enumerate(budgets):
        survivors.append(len(alive))
        continued += len(alive) * (budget - previous)
        restarted += len(alive) * budget
        previous = budget
        if rung < len(budgets) - 1:
            keep = max(top, math.ceil(len(alive) / eta))
            ranked = best_indices(scores[alive, rung], keep)
            alive = [alive[i] for i in ranked]
    chosen = [alive[i] for i in best_indices(scores[alive, -1], top)]
    truth = set(best_indices(scores[:, -1], top))
    return Halving(survivors, continued, restarted, n * budgets[-1], len(truth & set(chosen)), top, chosen)


def combined_scores(tables: dict[str, np.ndarray], baseline: int) -> tuple[np.ndarray, np.ndarray]:
    """The search's score from per-task ``[cells, rungs, seeds]`` tables: each task relative to
    the baseline cell's seed mean at the same rung, the worst task kept. Returns the score of the
    seed means ``[cells, rungs]`` (the ranking) and per seed ``[cells, rungs, seeds]`` (the spread)."""
    means, per_seed = [], []
    for table in tables.values():
        reference = table[baseline].mean(axis=1)  # [rungs]
        safe = np.where(reference > 0, reference, np.nan)
        means.append(table.mean(axis=2) / safe)
        per_seed.append(table / safe[None, :, None])
    return np.min(np.stack(means), axis=0), np.min(np.stack(per_seed), axis=0)


@dataclass
class Figures:
    """The figures of one score (a task or the combined score)."""

    name: str
    taus: list[float]
    reaches: int | None
    seed_taus: list[float]
    overlap: list[int]
    """Per rung: how many of its top ``top`` are the top at the last rung."""
    std: list[float]
    relative_range: list[float]
    halving: Halving


def figures(name: str, scores: np.ndarray, per_seed: np.ndarray, budgets: list[int], top: int) -> Figures:
    taus = taus_against_last(scores)
    std, relative = seed_spread(per_seed)
    halving = successive_halving(scores, budgets, ETA, top)
    reaches, overlap = first_reaching(taus, budgets), top_overlap(scores, top)
    return Figures(name, taus, reaches, seed_taus(per_seed), overlap, std, relative, halving)


def analyse(tables: dict[str, np.ndarray], budgets: list[int], baseline: int, top: int) -> dict[str, Figures]:
    """Figures per task and for the combined score."""
    result = {task: figures(task, t.mean(axis=2), t, budgets, top) for task, t in tables.items()}
    combined, per_seed = combined_scores(tables, baseline)
    result["combined"] = figures("combined", np.nan_to_num(combined), np.nan_to_num(per_seed), budgets, top)
    return result


def print_figures(all_figures: dict[str, Figures], budgets: list[int], names: list[str]) -> None:
    header = "".join(f"{b:>9}" for b in budgets)
    for fig in all_figures.values():
        h = fig.halving
        print(f"\n== {fig.name}")
        print(f"{'budget (steps)':28}{header}")
        print(f"{'Kendall tau vs ' + str(budgets[-1]):28}" + "".join(f"{t:9.3f}" for t in fig.taus))
        label = f"top {fig.halving.top} also top at {budgets[-1]}"
        print(f"{label:28}" + "".join(f"{k:9d}" for k in fig.overlap))
        print(f"{'tau seed vs seed':28}" + "".join(f"{t:9.3f}" for t in fig.seed_taus))
        print(f"{'median std over seeds':28}" + "".join(f"{s:9.4f}" for s in fig.std))
        print(f"{'median range/mean (seeds)':28}" + "".join(f"{s:9.3f}" for s in fig.relative_range))
        reached = f"at {fig.reaches} steps" if fig.reaches is not None else f"not below {budgets[-1]} steps"
        print(f"tau >= {TAU_TARGET}: {reached}")
        print(
            f"successive halving (eta {ETA}): cells per rung {h.survivors}; "
            f"steps {h.steps_continued} continued ({h.steps_continued / h.steps_full:.1%}), "
            f"{h.steps_restarted} restarted ({h.steps_restarted / h.steps_full:.1%}), "
            f"full {h.steps_full}; finds {h.found}/{h.top} of the true top {h.top}"
        )
        print(f"  chosen: {', '.join(names[i] for i in h.chosen)}")


# --- the measured part: cells, training, the CSV -------------------------------------------


def runs_forward(cell: Any) -> bool:
    """Whether ``cell`` builds into a layer and runs a forward pass (mutants that do not are skipped)."""
    import torch

    from cells import build_layer

    try:
        layer = build_layer(cell, input_size=4, hidden_size=8)
        out, _ = layer(torch.randn(3, 2, 4))
        return bool(torch.isfinite(out).all())
    except Exception:
        return False


def fidelity_cells(count: int, seed: int = 0) -> list[tuple[str, Any]]:
    """(source, cell): the library, then seeded mutants (chains of 1 or 2) until ``count``; deterministic."""
    from cells import canonical_hash, library, mutate

    names = library.names()
    unique: dict[str, tuple[str, Any]] = {}
    for name in names:
        unique.setdefault(canonical_hash(library.get(name)), ("library", library.get(name)))
    attempt = 0
    while len(unique) < count and attempt < 20 * count:
        rng = np.random.default_rng([seed, attempt])
        parent = names[attempt % len(names)]
        cell = library.get(parent)
        for _ in range(1 + attempt % 2):
            cell, _ = mutate(cell, rng)
        attempt += 1
        key = canonical_hash(cell)
        if key not in unique and runs_forward(cell):
            unique[key] = (f"mutant-of-{parent}", cell)
    return list(unique.values())[:count]


def measure(args: argparse.Namespace, budgets: list[int]) -> list[dict[str, Any]]:
    """Train every (cell, task, seed) once to the last budget; a row per run, written as it goes."""
    import torch

    from cells import canonical_hash
    from workers import Budget, HyperParams, evaluate_trial, make_task

    torch.set_num_threads(args.threads)
    settings = {name: dict(s) for name, s in TASKS.items()}
    if args.valid_size is not None:
        for s in settings.values():
            s["valid_size"] = s["test_size"] = args.valid_size
    tasks = {name: make_task(name, **s) for name, s in settings.items()}
    budget = Budget(max_steps=budgets[-1], eval_every=budgets[0], eval_batch_size=100)
    cells = fidelity_cells(args.cells, args.cell_seed)
    print(f"{len(cells)} cells, tasks {list(tasks)}, seeds {args.seeds}, budgets {budgets}", flush=True)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    out = args.out
    handle = out.open("w", newline="") if out is not None else None
    writer = None
    for index, (source, cell) in enumerate(cells):
        for task_name, task in tasks.items():
            for seed in range(args.seeds):
                hp = HyperParams(hidden_size=32, num_layers=1, learning_rate=1e-2, dropout=0.0, seed=seed)
                result = evaluate_trial(cell, task, hp, budget, device="cpu")
                row: dict[str, Any] = {
                    "index": index, "cell": cell.name, "hash": canonical_hash(cell)[:16], "source": source,
                    "task": task_name, "seed": seed, "status": str(result.status),
                    "diverged_at": result.diverged_at_step, "seconds": round(result.seconds, 3),
                }  # fmt: skip
                for b in budgets:
                    row[f"value_{b}"] = value_at(result.curve, b, result.diverged_at_step)
                rows.append(row)
                if handle is not None:
                    if writer is None:
                        writer = csv.DictWriter(handle, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    handle.flush()
        elapsed = time.perf_counter() - started
        print(f"{index + 1}/{len(cells)} cells, {elapsed:.0f} s", flush=True)
    if handle is not None:
        handle.close()
    return rows


def read_rows(path: Path) -> tuple[list[dict[str, Any]], list[int]]:
    """The rows of a CSV written by :func:`measure`, and its budgets."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    budgets = sorted(int(k.removeprefix("value_")) for k in rows[0] if k.startswith("value_"))
    for row in rows:
        row["index"], row["seed"] = int(row["index"]), int(row["seed"])
        for b in budgets:
            row[f"value_{b}"] = float(row[f"value_{b}"])
    return rows, budgets


def tabulate(rows: list[dict[str, Any]], budgets: list[int]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Per task a ``[cells, rungs, seeds]`` table of the cells that have every run (a cut-short
    run's last cell may not), and the cells' names."""
    tasks = sorted({r["task"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    by_key = {(r["index"], r["task"], r["seed"]): r for r in rows}
    indices = sorted({r["index"] for r in rows})
    complete = [i for i in indices if all((i, t, s) in by_key for t in tasks for s in seeds)]
    names = [next(r["cell"] for r in rows if r["index"] == i) for i in complete]
    tables = {
        t: np.array(
            [[[by_key[(i, t, s)][f"value_{b}"] for s in seeds] for b in budgets] for i in complete],
            dtype=float,
        )
        for t in tasks
    }
    return tables, names


@dataclass
class Report:
    """What :func:`main` measured and printed."""

    budgets: list[int]
    names: list[str]
    figures: dict[str, Figures]
    rows: list[dict[str, Any]]
    seconds_per_run: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--base", type=int, default=None, help="B, the first budget in steps (default 100)")
    parser.add_argument("--cells", type=int, default=None, help="how many cells (default 45)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell and task (default 3)")
    parser.add_argument("--top", type=int, default=None, help="top k halving seeks (default 5)")
    parser.add_argument("--valid-size", type=int, default=None, help="validation sequences (default 100)")
    parser.add_argument("--cell-seed", type=int, default=0, help="seed of the mutants")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help=f"CSV of the runs (default {RESULTS})")
    parser.add_argument("--table", type=Path, default=None, help="analyse this CSV instead of training")
    parser.add_argument("--quick", action="store_true", help="CI: 5 cells, B 4, 2 seeds, top 2")
    args = parser.parse_args(argv)
    quick = {"base": 4, "cells": 5, "seeds": 2, "top": 2, "valid_size": 20}
    full = {"base": 100, "cells": 45, "seeds": 3, "top": 5}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None and not args.quick:
        args.out = RESULTS
    return args


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.table is not None:
        rows, budgets = read_rows(args.table)
    else:
        budgets = ladder(args.base)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
        rows = measure(args, budgets)
    elapsed = time.perf_counter() - started
    tables, names = tabulate(rows, budgets)
    if BASELINE not in names:
        raise SystemExit(f"the baseline {BASELINE} has no complete runs")
    per_run = (
        float(np.mean([float(r["seconds"]) for r in rows])) if args.table is not None else elapsed / len(rows)
    )
    tasks = list(tables)
    seeds = next(iter(tables.values())).shape[2]
    print(
        f"\n{len(names)} cells x {len(tasks)} tasks x {seeds} seeds = {len(names) * len(tasks) * seeds} runs "
        f"of {budgets[-1]} steps (validated every {budgets[0]}); {per_run:.2f} s per run"
    )
    statuses = Counter(str(r["status"]) for r in rows if r["cell"] in set(names))
    print("runs by status: " + ", ".join(f"{status} {n}" for status, n in sorted(statuses.items())))
    for task, table in tables.items():
        final = table[:, -1].mean(axis=1)
        print(
            f"{task}: seed-mean value at {budgets[-1]} steps: min {final.min():.3f}, "
            f"median {np.median(final):.3f}, max {final.max():.3f}; "
            f"{BASELINE} {final[names.index(BASELINE)]:.3f}"
        )
    all_figures = analyse(tables, budgets, names.index(BASELINE), args.top)
    print_figures(all_figures, budgets, names)
    return Report(budgets, names, all_figures, rows, per_run)


if __name__ == "__main__":
    main()
