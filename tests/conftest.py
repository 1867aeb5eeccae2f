"""Shared fixtures: an app on a fresh SQLite database with the cheap test policy, a clock the
test controls, and helpers to create users and log in through the real HTTP interface."""

from __future__ import annotations

import collections
import io
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from authsvc.core import config, db, filemodes
from authsvc.server import cli
from authsvc.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
TEST_POLICY = str(ROOT / "policies" / "test.toml")
STRONG_KEY = "k3Y-for-tests-only-7f9c2a1e5b8d4f6a0c3e9b7d1f5a8c2e"
PASSWORD = "correct horse battery staple 42"
HTTPS = "https://auth.example.test"


def pytest_configure(config):
    config.addinivalue_line("markers", "asvs(*ids): OWASP ASVS 5.0 requirement ids this test proves")


def pytest_collection_modifyitems(config, items):
    """Every test has a node id of its own: pytest-xdist hands tests to its workers by node id, so
    of two tests sharing one, only the first would run (pytest 9 gave schemathesis' tests, one per
    operation, a single id; pyproject.toml pins pytest below 9 for that)."""
    counts = collections.Counter(item.nodeid for item in items)
    shared = sorted(nodeid for nodeid, n in counts.items() if n > 1)
    if shared:
        raise pytest.UsageError(f"{len(shared)} node ids are shared by several tests, which pytest-xdist "
                                f"would run once each: {', '.join(shared[:5])}")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on, for a server a test starts next.

    Drawn at random below the kernel's ephemeral range (``ip_local_port_range``), not with
    ``bind(("127.0.0.1", 0))``: a port from that range can be handed to another connection's
    client side, or to another pytest-xdist worker's bind, between this check and the server's
    bind; below it, only another random draw can pick it."""
    low = _ephemeral_low()
    for _ in range(100):
        port = 10000 + secrets.randbelow(low - 10000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found in 10000-{low - 1}")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return max(10001, min(int(f.read().split()[0]), 65536))
    except (OSError, ValueError, IndexError):  # not Linux: IANA's dynamic range starts at 49152
        return 49152


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_env(tmp_path, **overrides) -> dict:
    env = {
        "AUTHSVC_ENV": "production",
        "AUTHSVC_SECRET_KEY": STRONG_KEY,
        "AUTHSVC_POLICY": TEST_POLICY,
        "AUTHSVC_DATABASE_URL": f"sqlite:///{tmp_path / 'authsvc.db'}",
        "AUTHSVC_PUBLIC_URL": HTTPS,
        "AUTHSVC_REDIRECT_ALLOWED_ORIGINS": "https://app.example.test",
    }
    env.update({k: v for k, v in overrides.items() if v is not None})
    for k in [k for k, v in overrides.items() if v is None]:
        env.pop(k, None)
    return env


_SCHEMA_AT_HEAD: list[bytes] = []  # an SQLite file `db.upgrade` made, once per test process


def _schema_at_head() -> bytes:
    """The bytes of a fresh SQLite database that ``db.upgrade`` brought to head (made once, on
    first use, by the same code every other call runs; then copied instead of re-run)."""
    if not _SCHEMA_AT_HEAD:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "authsvc.db"
            engine = db.make_engine(f"sqlite:///{path}")
            db.upgrade(engine)
            engine.dispose()  # the last connection closes: the WAL is checkpointed into the file
            _SCHEMA_AT_HEAD.append(path.read_bytes())
    return _SCHEMA_AT_HEAD[0]


def build_app(tmp_path, clock=None, **env_overrides):
    env = make_env(tmp_path, **env_overrides)
    fresh = tmp_path / "authsvc.db"
    # The default database, not there yet: start from a copy of the upgraded schema rather than
    # running the migrations for every test. The copy is made as authsvc makes the file (owner-only),
    # so the app finds what `authsvc db upgrade` would have left. Any other database (PostgreSQL, a
    # file a test made or reuses) is upgraded here as before.
    copied = env["AUTHSVC_DATABASE_URL"] == f"sqlite:///{fresh}" and not fresh.exists()
    if copied:
        filemodes.make_private_folder(str(tmp_path))
        filemodes.create_private_file(str(fresh))
        with open(fresh, "r+b") as out:
            out.write(_schema_at_head())
    settings = config.from_env(env, instance_path=str(tmp_path / "instance"))
    app = create_app(settings, clock=clock or Clock())
    app.config["TESTING"] = False  # production behaviour: no exception propagation
    if not copied:
        db.upgrade(app.extensions["authsvc"].engine)
    return app


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def app(tmp_path, clock):
    return build_app(tmp_path, clock)


@pytest.fixture
def svc(app):
    return app.extensions["authsvc"]


class HttpsClient(FlaskClient):
    """A test client that talks to the service as a browser would: over https, at its public host."""

    def open(self, *args, **kwargs):
        if not (args and not isinstance(args[0], str)):
            kwargs.setdefault("base_url", HTTPS)
        return super().open(*args, **kwargs)


def new_client(app, **kwargs):
    app.test_client_class = HttpsClient
    return app.test_client(**kwargs)


@pytest.fixture
def client(app):
    return new_client(app)


def add_user(app, name: str = "alice", password: str = PASSWORD):
    svc = app.extensions["authsvc"]
    return svc.accounts.create(name, svc.hasher.hash(password))


@pytest.fixture
def user(app):
    return add_user(app)


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str, where: str = "the page") -> str:
    """The CSRF token of the (first) form in ``html``: the one helper every test uses."""
    match = _CSRF.search(html)
    assert match, f"no csrf token on {where}"
    return match.group(1)


def csrf(client, path: str = "/login") -> str:
    page = client.get(path)
    return csrf_in(page.get_data(as_text=True), f"{path} ({page.status_code})")


def login(client, username: str = "alice", password: str = PASSWORD, *, remember: bool = False,
          next: str | None = None, headers=None):
    data = {"csrf_token": csrf(client), "username": username, "password": password}
    if remember:
        data["remember"] = "on"
    if next is not None:
        data["next"] = next
    return client.post("/login", data=data, headers=headers or {})


def cookie_value(client, name: str):
    c = client.get_cookie(name, domain=HTTPS.split("://")[1])
    return c.value if c else None


def set_cookie_headers(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")



def browser(app, ip: str = "198.51.100.7", ua: str = "Mozilla/5.0 (X11) TestBrowser/1"):
    """A fresh browser at its own address (each gets its own per-client login budget)."""
    c = new_client(app)
    c.environ_base.update(REMOTE_ADDR=ip, HTTP_USER_AGENT=ua)
    return c


def verify(client) -> int:
    """The status of ``GET /auth/verify`` for this browser."""
    return client.get("/auth/verify").status_code


def api(client) -> int:
    """The status of ``GET /api/v1/session`` for this browser."""
    return client.get("/api/v1/session").status_code


def run_cli(monkeypatch, tmp_path, *argv, stdin: str | None = None) -> int:
    """``authsvc ...`` in-process, configured like the app under test (same database)."""
    for key in [k for k in os.environ if k.startswith("AUTHSVC_")]:
        monkeypatch.delenv(key)
    for key, value in make_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AUTHSVC_INSTANCE_PATH", str(tmp_path / "instance"))
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return cli.main(list(argv))


# What another process changes (a worker, an instance, an `authsvc` command) reaches /auth/verify within
# its cache's lifetime: sessions.verify_cache_seconds, which `authsvc check` keeps at most 1 s.
REVOCATION_BOUND_SECONDS = 1.0


def settles_within(check, expected, *, bound: float = REVOCATION_BOUND_SECONDS) -> None:
    """Poll ``check()`` for 1.5 x ``bound``: every call made after ``bound`` must answer
    ``expected``, and so must the last one (only earlier calls may still get the old answer)."""
    started = time.monotonic()
    answers = []  # (called at, answer)
    while (called := time.monotonic() - started) < bound * 1.5:
        answers.append((round(called, 3), check()))
        time.sleep(0.05)
    late = [a for a in answers if a[0] > bound and a[1] != expected]
    assert not late and answers[-1][1] == expected, f"expected {expected!r} from {bound} s on: {answers}"


os.environ.setdefault("HYPOTHESIS_PROFILE", "ci")
