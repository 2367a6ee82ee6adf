#!/bin/sh
# Entry point of the cellsearch image.
#
# A Ray driver must run on a Ray node, so a container that launches jobs (CELLSEARCH_JOIN_RAY=1)
# first joins the cluster at RAY_ADDRESS as a node offering no CPUs and no GPUs: trials never
# land on it, they go to the GPU workers. Every other container runs its command directly.
set -eu

if [ "${CELLSEARCH_JOIN_RAY:-0}" = "1" ]; then
    : "${RAY_ADDRESS:?CELLSEARCH_JOIN_RAY=1 needs RAY_ADDRESS (host:port of the Ray head)}"
    if ! ray start --address="$RAY_ADDRESS" --num-cpus=0 --num-gpus=0 --disable-usage-stats \
        >/tmp/ray-join.log 2>&1; then
        cat /tmp/ray-join.log >&2
        echo "entrypoint: could not join the Ray cluster at $RAY_ADDRESS" >&2
        exit 1
    fi
fi

exec "$@"
