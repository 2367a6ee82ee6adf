#!/usr/bin/env bash
# Check cellsearch on a CUDA machine: the GPU tests (compiled cells against the reference on
# CUDA, out-of-memory handling, population members against their trials alone), a short job
# with fractional GPUs, cell speed against cuDNN and the speed-up of population training.
# Run from a checkout with a CUDA build of torch and `pip install -e ".[dev]"`:
#
#   bash scripts/gpu_check.sh
#
# Exits 0 when every step passed, 1 when one failed, 2 when no CUDA device is visible.
# CELL_SPEED_ARGS overrides the benchmark's arguments (default: --device cuda).
set -uo pipefail
cd "$(dirname "$0")/.."

section() { printf '\n==== %s ====\n' "$*"; }
steps=()
outcomes=()
record() {
    steps+=("$1")
    outcomes+=("$2")
    printf -- '-> %s: %s\n' "$1" "$2"
}

section "CUDA devices"
if ! python - <<'EOF'; then
import sys

import torch

if not torch.cuda.is_available():
    sys.exit(f"no CUDA device visible to torch {torch.__version__} (built for CUDA {torch.version.cuda})")
for index in range(torch.cuda.device_count()):
    props = torch.cuda.get_device_properties(index)
    print(f"cuda:{index} {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
EOF
    echo "gpu_check: no usable CUDA device on this machine; nothing else was run" >&2
    exit 2
fi

section "GPU tests (pytest -m gpu)"
python -m pytest -q -p no:cacheprovider -m gpu tests
case $? in
    0) record "GPU tests" PASS ;;
    5) record "GPU tests" "FAIL (no test is marked gpu)" ;;
    *) record "GPU tests" FAIL ;;
esac

section "Short job on CUDA, four trials per GPU (examples/gpu_smoke.yaml)"
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
# A local Ray instance that sees this machine's GPUs, and scratch stores.
if env -u RAY_ADDRESS -u CELLSEARCH_DB_URL -u MLFLOW_TRACKING_URI \
    cellsearch launch examples/gpu_smoke.yaml \
    --db "sqlite:///$workdir/gpu_smoke.db" --mlflow "sqlite:///$workdir/mlflow.db" &&
    python - "$workdir/gpu_smoke.db" <<'EOF'; then
import sqlite3
import sys
from datetime import datetime

db = sqlite3.connect(sys.argv[1])
trials = db.execute("SELECT status, device, started_at, finished_at FROM cs_trials").fetchall()
problems = []
if not trials:
    problems.append("no trials were recorded")
not_ok = [status for status, *_ in trials if status != "ok"]
if not_ok:
    problems.append(f"{len(not_ok)} of {len(trials)} trials did not end ok: {sorted(set(not_ok))}")
off_gpu = [device for _, device, *_ in trials if not str(device).startswith("cuda")]
if off_gpu:
    problems.append(f"{len(off_gpu)} trials ran off the GPU: {sorted(set(map(str, off_gpu)))}")
# How many trials were in flight at once (the job asks for a quarter of a GPU each).
events = []
for _, _, started, finished in trials:
    if started and finished:
        events += [(datetime.fromisoformat(started), 1), (datetime.fromisoformat(finished), -1)]
in_flight = peak = 0
for _, change in sorted(events):
    in_flight += change
    peak = max(peak, in_flight)
print(f"{len(trials)} trials, devices {sorted(set(map(str, (d for _, d, *_ in trials))))}, at most {peak} at once")
sys.exit("; ".join(problems) or None)
EOF
    record "GPU job" PASS
else
    record "GPU job" FAIL
fi

section "Cell speed against cuDNN (benchmarks/cell_speed.py)"
if [[ -f benchmarks/cell_speed.py ]]; then
    # shellcheck disable=SC2086  # the arguments are meant to split
    if python benchmarks/cell_speed.py ${CELL_SPEED_ARGS:---device cuda}; then
        record "cell speed" PASS
    else
        record "cell speed" FAIL
    fi
else
    record "cell speed" "FAIL (benchmarks/cell_speed.py is missing)"
fi

section "Population training against trials one by one (benchmarks/population_speed.py)"
if python benchmarks/population_speed.py --device cuda --cells lstm gru mut1; then
    record "population" PASS
else
    record "population" FAIL
fi

section "Summary"
failed=0
for i in "${!steps[@]}"; do
    printf '%-12s %s\n' "${steps[$i]}" "${outcomes[$i]}"
    [[ ${outcomes[$i]} == PASS ]] || failed=1
done
exit "$failed"
