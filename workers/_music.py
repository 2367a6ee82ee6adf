"""``music``: polyphonic music as 88-key piano rolls, frame-level negative log-likelihood.

Reads the pickles of Boulanger-Lewandowski et al. (2012): JSB Chorales, Nottingham,
MuseData and Piano-midi.de, each a dict ``{"train", "valid", "test"}`` of sequences, a
sequence a list of frames, a frame the MIDI note numbers sounding (21..108). Frames become
88-wide multi-hot rows (key = note - 21). The model reads frame t-1 (a silent frame before
the first) and predicts frame t with 88 independent Bernoulli outputs; the NLL of a frame
sums them, and ``nll`` averages over frames, as the papers report it.

Example:
    >>> piano_roll([(21, 60), (), (108,)]).nonzero().tolist()
    [[0, 0], [0, 39], [2, 87]]
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from workers._direction import Direction
from workers._download import DATASETS, dataset_dir
from workers._task import STREAM_TRAIN, Batch, Predict, Split, Task, TaskConfig, derive_rng

LOWEST_NOTE = 21
KEYS = 88
MAX_FRAME_NLL = 100.0 * KEYS
"""The largest mean frame NLL (nats per frame, summed over the keys) that is a result; above it
the value is an overflow and reads as ``inf`` (the trial diverged). Guessing every key at even
odds scores 88 ln 2, about 61 nats; 100 nats per key means logits off by about 100 on every key
of every frame, a blown-up model, not a score to rank."""
MusicPreset = Literal["jsb", "nottingham", "musedata", "pianomidi"]

_ALLOWED_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("copy_reg", "_reconstructor"),
    ("copyreg", "_reconstructor"),
    ("__builtin__", "object"),
    ("builtins", "object"),
    ("__builtin__", "set"),
    ("builtins", "set"),
    ("__builtin__", "frozenset"),
    ("builtins", "frozenset"),
    ("_codecs", "encode"),  # how protocol-2 pickles spell byte strings (numpy scalars hold some)
}


class _DataUnpickler(pickle.Unpickler):
    """Loads plain data and numpy numbers only: a pickle naming anything else is refused,
    since unpickling arbitrary globals can run arbitrary code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not plain piano-roll data")
        if module.startswith("numpy.core."):
            try:
                return super().find_class(module.replace("numpy.core.", "numpy._core.", 1), name)
            except (ImportError, AttributeError):  # numpy 1.x
                pass
        return super().find_class(module, name)


def load_note_sequences(path: Path | str) -> dict[str, list[list[tuple[int, ...]]]]:
    """The ``train``/``valid``/``test`` note sequences of a piano-roll pickle (Python 2 pickles included)."""
    with Path(path).open("rb") as handle:
        data = _DataUnpickler(handle, encoding="latin1").load()
    if not isinstance(data, dict) or not {"train", "valid", "test"} <= set(data):
        raise ValueError(f"{path}: expected a dict with keys 'train', 'valid' and 'test'")
    return {
        split: [[tuple(int(note) for note in frame) for frame in sequence] for sequence in data[split]]
        for split in ("train", "valid", "test")
    }


def piano_roll(frames: Sequence[Sequence[int]]) -> Tensor:
    """A ``[T, 88]`` float multi-hot roll of note frames: column ``note - 21``."""
    roll = torch.zeros(len(frames), KEYS)
    for t, frame in enumerate(frames):
        for note in frame:
            if not LOWEST_NOTE <= note < LOWEST_NOTE + KEYS:
                raise ValueError(f"frame {t}: note {note} outside the piano range 21..108")
            roll[t, note - LOWEST_NOTE] = 1.0
    return roll


class MusicConfig(TaskConfig):
    """Which corpus, and how to cut it for quick trials."""

    preset: MusicPreset | None = None
    """A known corpus (downloaded by ``cellsearch data download``); ``None``: give ``path``."""
    path: str | None = None
    """A pickle in the standard format (relative paths are read from ``dir``)."""
    dir: str | None = None
    """Folder of the pickle (a preset's default: ``<data dir>/<preset>``)."""
    max_frames: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    """Cut training sequences into pieces of at most this many frames, 1 to 1,000,000
    (evaluation keeps them whole)."""
    max_sequences: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    """Keep only the first this many sequences of each split, 1 to 1,000,000."""

    @model_validator(mode="after")
    def _has_source(self) -> MusicConfig:
        if self.preset is None and self.path is None:
            raise ValueError("path: required unless a preset is set")
        return self


Piece = tuple[int, int, int]
"""A training piece: sequence index, first frame, end frame."""


class MusicTask(Task):
    """Predict the next piano-roll frame; metrics: ``nll`` per frame (primary), ``frame_accuracy``."""

    name = "music"
    config_class = MusicConfig
    primary_metric = "nll"
    direction = Direction.MINIMIZE
    metric_range = (0.0, MAX_FRAME_NLL)
    input_kind = "frames"
    loss = "bce"
    config: MusicConfig

    def __init__(self, config: TaskConfig) -> None:
        super().__init__(config)
        path = self._path()
        if not path.is_file():
            hint = f"; run `cellsearch data download {self.config.preset}`" if self.config.preset else ""
            raise FileNotFoundError(f"task 'music': pickle {path} not found{hint}")
        self.rolls: dict[str, list[Tensor]] = {}
        for split, sequences in load_note_sequences(path).items():
            kept = [sequence for sequence in sequences if sequence][: self.config.max_sequences]
            if not kept:
                raise ValueError(f"task 'music': {path}: the {split} split has no sequences")
            try:
                self.rolls[split] = [piano_roll(sequence).bool() for sequence in kept]
            except ValueError as error:
                raise ValueError(f"task 'music': {path}: {split}: {error}") from None
        self._eval_cache: dict[tuple[str, int], list[Batch]] = {}

    def _path(self) -> Path:
        config = self.config
        base = Path(config.dir) if config.dir else dataset_dir(config.preset) if config.preset else Path()
        if config.path is not None:
            return Path(config.path) if Path(config.path).is_absolute() else base / config.path
        assert config.preset is not None  # the config validator guarantees a path or a preset
        return base / DATASETS[config.preset][0].name

    @property
    def input_size(self) -> int:
        return KEYS

    @property
    def output_size(self) -> int:
        return KEYS

    def _collate(self, rolls: list[Tensor], pieces: Sequence[Piece]) -> Batch:
        length = max(stop - start for _, start, stop in pieces)
        inputs = torch.zeros(length, len(pieces), KEYS)
        targets = torch.zeros(length, len(pieces), KEYS)
        mask = torch.zeros(length, len(pieces))
        for column, (index, start, stop) in enumerate(pieces):
            roll, size = rolls[index], stop - start
            if start == 0:  # the first frame is predicted from silence
                inputs[1:size, column] = roll[: stop - 1]
            else:
                inputs[:size, column] = roll[start - 1 : stop - 1]
            targets[:size, column] = roll[start:stop]
            mask[:size, column] = 1.0
        return Batch(inputs, targets, mask)

    def train_batches(self, batch_size: int, seed: int) -> Iterator[Batch]:
        """Shuffled pieces, a new order every epoch; batches run across epoch ends so all are full."""
        rolls = self.rolls["train"]
        step = self.config.max_frames
        pieces = [
            (index, start, min(start + (step or len(roll)), len(roll)))
            for index, roll in enumerate(rolls)
            for start in range(0, len(roll), step or len(roll))
        ]
        rng = derive_rng(self.config.seed, STREAM_TRAIN, seed)

        def endless() -> Iterator[Piece]:
            while True:
                order = list(pieces)
                rng.shuffle(order)
                yield from order

        stream = endless()
        while True:
            yield self._collate(rolls, [next(stream) for _ in range(batch_size)])

    def eval_batches(self, split: Split, batch_size: int) -> list[Batch]:
        """Whole sequences, longest first (less padding), in fixed batches."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', not {split!r}")
        key = (split, batch_size)
        if key not in self._eval_cache:
            rolls = self.rolls[split]
            order = sorted(range(len(rolls)), key=lambda index: -len(rolls[index]))
            pieces = [(index, 0, len(rolls[index])) for index in order]
            self._eval_cache[key] = [
                self._collate(rolls, pieces[i : i + batch_size]) for i in range(0, len(pieces), batch_size)
            ]
        return self._eval_cache[key]

    @torch.no_grad()
    def evaluate(self, predict: Predict, split: Split, batch_size: int) -> dict[str, Any]:
        """``nll``: nats per frame (sum over keys; ``inf`` beyond ``MAX_FRAME_NLL``, an overflow);
        ``frame_accuracy``: TP / (TP + FP + FN) at p > 0.5."""
        nll = frames = hits = false_alarms = misses = 0.0
        for batch in self.eval_batches(split, batch_size):
            logits = predict(batch)
            if logits.shape != batch.targets.shape:
                raise ValueError(
                    f"predict returned logits of shape {tuple(logits.shape)}, "
                    f"expected {tuple(batch.targets.shape)}"
                )
            targets, mask = batch.targets.to(logits.device), batch.mask.to(logits.device)
            frame_nll = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").sum(-1)
            nll += float((frame_nll * mask).sum())
            frames += float(mask.sum())
            played = (logits > 0).float() * mask.unsqueeze(-1)
            hits += float((played * targets).sum())
            false_alarms += float((played * (1 - targets)).sum())
            misses += float(((1 - played) * targets * mask.unsqueeze(-1)).sum())
        scored = hits + false_alarms + misses
        mean = nll / frames
        return {
            "nll": mean if mean <= MAX_FRAME_NLL else math.inf,
            "frame_accuracy": hits / scored if scored else 1.0,
            "frames": frames,
        }
