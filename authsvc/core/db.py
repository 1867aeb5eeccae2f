"""Database engine and schema management (alembic, driven in-process).

SQLite serves one machine; PostgreSQL (psycopg 3) serves any number of instances. Either way the
schema is alembic's: ``authsvc db upgrade`` applies the migrations, and ``authsvc serve`` and the
CLI refuse a schema that is behind (:func:`schema_problem`), so no instance runs against tables its
code does not match.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qsl, unquote

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine, make_url

from authsvc.core import filemodes

_MIGRATIONS = str(Path(__file__).resolve().parent / "migrations")

# pg_advisory_xact_lock key held while migrating: instances that all run `authsvc db upgrade` as
# they start take turns instead of racing to create the same tables. (The ASCII of "authsvc".)
_MIGRATION_LOCK = 0x61757468737663


def engine_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` (libpq's spelling, which SQLAlchemy maps to psycopg2,
    not installed) mean psycopg 3 here; every other URL is used as written."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL (``sqlite:///relative.db``, ``sqlite:////abs/path.db``, and SQLite's
    URI form ``sqlite:///file:/abs/path.db?uri=true``); None for any other database and for SQLite
    in memory. Whatever is a file must be found here: make_engine creates it owner-only and
    `authsvc check` reports its mode."""
    parsed = make_url(engine_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    mode = parsed.query.get("mode")
    if name.startswith("file:") and str(parsed.query.get("uri", "")).strip().lower() in _TRUE:
        # https://sqlite.org/uri.html: file:PATH, or file://[localhost]/PATH (an authority is that or
        # nothing), then SQLite's own "?query" and "#fragment"; SQLite percent-decodes the path once
        # more (SQLAlchemy decoded the URL once): "auth%2520data.db" is the file "auth data.db".
        name, _, rest = name[len("file:"):].partition("?")
        name = name.partition("#")[0]
        mode = dict(parse_qsl(rest.partition("#")[0])).get("mode", mode)
        if name.startswith("//"):
            name = "/" + name[2:].partition("/")[2]
        name = unquote(name)
    if not name or name == ":memory:" or mode == "memory":
        return None
    return name


_TRUE = ("1", "true", "yes", "on", "t", "y")  # what SQLAlchemy reads as uri=true


def make_engine(url: str) -> Engine:
    """An engine for ``url``. SQLite gets foreign keys, WAL and a busy timeout; PostgreSQL a
    pre-ping pool, so connections cut by a database restart are replaced before a request uses
    them, and a short connect timeout, so an unreachable server costs a request seconds (then a
    503), not minutes."""
    url = engine_url(url)
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path:
            # Owner-only whatever the umask: the file holds the password hashes (authsvc.core.filemodes).
            filemodes.make_private_folder(os.path.dirname(os.path.abspath(path)))
            filemodes.create_private_file(path)
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


class MigrationError(RuntimeError):
    """A migration would leave the database inconsistent; nothing of it was committed."""


@contextmanager
def _migrating(engine: Engine) -> Iterator[sa.Connection]:
    """A connection in one transaction to run migrations on.

    PostgreSQL: under an advisory lock, so instances upgrading at once take turns.

    SQLite: with foreign keys off. SQLite cannot drop a column in place, so a migration rebuilds the
    table (copy, drop, rename); with foreign keys on (make_engine turns them on), dropping the old
    ``users`` table would cascade to every row that names an account (its second factors, groups,
    sessions). The pragma is a no-op inside a transaction, so it is set before this one begins,
    checked, and every reference is checked before the commit (SQLite's documented procedure for
    changing a table's schema). The connection goes back to the pool with foreign keys on again."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            if conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() != 0:  # pragma: no cover - driver change
                raise MigrationError("cannot turn SQLite's foreign keys off to migrate (a transaction is open)")
            conn.commit()
        try:
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        tables = ", ".join(sorted({str(row[0]) for row in broken}))
                        raise MigrationError(
                            f"the migration would leave {len(broken)} row(s) naming a row that does not exist "
                            f"(in {tables}); its row changes were rolled back, but SQLite may keep a table "
                            "change: restore the backup taken before upgrading")
        finally:
            if sqlite:
                conn.rollback()
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or migrate the schema to ``revision`` (``authsvc db upgrade``).

    On PostgreSQL the whole upgrade is one transaction (DDL included) under an advisory lock:
    several instances upgrading at once run it one after another, and the later ones find the
    schema already at head. On SQLite it runs with foreign keys off (see :func:`_migrating`)."""
    from alembic import command

    with _migrating(engine) as conn:
        command.upgrade(_alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision``, keeping every row the older schema can hold."""
    from alembic import command

    with _migrating(engine) as conn:
        command.downgrade(_alembic_config(conn), revision)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(_MIGRATIONS)


def head_revision() -> str:
    return _scripts().get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _known(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:  # alembic's answer for an id no script has
        return False


def schema_problem(engine: Engine) -> str | None:
    """None when the schema is at head, else a sentence saying what is wrong and what to do."""
    try:
        current = current_revision(engine)
    except sa.exc.DBAPIError as exc:  # unreachable server, bad credentials, ...
        reason = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0][:200]
        return (f"cannot read the database schema ({reason}). Fix: check AUTHSVC_DATABASE_URL and that "
                "the database server is up.")
    head = head_revision()
    if current == head:
        return None
    if current is None:
        return "the database has no authsvc schema. Fix: run `authsvc db upgrade`."
    if not _known(current):
        return (f"the database schema is at revision {current}, which this release of authsvc does not know "
                f"(it needs {head}): a newer release migrated it. Fix: run that release, not this one.")
    return f"the database schema is at revision {current}, the code needs {head}. Fix: run `authsvc db upgrade`."
