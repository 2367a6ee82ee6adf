"""Does a short language-model evaluation rank cells as a ten times longer one does?

Cells: the library (``cells.library``), the NAS-Bench-NLP example recipes
(``<data>/nasbench-nlp/recipes_example.json``, imported by ``cells.load_nasbench_recipes``)
when the file is there, then seeded mutants of the library (``benchmarks/fidelity.py``'s
``fidelity_cells``) up to ``--cells``; duplicates by canonical hash removed.

Data: word-level Penn Treebank from ``<data>/ptb`` (``--data``, default the folder the tests
read): the full train split when ``ptb.train.txt`` is there, else 90% of the validation split
for training and 5% each for validation and test, as the tests do.

Protocols, each with the same model size (``--hidden``, one layer) for every cell:

* ``defaults``: the ``text`` task before the language-model protocol (``protocol: plain``):
  the search space's defaults, learning rate fixed at 3e-3 as in the experiment that
  motivated the protocol; init scale, clipping norm and dropout sampled.
* ``lm``: the language-model protocol (``protocol: lm``, docs/lm-protocol.md): tied weights,
  clipping 0.25, init scale 0.1, batch 20; learning rate and dropout sampled.

Trial ``t`` of every cell draws its sampled hyperparameters from the same seeded sampler
(paired, as a job draws them) and trains with seed ``t``. Each (cell, protocol, trial) is ONE
run of the long budget L = ``--ratio`` x S steps validating every ``S / --evals`` steps; the
short budget S is read from the start of its curve. This is exact: the learning rate is
constant, the data order comes from the seed, and nothing in the training loop depends on
``max_steps`` but the decision to stop.

Scores: the truth of a run is its best validation perplexity over the whole long run (what
full training with early stopping reports; a run that diverged has none and ranks last).
At the short budget, three scores of the curve up to S (``workers.curve_score``): ``best``
(the best point), ``last_mean`` (the mean of the last ``--window`` evaluations) and
``predicted`` (the curve's power-law extrapolation to L). Printed per protocol: Spearman's
rho and Kendall's tau between each short score and the truth over the cells (trial 0), and
the trial-to-trial spread of a few cells (``--spread-cells`` x ``--spread-trials``): the ratio
of their worst to their best trial's perplexity, at S and at L.

A row per run (its whole curve) goes to ``benchmarks/results/lm_fidelity.csv`` as it goes;
``--table`` reprints the analysis of such a file without training.

    nice -n 10 python benchmarks/lm_fidelity.py [--jobs 2] [--short 100] [--cells 32]
    python benchmarks/lm_fidelity.py --quick       # CI: 3 cells, tiny budgets, seconds
    python benchmarks/lm_fidelity.py --table benchmarks/results/lm_fidelity.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is no package
from fidelity import fidelity_cells

RESULTS = Path(__file__).parent / "results" / "lm_fidelity.csv"
DEFAULT_DATA = Path(
    os.environ.get("CELLSEARCH_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
PROTOCOLS = ("defaults", "lm")
SCORES = ("best", "last_mean", "predicted")
SPREAD_CELLS = ("lstm", "gru", "mut1")


# --- the pure part: curves -> figures -----------------------------------------------------


def prefix(curve: Sequence[tuple[int, float]], step: int) -> list[tuple[int, float]]:
    """The evaluations at or before ``step``.

    Example:
        >>> prefix([(10, 5.0), (20, 4.0), (30, 3.0)], 20)
        [(10, 5.0), (20, 4.0)]
    """
    return [(s, v) for s, v in curve if s <= step]


def short_score(
    curve: Sequence[tuple[int, float]],
    diverged_at: int | None,
    kind: str,
    short: int,
    ratio: float,
    window: int,
) -> float:
    """A run's score at the short budget (perplexity, lower is better); ``inf`` when it had
    diverged by then or has no evaluation."""
    from workers import Direction, curve_score

    if diverged_at is not None and diverged_at <= short:
        return math.inf
    value = curve_score(prefix(curve, short), kind, Direction.MINIMIZE, window, ratio, (1.0, math.inf))  # type: ignore[arg-type]
    return math.inf if value is None else float(value)


def truth(curve: Sequence[tuple[int, float]], diverged_at: int | None) -> float:
    """The long run's result: its best validation value, ``inf`` when it diverged (a diverged
    trial has no value in a search and ranks last)."""
    if diverged_at is not None or not curve:
        return math.inf
    return min(v for _, v in curve)


def rank_agreement(short: Sequence[float], long: Sequence[float]) -> tuple[float, float]:
    """Spearman's rho and Kendall's tau (ties shared; ``inf`` ranks last) between two scorings.

    Example:
        >>> rank_agreement([1.0, 2.0, 3.0], [10.0, 20.0, math.inf])
        (1.0, 1.0)
    """
    a, b = np.nan_to_num(np.array(short), posinf=1e300), np.nan_to_num(np.array(long), posinf=1e300)
    rho = float(spearmanr(a, b).statistic)
    tau = float(kendalltau(a, b).statistic)
    return rho, tau


def spearman_interval(
    short: Sequence[float], long: Sequence[float], resamples: int = 2000, level: float = 0.9
) -> tuple[float, float]:
    """A percentile bootstrap interval of Spearman's rho over the cells (resampled with
    replacement, seeded): how much the figure depends on which cells happened to be drawn.

    Example:
        >>> low, high = spearman_interval([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 6, 5])
        >>> 0.0 < low <= high <= 1.0
        True
    """
    a, b = np.nan_to_num(np.array(short), posinf=1e300), np.nan_to_num(np.array(long), posinf=1e300)
    rng = np.random.default_rng(0)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(a), len(a))
        if np.ptp(a[pick]) > 0 and np.ptp(b[pick]) > 0:
            values.append(float(spearmanr(a[pick], b[pick]).statistic))
    tail = (1 - level) / 2
    return float(np.quantile(values, tail)), float(np.quantile(values, 1 - tail))


def spread(values: Sequence[float]) -> float:
    """The worst trial's value over the best's (``inf`` when one diverged).

    Example:
        >>> spread([200.0, 400.0, 300.0])
        2.0
    """
    return max(values) / min(values)


# --- the measured part: cells, data, training, the CSV ------------------------------------


def lm_cells(count: int, data: Path) -> list[tuple[str, Any]]:
    """(source, cell): the library, the NAS-Bench-NLP recipes when present, then mutants."""
    from cells import canonical_hash, library, load_nasbench_recipes

    unique: dict[str, tuple[str, Any]] = {}
    for name in library.names():
        unique.setdefault(canonical_hash(library.get(name)), ("library", library.get(name)))
    recipes = data / "nasbench-nlp" / "recipes_example.json"
    if recipes.is_file():
        for cell in load_nasbench_recipes(recipes):
            unique.setdefault(canonical_hash(cell), ("nasbench-nlp", cell))
    for source, cell in fidelity_cells(count + len(unique)):
        if len(unique) >= count:
            break
        unique.setdefault(canonical_hash(cell), (source, cell))
    return list(unique.values())[:count]


def task_settings(data: Path, quick: bool) -> dict[str, Any]:
    ptb = data / "ptb"
    if not (ptb / "ptb.valid.txt").is_file():
        raise SystemExit(f"Penn Treebank not found under {ptb} (set --data or CELLSEARCH_TEST_DATA)")
    settings: dict[str, Any] = {"dir": str(ptb), "level": "word", "bptt": 35}
    if not (ptb / "ptb.train.txt").is_file():
        settings |= {"train": "ptb.valid.txt", "split_fractions": (0.9, 0.05, 0.05)}
    else:
        settings |= {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}
    if quick:
        settings |= {"max_tokens": 4000, "max_eval_tokens": 1000}
    return settings


def protocol_space(protocol: str, settings: dict[str, Any], hidden: int) -> Any:
    from workers import task_search_space

    if protocol == "lm":
        return task_search_space("text", **settings, protocol="lm").with_overrides({"hidden_size": hidden})
    space = task_search_space("text", **settings, protocol="plain")
    return space.with_overrides({"hidden_size": hidden, "num_layers": 1, "learning_rate": 3e-3})


def draw(space: Any, trial: int) -> dict[str, Any]:
    """Trial ``trial``'s hyperparameters: the same for every cell (a seeded random sampler)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1000 + trial))
    params = study.ask(space.to_optuna()).params
    return dict(space.hparams_from({**params, "seed": trial}).model_dump(mode="json"))


@dataclass(frozen=True)
class Run:
    index: int
    source: str
    cell: Any
    protocol: str
    trial: int


def train_run(
    run: Run, settings: dict[str, Any], hidden: int, steps: int, every: int, threads: int
) -> dict[str, Any]:
    """One long run; the CSV row with its curve."""
    import torch

    from cells import canonical_hash
    from workers import Budget, HyperParams, evaluate_trial, make_task

    torch.set_num_threads(threads)
    task = make_task("text", **settings)
    hparams = HyperParams.model_validate(draw(protocol_space(run.protocol, settings, hidden), run.trial))
    budget = Budget(max_steps=steps, eval_every=every, eval_batch_size=64)
    result = evaluate_trial(run.cell, task, hparams, budget, device="cpu")
    return {
        "index": run.index, "cell": run.cell.name, "hash": canonical_hash(run.cell)[:16],
        "source": run.source, "protocol": run.protocol, "trial": run.trial,
        "status": str(result.status), "diverged_at": result.diverged_at_step or "",
        "seconds": round(result.seconds, 2), "hparams": json.dumps(hparams.model_dump(mode="json")),
        "curve": json.dumps(result.curve),
    }  # fmt: skip


def planned_runs(cells: list[tuple[str, Any]], spread_trials: int) -> list[Run]:
    """Trial 0 of every cell under both protocols, then more trials of the spread cells."""
    runs = [Run(i, s, c, p, 0) for p in PROTOCOLS for i, (s, c) in enumerate(cells)]
    for p in PROTOCOLS:
        for i, (s, c) in enumerate(cells):
            if c.name in SPREAD_CELLS:
                runs += [Run(i, s, c, p, t) for t in range(1, spread_trials)]
    return runs


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = task_settings(args.data, args.quick)
    cells = lm_cells(args.cells, args.data)
    runs = planned_runs(cells, args.spread_trials)
    steps, every = args.short * args.ratio, max(1, args.short // args.evals)
    train_file = "ptb.train.txt" if "valid" in settings else "90% of ptb.valid.txt"
    print(
        f"{len(cells)} cells ({', '.join(sorted({s for s, _ in cells}))}); {len(runs)} runs of "
        f"{steps} steps (short budget {args.short}), validated every {every}; hidden {args.hidden}; "
        f"trained on {train_file}",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    handle = args.out.open("w", newline="") if args.out is not None else None
    writer = None
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(train_run, r, settings, args.hidden, steps, every, args.threads) for r in runs]
        for done, future in enumerate(futures, 1):
            row = future.result()
            rows.append(row)
            if handle is not None:
                if writer is None:
                    writer = csv.DictWriter(handle, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                handle.flush()
            elapsed = time.perf_counter() - started
            print(f"{done}/{len(runs)} runs ({row['cell']}, {row['protocol']}), {elapsed:.0f} s", flush=True)
    if handle is not None:
        handle.close()
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _curve(row: dict[str, Any]) -> list[tuple[int, float]]:
    raw = row["curve"]
    return [(int(s), float(v)) for s, v in (json.loads(raw) if isinstance(raw, str) else raw)]


def _diverged(row: dict[str, Any]) -> int | None:
    return int(row["diverged_at"]) if str(row["diverged_at"]) not in ("", "None") else None


@dataclass
class ProtocolFigures:
    protocol: str
    cells: int
    diverged: int
    agreement: dict[str, tuple[float, float]]
    """Score kind -> (Spearman, Kendall) against the long runs."""
    intervals: dict[str, tuple[float, float]]
    """Score kind -> 90% bootstrap interval of Spearman's rho over the cells."""
    trained: dict[str, float]
    """Score kind -> Spearman over the cells that did not diverge in the long run (diverged
    cells tie last in both rankings, which lifts every score's agreement alike)."""
    spreads: dict[str, tuple[float, float]]
    """Cell -> worst/best trial ratio at the short budget and at the long one."""


def analyse(rows: list[dict[str, Any]], short: int, ratio: int, window: int) -> list[ProtocolFigures]:
    figures = []
    for protocol in PROTOCOLS:
        mine = [r for r in rows if r["protocol"] == protocol]
        firsts = sorted((r for r in mine if int(r["trial"]) == 0), key=lambda r: int(r["index"]))
        if len(firsts) < 3:
            continue
        long = [truth(_curve(r), _diverged(r)) for r in firsts]
        shorts = {
            kind: [short_score(_curve(r), _diverged(r), kind, short, ratio, window) for r in firsts]
            for kind in SCORES
        }
        agreement = {kind: rank_agreement(values, long) for kind, values in shorts.items()}
        intervals = {kind: spearman_interval(values, long) for kind, values in shorts.items()}
        kept = [i for i, value in enumerate(long) if math.isfinite(value)]
        trained = {
            kind: rank_agreement([values[i] for i in kept], [long[i] for i in kept])[0]
            for kind, values in shorts.items()
        }
        spreads = {}
        for cell in sorted({r["cell"] for r in mine}):
            trials = [r for r in mine if r["cell"] == cell]
            if len(trials) > 1:
                at_short = [
                    short_score(_curve(r), _diverged(r), "best", short, ratio, window) for r in trials
                ]
                at_long = [truth(_curve(r), _diverged(r)) for r in trials]
                spreads[cell] = (spread(at_short), spread(at_long))
        diverged = sum(1 for value in long if math.isinf(value))
        figures.append(
            ProtocolFigures(protocol, len(firsts), diverged, agreement, intervals, trained, spreads)
        )
    return figures


def print_figures(figures: list[ProtocolFigures], short: int, ratio: int) -> None:
    for fig in figures:
        print(f"\n== protocol {fig.protocol}: {fig.cells} cells, {fig.diverged} diverged in the long run")
        label = f"score at {short} steps"
        print(
            f"{label:20}{'Spearman':>10}{'90% interval':>18}{'Kendall':>10}{'Spearman, trained':>19}"
            f"   vs best at {short * ratio}"
        )
        for kind, (rho, tau) in fig.agreement.items():
            low, high = fig.intervals[kind]
            interval = f"[{low:.2f}, {high:.2f}]"
            print(f"{kind:20}{rho:10.3f}{interval:>18}{tau:10.3f}{fig.trained[kind]:19.3f}")
        for cell, (at_short, at_long) in fig.spreads.items():
            print(
                f"spread of {cell} over trials (worst/best perplexity): "
                f"{at_short:.2f} at {short}, {at_long:.2f} at {short * ratio}"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--short", type=int, default=None, help="S, the short budget in steps (default 100)")
    parser.add_argument("--ratio", type=int, default=None, help="L / S (default 10)")
    parser.add_argument(
        "--evals", type=int, default=None, help="validations within the short budget (default 5)"
    )
    parser.add_argument("--window", type=int, default=3, help="last_mean's window (default 3)")
    parser.add_argument("--cells", type=int, default=None, help="how many cells (default 32)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size of every model (default 64)")
    parser.add_argument(
        "--spread-trials", type=int, default=None, help="trials of the spread cells (default 4)"
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder holding ptb/ and nasbench-nlp/"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--out", type=Path, default=None, help=f"CSV of the runs (default {RESULTS})")
    parser.add_argument("--table", type=Path, default=None, help="analyse this CSV instead of training")
    parser.add_argument("--quick", action="store_true", help="CI: 3 cells, S 4, L 12, hidden 8")
    args = parser.parse_args(argv)
    quick = {"short": 4, "ratio": 3, "cells": 3, "hidden": 8, "spread_trials": 2, "evals": 4}
    full = {"short": 100, "ratio": 10, "cells": 32, "hidden": 64, "spread_trials": 4, "evals": 5}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.evals < 1 or args.short < args.evals or args.ratio < 2:
        parser.error("expected --short >= --evals >= 1 and --ratio >= 2")
    if args.out is None and not args.quick and args.table is None:
        args.out = RESULTS
    return args


def main(argv: list[str] | None = None) -> list[ProtocolFigures]:
    args = parse_args(argv)
    if args.table is not None:
        rows = read_rows(args.table)
    else:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
        rows = measure(args)
    seconds = [float(r["seconds"]) for r in rows]
    print(f"\n{len(rows)} runs, {np.mean(seconds):.1f} s per run on average")
    figures = analyse(rows, args.short, args.ratio, args.window)
    print_figures(figures, args.short, args.ratio)
    return figures


if __name__ == "__main__":
    main()
