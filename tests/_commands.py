"""Check documented shell commands against the real command-line programs, without running them.

A command such as ``cellsearch launch examples/x.yaml`` or ``ray start --head --port=6379`` is
parsed by the program's own Click command (``cellsearch`` is a Typer app, ``ray`` and
``mlflow`` are Click groups), so a misspelt subcommand, an unknown option or a missing
argument fails here exactly as it would on the command line; nothing is executed.

Also: compose-style ``${VAR:-default}`` interpolation and extraction of fenced shell blocks
from Markdown.

Example:
    >>> interpolate("${HOST:-127.0.0.1}:${PORT:?set it}:80", {"PORT": "5000"})
    '127.0.0.1:5000:80'
    >>> variables("a ${A} $${NOT_ONE} ${B:-x} ${C:?err}")
    ['A', 'B', 'C']
    >>> check_command(["ray", "start", "--head", "--port=6379"])
    'ray start'
    >>> check_command(["ray", "start", "--no-such-flag"])
    Traceback (most recent call last):
    ...
    AssertionError: `ray start --no-such-flag`: No such option ...
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}; `$${` is an escaped `$`.
_VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def variables(text: str) -> list[str]:
    """Names of the ``${VAR...}`` references in ``text``, in order, without repeats."""
    return list(dict.fromkeys(m["name"] for m in _VARIABLE.finditer(text)))


def interpolate(text: str, env: Mapping[str, str] | None = None) -> str:
    """Substitute ``${VAR...}`` as docker compose does; a required variable that is unset
    becomes ``<VAR>`` (the tests look at shapes, not at secrets)."""
    env = env or {}

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            return arg if value is None or (op == ":-" and value == "") else value
        if op in (":?", "?"):
            return value if value else f"<{name}>"
        return value or ""

    return _VARIABLE.sub(substitute, text).replace("$$", "$")


def shell_commands(markdown: str) -> list[str]:
    """Commands in the fenced ``bash``/``sh``/``shell``/``console`` blocks of a Markdown text.

    One command per line; a trailing backslash continues it; comments, blank lines and a
    leading ``$ `` prompt are dropped.
    """
    commands: list[str] = []
    for block in re.findall(r"^```(?:bash|sh|shell|console)[ \t]*\n(.*?)^```", markdown, re.M | re.S):
        pending = ""
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("$ "):
                line = line[2:]
            if not pending and (not line or line.startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1].strip() + " "
                continue
            commands.append((pending + line).strip())
            pending = ""
    return commands


def _cellsearch() -> Any:
    import typer

    from cellsearch._cli import app

    return typer.main.get_command(app)


def _ray() -> Any:
    from ray.scripts.scripts import cli

    return cli


def _mlflow() -> Any:
    from mlflow.cli import cli

    return cli


PROGRAMS: dict[str, Callable[[], Any]] = {"cellsearch": _cellsearch, "ray": _ray, "mlflow": _mlflow}
"""The programs whose command lines can be checked, by executable name."""


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def _subcommands(command: Any) -> list[str]:
    return sorted(command.list_commands(command.context_class(command)))


def check_command(argv: list[str] | str, cwd: Path = REPO) -> str:
    """Parse ``argv`` with the program's own Click command; return the command path.

    Raises ``AssertionError`` naming the command and Click's reason when it would be refused.
    Relative paths in arguments are checked from ``cwd`` (the repository root).
    """
    # Typer ships its own copy of Click, so commands are handled by their duck type and
    # errors by the ``format_message`` both Click flavours give their usage errors.
    if isinstance(argv, str):
        argv = shlex.split(argv)
    shown = shlex.join(argv)
    program = argv[0]
    assert program in PROGRAMS, f"`{shown}`: unknown program {program!r} (known: {', '.join(PROGRAMS)})"
    command = PROGRAMS[program]()
    path, args = [program], list(argv[1:])
    while _is_group(command):
        where = " ".join(path)
        assert args and not args[0].startswith("-"), f"`{shown}`: `{where}` needs a subcommand"
        sub = command.get_command(command.context_class(command, info_name=where), args[0])
        assert sub is not None, (
            f"`{shown}`: `{where}` has no subcommand {args[0]!r} (has: {', '.join(_subcommands(command))})"
        )
        path.append(args.pop(0))
        command = sub
    try:
        with contextlib.chdir(cwd):
            command.make_context(" ".join(path), args)
    except Exception as exc:
        if not hasattr(exc, "format_message"):
            raise
        raise AssertionError(f"`{shown}`: {exc.format_message()}") from None
    return " ".join(path)
