"""``text``: word- or character-level language modeling from text files (Penn Treebank).

Each split is one contiguous token stream, cut into ``batch_size`` parallel columns and
read ``bptt`` steps at a time (truncated backpropagation through time, as in PyTorch's
word_language_model example): every batch but an epoch's first has ``continues=True`` so
the trainer carries the recurrent state. Word level splits lines on whitespace and ends
each with ``<eos>``; character level keeps every character, newlines included. The
vocabulary comes from the training split; other splits map unseen tokens to ``<unk>``.

The ``ptb`` preset reads ``ptb.train.txt``, ``ptb.valid.txt`` and ``ptb.test.txt`` from
``dir`` (default ``<data dir>/ptb``, see ``cellsearch data download ptb``). Any split may
instead name a file, or a fraction of its lines, and ``split_fractions`` cuts one file in
three.

Example:
    >>> from workers import make_task
    >>> task = make_task("text", train="a.txt", split_fractions=(0.8, 0.1, 0.1), dir="/no/such/dir")
    Traceback (most recent call last):
    ...
    FileNotFoundError: task 'text': train file /no/such/dir/a.txt not found
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import Tensor

from workers._direction import Direction
from workers._download import dataset_dir
from workers._lm_protocol import LM_PROTOCOL, Protocol
from workers._task import (
    STREAM_TRAIN,
    Batch,
    Predict,
    Split,
    Task,
    TaskConfig,
    derive_rng,
    token_metrics,
)

EOS = "<eos>"
UNK = "<unk>"
PRESETS: dict[str, dict[str, str]] = {
    "ptb": {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"},
}
SPLITS = ("train", "valid", "test")
MAX_TOKENS = 10**10
MAX_MEAN_NLL = 100.0
"""The largest mean NLL (nats per token) that is a result; above it the perplexity is an
overflow and reads as ``inf`` (the trial diverged). A uniform prediction scores ln(vocabulary):
under 24 nats even for the most tokens a split may hold (ln 10**10), and a trained model lies
below that. A mean of 100 nats means logits off by about 100 on every token, a blown-up model,
and its perplexity (above 10**43) would only rank as an absurd number."""
Fraction = Annotated[float, Field(gt=0.0, le=1.0, strict=True, allow_inf_nan=False)]


class FileSlice(BaseModel):
    """The lines of a file from fraction ``start`` up to fraction ``stop``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    """The text file (relative paths are read from ``dir``)."""
    start: float = Field(default=0.0, ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    """Fraction of the lines to start at, 0 to 1."""
    stop: float = Field(default=1.0, ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    """Fraction of the lines to stop before, 0 to 1 and above ``start``."""

    @model_validator(mode="after")
    def _ordered(self) -> FileSlice:
        if self.stop <= self.start:
            raise ValueError(f"stop: must be greater than start ({self.stop} <= {self.start})")
        return self


class TextConfig(TaskConfig):
    """Where the text is, how it is tokenized and how long the BPTT windows are."""

    preset: Literal["ptb"] | None = None
    """A known corpus (``ptb``: Penn Treebank, fetched by ``cellsearch data download``);
    ``None``: give ``train``."""
    dir: str | None = None
    """Folder that relative file paths are read from (a preset's default: ``<data dir>/<preset>``)."""
    train: FileSlice | None = None
    """A file path (relative to ``dir``) or a :class:`FileSlice`; a preset fills in unset splits."""
    valid: FileSlice | None = None
    """The validation split: a file path or a :class:`FileSlice`, like ``train``."""
    test: FileSlice | None = None
    """The test split: a file path or a :class:`FileSlice`, like ``train``."""
    split_fractions: tuple[Fraction, Fraction, Fraction] | None = None
    """Cut the train file's lines into train, valid and test parts of these sizes (each in
    (0, 1], together 1)."""
    level: Literal["word", "char"] = "word"
    """Tokens: ``word`` (split on whitespace) or ``char``."""
    bptt: int = Field(default=35, ge=1, le=100_000, strict=True)
    """Steps per truncated-backpropagation window, 1 to 100,000."""
    max_tokens: int | None = Field(default=None, ge=2, le=MAX_TOKENS, strict=True)
    """Keep only the first this many training tokens (quick trials), 2 to 10**10."""
    max_eval_tokens: int | None = Field(default=None, ge=2, le=MAX_TOKENS, strict=True)
    """Keep only the first this many tokens of the valid and test splits, 2 to 10**10."""
    protocol: Protocol | None = None
    """How trials train: ``lm``, the language-model protocol (tied embedding and output weights,
    clipping at 0.25, batches of 20, learning rate and dropout tuned; see docs/lm-protocol.md);
    ``plain``, the search space's general defaults; ``None``: ``lm`` with the ``ptb`` preset,
    else ``plain``."""

    @property
    def resolved_protocol(self) -> Protocol:
        """The protocol in force (``protocol``, or the preset's default)."""
        if self.protocol is not None:
            return self.protocol
        return "lm" if self.preset == "ptb" else "plain"

    def search_space_defaults(self) -> dict[str, Any]:
        return dict(LM_PROTOCOL) if self.resolved_protocol == "lm" else {}

    @field_validator("train", "valid", "test", mode="before")
    @classmethod
    def _path_is_whole_file(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str | Path) else value

    @model_validator(mode="after")
    def _sources_complete(self) -> TextConfig:
        if self.split_fractions is not None:
            if self.valid is not None or self.test is not None:
                raise ValueError("split_fractions: cuts the train file; leave valid and test unset")
            if any(part <= 0 for part in self.split_fractions) or abs(sum(self.split_fractions) - 1) > 1e-6:
                raise ValueError(
                    "split_fractions: must be three positive fractions summing to 1, "
                    f"not {self.split_fractions}"
                )
        if self.preset is None:
            needed = ("train",) if self.split_fractions is not None else SPLITS
            for split in needed:
                if getattr(self, split) is None:
                    raise ValueError(f"{split}: required unless a preset is set")
        return self


def tokenize(lines: list[str], level: Literal["word", "char"]) -> list[str]:
    """Word tokens with ``<eos>`` closing each line, or characters with ``\\n`` closing each line.

    Example:
        >>> tokenize([" the cat ", "sat"], "word")
        ['the', 'cat', '<eos>', 'sat', '<eos>']
        >>> tokenize(["ab"], "char")
        ['a', 'b', '\\n']
    """
    tokens: list[str] = []
    for line in lines:
        tokens += [*line.split(), EOS] if level == "word" else [*line, "\n"]
    return tokens


def batchify(ids: Tensor, batch_size: int) -> Tensor:
    """Cut a stream into ``batch_size`` contiguous columns, ``[len // batch_size, batch_size]``.

    The tail that does not fill a row is dropped.

    Example:
        >>> batchify(torch.arange(7), 2).tolist()
        [[0, 3], [1, 4], [2, 5]]
    """
    rows = ids.numel() // batch_size
    return ids[: rows * batch_size].view(batch_size, rows).t().contiguous()


class TextTask(Task):
    """Language modeling; metrics: perplexity (primary), nll, accuracy, and bpc at char level."""

    name = "text"
    config_class = TextConfig
    primary_metric = "perplexity"
    direction = Direction.MINIMIZE
    metric_range = (1.0, math.exp(MAX_MEAN_NLL))
    input_kind = "tokens"
    loss = "ce"
    config: TextConfig

    def __init__(self, config: TaskConfig) -> None:
        super().__init__(config)
        tokens = {split: tokenize(lines, self.config.level) for split, lines in self._read_splits().items()}
        self.vocab: list[str] = list(dict.fromkeys(tokens["train"]))
        if UNK not in self.vocab:
            self.vocab.append(UNK)
        self.index = {token: i for i, token in enumerate(self.vocab)}
        unk = self.index[UNK]
        self.ids: dict[str, Tensor] = {}
        for split, stream in tokens.items():
            limit = self.config.max_tokens if split == "train" else self.config.max_eval_tokens
            stream = stream[:limit] if limit is not None else stream
            self.ids[split] = torch.tensor([self.index.get(token, unk) for token in stream], dtype=torch.long)
        self._eval_cache: dict[tuple[str, int], list[Batch]] = {}

    def _read_splits(self) -> dict[str, list[str]]:
        config = self.config
        base = Path(config.dir) if config.dir else dataset_dir(config.preset) if config.preset else Path()
        defaults = PRESETS.get(config.preset or "", {})
        sources: dict[str, FileSlice] = {}
        for split in SPLITS:
            source = getattr(config, split)
            if source is None and split in defaults:
                source = FileSlice(path=defaults[split])
            if source is not None:
                sources[split] = source
        if config.split_fractions is not None:
            whole = sources["train"]
            bounds = [whole.start]
            for fraction in config.split_fractions:
                bounds.append(bounds[-1] + fraction * (whole.stop - whole.start))
            bounds[-1] = whole.stop
            sources = {
                split: FileSlice(path=whole.path, start=bounds[i], stop=bounds[i + 1])
                for i, split in enumerate(SPLITS)
            }
        lines: dict[str, list[str]] = {}
        for split, source in sources.items():
            path = Path(source.path) if Path(source.path).is_absolute() else base / source.path
            if not path.is_file():
                hint = f"; run `cellsearch data download {config.preset}`" if config.preset else ""
                raise FileNotFoundError(f"task 'text': {split} file {path} not found{hint}")
            file_lines = path.read_text(encoding="utf-8").splitlines()
            count = len(file_lines)
            lines[split] = file_lines[int(source.start * count) : int(source.stop * count)]
        return lines

    @property
    def input_size(self) -> int:
        return len(self.vocab)

    @property
    def output_size(self) -> int:
        return len(self.vocab)

    def decode(self, ids: Tensor | list[int]) -> list[str]:
        """The tokens of a sequence of ids."""
        values = ids.tolist() if isinstance(ids, Tensor) else ids
        return [self.vocab[i] for i in values]

    def _columns(self, split: str, batch_size: int) -> Tensor:
        data = batchify(self.ids[split], batch_size)
        if data.size(0) < 2:
            raise ValueError(
                f"task 'text': the {split} split has {self.ids[split].numel()} tokens, "
                f"too few for batch_size {batch_size}"
            )
        return data

    def _windows(self, data: Tensor, offset: int) -> list[Batch]:
        batches: list[Batch] = []
        for start in range(offset, data.size(0) - 1, self.config.bptt):
            length = min(self.config.bptt, data.size(0) - 1 - start)
            inputs, targets = data[start : start + length], data[start + 1 : start + 1 + length]
            batches.append(Batch(inputs, targets, torch.ones(inputs.shape), continues=bool(batches)))
        return batches

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        """Epoch after epoch over the training stream; each epoch starts at a random offset below ``bptt``."""
        data = self._columns("train", batch_size)
        rng = derive_rng(self.config.seed, STREAM_TRAIN, seed)
        while True:
            yield from self._windows(data, rng.randrange(min(self.config.bptt, data.size(0) - 1)))

    def eval_batches(self, split: Split, batch_size: int) -> list[Batch]:
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
        key = (split, batch_size)
        if key not in self._eval_cache:
            self._eval_cache[key] = self._windows(self._columns(split, batch_size), offset=0)
        return self._eval_cache[key]

    def evaluate(self, predict: Predict, split: Split, batch_size: int) -> dict[str, Any]:
        scores = token_metrics(predict, ((batch, {}) for batch in self.eval_batches(split, batch_size)))
        metrics = {
            "perplexity": math.exp(scores["nll"]) if scores["nll"] <= MAX_MEAN_NLL else math.inf,
            "nll": scores["nll"],
            "accuracy": scores["accuracy"],
            "tokens": scores["tokens"],
        }
        if self.config.level == "char":
            metrics["bpc"] = scores["nll"] / math.log(2)
        return metrics
