"""The JSON Schema of a job file, for editors: completion, hover text and checks as one types.

:func:`job_schema` starts from pydantic's schema of :class:`search.JobSpec` and fills in what
the models validate by hand: each setting's description (the docstring under the field, as in
``docs/jobs.md``), the pre-filter's screen settings, the hyperparameter overrides, a task's
``settings`` by its ``name``, and ``population``'s values. What a schema cannot say (checks
across sections, cell files that exist) is left to ``cellsearch launch``, which checks all of
it; the schema never accepts less than the job does, only sometimes more.

Example:
    >>> schema = job_schema()
    >>> schema["properties"]["budget"]["description"]
    'When the search stops (below); a search needs at least one of its limits.'
    >>> sorted(schema["properties"]["strategy"]["discriminator"]["mapping"])
    ['fixed', 'jozefowicz', 'random', 'regularized_evolution']
"""

from __future__ import annotations

import copy
import typing
from typing import Any

from pydantic import BaseModel

__all__ = ["SCHEMA_DIALECT", "job_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema version pydantic writes."""

_REF = "#/$defs/{model}"


def job_schema() -> dict[str, Any]:
    """The JSON Schema of a job file (a JSON-ready mapping)."""
    import workers
    from search._jobspec import JobSpec
    from search._strategies._prefilter import PREFILTER_LIMITS

    schema = JobSpec.model_json_schema(ref_template=_REF)
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    for model in _models(JobSpec):
        target = schema if model is JobSpec else defs.get(model.__name__)
        if target is not None:
            _describe(target, model)
    props = schema["properties"]
    props["population"] = {
        "description": props["population"].get("description", ""),
        "default": "auto",
        "anyOf": [
            {"enum": ["auto", "off"]},
            {"const": False, "description": "YAML's `off`: each trial alone."},
            {"type": "integer", "minimum": 1, "maximum": 1000},
        ],
    }
    _screen(defs["PrefilterSection"], workers.PrefilterConfig, PREFILTER_LIMITS)
    space = _hparams(defs)
    props["hparams"] = {**space, "description": props["hparams"].get("description", "")}
    task = defs["TaskEntry"]["properties"]
    task["hparams"] = {**space, "description": task["hparams"].get("description", "")}
    _task_settings(defs, workers.TASKS)
    return {"$schema": SCHEMA_DIALECT, **schema, "title": "cellsearch job file"}


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """``root`` and every model its fields may hold, at any depth."""
    seen: list[type[BaseModel]] = []
    todo: list[Any] = [root]
    while todo:
        item = todo.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            if item in seen:
                continue
            seen.append(item)
            todo += [info.annotation for info in item.model_fields.values()]
        else:
            todo += list(typing.get_args(item))
    return seen


def _describe(target: dict[str, Any], model: type[BaseModel]) -> None:
    """The model's summary line and each field's docstring as ``description``s."""
    from search._job_reference import FALLBACK_MEANINGS, attribute_docstrings

    docs = FALLBACK_MEANINGS | dict(attribute_docstrings(model))
    summary = (model.__doc__ or "").strip().split("\n\n")[0]
    if summary:
        target["description"] = " ".join(summary.split())
    for name, prop in target.get("properties", {}).items():
        prop.pop("title", None)
        if name in docs:
            prop["description"] = " ".join(docs[name].split())


def _screen(section: dict[str, Any], config: type[BaseModel], limits: dict[str, int]) -> None:
    """The screen's settings are keys of the ``prefilter`` section itself."""
    props = config.model_json_schema(ref_template=_REF)["properties"]
    _describe({"properties": props}, config)
    for name, limit in limits.items():
        _bound(props[name], limit)
    section["properties"].update(props)
    section["additionalProperties"] = False


def _bound(prop: dict[str, Any], limit: int) -> None:
    if "maximum" in prop:
        prop["maximum"] = min(prop["maximum"], limit)
    for option in prop.get("anyOf", []):
        _bound(option, limit)


def _hparams(defs: dict[str, Any]) -> dict[str, Any]:
    """The overrides: per hyperparameter, a fixed value, a list of choices or a range."""
    from workers import HyperParams, Range, SearchSpace

    values = HyperParams.model_json_schema(ref_template=_REF)["properties"]
    _describe({"properties": values}, HyperParams)
    range_schema = Range.model_json_schema(ref_template=_REF)
    _describe(range_schema, Range)
    defs["Range"] = range_schema
    props = {}
    for name in SearchSpace.model_fields:
        value = {k: v for k, v in values[name].items() if k not in ("default", "description")}
        props[name] = {
            "description": values[name].get("description", name),
            "anyOf": [
                value,
                {"type": "array", "items": value, "minItems": 1},
                {"$ref": _REF.format(model="Range")},
            ],
        }
    return {"type": "object", "properties": props, "additionalProperties": False}


def _task_settings(defs: dict[str, Any], tasks: dict[str, Any]) -> None:
    """A task's ``name`` is one of the known tasks, and its ``settings`` are that task's."""
    entry = defs["TaskEntry"]
    entry["properties"]["name"]["enum"] = sorted(tasks)
    rules = []
    for name in sorted(tasks):
        config = tasks[name].config_class
        settings = copy.deepcopy(config.model_json_schema(ref_template=_REF))
        for model in _models(config):
            target = settings if model is config else settings.get("$defs", {}).get(model.__name__)
            if target is not None:
                _describe(target, model)
        for prop in settings["properties"].values():  # a split is a path or a slice of a file
            if {"$ref": _REF.format(model="FileSlice")} in prop.get("anyOf", []):
                prop["anyOf"].insert(0, {"type": "string"})
        defs.update(settings.pop("$defs", {}))
        defs[config.__name__] = settings
        settings_ref = {"$ref": _REF.format(model=config.__name__)}
        rules.append(
            {
                "if": {"properties": {"name": {"const": name}}, "required": ["name"]},
                "then": {"properties": {"settings": settings_ref}},
            }
        )
    entry["allOf"] = rules
