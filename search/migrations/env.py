"""Alembic environment of the cellsearch results database.

Only the ``cs_`` tables are managed here, and the revision lives in ``cs_alembic_version``,
so Optuna's tables (and its own ``alembic_version``) in the same database are left alone.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from search._schema import TABLE_PREFIX, VERSION_TABLE, Base
from search._settings import resolve_settings


def _ours(name: str | None, type_: str, parent_names: object) -> bool:
    return type_ != "table" or (name or "").startswith(TABLE_PREFIX)


def _configure_and_run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_name=_ours,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:  # run from the package (search._schema) on its own connection
    _configure_and_run(connection)
elif context.is_offline_mode():
    context.configure(
        url=context.get_x_argument(as_dictionary=True).get("db") or resolve_settings().db_url,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:  # the alembic command line
    url = context.get_x_argument(as_dictionary=True).get("db") or resolve_settings().db_url
    engine = create_engine(url)
    with engine.begin() as conn:
        _configure_and_run(conn)
    engine.dispose()
