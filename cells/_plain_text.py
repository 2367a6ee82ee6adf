"""Text a user gives a name or label: no control characters.

A job name or a task label ends up in terminal output, in MLflow run and metric names and in
file names; a NUL, a bell or a right-to-left override (U+202E, which makes ``gpj.exe`` read as
``exe.jpg``) in it is a mistake or an attack, never intended. :func:`control_character_problem`
finds the first such character; the validators of names and labels raise it as their reason.

Example:
    >>> control_character_problem("job\\u202e1"), control_character_problem("lstm-ablation 2")
    ('contains the control character U+202E', None)
    >>> control_character_problem("line 1\\nline 2", multiline=True) is None
    True
    >>> clip("inserted node 'n10'", 12), clip("gru", 12)
    ('inserted no…', 'gru')
"""

from __future__ import annotations

import unicodedata

__all__ = ["clip", "control_character_problem"]

_LINE_BREAKS = frozenset("\n\r\t")


def control_character_problem(text: str, multiline: bool = False) -> str | None:
    """Why ``text`` is not plain text (its first control or format character), else ``None``.
    ``multiline`` allows line breaks and tabs (a description)."""
    for char in text:
        if multiline and char in _LINE_BREAKS:
            continue
        # Cc: C0/C1 controls (NUL, BEL, ESC, DEL); Cf: invisible format characters (bidi overrides,
        # zero-width joiners); Cs, Co, Cn: surrogates, private use, unassigned.
        if unicodedata.category(char).startswith("C"):
            return f"contains the control character U+{ord(char):04X}"
    return None


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, its last one an ellipsis where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"
