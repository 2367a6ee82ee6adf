"""``memorize``: read a random symbol sequence, then reproduce it after a delimiter.

The paper's cheap filter: a cell that cannot learn this is not tuned further. After the
delimiter the model reads a constant recall token, so every reproduced symbol must come
from the recurrent state (no teacher forcing to lean on). Loss and metrics cover only the
reproduced part.

Example:
    >>> from workers import make_task
    >>> task = make_task("memorize", min_length=3, max_length=3, valid_size=5, test_size=5)
    >>> example = task.heldout("valid")[0]
    >>> task.decode(example.inputs)[:4] == example.key + "|", task.decode(example.targets) == example.key
    (True, True)
"""

from __future__ import annotations

import random
import string

from pydantic import Field, model_validator

from workers._direction import Direction
from workers._task import PAD, Example, SequenceTask, SequenceTaskConfig

SYMBOLS = string.ascii_lowercase + string.ascii_uppercase + string.digits
DELIMITER = "|"
RECALL = "."
MAX_LENGTH = 10_000


class MemorizeConfig(SequenceTaskConfig):
    """Sequence lengths (drawn uniformly between the bounds) and alphabet size."""

    min_length: int = Field(default=5, ge=1, le=MAX_LENGTH, strict=True)
    """Shortest sequence to reproduce, 1 to 10,000 symbols."""
    max_length: int = Field(default=10, ge=1, le=MAX_LENGTH, strict=True)
    """Longest sequence to reproduce, 1 to 10,000 symbols (an example is twice as long)."""
    symbols: int = Field(default=8, ge=2, le=len(SYMBOLS), strict=True)
    """Alphabet size, 2 to 62."""

    def example_tokens(self) -> float:
        return 2.0 * self.max_length

    def size_settings(self) -> str:
        return "max_length"

    @model_validator(mode="after")
    def _lengths_ordered(self) -> MemorizeConfig:
        if self.max_length < self.min_length:
            raise ValueError(
                f"max_length: must be at least min_length ({self.max_length} < {self.min_length})"
            )
        return self


class MemorizeTask(SequenceTask):
    """Reproduce a random sequence of symbols; metric: accuracy on the reproduced symbols."""

    name = "memorize"
    config_class = MemorizeConfig
    primary_metric = "accuracy"
    direction = Direction.MAXIMIZE
    metric_range = (0.0, 1.0)
    config: MemorizeConfig

    def build_vocab(self) -> list[str]:
        return [PAD, DELIMITER, RECALL, *SYMBOLS[: self.config.symbols]]

    def sample(self, rng: random.Random) -> Example:
        length = rng.randint(self.config.min_length, self.config.max_length)
        sequence = "".join(rng.choice(SYMBOLS[: self.config.symbols]) for _ in range(length))
        symbols = self.encode(sequence)
        inputs = [*symbols, self.index[DELIMITER]] + [self.index[RECALL]] * (length - 1)
        targets = [0] * length + symbols
        mask = [0.0] * length + [1.0] * length
        return Example(inputs, targets, mask, key=sequence)
