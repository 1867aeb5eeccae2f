"""Faults: Redis or PostgreSQL goes away under a running instance, and comes back.

One real instance (``authsvc serve --workers 2``, docs/deployment.md's environment) reaches
PostgreSQL and Redis through :class:`tests.backends.TcpProxy`, so a test can take either away (new
connections refused, open ones cut, or a server that accepts and never answers) without touching
the machine's real servers, and give it back.

What must hold, from the deployment guide's failure table:

* Redis away: logins fail closed (503 with Retry-After: without the shared counters there is no
  limit on guessing) while ``/auth/verify`` keeps answering from the database; counts made before
  the outage still count after it.
* PostgreSQL away: ``/readyz`` and ``/auth/verify`` (for a session) answer 503, never 200 once the
  verify cache's bound has passed, and never 500.
* Either way the instance recovers by itself when the server returns (no restart), and no account
  or live session written before the fault is lost.
"""

from __future__ import annotations

import contextlib
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import sqlalchemy as sa

from authsvc.core import config
from authsvc.web.app import create_app
from authsvc.web.limiter import storage_options
from authsvc.core.models import sessions as sessions_table
from authsvc.core.policy import load_policy
from tests.backends import (
    TcpProxy,
    database_url,
    host_port,
    in_schema,
    pg_schema,
    redis_prefix,
    redis_url,
)
from tests.conftest import PASSWORD, TEST_POLICY
from tests.integration.conftest import require_module
from tests.integration.instances import (
    Browser,
    cli,
    deployment_env,
    instances,
    parallel,
)

pytestmark = pytest.mark.integration

POLICY = load_policy(TEST_POLICY)
USERS = ("ann", "cat", "bea", "dan", "eve")
RECOVERY_SECONDS = 15.0


def through(url: str, port: int) -> str:
    """A redis:// URL reaching its server through 127.0.0.1:``port`` instead."""
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit((parts.scheme, f"{auth}127.0.0.1:{port}", parts.path, parts.query, parts.fragment))


class Faulty:
    def __init__(self, env, instance, admin, postgres: TcpProxy, redis: TcpProxy):
        self.env = env
        self.instance = instance
        self.admin = admin
        self.postgres = postgres
        self.redis = redis

    def svc(self):
        return self.admin.extensions["authsvc"]

    def readyz(self) -> requests.Response:
        return requests.get(f"{self.instance.url}/readyz", timeout=30)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    require_module("requests")
    folder = tmp_path_factory.mktemp("faults")
    with contextlib.ExitStack() as running:
        schema, _ = running.enter_context(pg_schema("faults"))
        prefix = running.enter_context(redis_prefix("faults"))
        postgres = running.enter_context(TcpProxy(host_port(database_url(), 5432)))
        redis = running.enter_context(TcpProxy(host_port(redis_url(), 6379)))
        env = deployment_env(folder, key_prefix=prefix,
                             database_url=in_schema(database_url(), schema, host="127.0.0.1", port=postgres.port),
                             storage_uri=through(redis_url(), redis.port))
        upgraded = cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        admin = []

        def seed():  # while the instance boots
            admin.append(create_app(config.from_env(env)))
            running.callback(admin[0].extensions["authsvc"].engine.dispose)
            svc = admin[0].extensions["authsvc"]
            for name in USERS:
                svc.accounts.create(name, svc.hasher.hash(PASSWORD))
        (instance,) = running.enter_context(instances(folder, env, count=1, workers=2, meanwhile=seed))
        yield Faulty(env, instance, admin[0], postgres, redis)


@pytest.fixture(autouse=True)
def servers_back_after_each_test(request):
    """Whatever a test did, the next one starts with both servers reachable."""
    faulty = request.getfixturevalue("faulty") if "faulty" in request.fixturenames else None
    yield
    if faulty is not None:
        faulty.postgres.open()
        faulty.redis.open()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(faulty.instance.diagnostics())


def signed_in(faulty, name: str, ip: str) -> Browser:
    b = Browser(ip)
    assert b.login(faulty.instance, name).status_code == 303
    assert b.verify(faulty.instance) == 200
    return b


def until(what: str, check, timeout: float = RECOVERY_SECONDS):
    """Poll ``check()`` until it returns something true; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not {what} within {timeout} s of the server coming back"
        time.sleep(0.2)


def no_server_errors(instance) -> None:
    log = instance.log_text()
    assert '"unhandled_error"' not in log, "an unexpected exception (500) during the fault"
    # gunicorn's access lines are JSON (authsvc.server.access_log)
    assert not [line for line in log.splitlines() if '"status":500,' in line], "a 500 during the fault"


def live_session_ids(faulty, name: str) -> set[int]:
    svc = faulty.svc()
    return {s.id for s in svc.sessions.list_live(svc.accounts.by_username(name).id)}


# --- Redis ---------------------------------------------------------------------------------------------

@pytest.mark.asvs("V6.3.1", "V16.5.3")
def test_redis_down_logins_fail_closed_verify_keeps_working_and_counts_survive(faulty):
    inst = faulty.instance
    session = signed_in(faulty, "ann", "192.0.2.10")
    before = live_session_ids(faulty, "ann")
    failures_before = POLICY.throttle.failures_before_backoff - 2
    for i in range(failures_before):
        assert Browser(f"192.0.2.{20 + i}").login(inst, "cat", "wrong password for cat").status_code == 401

    faulty.redis.close()
    for i in range(4):
        b = Browser(f"192.0.2.{40 + i}")
        token = b.csrf(inst)  # the login page itself needs no Redis
        for password in (PASSWORD, "wrong password for ann"):
            r = b.post(inst, "/login", data={"csrf_token": token, "username": "ann", "password": password})
            assert r.status_code == 503, f"a login with Redis down answered {r.status_code}: fail closed means 503"
            assert r.headers.get("Retry-After"), "a 503 without Retry-After"
    assert [session.verify(inst) for _ in range(6)] == [200] * 6, "verify depends on Redis"
    assert Browser("192.0.2.50").verify(inst) == 401
    ready = faulty.readyz()
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok" and ready.json()["checks"]["ratelimit_storage"] != "ok"
    assert requests.get(f"{inst.url}/healthz", timeout=10).status_code == 200, "liveness must not depend on Redis"

    faulty.redis.open()
    n = iter(range(60, 250))
    until("signing in again", lambda: Browser(f"192.0.2.{next(n)}").login(inst, "ann").status_code == 303)
    until("ready again", lambda: faulty.readyz().status_code == 200)
    # The failures counted before the outage still count: the back-off starts on schedule.
    for i in range(POLICY.throttle.failures_before_backoff - failures_before):
        assert Browser(f"192.0.2.{30 + i}").login(inst, "cat", "wrong password for cat").status_code == 401
    assert Browser("192.0.2.39").login(inst, "cat").status_code == 429, "Redis counts were lost in the outage"
    assert session.verify(inst) == 200
    assert before <= live_session_ids(faulty, "ann"), "a session was lost"
    no_server_errors(inst)


def test_redis_that_accepts_but_never_answers_costs_a_login_about_a_second_not_a_worker(faulty):
    """A black-holed Redis (connections accepted, nothing answered): each login waits for the
    client's socket timeout, then 503. Not minutes: with sync workers a hung request is a lost worker,
    and verify must still get one."""
    inst = faulty.instance
    session = signed_in(faulty, "dan", "192.0.2.100")
    b = Browser("192.0.2.101")
    token = b.csrf(inst)
    faulty.redis.hang()
    for _ in range(2):
        started = time.monotonic()
        r = b.post(inst, "/login", data={"csrf_token": token, "username": "dan", "password": PASSWORD})
        took = time.monotonic() - started
        assert r.status_code == 503, r.status_code
        assert took < 5, f"a login waited {took:.1f} s on a hung Redis"
    assert session.verify(inst) == 200
    faulty.redis.open()
    n = iter(range(110, 200))
    until("signing in again", lambda: Browser(f"192.0.2.{next(n)}").login(inst, "dan").status_code == 303)
    no_server_errors(inst)


def test_sentinel_storage_reads_the_master_and_every_redis_form_has_timeouts():
    """The throttle reads counters straight after writing them: from a lagging Sentinel replica it
    would miss the newest failures. And no Redis form may wait on the OS's minutes-long timeouts."""
    from limits.storage import storage_from_string

    uri = "redis+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/authsvc"
    storage = storage_from_string(uri, **storage_options(uri))  # Sentinel connects lazily
    assert storage.use_replicas is False
    assert storage.sentinel.connection_kwargs["socket_timeout"] <= 1
    assert storage.sentinel.sentinels[0].connection_pool.connection_kwargs["socket_connect_timeout"] <= 1
    for uri in ("redis://h:6379/0", "rediss://h:6380/0", "redis+cluster://h:7000", "redis+unix:///run/r.sock"):
        options = storage_options(uri)
        assert options["socket_timeout"] <= 1 and options["socket_connect_timeout"] <= 1, uri


# --- PostgreSQL ----------------------------------------------------------------------------------------

@pytest.mark.asvs("V16.5.2", "V16.5.3")
def test_postgres_down_verify_and_readyz_answer_503_never_200_or_500_then_recover(faulty):
    inst = faulty.instance
    session = signed_in(faulty, "bea", "192.0.2.200")
    accounts_before = {a.username_key for a in faulty.svc().accounts.all()}
    sessions_before = live_session_ids(faulty, "bea")
    b = Browser("192.0.2.201")
    token = b.csrf(inst)

    faulty.postgres.close()
    cut = time.monotonic()
    bound = POLICY.sessions.verify_cache_seconds  # how long a cached "live" may still answer
    seen: list[tuple[float, int]] = []  # (when the request was sent, the answer)
    while (sent := time.monotonic() - cut) < bound + 1.5:
        seen.append((round(sent, 3), session.verify(inst)))
    assert {s for _, s in seen} <= {200, 503}, f"verify answered otherwise with the database down: {seen}"
    late = [(t, s) for t, s in seen if t > bound and s != 503]
    assert not late, f"verify did not answer 503 once the cache bound ({bound} s) had passed: {late}"
    ready = faulty.readyz()
    assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok", ready.text
    assert ready.json()["checks"]["ratelimit_storage"] == "ok"
    r = b.post(inst, "/login", data={"csrf_token": token, "username": "bea", "password": PASSWORD})
    assert r.status_code == 503 and r.headers.get("Retry-After"), r.status_code
    assert session.get(inst, "/").status_code == 503
    assert session.get(inst, "/api/v1/session").status_code == 503
    assert Browser("192.0.2.202").verify(inst) == 401, "a request without a session needs no database"
    assert requests.get(f"{inst.url}/healthz", timeout=10).status_code == 200

    faulty.postgres.open()
    until("verifying again", lambda: session.verify(inst) == 200)
    assert [session.verify(inst) for _ in range(6)] == [200] * 6, "a worker did not reconnect"
    until("ready again", lambda: faulty.readyz().status_code == 200)
    assert Browser("192.0.2.203").login(inst, "bea").status_code == 303
    assert accounts_before <= {a.username_key for a in faulty.svc().accounts.all()}, "an account was lost"
    assert sessions_before <= live_session_ids(faulty, "bea"), "a live session was lost"
    no_server_errors(inst)


def test_postgres_that_accepts_but_never_answers_is_503_within_the_connect_timeout(faulty):
    """A stuck database server: connections are cut and new ones hang. The connect timeout turns
    that into a 503 in seconds; /readyz answers within its own 1 s budget."""
    inst = faulty.instance
    session = signed_in(faulty, "eve", "192.0.2.210")
    faulty.postgres.hang()
    time.sleep(POLICY.sessions.verify_cache_seconds + 0.05)

    def timed(call):
        started = time.monotonic()
        return call(), time.monotonic() - started
    (ready, ready_took), (verified, verify_took) = parallel(lambda: timed(faulty.readyz),
                                                            lambda: timed(lambda: session.verify(inst)))
    assert ready.status_code == 503 and ready_took < 3, (ready.text, ready_took)
    assert verified == 503, verified
    assert verify_took < 10, f"verify took {verify_took:.1f} s on a stuck database"
    faulty.postgres.open()
    until("verifying again", lambda: session.verify(inst) == 200)
    no_server_errors(inst)


def test_nothing_written_before_the_faults_is_lost(faulty):
    """After every outage above: all accounts are there and every session that was live before is
    live now, in the database and at /auth/verify."""
    svc = faulty.svc()
    assert {a.username_key for a in svc.accounts.all()} >= set(USERS)
    with svc.engine.connect() as conn:
        revoked = conn.execute(sa.select(sa.func.count()).select_from(sessions_table).where(
            sessions_table.c.revoked_at.is_not(None))).scalar_one()
    assert revoked == 0, "an outage revoked sessions"
