"""Joining the Ray cluster (or starting a local instance) and sizing a job to it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from cells import first_line
from search._cluster_fit import ClusterFitError
from search._jobspec import JobSpec
from search._library_logs import RAY_TOKEN_LOGGER, ray_logging, verbose


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Join the cluster at ``address`` or start a local instance, unless Ray is up already."""
    if ray.is_initialized():
        yield
        return
    # Ray warns at every start that token authentication is on (its default): noise on the
    # terminal of every job, and in front of the one line a refused job prints (--verbose shows it).
    if not verbose():
        logging.getLogger(RAY_TOKEN_LOGGER).setLevel(logging.ERROR)
    try:
        ray.init(address=address, include_dashboard=False, **ray_logging())
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterFitError(f"cannot join the Ray cluster at {address}: {first_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def cluster_slots(spec: JobSpec) -> int:
    """Trials the cluster can run at once with the job's resources per trial."""
    total = ray.cluster_resources()
    resources = spec.resources
    slots = [total.get("CPU", 1.0) / resources.cpus]
    if resources.gpus > 0:
        slots.append(total.get("GPU", 0.0) / resources.gpus)
    for name, amount in resources.custom.items():
        slots.append(total.get(name, 0.0) / amount)
    return max(1, int(min(slots) + 1e-9))
