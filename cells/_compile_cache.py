"""The process-level cache of generated and compiled code.

Generated programs (:class:`~cells._compile_codegen.Program`) are cached by the graph's
structure (node names, tags and ``bias_init`` do not matter, node order does; see
:func:`~cells._compile_plan.structure_key`), so the trials of one stored cell in a worker
build their layers from one program; ``torch.compile`` functions (``mode="compile"``) are
cached per structure, sizes, device, dtype and backend.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from cells._compile_codegen import Program, build_program
from cells._compile_plan import build_plan, structure_key
from cells._graph import CellGraph

_PROGRAM_CACHE_SIZE = 1024


class CompileCacheInfo(NamedTuple):
    """Process-level cache statistics (like ``functools.lru_cache``'s ``cache_info``)."""

    hits: int
    misses: int
    size: int
    compiled_hits: int
    compiled_misses: int
    compiled_size: int


class _Cache:
    """Programs by structure key (least recently used dropped first) and compiled functions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.programs: OrderedDict[str, Program] = OrderedDict()
        self.compiled: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self.hits = self.misses = self.compiled_hits = self.compiled_misses = 0

    def program(self, graph: CellGraph) -> Program:
        key = structure_key(graph)
        with self.lock:
            program = self.programs.get(key)
            if program is not None:
                self.hits += 1
                self.programs.move_to_end(key)
                return program
            self.misses += 1
        program = build_program(build_plan(graph))
        with self.lock:
            self.programs[key] = program
            while len(self.programs) > _PROGRAM_CACHE_SIZE:
                self.programs.popitem(last=False)
        return program

    def compiled_sequence(self, program: Program, key: tuple[Any, ...], backend: str) -> Callable[..., Any]:
        full_key = (program.plan.key, backend, *key)
        with self.lock:
            fn = self.compiled.get(full_key)
            if fn is not None:
                self.compiled_hits += 1
                return fn
            self.compiled_misses += 1
            # torch.compile only wraps here; the compile itself happens on the first call.
            fn = torch.compile(program.sequence, dynamic=False, backend=backend)
            self.compiled[full_key] = fn
            return fn


CACHE = _Cache()


def compile_cache_info() -> CompileCacheInfo:
    """Hits, misses and sizes of the process-level caches of generated and compiled code.

    Example:
        >>> from cells import build_layer, library
        >>> before = compile_cache_info()
        >>> _ = build_layer(library.get("tanh"), 4, 4, mode="fused")
        >>> _ = build_layer(library.get("tanh"), 4, 4, mode="fused")
        >>> compile_cache_info().hits - before.hits >= 1
        True
    """
    c = CACHE
    with c.lock:
        return CompileCacheInfo(
            c.hits, c.misses, len(c.programs), c.compiled_hits, c.compiled_misses, len(c.compiled)
        )


def clear_compile_cache() -> None:
    """Forget every cached program and compiled function and reset the statistics."""
    with CACHE.lock:
        CACHE.programs.clear()
        CACHE.compiled.clear()
        CACHE.hits = CACHE.misses = CACHE.compiled_hits = CACHE.compiled_misses = 0
