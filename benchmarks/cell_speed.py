"""Speed and memory of compiled cell layers against torch.nn.LSTM / torch.nn.GRU.

Prints, for each hidden size, the training throughput (forward + backward, T=35, batch 32,
input = hidden) of ``build_layer(lstm)`` and ``build_layer(gru)`` in each mode relative to
torch.nn.LSTM / torch.nn.GRU measured in the same process (> 1 means faster), the first-call
time of a layer for a cell not seen before (build + code generation + first step), and the
peak memory of one training step (2 layers, hidden 512, T=70, batch 64) relative to
torch.nn.LSTM / GRU.

Timing: each configuration runs in interleaved rounds (reference, then every mode, repeated)
and the median of the rounds is reported, so slow drifts from other processes hit all of
them alike. On a busy machine wall-clock ratios swing by tens of percent (OpenMP threads
wait for each other); ``--clock cpu`` measures the CPU time of a single thread instead, which
other processes disturb much less.

Memory on CPU: each variant runs in a fresh subprocess, which resets the peak
resident set size (``/proc/self/clear_refs``), runs one training step and reads the peak
(``VmHWM``); the figure is peak minus the resident size before the step. On CUDA it is
``torch.cuda.max_memory_allocated`` over the step.

Usage:
    python benchmarks/cell_speed.py              # hidden 128, 256, 512; about a minute
    python benchmarks/cell_speed.py --quick      # hidden 256 only, fewer rounds
    python benchmarks/cell_speed.py --clock cpu  # single-thread CPU time (for a busy machine)
    python benchmarks/cell_speed.py --compile    # also mode="compile" (minutes of compiling)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cells import build_layer, clear_compile_cache, library

T, BATCH = 35, 32
MEMORY_SIZES = {"hidden": 512, "steps": 70, "batch": 64, "layers": 2}
REFERENCES: dict[str, type[nn.Module]] = {"lstm": nn.LSTM, "gru": nn.GRU}


def train_step(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        out, _ = model(x)
        out.sum().backward()

    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


CLOCK = time.perf_counter


def interleaved_medians(fns: dict[str, Callable[[], None]], rounds: int, device: str) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            start = CLOCK()
            fn()
            sync(device)
            times[name].append(CLOCK() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def first_call_seconds(cell: str, hidden: int, mode: str, device: str) -> float:
    """Build a layer for a cell not in the cache and run one training step."""
    clear_compile_cache()
    x = torch.randn(T, BATCH, hidden, device=device)
    sync(device)
    start = time.perf_counter()
    layer = build_layer(library.get(cell), hidden, hidden, mode=mode).to(device)  # type: ignore[arg-type]
    train_step(layer, x)()
    sync(device)
    return time.perf_counter() - start


def speed(hiddens: list[int], modes: list[str], rounds: int, device: str) -> None:
    clock = "CPU time" if CLOCK is time.thread_time else "wall clock"
    print(
        f"throughput vs torch.nn (forward + backward, T={T}, batch {BATCH}, input = hidden, {device}, "
        f"{torch.get_num_threads()} threads, {clock}); > 1 is faster"
    )
    header = f"{'hidden':>6} {'cell':>5} {'torch.nn ms':>12} " + " ".join(f"{m:>9}" for m in modes)
    print(header)
    for hidden in hiddens:
        x = torch.randn(T, BATCH, hidden, device=device)
        for cell, reference in REFERENCES.items():
            torch.manual_seed(0)
            fns = {"torch.nn": train_step(reference(hidden, hidden).to(device), x)}
            for mode in modes:
                layer = build_layer(library.get(cell), hidden, hidden, mode=mode).to(device)  # type: ignore[arg-type]
                fns[mode] = train_step(layer, x)
            med = interleaved_medians(fns, rounds, device)
            ratios = " ".join(f"{med['torch.nn'] / med[m]:>9.2f}" for m in modes)
            print(f"{hidden:>6} {cell:>5} {med['torch.nn'] * 1e3:>12.1f} {ratios}", flush=True)
    hidden = hiddens[len(hiddens) // 2]
    print(f"\nfirst call (build + code generation + first training step), hidden {hidden}, new cell:")
    for cell in REFERENCES:
        parts = [f"{m} {first_call_seconds(cell, hidden, m, device):.3f} s" for m in modes]
        print(f"  {cell:>5}: " + ", ".join(parts))


# -- memory -----------------------------------------------------------------------------------


def memory_probe(variant: str, device: str) -> int:
    """Peak bytes above the starting point during one training step (run in a subprocess)."""
    cell, mode = variant.split(":")
    s = MEMORY_SIZES
    torch.manual_seed(0)
    if mode == "torch.nn":
        model = REFERENCES[cell](s["hidden"], s["hidden"], num_layers=s["layers"])
    else:
        model = build_layer(library.get(cell), s["hidden"], s["hidden"], s["layers"], mode=mode)  # type: ignore[arg-type]
    model = model.to(device)
    x = torch.randn(s["steps"], s["batch"], s["hidden"], device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        train_step(model, x)()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set size
    base = _status_kib("VmRSS")
    train_step(model, x)()
    return (_status_kib("VmHWM") - base) * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory(modes: list[str], device: str) -> None:
    s = MEMORY_SIZES
    print(
        f"\npeak memory of one training step ({s['layers']} layers, hidden {s['hidden']}, T={s['steps']}, "
        f"batch {s['batch']}, {device}) relative to torch.nn:"
    )
    if device == "cpu" and not Path("/proc/self/clear_refs").exists():
        print("  skipped: needs Linux /proc to read the peak resident set size")
        return
    for cell in REFERENCES:
        peaks = {}
        for mode in ["torch.nn", *modes]:
            cmd = [
                sys.executable,
                __file__,
                "--memory-probe",
                f"{cell}:{mode}",
                "--device",
                device,
                "--threads",
                str(torch.get_num_threads()),
            ]
            result = subprocess.run(cmd, capture_output=True, text=True, check=True)
            peaks[mode] = json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"]
        parts = [f"{m} {peaks[m] / peaks['torch.nn']:.2f}x" for m in modes]
        print(f"  {cell:>5}: torch.nn {peaks['torch.nn'] / 2**20:.0f} MiB; " + ", ".join(parts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="hidden 256 only, fewer rounds")
    parser.add_argument("--hidden", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per configuration")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: single-thread CPU time (sets --threads 1)",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help='also mode="compile" (slow first call)')
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--memory-probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global CLOCK
    if args.clock == "cpu":
        if args.device != "cpu":
            parser.error("--clock cpu measures CPU work; use it with --device cpu")
        CLOCK, args.threads = time.thread_time, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps({"peak_bytes": memory_probe(args.memory_probe, args.device)}))
        return
    modes = ["auto", "fused", *(["compile"] if args.compile else [])]
    hiddens = [256] if args.quick else args.hidden
    rounds = args.rounds or (5 if args.quick else 9)
    speed(hiddens, modes, rounds, args.device)
    if not args.no_memory:
        memory(["auto", "fused"], args.device)


if __name__ == "__main__":
    main()
