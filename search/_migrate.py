"""Schema migrations of the results database, run from the package (Alembic underneath).

The Alembic scripts ship inside the package (``search/migrations``, configured by
``search/alembic.ini``), so an installed ``cellsearch`` upgrades a database without a
checkout. The revision is kept in ``cs_alembic_version`` (Optuna keeps its own in
``alembic_version`` in the same database).

Example:
    >>> head_revision()
    '0001_initial'
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from search._db import TABLES, VERSION_TABLE

_PACKAGE_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = _PACKAGE_DIR / "alembic.ini"
MIGRATIONS_DIR = _PACKAGE_DIR / "migrations"


def alembic_config(migrations: str | Path | None = None) -> Config:
    """The packaged Alembic configuration; ``migrations`` points at another script folder (tests)."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(migrations or MIGRATIONS_DIR))
    return config


def head_revision(migrations: str | Path | None = None) -> str:
    """The revision this code expects."""
    head = ScriptDirectory.from_config(alembic_config(migrations)).get_current_head()
    assert head is not None, "the migration history is empty"
    return head


def known_revisions(migrations: str | Path | None = None) -> set[str]:
    """Every revision in this code's history."""
    script = ScriptDirectory.from_config(alembic_config(migrations))
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, ``None`` when it has never been migrated."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def existing_tables(connection: Connection) -> list[str]:
    """Tables of this package found in the database (whether stamped or not)."""
    names = set(inspect(connection).get_table_names())
    return [t for t in TABLES if t in names]


def upgrade(engine: Engine, revision: str = "head", migrations: str | Path | None = None) -> None:
    """Migrate the database to ``revision`` in one transaction (all or nothing where DDL is transactional)."""
    config = alembic_config(migrations)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def stamp(engine: Engine, revision: str, migrations: str | Path | None = None) -> None:
    """Record ``revision`` without running migrations (for a schema built by other means)."""
    config = alembic_config(migrations)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.stamp(config, revision)
