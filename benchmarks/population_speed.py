"""Population training vs the same trials one after another, in one process.

For each cell and hidden size, twenty trials of ``arith`` (different seeds, learning rates,
clipping norms and forget biases; one shape) train for a fixed number of steps, first one
after another with :func:`workers.evaluate_trial`, then as one population with
:func:`workers.train_population`. Both include the final validation (a small validation
set, so training dominates). Printed: member-steps per second of each and their ratio,
by wall clock and by this process's CPU time (the CPU figure is steadier on a shared
machine). A warm-up run of each path comes first.

    python benchmarks/population_speed.py [--members 20] [--steps 30] [--hidden 128 256]
        [--cells lstm gru] [--dropout 0.0] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch

from workers import Budget, HyperParams, evaluate_trial, make_task, train_population


def trials(members: int, hidden: int, dropout: float) -> list[HyperParams]:
    return [
        HyperParams(
            hidden_size=hidden,
            learning_rate=1e-3 * (1 + k % 5),
            max_grad_norm=[1.0, 5.0, None][k % 3],
            forget_bias=[None, 1.0][k % 2],
            dropout=dropout,
            seed=k,
        )
        for k in range(members)
    ]


def timed(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    task = make_task("arith", valid_size=64, test_size=64)
    budget = Budget(max_steps=args.steps, eval_every=10 * args.steps, eval_batch_size=64)
    warm = Budget(max_steps=2, eval_every=100, eval_batch_size=64)
    print(f"device={args.device} threads={torch.get_num_threads()} members={args.members} steps={args.steps}")
    print(f"{'cell':6} {'hidden':>6} {'alone/s':>9} {'pop/s':>9} {'ratio':>6} {'cpu ratio':>9}")
    for cell in args.cells:
        for hidden in args.hidden:
            hps = trials(args.members, hidden, args.dropout)
            train_population(cell, task, hps[:2], warm, device=args.device)
            evaluate_trial(cell, task, hps[0], warm, device=args.device)

            def alone(hps: list[HyperParams] = hps, cell: str = cell) -> None:
                for hp in hps:
                    result = evaluate_trial(cell, task, hp, budget, device=args.device)
                    assert result.status in ("ok", "diverged"), result.error

            def together(hps: list[HyperParams] = hps, cell: str = cell) -> None:
                results = train_population(cell, task, hps, budget, device=args.device)
                assert all(r.status in ("ok", "diverged") for r in results), results[0].error

            alone_wall, alone_cpu = timed(alone)
            pop_wall, pop_cpu = timed(together)
            work = args.members * args.steps
            print(
                f"{cell:6} {hidden:6d} {work / alone_wall:9.1f} {work / pop_wall:9.1f} "
                f"{alone_wall / pop_wall:6.2f} {alone_cpu / pop_cpu:9.2f}"
            )


if __name__ == "__main__":
    main()
