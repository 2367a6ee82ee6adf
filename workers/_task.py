"""The task interface: every task is a registered, pydantic-configured data source with a
primary metric and its direction.

Tasks are built by name from validated settings, once per process:

Example:
    >>> from workers import make_task
    >>> task = make_task("arith", max_digits=2, valid_size=20, test_size=20)
    >>> task is make_task("arith", max_digits=2, valid_size=20, test_size=20)
    True
    >>> batch = next(task.train_batches(batch_size=4, seed=0))
    >>> batch.inputs.shape[1], task.primary_metric, task.direction
    (4, 'char_accuracy', 'maximize')
"""

from __future__ import annotations

import hashlib
import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from cells import CellsearchError
from workers._direction import Direction

Split = Literal["valid", "test"]


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


MAX_SEED = 2**63 - 1
"""Seeds are 64-bit signed integers (they are stored in the results database)."""
MAX_HELDOUT_TOKENS = 5_000_000
"""The most tokens the held-out sets of a generated task may hold together (a few hundred MB
of Python lists at most, built in seconds)."""
MAX_EXAMPLE_TOKENS = 100_000
"""The most tokens one generated example may be expected to hold (a training batch holds
``batch_size`` of them)."""


class TaskConfig(BaseModel):
    """Settings shared by every task; each task subclasses it with its own fields.

    Numbers are strict (``true`` is not 1, ``"3"`` is not 3) and finite, each within the
    range its field's description gives.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, ge=-MAX_SEED - 1, le=MAX_SEED, strict=True)
    """Seeds the task's data: any 64-bit signed integer."""

    def search_space_defaults(self) -> dict[str, Any]:
        """Search-space fields this task's training protocol sets, on top of
        :class:`workers.SearchSpace`'s defaults and under a job's ``hparams`` (none by default)."""
        return {}


class Task(ABC):
    """A task: training batches, fixed held-out splits and metrics.

    Subclasses set the class variables and take their config in ``__init__``; the registry
    (``workers._task_registry``) lists the built-in ones, :func:`workers.register_task` adds others.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[TaskConfig]]
    primary_metric: ClassVar[str]
    direction: ClassVar[Direction]
    metric_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    """The values ``primary_metric`` can take at all (an accuracy lies in ``[0, 1]``), or take
    meaningfully (a perplexity beyond the overflow bound of ``workers._text``): a filter
    threshold beyond them stops every cell, and a job with one is refused; a trial whose value
    falls outside (or is not finite) diverged (:meth:`admits`)."""
    input_kind: ClassVar[Literal["tokens", "frames"]]
    loss: ClassVar[Literal["ce", "bce"]]

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    @classmethod
    def admits(cls, value: float) -> bool:
        """Whether ``value`` of ``primary_metric`` is a result: finite and within ``metric_range``.

        A value outside is an overflow or a bug, never a score to rank (the run diverged).

        Example:
            >>> from workers import TextTask
            >>> TextTask.admits(35.2), TextTask.admits(1e304), TextTask.admits(float("nan"))
            (True, False, False)
        """
        low, high = cls.metric_range
        return math.isfinite(value) and low <= value <= high

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
    def eval_batches(self, split: Split, batch_size: int) -> Iterable[Batch]:
        """The fixed held-out split, the same batches every call."""

    @abstractmethod
    def evaluate(self, predict: Predict, split: Split, batch_size: int) -> dict[str, Any]:
        """All metrics of the task on a split; includes ``primary_metric``."""


# --- naming a task in a job file ------------------------------------------------------


class TaskConfigError(CellsearchError, ValueError):
    """Settings a task refuses; the message names the task, the field and the reason."""


class TaskSpec(BaseModel):
    """A task by name with its settings, as a job file writes it.

    Example:
        >>> TaskSpec(name="memorize", settings={"max_length": 6}).name
        'memorize'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    settings: dict[str, Any] = Field(default_factory=dict)


# --- helpers shared by the token tasks --------------------------------------------------


def derive_rng(*words: int) -> random.Random:
    """A random generator seeded from integers (any sign); equal words give equal streams.

    The words are hashed, so streams of nearby seeds are unrelated.

    Example:
        >>> derive_rng(0, 1).random() == derive_rng(0, 1).random() != derive_rng(0, 2).random()
        True
    """
    digest = hashlib.sha256(repr(tuple(int(word) for word in words)).encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


STREAM_TRAIN, STREAM_VALID, STREAM_TEST = 0, 1, 2
"""Stream ids mixed into :func:`derive_rng` so training and held-out data never share a stream."""

PAD = "<pad>"


@dataclass(frozen=True)
class Example:
    """One generated sequence: model inputs, targets and loss mask, position by position.

    ``key`` identifies the underlying problem (held-out and training sets never share a
    key); ``marks`` holds extra masks scored as ``{name}_accuracy``.
    """

    inputs: list[int]
    targets: list[int]
    mask: list[float]
    key: str
    marks: dict[str, list[float]] = field(default_factory=dict)


def collate(examples: Sequence[Example], pad: int = 0) -> tuple[Batch, dict[str, Tensor]]:
    """Right-pad examples into a ``[T, B]`` batch (padding is masked out) and its mark masks."""
    length = max(len(example.inputs) for example in examples)

    def stack(rows: Iterable[Sequence[float | int]], fill: float | int, dtype: torch.dtype) -> Tensor:
        padded = [list(row) + [fill] * (length - len(row)) for row in rows]
        return torch.tensor(padded, dtype=dtype).t().contiguous()

    inputs = stack((e.inputs for e in examples), pad, torch.long)
    targets = stack((e.targets for e in examples), pad, torch.long)
    mask = stack((e.mask for e in examples), 0.0, torch.float32)
    names = sorted({name for e in examples for name in e.marks})
    marks = {name: stack((e.marks.get(name, []) for e in examples), 0.0, torch.float32) for name in names}
    return Batch(inputs, targets, mask), marks


@torch.no_grad()
def token_metrics(predict: Predict, batches: Iterable[tuple[Batch, dict[str, Tensor]]]) -> dict[str, float]:
    """Score logits against class targets over masked positions.

    Returns ``nll`` (mean nats per scored position), ``accuracy`` (argmax), ``exact_match``
    (fraction of sequences, i.e. batch columns with any scored position, whose scored
    positions are all right), ``tokens`` (positions scored) and ``{name}_accuracy`` per mark.
    """
    nll_sum = correct_sum = count = exact = sequences = 0.0
    mark_correct: dict[str, float] = {}
    mark_count: dict[str, float] = {}
    for batch, marks in batches:
        logits = predict(batch)
        if logits.shape[:2] != batch.targets.shape:
            raise ValueError(
                f"predict returned logits of shape {tuple(logits.shape)}; "
                f"expected [T, B, classes] with T, B = {tuple(batch.targets.shape)}"
            )
        targets = batch.targets.to(logits.device)
        mask = batch.mask.to(logits.device)
        nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
        correct = (logits.argmax(-1) == targets).float()
        nll_sum += float((nll.view_as(mask) * mask).sum())
        correct_sum += float((correct * mask).sum())
        count += float(mask.sum())
        scored = mask.sum(0) > 0
        all_right = ((correct * mask) == mask).all(0)
        exact += float((all_right & scored).sum())
        sequences += float(scored.sum())
        for name, mark in marks.items():
            mark = mark.to(logits.device)
            mark_correct[name] = mark_correct.get(name, 0.0) + float((correct * mark).sum())
            mark_count[name] = mark_count.get(name, 0.0) + float(mark.sum())
    if count == 0:
        raise ValueError("no scored positions in the evaluation batches")
    metrics = {
        "nll": nll_sum / count,
        "accuracy": correct_sum / count,
        "exact_match": exact / max(sequences, 1.0),
        "tokens": count,
    }
    for name in mark_count:
        metrics[f"{name}_accuracy"] = mark_correct[name] / max(mark_count[name], 1.0)
    return metrics


class SequenceTaskConfig(TaskConfig):
    """Settings of the generated sequence tasks: sizes of the fixed held-out sets.

    Together with the task's own settings they must keep the held-out sets within
    ``MAX_HELDOUT_TOKENS`` tokens and one example within ``MAX_EXAMPLE_TOKENS``, so that no
    accepted setting takes more than seconds or a few hundred MB to build.
    """

    valid_size: int = Field(default=500, ge=1, le=100_000, strict=True)
    """Examples in the validation set, 1 to 100,000."""
    test_size: int = Field(default=1000, ge=1, le=100_000, strict=True)
    """Examples in the test set, 1 to 100,000."""

    def example_tokens(self) -> float:
        """An upper estimate of the tokens of one example (each task gives its own)."""
        return 1.0

    def size_settings(self) -> str:
        """The settings :meth:`example_tokens` depends on, for messages."""
        return ""

    @model_validator(mode="after")
    def _heldout_fits(self) -> SequenceTaskConfig:
        per_example = self.example_tokens()
        named = self.size_settings()
        if per_example > MAX_EXAMPLE_TOKENS:
            raise ValueError(
                f"{named.split(',')[0]}: expected settings whose examples hold at most "
                f"{MAX_EXAMPLE_TOKENS:,} tokens, got about {per_example:,.0f} (from {named})"
            )
        total = (self.valid_size + self.test_size) * per_example
        if total > MAX_HELDOUT_TOKENS:
            raise ValueError(
                f"valid_size: expected held-out sets of at most {MAX_HELDOUT_TOKENS:,} tokens, got "
                f"about {total:,.0f} (from valid_size, test_size{', ' + named if named else ''})"
            )
        return self


class SequenceTask(Task):
    """A task over independent generated token sequences (memorize, arith, xml).

    Subclasses give the vocabulary (index 0 is padding) and :meth:`sample`. The valid
    and test sets are drawn once from streams derived from ``config.seed``; the three
    sets never share a problem (``Example.key``): training draws skip held-out keys.
    """

    config: SequenceTaskConfig
    input_kind = "tokens"
    loss = "ce"
    max_misses: ClassVar[int] = 10_000
    """Consecutive rejected draws after which the problem space counts as exhausted."""

    def __init__(self, config: TaskConfig) -> None:
        super().__init__(config)
        self.vocab: list[str] = self.build_vocab()
        if self.vocab[0] != PAD or len(set(self.vocab)) != len(self.vocab):
            raise ValueError(f"task {self.name!r}: vocabulary must start with {PAD!r} and be unique")
        self.index = {token: i for i, token in enumerate(self.vocab)}
        valid = self._draw_distinct(STREAM_VALID, self.config.valid_size, set(), "valid_size")
        valid_keys = {example.key for example in valid}
        test = self._draw_distinct(STREAM_TEST, self.config.test_size, valid_keys, "test_size")
        self._heldout: dict[str, list[Example]] = {"valid": valid, "test": test}
        self._heldout_keys = valid_keys | {example.key for example in test}
        self._eval_cache: dict[tuple[str, int], list[tuple[Batch, dict[str, Tensor]]]] = {}

    @abstractmethod
    def build_vocab(self) -> list[str]:
        """The tokens, padding (``"<pad>"``) first."""

    @abstractmethod
    def sample(self, rng: random.Random) -> Example:
        """Draw one example."""

    @property
    def input_size(self) -> int:
        return len(self.vocab)

    @property
    def output_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: Iterable[str]) -> list[int]:
        """Token ids of a sequence of tokens (a string, for single-character vocabularies)."""
        return [self.index[token] for token in text]

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """The string of a sequence of ids, padding dropped.

        Example:
            >>> from workers import make_task
            >>> task = make_task("arith", valid_size=10, test_size=10)
            >>> task.decode(task.encode("12+3=15."))
            '12+3=15.'
        """
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        return "".join(self.vocab[i] for i in values if i != 0)

    def heldout(self, split: Split) -> list[Example]:
        """The fixed examples of a held-out split."""
        return self._heldout[split]

    def _draw_distinct(self, stream: int, count: int, exclude: set[str], field_name: str) -> list[Example]:
        rng = derive_rng(self.config.seed, stream)
        examples: list[Example] = []
        seen = set(exclude)
        misses = 0
        while len(examples) < count:
            example = self.sample(rng)
            if example.key in seen:
                misses += 1
                if misses > self.max_misses:
                    raise ValueError(
                        f"task {self.name!r}: {field_name}: cannot draw {count} distinct examples; "
                        f"the settings allow too few different problems (found {len(examples)})"
                    )
                continue
            misses = 0
            seen.add(example.key)
            examples.append(example)
        return examples

    def _draw_train(self, rng: random.Random) -> Example:
        for _ in range(self.max_misses):
            example = self.sample(rng)
            if example.key not in self._heldout_keys:
                return example
        raise ValueError(f"task {self.name!r}: the held-out sets cover (nearly) every problem; shrink them")

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        rng = derive_rng(self.config.seed, STREAM_TRAIN, seed)
        while True:
            yield collate([self._draw_train(rng) for _ in range(batch_size)])[0]

    def _eval_batches_with_marks(
        self, split: Split, batch_size: int
    ) -> list[tuple[Batch, dict[str, Tensor]]]:
        if split not in self._heldout:
            raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
        key = (split, batch_size)
        if key not in self._eval_cache:
            examples = self._heldout[split]
            chunks = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
            self._eval_cache[key] = [collate(chunk) for chunk in chunks]
        return self._eval_cache[key]

    def eval_batches(self, split: Split, batch_size: int) -> list[Batch]:
        return [batch for batch, _ in self._eval_batches_with_marks(split, batch_size)]

    def evaluate(self, predict: Predict, split: Split, batch_size: int) -> dict[str, Any]:
        return token_metrics(predict, self._eval_batches_with_marks(split, batch_size))
