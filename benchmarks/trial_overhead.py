"""What a trial costs besides training, and how fast a cell trains against torch.nn.LSTM.

1. Overhead: time from ``evaluate_trial`` being called to the first training step, for a
   second trial in the same process (task data and compiled cells cached). Target: < 0.5 s.
2. Throughput: training steps per second (validation excluded) of the ``lstm`` library cell
   on ``arith`` relative to a model built around torch.nn.LSTM, the same sizes, trained by
   the same loop in the same process. Target: >= 0.75.

Runs alternate between the two layers and the best of ``--repeats`` counts, which damps
noise from other processes on the machine.

    python benchmarks/trial_overhead.py [--hidden 128] [--steps 60] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch

from workers import Budget, TrialResult, evaluate_trial, make_task, torch_lstm_factory


def steps_per_second(result: TrialResult) -> float:
    assert result.status == "ok", result.error
    return result.steps / result.metrics["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    task = make_task("arith", valid_size=100, test_size=100)
    hparams = {"hidden_size": args.hidden, "num_layers": args.layers, "batch_size": args.batch_size}
    one_step = Budget(max_steps=1, eval_every=1, eval_batch_size=100)

    started = time.perf_counter()
    cold = evaluate_trial("lstm", task, hparams, one_step, device=args.device)
    cold_seconds = time.perf_counter() - started
    warm = [
        evaluate_trial("lstm", task, {**hparams, "seed": s}, one_step, device=args.device) for s in (1, 2, 3)
    ]
    warm_startup = min(r.metrics["startup_seconds"] for r in warm)
    print(
        f"device {cold.device}, torch threads {torch.get_num_threads()}, hidden {args.hidden}, "
        f"layers {args.layers}, batch {args.batch_size}"
    )
    cold_startup = cold.metrics["startup_seconds"]
    print(f"first trial: {cold_startup:.3f} s to the first step ({cold_seconds:.2f} s in all)")
    print(f"warm trial:  {warm_startup:.3f} s to the first step (target < 0.5 s)")

    budget = Budget(max_steps=args.steps, eval_every=args.steps, eval_batch_size=100)
    ours: list[float] = []
    reference: list[float] = []
    for _ in range(args.repeats):
        ours.append(steps_per_second(evaluate_trial("lstm", task, hparams, budget, device=args.device)))
        lstm = evaluate_trial(
            "lstm", task, hparams, budget, device=args.device, layer_factory=torch_lstm_factory
        )
        reference.append(steps_per_second(lstm))
    ratio = max(ours) / max(reference)
    print(f"lstm cell:      {max(ours):7.1f} steps/s (runs: {', '.join(f'{v:.1f}' for v in ours)})")
    print(f"torch.nn.LSTM:  {max(reference):7.1f} steps/s (runs: {', '.join(f'{v:.1f}' for v in reference)})")
    print(f"throughput relative to torch.nn.LSTM: {ratio:.2f} (target >= 0.75)")


if __name__ == "__main__":
    main()
