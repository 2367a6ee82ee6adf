"""The reference of every job-file setting, generated from the models that validate it.

``docs/jobs.md`` is this module's output (``python -m search._job_reference > docs/jobs.md``;
a test keeps the two equal), so the documented type, default and range of a setting are the
ones the validation enforces.

Example:
    >>> from search._job_limits import SearchBudget
    >>> print(model_table(SearchBudget).splitlines()[2])  # doctest: +ELLIPSIS
    | `max_architectures` | integer or none | none | ... |
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
import textwrap
import types
import typing
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["FALLBACK_MEANINGS", "attribute_docstrings", "job_file_reference", "model_table"]

_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
)


def job_file_reference() -> str:
    """The Markdown reference: every section of a job file and each task's settings."""
    import workers
    from search._final_round import FinalSection
    from search._job_limits import Resources, SearchBudget
    from search._job_tasks import TaskEntry
    from search._jobspec import JobSpec
    from search._strategies import STRATEGIES, HalvingSection, PrefilterSection
    from search._strategies._prefilter import PREFILTER_LIMITS

    parts = [_HEADER, _INTRO, _SCHEMA, "## The job\n", model_table(JobSpec)]
    parts += ["## `budget`: when the search stops\n", model_table(SearchBudget)]
    parts += ["## `resources`: what one trial asks of the cluster\n", model_table(Resources)]
    parts += ["## `tasks`: the stages every candidate goes through\n", model_table(TaskEntry)]
    parts += ["### `tasks[].budget`: how long each trial trains\n", model_table(workers.Budget)]
    for name in sorted(workers.TASKS):
        config = workers.TASKS[name].config_class
        parts += [f"### `tasks[].settings` of `{name}`\n", model_table(config)]
        for section, fields in _sections_of(config).items():
            names = ", ".join(f"`{field}`" for field in fields)
            parts += [f"#### `tasks[].settings` of `{name}`: {names}\n", model_table(section)]
    parts += ["## `hparams`: the hyperparameter search space\n", _HPARAMS, _hparams_table()]
    for kind in sorted(STRATEGIES):
        parts += [f"## `strategy` of kind `{kind}`\n", model_table(STRATEGIES[kind].config_class)]
    parts += ["## `prefilter`: zero-cost screening of mutants\n", _PREFILTER]
    screen = model_table(workers.PrefilterConfig, PREFILTER_LIMITS, header=False)
    parts += [model_table(PrefilterSection) + screen]
    parts += [
        "## `final`: the best re-evaluated with fresh seeds on the test split\n",
        model_table(FinalSection),
    ]
    parts += ["## `halving`: successive halving across architectures\n", _HALVING]
    parts += [model_table(HalvingSection)]
    return "\n".join(parts).rstrip() + "\n"


FALLBACK_MEANINGS = {"kind": "Chooses this strategy."}
"""The meaning of a field the models leave undocumented because its name says it all."""

_HALVING = (
    "Each search task becomes a ladder of budgets; the best `1/eta` of the candidates finishing a "
    "rung go up to the next. See [halving.md](halving.md).\n"
)


def model_table(model: type[BaseModel], upper: dict[str, int] | None = None, header: bool = True) -> str:
    """A Markdown table of ``model``'s fields: name, type, default, allowed values, meaning.

    ``upper``: a field's largest value where the job holds it below the model's own bound;
    ``header=False`` gives the rows only (to continue the table above)."""
    docs = dict(attribute_docstrings(model))
    rows = ["| setting | type | default | allowed | meaning |", "|---|---|---|---|---|"] if header else []
    for name, info in model.model_fields.items():
        kind, allowed = _type_and_range(info.annotation, info)
        meaning = " ".join((docs.get(name) or info.description or FALLBACK_MEANINGS.get(name, "")).split())
        if upper and name in upper:
            held = re.sub(r"≤ [0-9,]+", f"≤ {_number(upper[name])}", allowed)
            meaning += f" In a job at most {_number(upper[name])}." if held != allowed else ""
            allowed = held
        rows.append(f"| `{name}` | {kind} | {_default(info)} | {allowed} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def _sections_of(model: type[BaseModel]) -> dict[type[BaseModel], list[str]]:
    """Each model a field of ``model`` may hold as a section of its own -> those fields."""
    sections: dict[type[BaseModel], list[str]] = {}
    for name, info in model.model_fields.items():
        for arg in typing.get_args(info.annotation) or (info.annotation,):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                sections.setdefault(arg, []).append(name)
    return sections


def _hparams_table() -> str:
    """The search space's fields: the default from ``SearchSpace``, the type and range of the
    value a trial gets from ``HyperParams`` (both ends of a range are held to it)."""
    from workers import HyperParams, SearchSpace

    docs = dict(attribute_docstrings(HyperParams))
    rows = ["| setting | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for name, info in SearchSpace.model_fields.items():
        value = HyperParams.model_fields[name]
        kind, allowed = _type_and_range(value.annotation, value)
        meaning = " ".join((docs.get(name) or "").split())
        rows.append(f"| `{name}` | {kind} | {_space_default(info.default)} | {allowed} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def _space_default(value: Any) -> str:
    if isinstance(value, BaseModel) and hasattr(value, "low"):
        spread = "log-uniform" if getattr(value, "log", False) else "uniform"
        return f"{spread} in [{_number(value.low)}, {_number(value.high)}]"  # type: ignore[attr-defined]
    return "none" if value is None else f"`{value}`"


def _type_and_range(annotation: Any, info: FieldInfo | None = None) -> tuple[str, str]:
    metadata = list(info.metadata) if info is not None else []
    annotation = _strip_annotated(annotation, metadata)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds, ranges = [], []
        for arg in typing.get_args(annotation):
            kind, allowed = _type_and_range(arg)
            kinds.append(kind)
            if allowed != "any":
                ranges.append(allowed)
        return " or ".join(dict.fromkeys(kinds)), _join_ranges(ranges, metadata)
    if origin is Literal:
        return "one of", ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "one of", ", ".join(f"`{m.value}`" for m in annotation)
    return _type_name(annotation), _join_ranges([], metadata)


def _strip_annotated(annotation: Any, metadata: list[Any]) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation, *extra = typing.get_args(annotation)
        for item in extra:
            metadata.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return annotation


def _join_ranges(ranges: list[str], metadata: list[Any]) -> str:
    bounds = [
        f"{symbol} {_number(getattr(m, attr))}"
        for m in metadata
        for cls, attr, symbol in _BOUNDS
        if isinstance(m, cls)
    ]
    lengths = [m for m in metadata if isinstance(m, annotated_types.MinLen | annotated_types.MaxLen)]
    found = [" and ".join(bounds)] if bounds else []
    found += [f"length {_length(m)}" for m in lengths]
    found += ranges
    return "; ".join(found) if found else "any"


def _length(item: Any) -> str:
    if isinstance(item, annotated_types.MinLen):
        return f"≥ {item.min_length}"
    return f"≤ {item.max_length}"


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "none"
    origin = typing.get_origin(annotation)
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return f"list of {_type_name(item)}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    names = {bool: "boolean", int: "integer", float: "number", str: "text"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        return "(see its section)" if isinstance(value, BaseModel) else f"`{value}`"
    if info.default is PydanticUndefined:
        return "required"
    if info.default is None:
        return "none"
    if info.default == "":
        return '`""`'
    value = info.default.value if isinstance(info.default, Enum) else info.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"  # as YAML writes it
    return f"`{_number(value) if isinstance(value, int | float) and not isinstance(value, bool) else value}`"


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        value = int(value)
    if isinstance(value, int) and abs(value) >= 10**6:
        return f"{value:,}"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def attribute_docstrings(model: type[BaseModel]) -> Iterator[tuple[str, str]]:
    """The docstring under each field (``x: int = 1`` then ``\"\"\"...\"\"\"``), from the source of
    the model and of its bases."""
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, following in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                yield node.target.id, inspect.cleandoc(following.value.value)


_HEADER = """\
<!-- Generated from the job models by `python -m search._job_reference > docs/jobs.md`;
     edit the models' field docstrings, not this file (a test compares the two). -->
"""

_INTRO = """\
# The job file

A job is a YAML file (UTF-8, at most 1 MB). `cellsearch launch JOB.yaml` validates all of it
before anything is written, and lists every problem with its field path
(`tasks.1.budget.max_steps: ...`); nothing is written and the exit code is 2. Numbers must be
finite (no `.inf` or `.nan`), integers must be integers (`true` and `"3"` are refused), and
every number lies in the range given below. A key given twice and an unknown key are refused.

Before the first write, `launch` (and `resume`) also check:

- the results database (`--db`, `db_url`, `CELLSEARCH_DB_URL`): reachable, writable, and a file
  (not an in-memory SQLite database, whose results would be lost when the job ends);
- the MLflow store (`--mlflow`, `mlflow_uri`, `MLFLOW_TRACKING_URI`) unless `--no-mlflow`;
- the cluster: at least one node has every resource one trial asks for (`resources`);
  otherwise the job is refused with what was asked and what the largest node has (exit 1).

A job that would run and find nothing is refused like a bad file (one line naming the
setting, exit 2, nothing written):

- a `regularized_evolution` strategy whose `population_size` is at least
  `budget.max_architectures` (its first population, seed and random cells, would take the
  whole budget, and nothing would ever be mutated);
- a filter task's `threshold` that no value of the task's metric reaches (an accuracy above 1,
  a perplexity below 1, a negative log-likelihood below 0): every cell, baselines too, would
  fail it.

Whether the baselines pass a filter is known only once they have trained: when none does,
`launch` says so on a `warning:` line as soon as their trials are in (most candidates will
fail it too), and the job goes on.

A job that ran to its end but scored nothing (every trial failed, every candidate failed the
filter) ends `failed`, exits 1 and says why in one line; `cellsearch status` shows the same.

This page is generated from the models that validate a job (`search._job_reference`), so the
ranges below are the enforced ones.
"""

_SCHEMA = """\
## Completion in an editor

`cellsearch job schema` prints the JSON Schema of a job file. Save it once and point the
YAML language server (VS Code's YAML extension, Neovim's `yamlls`, ...) at it with a first
line in the job file:

```yaml
# yaml-language-server: $schema=job-schema.json
name: my-search
```

```bash
cellsearch job schema > job-schema.json
```

The editor then completes the sections and settings below, shows their meaning, and marks
unknown keys and values out of range as you type. The schema is generated from the same
models; what it cannot express (a task's `settings`, which depend on its `name`; checks
across sections) is still checked by `cellsearch launch`.
"""

_PREFILTER = (
    "Mutants are scored at initialisation by a zero-cost proxy, in batches, and the worst "
    "`floor(fraction * batch)` of each batch are dropped without training. The section's "
    "settings (`enabled: false` keeps the section but turns the screen off):\n"
)

_HPARAMS = """\
Each entry overrides one field of the default search space: a fixed value, a list of
choices, or a range `{low: ..., high: ..., log: true}`. The ranges below bound every value
(and both ends of a range).
"""


if __name__ == "__main__":
    print(job_file_reference(), end="")
