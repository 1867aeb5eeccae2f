"""The shared servers the scale-out tests run against: PostgreSQL and Redis, each test in its own
corner of them, and a TCP proxy to take either away without touching the real server.

The servers are the machine's own (other people use them too), found through
``AUTHSVC_TEST_DATABASE_URL`` and ``AUTHSVC_TEST_REDIS_URL`` (``scripts/test`` and ``.ci/run`` set
them; the defaults below are the same). Each user of this module gets:

* a PostgreSQL schema of its own (:func:`pg_schema`): the instance's URL carries
  ``options=-csearch_path=<schema>``, so its tables, alembic's version table included, live there
  and nowhere else; the schema is dropped afterwards;
* a Redis key prefix of its own (:func:`redis_prefix`, used as ``AUTHSVC_RATELIMIT_KEY_PREFIX``);
  its keys are deleted afterwards.

An outage is a :class:`TcpProxy` between authsvc and the server being closed: new connections are
refused and open ones cut, exactly what a crashed server looks like from authsvc's side.

An unreachable server skips the test with the reason, except under ``CI=true``, where it fails:
CI must not go green by testing nothing.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Self

import pytest

from tests.conftest import free_port

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def database_url() -> str:
    return os.environ.get("AUTHSVC_TEST_DATABASE_URL") or DEFAULT_DATABASE_URL


def redis_url() -> str:
    return os.environ.get("AUTHSVC_TEST_REDIS_URL") or DEFAULT_REDIS_URL


def unavailable(reason: str):
    """Skip (or, under CI=true, fail) the current test because a test server is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: an unreachable test server is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


_reachable: dict[str, str | None] = {}   # url -> None if it answered, else why not (asked once)


def require_postgres() -> str:
    """The test PostgreSQL URL; skips (fails under CI) when nothing answers there."""
    url = database_url()
    if url not in _reachable:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            _reachable[url] = None
        except (ImportError, sa.exc.SQLAlchemyError) as exc:  # driver missing, refused, auth failed, ...
            _reachable[url] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        finally:
            engine.dispose()
    if _reachable[url] is not None:
        unavailable(f"PostgreSQL at AUTHSVC_TEST_DATABASE_URL={_safe(url)} is unreachable ({_reachable[url]}); "
                    "start it or point the variable at one")
    return url


def require_redis() -> str:
    """The test Redis URL; skips (fails under CI) when nothing answers there."""
    url = redis_url()
    if url not in _reachable:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
            _reachable[url] = None
        except (redis.RedisError, OSError) as exc:
            _reachable[url] = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
    if _reachable[url] is not None:
        unavailable(f"Redis at AUTHSVC_TEST_REDIS_URL={_safe(url)} is unreachable ({_reachable[url]}); "
                    "start it or point the variable at one")
    return url


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("@")[-1]


def in_schema(url: str, schema: str, *, host: str | None = None, port: int | None = None) -> str:
    """``url`` with every table in ``schema`` (and, given host/port, reached through them)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    query = {k: v for k, v in u.query.items() if k != "options"}
    query["options"] = f"-csearch_path={schema}"
    u = u.set(query=query)
    if host is not None:
        u = u.set(host=host)
    if port is not None:
        u = u.set(port=port)
    return u.render_as_string(hide_password=False)


@contextlib.contextmanager
def pg_schema(label: str = "t") -> Iterator[tuple[str, str]]:
    """A fresh, empty schema: yields (its name, the URL that puts every table in it). Dropped with
    everything in it afterwards."""
    import sqlalchemy as sa

    base = require_postgres()
    name = f"authsvc_{label}_{secrets.token_hex(6)}"
    admin = sa.create_engine(base, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        yield name, in_schema(base, name)
    finally:
        try:
            with admin.begin() as conn:
                # A connection left inside a transaction would hold DROP forever: give up instead.
                conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        finally:
            admin.dispose()


@contextlib.contextmanager
def redis_prefix(label: str = "t") -> Iterator[str]:
    """A key prefix nobody else uses (``AUTHSVC_RATELIMIT_KEY_PREFIX``); its keys are deleted
    afterwards, whichever client (limits, Flask-Limiter) wrapped them in its own prefix."""
    import redis

    url = require_redis()
    prefix = f"authsvc-{label}-{secrets.token_hex(6)}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


def redis_keys(prefix: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(require_redis(), socket_connect_timeout=3, socket_timeout=3)
    try:
        return list(client.scan_iter(match=f"*{prefix}*", count=1000))
    finally:
        client.close()


def host_port(url: str, default_port: int) -> tuple[str, int]:
    """Where ``url``'s server listens (a SQLAlchemy or redis URL)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


class TcpProxy:
    """127.0.0.1:<port> forwarded to a real server, which the test can take away and give back.

    :meth:`close` stops listening (new connections are refused) and cuts every open connection:
    what a crashed server looks like to its clients. :meth:`hang` cuts them too but then accepts
    new connections and never answers: a server that is up but stuck, or a black-holed route.
    :meth:`open` forwards again on the same port: the server is back. Nothing happens to the real
    server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self._hanging = False
        self._held: list[socket.socket] = []
        self.port = free_port()
        self.open()

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        """Forward again (after :meth:`close` or :meth:`hang`), on the same port."""
        with self._lock:
            self._hanging = False
            held, self._held = self._held, []
            listening = self._listener is not None
        for s in held:
            s.close()
        if listening:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True,
                         name=f"tcpproxy-{self.port}").start()

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            held, self._held = self._held, []
            self._hanging = False
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes accept() (Linux)
            listener.close()
        for s in held:
            s.close()
        self._cut()

    def hang(self) -> None:
        """Cut every open connection, then accept new ones and never forward a byte."""
        if self._listener is None:
            self.open()
        with self._lock:
            self._hanging = True
        self._cut()

    def _cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                if self._hanging:
                    self._held.append(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, upstream)
            with self._lock:
                if self._listener is not listener:  # closed meanwhile
                    client.close()
                    upstream.close()
                    return
                self._pairs.add(pair)
            done = threading.Barrier(2, action=lambda pair=pair: self._finish(pair))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True).start()

    def _finish(self, pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
        for s in pair:
            s.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):  # one side ended: end both directions
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
