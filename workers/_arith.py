"""``arith``: character-level addition and subtraction, as in ``3123-12=3111.``

The model reads the problem one character at a time, then emits the answer's characters
(teacher forced) and an end marker ``.``; loss and metrics cover only those. Results may be
negative (``12-3123=-3111.``). With ``distractors > 0``, up to that many random distractor
symbols are inserted between successive problem characters, which the model must ignore.

Example:
    >>> import random
    >>> from workers import make_task
    >>> task = make_task("arith", max_digits=2, distractors=1, valid_size=5, test_size=5)
    >>> example = task.sample(random.Random(3))
    >>> text = task.decode(example.inputs[:1] + example.targets)
    >>> problem, answer = strip_distractors(text, task.config.distractor_symbols).split("=")
    >>> answer == f"{eval(problem)}."
    True
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field, field_validator, model_validator

from workers._direction import Direction
from workers._task import PAD, Example, Predict, SequenceTask, SequenceTaskConfig, Split

DIGITS = "0123456789"
END = "."
RESERVED = DIGITS + "+-=" + END


def strip_distractors(text: str, distractor_symbols: str) -> str:
    """``text`` without its distractor symbols.

    Example:
        >>> strip_distractors("1a2+b3=", "ab")
        '12+3='
    """
    return "".join(char for char in text if char not in distractor_symbols)


class ArithConfig(SequenceTaskConfig):
    """Operand size, operators and distractors."""

    max_digits: int = Field(default=3, ge=1, le=30, strict=True)
    """Each operand has 1..max_digits digits (the count drawn uniformly, then the value); 1 to 30."""
    operators: str = Field(default="+-", strict=True)
    """Distinct operators drawn per problem, from ``+`` and ``-``."""
    distractors: int = Field(default=0, ge=0, le=1000, strict=True)
    """At most this many distractor symbols between successive problem characters, 0 to 1000."""
    distractor_symbols: str = Field(default="abcdefghij", max_length=256, strict=True)
    """Distinct characters (at most 256) drawn as distractors."""

    def example_tokens(self) -> float:
        problem = 2 * self.max_digits + 2  # "a+b="
        return problem + (problem - 1) * self.distractors + self.max_digits + 2

    def size_settings(self) -> str:
        return "max_digits, distractors"

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, value: str) -> str:
        if not value or set(value) - set("+-") or len(set(value)) != len(value):
            raise ValueError(f"must be a non-empty string of distinct operators from '+-', not {value!r}")
        return value

    @field_validator("distractor_symbols")
    @classmethod
    def _distinct_distractors(cls, value: str) -> str:
        if len(set(value)) != len(value) or set(value) & set(RESERVED) or any(c.isspace() for c in value):
            raise ValueError(
                f"must be distinct characters, none of {RESERVED!r} or whitespace, not {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _distractors_have_symbols(self) -> ArithConfig:
        if self.distractors > 0 and not self.distractor_symbols:
            raise ValueError("distractor_symbols: must not be empty when distractors > 0")
        return self


class ArithTask(SequenceTask):
    """Compute sums and differences; metrics: ``char_accuracy`` on the answer, ``exact_match``."""

    name = "arith"
    config_class = ArithConfig
    primary_metric = "char_accuracy"
    direction = Direction.MAXIMIZE
    metric_range = (0.0, 1.0)
    config: ArithConfig

    def build_vocab(self) -> list[str]:
        return [PAD, *RESERVED, *self.config.distractor_symbols]

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(1, self.config.max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)

    def sample(self, rng: random.Random) -> Example:
        left, right = self._operand(rng), self._operand(rng)
        operator = rng.choice(self.config.operators)
        problem = f"{left}{operator}{right}="
        answer = f"{left + right if operator == '+' else left - right}{END}"
        reading = problem[0]
        for char in problem[1:]:
            count = rng.randint(0, self.config.distractors)
            reading += "".join(rng.choice(self.config.distractor_symbols) for _ in range(count)) + char
        sequence = self.encode(reading + answer)
        # Target j is character j + 1: the answer's characters are the last len(answer) targets.
        mask = [0.0] * (len(reading) - 1) + [1.0] * len(answer)
        return Example(sequence[:-1], sequence[1:], mask, key=problem[:-1])

    def evaluate(self, predict: Predict, split: Split, batch_size: int) -> dict[str, Any]:
        metrics = super().evaluate(predict, split, batch_size)
        return {
            "char_accuracy": metrics["accuracy"],
            "exact_match": metrics["exact_match"],
            "nll": metrics["nll"],
            "tokens": metrics["tokens"],
        }
