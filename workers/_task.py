"""The task interface: every task is a registered, pydantic-configured data source with a
primary metric and its direction."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict
from torch import Tensor


class Batch(NamedTuple):
    """One batch, sequence first.

    ``inputs``: ``[T, B]`` int64 token ids (``Task.input_kind == "tokens"``) or
    ``[T, B, D]`` float frames (``"frames"``). ``targets``: ``[T, B]`` int64 class ids
    (``Task.loss == "ce"``) or ``[T, B, D]`` float multi-hot (``"bce"``). ``mask``:
    ``[T, B]`` float, 1 where a position counts in the loss and the metrics.
    ``continues``: the batch continues the previous batch's sequences (truncated BPTT),
    so the recurrent state is carried over (detached) instead of reset.
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor
    continues: bool = False


Predict = Callable[[Batch], Tensor]
"""Model outputs for a batch: logits ``[T, B, output_size]``. The caller carries the
recurrent state across batches whose ``continues`` is true."""


class TaskConfig(BaseModel):
    """Settings shared by every task; each task subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0


class Task(ABC):
    """A task: training batches, fixed held-out splits and metrics.

    Subclasses set the class variables, take their config in ``__init__`` and are
    registered with :func:`register_task`.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[TaskConfig]]
    primary_metric: ClassVar[str]
    direction: ClassVar[Literal["maximize", "minimize"]]
    input_kind: ClassVar[Literal["tokens", "frames"]]
    loss: ClassVar[Literal["ce", "bce"]]

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    @property
    @abstractmethod
    def input_size(self) -> int:
        """Vocabulary size (tokens) or frame width (frames)."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """Number of classes (ce) or of independent binary outputs (bce)."""

    @abstractmethod
    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        """An endless stream of training batches, deterministic for ``seed``."""

    @abstractmethod
    def eval_batches(self, split: Literal["valid", "test"], batch_size: int) -> Iterable[Batch]:
        """The fixed held-out split, the same batches every call."""

    @abstractmethod
    def evaluate(self, predict: Predict, split: Literal["valid", "test"], batch_size: int) -> dict[str, Any]:
        """All metrics of the task on a split; includes ``primary_metric``."""


TASKS: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task to the registry under ``cls.name``."""
    TASKS[cls.name] = cls
    return cls
