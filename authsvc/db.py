"""Database engine and schema management (alembic, driven in-process)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

_MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets foreign keys, WAL and a busy timeout; PostgreSQL a
    pre-ping pool so a restarted server is reconnected to without a failed request."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, hide_parameters=True,
                                   connect_args={"timeout": 15, "check_same_thread": False})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        return engine
    return sa.create_engine(url, hide_parameters=True, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=5,
                            connect_args={"connect_timeout": 3} if url.startswith("postgresql") else {})


def _alembic_config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _MIGRATIONS)
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` (``authsvc db upgrade``)."""
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def head_revision() -> str:
    return ScriptDirectory(_MIGRATIONS).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_problem(engine: Engine) -> str | None:
    """None when the schema is at head, else a sentence saying what to run."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no authsvc schema. Fix: run `authsvc db upgrade`."
    return f"the database schema is at revision {current}, the code needs {head}. Fix: run `authsvc db upgrade`."
