"""Alembic environment. Run through ``persistence.migrate.upgrade``, which passes the
Connection (or Engine) to use in ``config.attributes["connection"]``; a plain
``sqlalchemy.url`` main option works too. No logging is configured here and no URL is
ever printed."""
from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection, Engine

from persistence.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if isinstance(connectable, Connection):
        _run(connectable)
        return
    owned = False
    if connectable is None:
        from persistence.database import create_engine_for

        connectable = create_engine_for(config.get_main_option("sqlalchemy.url"))
        owned = True
    assert isinstance(connectable, Engine)
    try:
        with connectable.begin() as connection:
            _run(connection)
    finally:
        if owned:
            connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
