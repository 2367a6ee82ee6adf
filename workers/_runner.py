"""The Ray side of a trial: :func:`evaluate_trial` as a Ray task, and the relay that carries
its intermediate validation values to the driver and the driver's prune/continue answers back.

Workers never open the database: a trial returns its :class:`TrialResult` (with
``worker`` filled in: Ray node id, host, pid, device), and pruning goes through the driver,
which owns the Optuna studies.

Example (in this process, with a stand-in for the training; Ray runs :func:`run_trial` the same way):
    >>> from workers import Direction, TrialStatus
    >>> def instant(cell, task, hparams, budget, report, device):
    ...     return TrialResult(status=TrialStatus.OK, task=task.name, metric="accuracy",
    ...                        direction=Direction.MAXIMIZE, value=0.5, hparams=hparams)
    >>> request = TrialRequest(key="t1", cell=library_cell("gru"), task="memorize")
    >>> result = run_trial(request, evaluate=instant)
    >>> result.value, sorted(result.worker)
    (0.5, ['device', 'hostname', 'pid'])
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

import ray
from pydantic import BaseModel, ConfigDict, Field

from cells import CellGraph
from cells import library as cell_library
from workers._results import Budget, TrialResult

Evaluate = Callable[..., TrialResult]
"""The signature of :func:`workers.evaluate_trial` (cell, task, hparams, budget, report, device)."""


class TrialRequest(BaseModel):
    """Everything a worker needs to run one trial (small and picklable; no database handles)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    """Unique per attempt; identifies the trial's reports at the relay."""
    cell: dict[str, Any]
    """The cell graph as JSON data."""
    task: str
    settings: dict[str, Any] = Field(default_factory=dict)
    hparams: dict[str, Any] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    device: str = "auto"
    report: bool = False
    """Send intermediate values to the relay and obey its prune answers."""


def library_cell(name: str) -> dict[str, Any]:
    """A library cell as request data (handy in examples and tests)."""
    return cell_library.get(name).model_dump(mode="json")


def worker_info() -> dict[str, Any]:
    """Where this process runs: Ray node id (when inside Ray), host name and pid."""
    info: dict[str, Any] = {"hostname": socket.gethostname(), "pid": os.getpid()}
    if ray.is_initialized():
        info["node_id"] = ray.get_runtime_context().get_node_id()
    return info


def pin_threads() -> None:
    """Give torch as many threads as Ray gave this task CPUs (at least one).

    Torch defaults to one thread per core in every worker process; with several trials
    per machine they oversubscribe the cores and small models run many times slower.
    """
    import torch

    cpus = 1.0
    if ray.is_initialized():
        cpus = float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    threads = max(1, int(cpus))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def run_trial(request: TrialRequest, relay: Any = None, evaluate: Evaluate | None = None) -> TrialResult:
    """Run one trial here (the body of the Ray task); ``relay``: a :class:`PruneRelay` handle."""
    from workers._evaluate import evaluate_trial
    from workers._task import TaskSpec

    pin_threads()
    info = worker_info()
    report: Callable[[int, float], bool] | None = None
    if relay is not None:
        relay.started.remote(request.key, info)  # no wait: the driver learns which worker runs it
        if request.report:

            def report(step: int, value: float) -> bool:
                return bool(ray.get(relay.report.remote(request.key, step, float(value))))

    result = (evaluate or evaluate_trial)(
        CellGraph.parse(request.cell),
        TaskSpec(name=request.task, settings=request.settings),
        request.hparams,
        request.budget,
        report,
        request.device,
    )
    result.worker = {**info, "device": result.device}
    return result


_RUNNERS: dict[Any, Any] = {}


def trial_runner(evaluate: Evaluate | None = None) -> Any:
    """The Ray remote function running trials with ``evaluate`` (default :func:`evaluate_trial`).

    Call ``.options(num_cpus=..., num_gpus=...)`` on it per job. Ray retries nothing by
    itself (``max_retries=0``): the driver decides, so a retried trial is recorded as such.
    """
    if evaluate not in _RUNNERS:

        def run(request: TrialRequest, relay: Any) -> TrialResult:
            return run_trial(request, relay, evaluate)

        run.__name__ = run.__qualname__ = "run_trial"
        _RUNNERS[evaluate] = ray.remote(max_retries=0, retry_exceptions=False)(run)
    return _RUNNERS[evaluate]


class PopulationRequest(BaseModel):
    """Several trials of one cell on one task that share a shape, to train as one population.

    ``keys[i]`` identifies member ``i`` (``hparams[i]``) at the relay, as a lone trial's key does.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    keys: list[str] = Field(min_length=1)
    cell: dict[str, Any]
    task: str
    settings: dict[str, Any] = Field(default_factory=dict)
    hparams: list[dict[str, Any]] = Field(min_length=1)
    budget: Budget = Field(default_factory=Budget)
    device: str = "auto"
    report: bool = False


def run_population(
    request: PopulationRequest, relay: Any = None, evaluate: Evaluate | None = None
) -> list[TrialResult]:
    """Run a population here (the body of its Ray task): one :class:`TrialResult` per member, in order.

    Each member's intermediate values go to the relay under its own key, and its prune answer
    stops that member alone. ``evaluate`` (benchmarks): train the members one after another
    with it instead of :func:`workers.train_population`.

    Example (in this process, with a stand-in for the training):
        >>> from workers import Direction, TrialStatus
        >>> def instant(cell, task, hparams, budget, report, device):
        ...     return TrialResult(status=TrialStatus.OK, task=task.name, metric="accuracy",
        ...                        direction=Direction.MAXIMIZE, value=hparams["learning_rate"],
        ...                        hparams=hparams)
        >>> request = PopulationRequest(keys=["a", "b"], cell=library_cell("gru"), task="memorize",
        ...                             hparams=[{"learning_rate": 0.1}, {"learning_rate": 0.2}])
        >>> [r.value for r in run_population(request, evaluate=instant)]
        [0.1, 0.2]
    """
    from workers._population import train_population
    from workers._task import TaskSpec

    if len(request.keys) != len(request.hparams):
        raise ValueError(f"keys: expected one per member ({len(request.hparams)}), got {len(request.keys)}")
    pin_threads()
    info = worker_info()
    report: Callable[[int, int, float], bool] | None = None
    if relay is not None:
        for key in request.keys:
            relay.started.remote(key, info)
        if request.report:

            def report(member: int, step: int, value: float) -> bool:
                return bool(ray.get(relay.report.remote(request.keys[member], step, float(value))))

    cell, task = CellGraph.parse(request.cell), TaskSpec(name=request.task, settings=request.settings)
    if evaluate is None:
        results = train_population(cell, task, request.hparams, request.budget, report, request.device)
    else:
        results = [
            evaluate(cell, task, hp, request.budget, _member_report(report, i), request.device)
            for i, hp in enumerate(request.hparams)
        ]
    for result in results:
        result.worker = {**info, "device": result.device}
    return results


def _member_report(
    report: Callable[[int, int, float], bool] | None, member: int
) -> Callable[[int, float], bool] | None:
    if report is None:
        return None
    return lambda step, value: report(member, step, value)


_POPULATION_RUNNERS: dict[Any, Any] = {}


def population_runner(evaluate: Evaluate | None = None) -> Any:
    """The Ray remote function running populations (see :func:`trial_runner`, :func:`run_population`)."""
    if evaluate not in _POPULATION_RUNNERS:

        def run(request: PopulationRequest, relay: Any) -> list[TrialResult]:
            return run_population(request, relay, evaluate)

        run.__name__ = run.__qualname__ = "run_population"
        _POPULATION_RUNNERS[evaluate] = ray.remote(max_retries=0, retry_exceptions=False)(run)
    return _POPULATION_RUNNERS[evaluate]


class PruneRelay:
    """Carries intermediate values from trials to the driver and its answers back.

    A trial's ``report`` call waits here until the driver answers. The driver long-polls
    :meth:`poll` (which also tells which worker started which trial), reports each value to
    the trial's Optuna study, and sends the prune/continue answers with :meth:`answer`.
    Run it as an asyncio Ray actor: ``ray.remote(num_cpus=0)(PruneRelay).remote()``.
    """

    def __init__(self) -> None:
        self._reports: list[tuple[str, int, float]] = []
        self._started: list[tuple[str, dict[str, Any]]] = []
        self._waiting: dict[tuple[str, int], asyncio.Future[bool]] = {}
        self._workers: dict[str, dict[str, Any]] = {}
        self._event: asyncio.Event | None = None

    def _wake(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        self._event.set()

    async def started(self, key: str, info: dict[str, Any]) -> None:
        self._workers[key] = info
        self._started.append((key, info))
        self._wake()

    async def report(self, key: str, step: int, value: float) -> bool:
        """From a worker: the value at ``step``; returns True when the trial should stop."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting[(key, step)] = future
        self._reports.append((key, step, value))
        self._wake()
        return await future

    async def poll(
        self, timeout: float
    ) -> tuple[list[tuple[str, int, float]], list[tuple[str, dict[str, Any]]]]:
        """From the driver: new reports and trial starts, waiting up to ``timeout`` s for one."""
        if not self._reports and not self._started:
            if self._event is None:
                self._event = asyncio.Event()
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        reports, started = self._reports, self._started
        self._reports, self._started = [], []
        return reports, started

    async def answer(self, decisions: list[tuple[str, int, bool]]) -> None:
        """From the driver: ``(key, step, stop)`` for reports it has handled."""
        for key, step, stop in decisions:
            future = self._waiting.pop((key, step), None)
            if future is not None and not future.done():
                future.set_result(stop)

    async def forget(self, keys: list[str]) -> None:
        """Trials that ended (or died): drop their worker info; a report still waiting gets "stop"."""
        gone = set(keys)
        for key in gone:
            self._workers.pop(key, None)
        for waiting_key in [k for k in self._waiting if k[0] in gone]:
            future = self._waiting.pop(waiting_key)
            if not future.done():
                future.set_result(True)

    async def workers(self) -> dict[str, dict[str, Any]]:
        """Which worker (pid, host, node) runs each started trial that has not ended."""
        return dict(self._workers)


def start_relay(name: str | None = None, node_id: str | None = None) -> Any:
    """Start a :class:`PruneRelay` actor (taking no CPU) and return its handle.

    ``node_id``: the node to run it on, the driver's (so it lives and dies with the driver,
    not with a GPU worker node); a soft preference.
    """
    options: dict[str, Any] = {"num_cpus": 0, "max_concurrency": 10_000}
    if name is not None:
        options["name"] = name
    if node_id is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=True)
    return ray.remote(PruneRelay).options(**options).remote()  # type: ignore[attr-defined]
