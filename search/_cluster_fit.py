"""Whether the connected Ray cluster can run a job's trials at all.

Ray queues a task that no node can run and waits, silently, for a node that may never come
(``resources: {cpus: 1000}``, or ``gpus: 1`` on a CPU-only cluster). A job is refused before
anything is written when no alive node has every resource one trial asks for
(:func:`check_cluster_fit`), and a running job whose cluster loses the last such node fails its
waiting trials after a bounded wait (:class:`FitWatch`) instead of hanging.

Example:
    >>> from search._job_limits import Resources
    >>> nodes = [{"CPU": 2.0, "memory": 8e9}]
    >>> fit_problem(Resources(cpus=1), nodes) is None
    True
    >>> print(fit_problem(Resources(cpus=1, gpus=1), nodes))  # doctest: +NORMALIZE_WHITESPACE
    resources.gpus: a trial asks for 1 CPU and 1 GPU, but no node of the cluster has that much
    (the largest node has 2 CPUs and no GPU)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from cells import CellsearchError

if TYPE_CHECKING:
    from search._job_limits import Resources

__all__ = [
    "RESOURCE_WAIT_SECONDS",
    "ClusterFitError",
    "FitWatch",
    "check_cluster_fit",
    "fit_problem",
    "ray_address_problem",
]

RESOURCE_WAIT_SECONDS = 120.0
"""How long a running job waits for a node that can run its trials, once none is left, before
it fails the waiting trials (a node restarting, or an autoscaler adding one, takes about this)."""

NodeResources = Mapping[str, float]


class ClusterFitError(CellsearchError, RuntimeError):
    """No node of the connected cluster can run one trial of the job, or it cannot be joined."""


_RAY_ADDRESS = re.compile(r"(auto|local|(ray://)?(\[[0-9A-Fa-f:]+\]|[A-Za-z0-9._-]+):\d{1,5})")


def ray_address_problem(address: str | None) -> str | None:
    """Why ``address`` cannot name a Ray cluster (``auto``, ``local``, ``HOST:PORT`` or
    ``ray://HOST:PORT``), else ``None``; checked before Ray is loaded.

    Example:
        >>> ray_address_problem("10.0.0.5:6379") is None, ray_address_problem("garbage")
        (True, "expected auto, local, HOST:PORT or ray://HOST:PORT, got 'garbage'")
    """
    if address is None or _RAY_ADDRESS.fullmatch(address):
        return None
    return f"expected auto, local, HOST:PORT or ray://HOST:PORT, got {address!r}"


def trial_demand(resources: Resources) -> dict[str, float]:
    """What one trial (or one population, which asks for the same) takes from a node, in Ray's names."""
    demand = {"CPU": resources.cpus, "GPU": resources.gpus, **resources.custom}
    return {name: amount for name, amount in demand.items() if amount > 0}


def fit_problem(resources: Resources, nodes: Sequence[NodeResources]) -> str | None:
    """Why no node of ``nodes`` (each node's total resources) can run one trial, else ``None``.
    The line starts with the settings to change: those no node has enough of (or all of them,
    when each is there but never together on one node)."""
    demand = trial_demand(resources)
    if any(all(node.get(name, 0.0) >= amount - 1e-9 for name, amount in demand.items()) for node in nodes):
        return None
    largest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
    names = ["CPU", "GPU", *sorted(set(demand) - {"CPU", "GPU"})]
    short = [n for n in demand if max((node.get(n, 0.0) for node in nodes), default=0.0) < demand[n] - 1e-9]
    fields = ", ".join(_field(n) for n in (short or list(demand)))
    has = f"the largest node has {_amounts(largest, names)}" if nodes else "the cluster has no alive node"
    return (
        f"{fields}: a trial asks for {_amounts(demand, [n for n in names if n in demand])}, "
        f"but no node of the cluster has that much ({has})"
    )


def _field(resource: str) -> str:
    return {"CPU": "resources.cpus", "GPU": "resources.gpus"}.get(resource, f"resources.custom.{resource}")


def alive_nodes() -> list[dict[str, float]]:
    """The total resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def check_cluster_fit(resources: Resources) -> None:
    """Raise :class:`ClusterFitError` when no alive node of the connected cluster can run one trial."""
    problem = fit_problem(resources, alive_nodes())
    if problem is not None:
        raise ClusterFitError(problem)


class FitWatch:
    """Notices, while a job runs, that no node can run its trials any more; says so once the
    condition has lasted ``patience`` seconds (checked at most every ``interval`` seconds)."""

    def __init__(
        self,
        resources: Resources,
        patience: float = RESOURCE_WAIT_SECONDS,
        interval: float = 5.0,
        nodes: Callable[[], Sequence[NodeResources]] = alive_nodes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resources, self._patience, self._interval = resources, patience, interval
        self._nodes, self._clock = nodes, clock
        self._checked_at = -float("inf")
        self._unfit_since: float | None = None
        self._problem: str | None = None

    def lost(self) -> str | None:
        """The reason to fail the waiting trials, once no node has fitted for ``patience`` seconds."""
        now = self._clock()
        if now - self._checked_at >= self._interval:
            self._checked_at = now
            self._problem = fit_problem(self._resources, self._nodes())
            if self._problem is None:
                self._unfit_since = None
            elif self._unfit_since is None:
                self._unfit_since = now
        if self._problem is None or self._unfit_since is None or now - self._unfit_since < self._patience:
            return None
        waited = now - self._unfit_since
        reason = self._problem.split(": ", 1)[1]
        return f"{reason}; waited {waited:.0f} s for one"


def _amounts(resources: Mapping[str, float], names: Sequence[str]) -> str:
    parts = []
    for name in names:
        amount = resources.get(name, 0.0)
        if amount <= 0:
            parts.append(f"no {name}")
            continue
        plural = "s" if amount != 1 and name in ("CPU", "GPU") else ""
        parts.append(f"{amount:g} {name}{plural}")
    return " and ".join(parts) if len(parts) <= 2 else ", ".join(parts[:-1]) + " and " + parts[-1]
