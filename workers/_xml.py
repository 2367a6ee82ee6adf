"""``xml``: next-character prediction on synthetic nested XML.

Each example is one document: elements with random tag names, nested to a random depth
(at most ``max_depth``), optionally with text content, ending with a newline. Predicting
a closing tag's name means remembering which tags are open, which is what the task tests;
``closing_tag_accuracy`` scores just the characters after ``</`` (the name and the ``>``).

Example:
    >>> import random
    >>> import xml.etree.ElementTree as ET
    >>> from workers import make_task
    >>> task = make_task("xml", valid_size=5, test_size=5)
    >>> document = task.decode(task.sample(random.Random(0)).inputs)
    >>> ET.fromstring(document).tag.isalpha()
    True
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field, field_validator, model_validator

from workers._direction import Direction
from workers._task import PAD, Example, Predict, SequenceTask, SequenceTaskConfig, Split

MARKUP = "</>"
END = "\n"
MAX_DEPTH = 100
MAX_TAG_LENGTH = 100


class XmlConfig(SequenceTaskConfig):
    """Tag alphabet and lengths, nesting, and text content."""

    tag_symbols: str = Field(default="abcdefgh", strict=True)
    """Distinct ASCII letters tag names are made of."""
    min_tag_length: int = Field(default=1, ge=1, le=MAX_TAG_LENGTH, strict=True)
    """Shortest tag name, 1 to 100 characters."""
    max_tag_length: int = Field(default=3, ge=1, le=MAX_TAG_LENGTH, strict=True)
    """Longest tag name, 1 to 100 characters."""
    max_depth: int = Field(default=3, ge=1, le=MAX_DEPTH, strict=True)
    """Deepest nesting, 1 to 100."""
    max_children: int = Field(default=2, ge=0, le=100, strict=True)
    """Each element below ``max_depth`` has 0..max_children children; 0 to 100."""
    text_probability: float = Field(default=0.0, ge=0.0, le=1.0, strict=True, allow_inf_nan=False)
    """Chance of a text run before the first child and after each child, 0 to 1."""
    text_symbols: str = Field(default="0123456789", strict=True)
    """Distinct ASCII characters of text runs (not ``<``, ``>``, ``&``, ``/`` or a newline)."""
    max_text_length: int = Field(default=3, ge=1, le=1000, strict=True)
    """Longest text run, 1 to 1000 characters."""

    def example_tokens(self) -> float:
        # Children are drawn uniformly from 0..max_children, so a document has on average
        # sum(m**k for k < max_depth) elements with m = max_children / 2.
        mean = self.max_children / 2
        elements = float(self.max_depth) if mean == 1 else (mean**self.max_depth - 1) / (mean - 1)
        text = self.max_text_length * (1 + self.max_children) if self.text_probability > 0 else 0
        return elements * (2 * self.max_tag_length + 5 + text) + 1

    def size_settings(self) -> str:
        return "max_depth, max_children, max_tag_length, max_text_length"

    @field_validator("tag_symbols")
    @classmethod
    def _letters(cls, value: str) -> str:
        if not value or not (value.isascii() and value.isalpha()) or len(set(value)) != len(value):
            raise ValueError(f"must be distinct ASCII letters, not {value!r}")
        return value

    @field_validator("text_symbols")
    @classmethod
    def _plain_text(cls, value: str) -> str:
        bad = set(value) & set("<>&/" + END)
        if not value or bad or not value.isascii() or len(set(value)) != len(value):
            raise ValueError(
                f"must be distinct ASCII characters other than '<>&/' and newline, not {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _lengths_ordered(self) -> XmlConfig:
        if self.max_tag_length < self.min_tag_length:
            raise ValueError(
                "max_tag_length: must be at least min_tag_length "
                f"({self.max_tag_length} < {self.min_tag_length})"
            )
        return self


def closing_tag_positions(document: str) -> list[int]:
    """Indices of the characters after each ``</`` up to and including its ``>``.

    Example:
        >>> closing_tag_positions("<a></a>")
        [5, 6]
    """
    positions: list[int] = []
    start = document.find("</")
    while start >= 0:
        stop = document.index(">", start)
        positions.extend(range(start + 2, stop + 1))
        start = document.find("</", stop)
    return positions


class XmlTask(SequenceTask):
    """Predict the next character of an XML document; metrics: accuracy, nll, closing_tag_accuracy."""

    name = "xml"
    config_class = XmlConfig
    primary_metric = "accuracy"
    direction = Direction.MAXIMIZE
    metric_range = (0.0, 1.0)
    config: XmlConfig

    def build_vocab(self) -> list[str]:
        symbols = set(MARKUP + END + self.config.tag_symbols)
        if self.config.text_probability > 0:
            symbols |= set(self.config.text_symbols)
        return [PAD, *sorted(symbols)]

    def _text(self, rng: random.Random) -> str:
        if self.config.text_probability == 0 or rng.random() >= self.config.text_probability:
            return ""
        length = rng.randint(1, self.config.max_text_length)
        return "".join(rng.choice(self.config.text_symbols) for _ in range(length))

    def _open(self, rng: random.Random, depth: int, parts: list[str]) -> tuple[str, int]:
        """Write an element's opening tag and first text; its tag and number of children."""
        config = self.config
        length = rng.randint(config.min_tag_length, config.max_tag_length)
        tag = "".join(rng.choice(config.tag_symbols) for _ in range(length))
        parts += [f"<{tag}>", self._text(rng)]
        return tag, rng.randint(0, config.max_children) if depth < config.max_depth else 0

    def _element(self, rng: random.Random, depth: int) -> str:
        """A document rooted at ``depth``; iterative (an explicit stack of open elements), drawing
        in the order of the recursive definition: tag, text, children, each child then a text."""
        parts: list[str] = []
        tag, children = self._open(rng, depth, parts)
        stack = [(tag, children, depth)]  # open elements: tag, children still to write, depth
        while stack:
            tag, left, level = stack.pop()
            if left == 0:
                parts.append(f"</{tag}>")
                if stack:  # the text after this child, in its parent
                    parts.append(self._text(rng))
                continue
            stack.append((tag, left - 1, level))
            child, grandchildren = self._open(rng, level + 1, parts)
            stack.append((child, grandchildren, level + 1))
        return "".join(parts)

    def sample(self, rng: random.Random) -> Example:
        document = self._element(rng, depth=1)
        sequence = self.encode(document + END)
        closing = [0.0] * (len(sequence) - 1)
        for position in closing_tag_positions(document):
            closing[position - 1] = 1.0  # target j is character j + 1
        mask = [1.0] * (len(sequence) - 1)
        return Example(sequence[:-1], sequence[1:], mask, key=document, marks={"closing_tag": closing})

    def evaluate(self, predict: Predict, split: Split, batch_size: int) -> dict[str, Any]:
        metrics = super().evaluate(predict, split, batch_size)
        return {key: metrics[key] for key in ("accuracy", "nll", "closing_tag_accuracy", "tokens")}
