"""Do the zero-cost proxies predict how well a cell trains? Spearman rank correlation, measured.

Cells: the library, mutation chains from every library cell (``cells.mutate``) and random
cells (``cells.random_cell``), all from fixed seeds, duplicates (same canonical hash)
removed. For each cell: every proxy's score at initialisation (``workers.prefilter_score``,
hidden 32, two batches) and a trained score: the best validation character accuracy on
``arith`` (two-digit operands) after a short real training run (``workers.evaluate_trial``,
hidden 32, Adam 1e-2, 150 steps), averaged over two training seeds. Failed or diverged runs
count as accuracy 0.

Printed: each proxy's Spearman rho against the trained score, the two seeds' rho with each
other (how well one short run predicts another: the ceiling a proxy could reach), and what a
pre-filter dropping the worst half by a proxy would keep of the true best tenth (random: half).
The data go to ``benchmarks/results/prefilter_correlation.csv``, a row per cell, written as
it goes.

    nice -n 10 python benchmarks/prefilter_correlation.py [--cells 200] [--steps 150] [--seeds 2]
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch

from cells import CellGraph, canonical_hash, library, mutate, random_cell
from workers import PROXIES, Budget, HyperParams, evaluate_trial, make_task, prefilter_score

RESULTS = Path(__file__).parent / "results" / "prefilter_correlation.csv"


def candidate_cells(count: int) -> list[tuple[str, CellGraph]]:
    """(source, cell) pairs: library, then mutation chains, then random cells; deterministic."""
    cells: list[tuple[str, CellGraph]] = [("library", library.get(name)) for name in library.names()]
    chains = max(1, (count - len(cells)) // 2)
    names = library.names()
    for i in range(chains // 4 + 1):
        rng = np.random.default_rng(1000 + i)
        cell = library.get(names[i % len(names)])
        for _ in range(4):
            cell, _ = mutate(cell, rng)
            cells.append((f"mutant-of-{names[i % len(names)]}", cell))
    seed = 0
    while len(cells) < count + 20:  # some random cells turn out duplicates
        cells.append(("random", random_cell(np.random.default_rng(2000 + seed))))
        seed += 1
    unique: dict[str, tuple[str, CellGraph]] = {}
    for source, cell in cells:
        unique.setdefault(canonical_hash(cell), (source, cell))
    return list(unique.values())[:count]


def ranks(values: list[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="stable")
    result = np.empty(len(array))
    sorted_values = array[order]
    start = 0
    while start < len(array):
        stop = start
        while stop + 1 < len(array) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        result[order[start : stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return result


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def kept_of_best(proxy: list[float], trained: list[float], drop: float = 0.5, best: float = 0.1) -> float:
    """Share of the truly best ``best`` fraction that survive dropping the worst ``drop`` by the proxy."""
    n = len(trained)
    top = set(np.argsort(-np.asarray(trained), kind="stable")[: max(1, int(best * n))].tolist())
    kept = set(np.argsort(-np.asarray(proxy), kind="stable")[: n - int(drop * n)].tolist())
    return len(top & kept) / len(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = make_task("arith", max_digits=2, valid_size=200, test_size=50)
    budget = Budget(max_steps=args.steps, eval_every=50, eval_batch_size=100)
    cells = candidate_cells(args.cells)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fields = ["name", "hash", "source", "nodes", "states"]
    fields += [*PROXIES, *(f"{p}_ms" for p in PROXIES)]
    fields += [f"trained_seed{s}" for s in range(args.seeds)] + ["trained", "train_seconds", "statuses"]
    rows: list[dict[str, object]] = []
    started = time.perf_counter()
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for n, (source, cell) in enumerate(cells):
            row: dict[str, object] = {
                "name": cell.name,
                "hash": canonical_hash(cell)[:16],
                "source": source,
                "nodes": len(cell.nodes),
                "states": cell.num_states,
            }
            for proxy in PROXIES:
                tick = time.perf_counter()
                try:
                    score = prefilter_score(
                        cell, task, hidden_size=args.hidden, batches=2, seed=0, proxy=proxy
                    )
                except Exception:  # a cell that cannot even run scores lowest
                    score = -math.inf
                row[proxy] = score
                row[f"{proxy}_ms"] = round(1000 * (time.perf_counter() - tick), 2)
            tick, values, statuses = time.perf_counter(), [], []
            for seed in range(args.seeds):
                hp = HyperParams(hidden_size=args.hidden, learning_rate=1e-2, seed=seed)
                result = evaluate_trial(cell, task, hp, budget, device="cpu")
                value = result.value if result.status == "ok" and result.value is not None else 0.0
                row[f"trained_seed{seed}"] = value
                values.append(value)
                statuses.append(result.status)
            row["trained"] = sum(values) / len(values)
            row["train_seconds"] = round(time.perf_counter() - tick, 2)
            row["statuses"] = "/".join(statuses)
            writer.writerow(row)
            handle.flush()
            rows.append(row)
            if (n + 1) % 20 == 0:
                print(f"{n + 1}/{len(cells)} cells, {time.perf_counter() - started:.0f} s", flush=True)
    report(rows, args.seeds)


def report(rows: list[dict[str, object]], seeds: int) -> None:
    trained = [float(r["trained"]) for r in rows]  # type: ignore[arg-type]
    print(
        f"\n{len(rows)} cells; trained score (mean best char accuracy): "
        f"min {min(trained):.3f}, median {float(np.median(trained)):.3f}, max {max(trained):.3f}"
    )
    if seeds >= 2:
        a = [float(r["trained_seed0"]) for r in rows]  # type: ignore[arg-type]
        b = [float(r["trained_seed1"]) for r in rows]  # type: ignore[arg-type]
        print(f"seed 0 vs seed 1 (noise ceiling): rho = {spearman(a, b):+.3f}")
    print(f"{'proxy':10} {'rho':>7} {'keeps best 10% (drop worst half)':>34} {'ms/cell':>8}")
    for proxy in PROXIES:
        scores = [float(r[proxy]) for r in rows]  # type: ignore[arg-type]
        rho = spearman(scores, trained)
        kept = kept_of_best(scores, trained)
        ms = float(np.mean([float(r[f"{proxy}_ms"]) for r in rows]))  # type: ignore[arg-type]
        print(f"{proxy:10} {rho:+7.3f} {kept:34.2f} {ms:8.1f}")
    seconds = float(np.mean([float(r["train_seconds"]) for r in rows]))  # type: ignore[arg-type]
    print(f"training: {seconds:.2f} s per cell ({seeds} runs)")


if __name__ == "__main__":
    main()
