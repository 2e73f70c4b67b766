"""The records database: the async engine for DATABASE_URL, and the Alembic migrations that
bring its schema up to date (at start-up, or with `ultravox-bridge db upgrade`)."""

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = str(Path(__file__).with_name("migrations"))
# The newest migration's revision (a test holds it to migrations/versions/). A database already
# there is not handed to Alembic, so the service starts without importing it (0.13 s, 11 MiB).
HEAD_REVISION = "0001"
# Any constant: PostgreSQL's advisory lock that lets one replica migrate at a time.
MIGRATION_LOCK_ID = 0x0B71D9E
# How long a database request may wait for SQLite's write lock before it fails.
SQLITE_BUSY_SECONDS = 5


def create_engine(url: str) -> AsyncEngine:
    """The engine for `url` (checked by the settings); a SQLite file's folder is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: object, _: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL: readers (the API) never wait for the writer; foreign keys: deletes cascade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _alembic_config(connection: Connection) -> "Config":
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Replicas starting together: the first migrates, the others wait and find it done.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    if current_revision(connection) == HEAD_REVISION:
        return
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def current_revision(connection: Connection) -> str | None:
    """The revision the database's schema is at; None before the first migration."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(version) if version is not None else None


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every migration not yet applied."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def upgrade_url(url: str) -> None:
    """`ultravox-bridge db upgrade`: migrate the database at `url`, then let go of it."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
