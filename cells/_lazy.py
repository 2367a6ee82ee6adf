"""Package exports that load on first use (PEP 562), for the packages' ``__init__`` modules.

Example:
    >>> namespace = {"__name__": "demo"}
    >>> getattr_ = lazy_exports(namespace, {"json": ("dumps",)})
    >>> getattr_("dumps")([1]), "dumps" in namespace
    ('[1]', True)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(namespace: dict[str, Any], modules: dict[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for the module whose globals are ``namespace``: each name
    of ``modules`` (module -> names) is imported from its module when first asked for, then
    kept in ``namespace`` so that later lookups skip this function."""
    table = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(table[name]), name)
        return value

    return __getattr__
