"""The stores on PostgreSQL as on SQLite: accounts, sessions and remember-me tokens, each threat
played on both backends (``[sqlite]``, ``[postgres]``), plus the throttle on a shared Redis.

Several instances share one PostgreSQL; what keeps them consistent is the database, not the
process: unique constraints, transactions, and a remember-me rotation written as a conditional
UPDATE that only one racer can win under PostgreSQL's default READ COMMITTED isolation. Each test
stands for two instances where it matters (two engines, two stores, threads racing), and forces the
interleaving it is about instead of hoping for it.

The PostgreSQL cases run in a schema of their own (tests/backends.py); with the server unreachable
they skip, or fail under CI=true.
"""

from __future__ import annotations

import hashlib
import threading
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from authsvc.core import db
from authsvc.core.accounts import AccountStore, UsernameTaken
from authsvc.core.models import remember_tokens
from authsvc.core.models import sessions as sessions_table
from authsvc.core.sessions import LIVE, SessionStore, session_verdict
from tests.backends import pg_schema, redis_prefix, require_redis
from tests.conftest import PASSWORD, api, build_app, cookie_value, csrf, login, new_client, verify
from tests.security.test_remember_me import HOST, only_remember, remember_value, restore, restored

IP, UA = "198.51.100.7", "Mozilla/5.0 (X11) StoreTest/1"


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """The database URL of each backend: a file for SQLite, a fresh schema for PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'authsvc.db'}"
    else:
        with pg_schema("store") as (_name, url):
            yield url


@pytest.fixture
def app(tmp_path, clock, backend):
    """Overrides tests/conftest.py's app: the same production app, on each backend."""
    app = build_app(tmp_path, clock, AUTHSVC_DATABASE_URL=backend)
    yield app
    app.extensions["authsvc"].engine.dispose()


@pytest.fixture
def other_instance(backend, svc):
    """A second instance's view of the same database: its own engine (own pool) and stores."""
    engine = db.make_engine(backend)
    yield SimpleNamespace(engine=engine, accounts=AccountStore(engine, svc.clock),
                          sessions=SessionStore(engine, svc.policy.sessions, svc.clock))
    engine.dispose()


def race(*calls, timeout: float = 30):
    """Run ``calls`` in threads released together; their results (or exceptions), in order."""
    gate = threading.Barrier(len(calls), timeout=timeout)
    results: list = [None] * len(calls)

    def run(i, call):
        gate.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the racer's failure is the result under test
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return results


def statements(engine, prefix: str, hook):
    """Call ``hook()`` before every statement starting with ``prefix`` on ``engine``; a context
    manager removing it afterwards."""
    class _Ctx:
        def __enter__(self):
            sa.event.listen(engine, "before_cursor_execute", self.fire)
            return self

        def fire(self, conn, cursor, statement, params, context, executemany):
            if " ".join(statement.split()).upper().startswith(prefix):
                hook()

        def __exit__(self, *exc):
            sa.event.remove(engine, "before_cursor_execute", self.fire)
    return _Ctx()


# --- the URL ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["postgresql://authsvc@db.internal/authsvc", "postgres://authsvc@db.internal/authsvc",
                                 "postgresql+psycopg://authsvc@db.internal/authsvc"])
def test_every_postgres_url_spelling_uses_psycopg_3_with_a_pre_ping_pool(url):
    """libpq's spellings would make SQLAlchemy look for psycopg2, which is not installed: start-up
    would fail with an import error instead of connecting. And a pool without pre-ping would hand
    out connections a database restart has cut."""
    engine = db.make_engine(url)  # connects lazily: no server needed
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping
    finally:
        engine.dispose()


# --- accounts ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["alice", "ALICE", " Alice ", "\uff41\uff4c\uff49\uff43\uff45"])
def test_second_account_under_any_spelling_is_refused_by_the_database(svc, user, spelling):
    with pytest.raises(UsernameTaken):
        svc.accounts.create(spelling, svc.hasher.hash(PASSWORD))
    assert [a.username_key for a in svc.accounts.all()] == ["alice"]


def test_two_instances_creating_one_account_at_once_make_exactly_one(svc, other_instance):
    """Both check "no such user" before either inserts (the CLI's order); the unique normalized
    username is what decides, on SQLite as on PostgreSQL."""
    digest = svc.hasher.hash(PASSWORD)
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "INSERT INTO USERS", gate.wait), \
            statements(other_instance.engine, "INSERT INTO USERS", gate.wait):
        results = race(lambda: svc.accounts.create("bob", digest),
                       lambda: other_instance.accounts.create("BOB", digest))
    assert sorted(type(r).__name__ for r in results) == ["Account", "UsernameTaken"], results
    assert [a.username_key for a in svc.accounts.all()] == ["bob"]


# --- sessions ------------------------------------------------------------------------------------------

@pytest.mark.asvs("V7.2.3")
def test_db_leak_session_row_holds_only_the_sha256_of_the_token(svc, user):
    token, session_id = svc.sessions.create(user.id, IP, UA, remembered=False)
    with svc.engine.connect() as conn:
        row = conn.execute(sa.select(sessions_table).where(sessions_table.c.id == session_id)).one()
    assert bytes(row.token_hash) == hashlib.sha256(token.encode()).digest()
    assert token not in repr(tuple(row))
    assert svc.sessions.load(token).id == session_id


@pytest.mark.asvs("V7.3.1")
def test_session_times_keep_sub_second_precision_so_timeouts_are_exact(svc, clock, user):
    """Epoch seconds around 1.8e9 need a double: a 4-byte float column would round them to minutes
    and move every idle and absolute timeout."""
    clock.advance(0.123456)
    started = clock()
    token, _ = svc.sessions.create(user.id, IP, UA, remembered=False)
    rec = svc.sessions.load(token)  # as read back from the database
    assert abs(rec.created_at - started) < 1e-5 and abs(rec.last_seen_at - started) < 1e-5
    idle = svc.policy.sessions.idle_timeout_seconds
    assert session_verdict(rec, started + idle - 0.01, svc.policy.sessions) == LIVE
    assert session_verdict(rec, started + idle + 0.01, svc.policy.sessions) == "idle"


@pytest.mark.parametrize("remembered, disabled, groups", [(False, False, ()), (True, True, ("ops", "staff", "b"))])
def test_verify_lookup_reads_what_sqlalchemy_reads_typed_alike_on_each_backend(svc, user, remembered, disabled,
                                                                               groups):
    """verify's cache-miss read (DigestLookup: the driver's own cursor) against the same statement
    run through SQLAlchemy: the same record, booleans as bool (SQLite's driver says 0 and 1), groups
    sorted, for a session of each kind."""
    from authsvc.core.sessions import _BY_DIGEST, _record, token_digest

    token, _ = svc.sessions.create(user.id, IP, UA, remembered=remembered, methods=("pwd", "otp", "mfa"))
    for name in groups:
        svc.groups.add(name)
        svc.groups.join(user.id, name)
    if disabled:
        svc.accounts.set_disabled(user.id, True)
    digest = token_digest(token)
    with svc.engine.connect() as conn:
        expected = _record(conn.execute(_BY_DIGEST, {"digest": digest}).one())
    got = svc.sessions.load(token)
    assert got == expected
    assert (got.remembered, got.user_disabled) == (remembered, disabled)
    assert type(got.remembered) is bool and type(got.user_disabled) is bool
    assert got.groups == tuple(sorted(groups)) and got.methods == ("pwd", "otp", "mfa")
    assert svc.sessions.load(token + "x") is None


@pytest.fixture
def empty_database(backend, tmp_path):
    """A database of the same backend without authsvc's schema."""
    if backend.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        with pg_schema("empty") as (_name, url):
            yield url


def test_verify_lookup_on_a_broken_database_raises_sqlalchemys_error_and_pools_no_broken_connection(
        svc, empty_database):
    """A driver error in the cache-miss read ("no such table" here) is SQLAlchemy's DBAPIError (what
    the 503 path catches), says nothing of the token or its digest, and its connection is discarded
    (invalidated), not handed to the next request."""
    from authsvc.core.sessions import token_digest

    engine = db.make_engine(empty_database)
    invalidated = []
    sa.event.listen(engine, "invalidate", lambda *args: invalidated.append(args))
    store = SessionStore(engine, svc.policy.sessions, time.time)
    with pytest.raises(sa.exc.DBAPIError) as caught:
        store.load("a-token")
    assert token_digest("a-token").hex() not in str(caught.value) and "a-token" not in str(caught.value)
    assert len(invalidated) == 1 and engine.pool.checkedout() == 0
    db.upgrade(engine)
    assert store.load("a-token") is None  # the next read works, on a new connection
    engine.dispose()


@pytest.mark.asvs("V7.4.1")
def test_session_revoked_by_one_instance_is_refused_by_the_other_at_once(svc, user, other_instance):
    token, session_id = svc.sessions.create(user.id, IP, UA, remembered=False)
    assert other_instance.sessions.authenticate(token)[1] == LIVE
    assert svc.sessions.revoke(session_id, "logout")
    assert other_instance.sessions.authenticate(token)[1] == "revoked"
    assert not other_instance.sessions.revoke(session_id, "logout"), "a session ended twice"


@pytest.mark.asvs("V7.4.1")
def test_revoking_while_other_instances_verify_and_touch_never_revives_a_session(svc, clock, user, other_instance):
    """Verifiers on two instances keep touching last_seen (the only write verify makes) while a
    third thread revokes everything: afterwards every session is revoked, nothing failed."""
    tokens = [svc.sessions.create(user.id, IP, UA, remembered=False)[0] for _ in range(5)]
    clock.advance(svc.policy.sessions.touch_interval_seconds + 1)  # every verify now writes
    stop = threading.Event()
    failures: list[BaseException] = []

    def verify_loop(store):
        while not stop.is_set():
            for token in tokens:
                try:
                    store.authenticate(token)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                    failures.append(exc)
                    return
            clock.advance(svc.policy.sessions.touch_interval_seconds + 0.001)

    verifiers = [threading.Thread(target=verify_loop, args=(s,)) for s in (svc.sessions, other_instance.sessions)]
    for t in verifiers:
        t.start()
    time.sleep(0.2)
    ended = svc.sessions.revoke_all(user.id, "admin_revoked")
    time.sleep(0.2)
    stop.set()
    for t in verifiers:
        t.join(30)
    assert failures == [], failures
    assert ended == len(tokens)
    assert {other_instance.sessions.authenticate(t)[1] for t in tokens} == {"revoked"}
    with svc.engine.connect() as conn:
        reasons = conn.execute(sa.select(sessions_table.c.revoke_reason)).scalars().all()
    assert reasons == ["admin_revoked"] * len(tokens)


# --- remember-me rotation ------------------------------------------------------------------------------

def issued(svc, user):
    value, _ = svc.remember.issue(user.id, IP, UA)
    return value


def outcomes(results):
    return sorted(r[0].outcome if isinstance(r, tuple) else type(r).__name__ for r in results)


@pytest.mark.asvs("V7.4.1")
def test_rotation_both_racers_read_the_unused_token_only_one_wins(svc, user):
    """Both instances have read the token as unused before either writes: the conditional UPDATE
    (WHERE rotated_at IS NULL) lets exactly one rotate; the other is a race, not a theft."""
    cookie = issued(svc, user)
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE REMEMBER_TOKENS SET ROTATED_AT", gate.wait):
        results = race(lambda: svc.remember.consume(cookie, IP, UA), lambda: svc.remember.consume(cookie, IP, UA))
    assert outcomes(results) == ["ok", "race"], results
    with svc.engine.connect() as conn:
        rows = conn.execute(sa.select(remember_tokens).order_by(remember_tokens.c.id)).all()
    assert len(rows) == 2, "two successors were issued"
    assert rows[0].rotated_at is not None and rows[1].rotated_at is None
    assert all(r.revoked_at is None for r in rows)


@pytest.mark.asvs("V7.4.1")
def test_rotation_loser_blocked_by_the_winners_uncommitted_update_still_loses(svc, user):
    """The READ COMMITTED case: instance B updates while A's rotation is written but not committed.
    B waits for A's row lock, then re-checks its WHERE against A's committed row and finds it
    rotated: B loses, instead of rotating the token a second time."""
    cookie = issued(svc, user)
    a_wrote, b_updating, release_a = threading.Event(), threading.Event(), threading.Event()

    def hook():
        name = threading.current_thread().name
        if name == "A":
            a_wrote.set()
            assert release_a.wait(30)
    with statements(svc.engine, "INSERT INTO REMEMBER_TOKENS", hook), \
            statements(svc.engine, "UPDATE REMEMBER_TOKENS SET ROTATED_AT",
                       lambda: b_updating.set() if threading.current_thread().name == "B" else None):
        results = {}
        a = threading.Thread(name="A", target=lambda: results.__setitem__("A", svc.remember.consume(cookie, IP, UA)))
        a.start()
        assert a_wrote.wait(30), "A never reached its insert"
        b = threading.Thread(name="B", target=lambda: results.__setitem__("B", svc.remember.consume(cookie, IP, UA)))
        b.start()
        assert b_updating.wait(30), "B never reached its update"
        time.sleep(0.3)
        assert b.is_alive(), "B's update did not wait for A's uncommitted rotation"
        release_a.set()
        a.join(30)
        b.join(30)
    assert results["A"][0].outcome == "ok" and results["A"][1] is not None
    assert results["B"][0].outcome == "race" and results["B"][1] is None
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(remember_tokens)).scalar_one() == 2


@pytest.mark.asvs("V7.4.1")
def test_rotated_token_presented_after_the_grace_window_is_replay(svc, clock, user):
    cookie = issued(svc, user)
    assert svc.remember.consume(cookie, IP, UA)[0].outcome == "ok"
    assert svc.remember.consume(cookie, IP, UA)[0].outcome == "race"
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds + 1)
    assert svc.remember.consume(cookie, IP, UA)[0].outcome == "replay"


def restored_and_lost(svc, clock, user):
    """A token rotated into a successor with its session (as a restore does), whose answer never
    reached the browser; a minute later. Returns the old cookie and the successor's session token."""
    cookie = issued(svc, user)
    consumed, successor = svc.remember.consume(cookie, IP, UA)
    assert consumed.outcome == "ok"
    token, session_id = svc.sessions.create(user.id, IP, UA, remembered=True, not_after=consumed.expires_at)
    svc.remember.attach(successor, session_id)
    clock.advance(60)
    return cookie, token


@pytest.mark.asvs("V7.4.1")
def test_lost_response_retried_by_two_instances_at_once_restores_exactly_once(svc, clock, user, other_instance):
    """Two instances both read the rotated token and its unused successor before either writes:
    the claim on the rotated token (WHERE its rotation and successor are still the ones read)
    lets one restore; the other is a race, and only one new successor exists."""
    cookie, _ = restored_and_lost(svc, clock, user)
    from authsvc.core.remember import RememberStore
    theirs = RememberStore(other_instance.engine, svc.policy.sessions, svc.clock, svc.remember.serializer)
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE REMEMBER_TOKENS SET ROTATED_AT", gate.wait), \
            statements(other_instance.engine, "UPDATE REMEMBER_TOKENS SET ROTATED_AT", gate.wait):
        results = race(lambda: svc.remember.consume(cookie, IP, UA), lambda: theirs.consume(cookie, IP, UA))
    assert outcomes(results) == ["lost", "race"], results
    with svc.engine.connect() as conn:
        rows = conn.execute(sa.select(remember_tokens).order_by(remember_tokens.c.id)).all()
    assert len(rows) == 3, "the retry issued more (or fewer) than one new successor"
    assert [r.revoke_reason for r in rows] == [None, "unused_successor", None]
    assert rows[0].successor_id == rows[2].id


@pytest.mark.asvs("V7.4.1")
def test_first_use_of_the_successor_session_and_its_ending_as_unused_cannot_both_win(svc, clock, user,
                                                                                      other_instance):
    """One instance's verify makes the successor session's first use while another instance takes
    the old cookie for a lost response; both have read the session as unused. The two conditional
    writes on the session row decide: used (the retry is theft, rolled back) or ended (the use is
    refused). Never a used session ended as unused, nor an ended one used."""
    cookie, token = restored_and_lost(svc, clock, user)
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE REMEMBER_TOKENS SET ROTATED_AT", gate.wait), \
            statements(other_instance.engine, "UPDATE SESSIONS SET LAST_SEEN_AT", gate.wait):
        retry, use = race(lambda: svc.remember.consume(cookie, IP, UA),
                          lambda: other_instance.sessions.authenticate(token))
    assert not isinstance(retry, Exception) and not isinstance(use, Exception), (retry, use)
    with svc.engine.connect() as conn:
        row = conn.execute(sa.select(sessions_table).where(sessions_table.c.token_hash == hashlib.sha256(
            token.encode()).digest())).one()
    if use[1] == LIVE:
        assert retry[0].outcome == "replay"
        assert row.used_at is not None and row.revoked_at is None
    else:
        assert use[1] == "revoked" and retry[0].outcome == "lost"
        assert row.used_at is None and row.revoke_reason == "remember_unused"


# --- the HTTP interface on each backend -----------------------------------------------------------------

def browser(app):
    c = new_client(app)
    c.environ_base.update(REMOTE_ADDR=IP, HTTP_USER_AGENT=UA)
    return c


@pytest.mark.asvs("V7.4.1")
def test_login_verify_logout_and_replay_after_logout(app, svc, user):
    c = browser(app)
    assert login(c).status_code == 303
    stolen = browser(app)
    stolen.set_cookie(svc.cookies.session, cookie_value(c, svc.cookies.session), domain="auth.example.test")
    assert c.get("/auth/verify").status_code == 200
    assert c.post("/logout", data={"csrf_token": csrf(c, "/")}).status_code == 303
    assert stolen.get("/auth/verify").status_code == 401


@pytest.mark.asvs("V7.4.1")
def test_stolen_remember_cookie_replayed_after_rotation_signs_the_user_out_everywhere(app, svc, clock, user):
    owner = browser(app)
    assert login(owner, remember=True).status_code == 303
    thief = browser(app)
    thief.set_cookie(svc.cookies.remember, cookie_value(owner, svc.cookies.remember), domain="auth.example.test")
    clock.advance(svc.policy.sessions.idle_timeout_seconds + 1)  # the owner's session idles out
    restored = browser(app)
    restored.set_cookie(svc.cookies.remember, cookie_value(owner, svc.cookies.remember), domain="auth.example.test")
    assert restored.get("/login").status_code == 303
    assert restored.get("/auth/verify").status_code == 200  # in use: the rotation's answer arrived
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds + 1)
    assert thief.get("/login").status_code == 200, "a rotated cookie restored a session"
    assert restored.get("/auth/verify").status_code == 401, "replay did not end the user's sessions"
    assert svc.sessions.list_live(user.id) == []


# --- the throttle on a shared Redis ---------------------------------------------------------------------

@pytest.fixture
def shared_throttles(svc):
    """Two instances' throttles on one Redis, under a prefix of this test's own."""
    from limits.storage import storage_from_string

    from authsvc.web.limiter import storage_options
    from authsvc.core.throttle import Throttle

    url = require_redis()
    with redis_prefix("throttle") as prefix:
        yield [Throttle(storage_from_string(url, **storage_options(url)), svc.policy.throttle, svc.clock,
                        prefix=prefix) for _ in range(2)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the database plays no part here
@pytest.mark.asvs("V6.3.1")
def test_failures_recorded_on_two_instances_add_up_to_one_backoff(shared_throttles):
    one, two = shared_throttles
    allowed = one.rules.failures_before_backoff
    for i in range(allowed):
        throttle = (one, two)[i % 2]
        assert throttle.check("carol", None).allowed
        throttle.record_failure("carol", None)
    assert not one.check("carol", None).allowed and not two.check("carol", None).allowed
    assert two.check("dave", None).allowed, "another account was blocked"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.asvs("V6.3.1")
def test_parallel_attempts_on_two_instances_pass_the_gate_one_at_a_time(shared_throttles):
    """A burst split across instances cannot check several passwords before the first failure is
    counted: the per-bucket gate lives in Redis too."""
    one, two = shared_throttles
    with one.attempt("erin", None) as first, two.attempt("erin", None) as second:
        assert first.verdict.allowed and not second.verdict.allowed and second.verdict.reason == "busy"
    with two.attempt("erin", None) as third:
        assert third.verdict.allowed


# --- the known-device registry (security review, finding 1) -------------------------------------------------

def test_parallel_device_registrations_on_two_instances_never_exceed_the_cap(app, svc, other_instance):
    """Two instances register devices of one account at the same moment: the account's row is
    locked while each counts (SQLite serialises writers), so neither can stay under the cap alone
    while both together exceed it."""
    from authsvc.core.devices import DeviceRegistry

    account = svc.accounts.create("alice", svc.hasher.hash(PASSWORD))
    cap = svc.policy.throttle.max_devices_per_account
    lifetime = svc.policy.throttle.device_cookie_lifetime_days
    registries = [svc.known_devices, DeviceRegistry(other_instance.engine, svc.clock, cap, lifetime)]
    start = threading.Barrier(16)
    failures = []

    def register(registry) -> None:
        start.wait()
        try:
            registry.remember(account.id, None)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(type(exc).__name__)
    threads = [threading.Thread(target=register, args=(registries[i % 2],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert svc.known_devices.count(account.id) == cap


# --- a sign-out everywhere racing a restore ---------------------------------------------------------------

def thief_with_the_owners_remember_cookie(app):
    owner = browser(app)
    assert login(owner, remember=True).status_code == 303
    return owner, only_remember(app, remember_value(owner), ip="203.0.113.9", ua="Thief/1")


def nothing_of_the_account_verifies_or_restores(app, clock, *browsers):
    clock.advance(2)  # past the verify cache
    for client in browsers:
        assert (verify(client), api(client)) == (401, 401)
        client.delete_cookie(app.extensions["authsvc"].cookies.session, domain=HOST)
        assert not restored(restore(client)), "a remember-me chain outlived the sign-out everywhere"


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("reason", ["admin_revoked", "password_changed", "remember_replay"])
def test_a_sign_out_everywhere_between_a_restores_check_and_its_session_ends_that_session(app, svc, clock, user,
                                                                                          reason):
    """The restore has rotated the stolen token (committed); the owner's password change, the
    admin's `sessions revoke` or the theft alarm signs the account out everywhere; then the restore
    writes its session. Revoking what existed missed it, and it lived on (found by review, session
    13): it carries the old sign-out generation now, which no longer counts."""
    owner, thief = thief_with_the_owners_remember_cookie(app)

    consume = svc.remember.consume

    def consume_then_sign_out_everywhere(*args, **kwargs):
        out = consume(*args, **kwargs)
        svc.sign_out.everywhere(user.id, reason)
        return out

    svc.remember.consume = consume_then_sign_out_everywhere
    try:
        assert restored(restore(thief))  # the answer was on its way: nothing after it may count
    finally:
        svc.remember.consume = consume
    assert svc.sessions.list_live(user.id) == []
    nothing_of_the_account_verifies_or_restores(app, clock, owner, thief)


@pytest.mark.asvs("V7.4.1")
def test_a_sign_out_everywhere_while_a_restore_writes_its_successor_ends_the_successor(app, svc, clock, user):
    """The sign-out starts while the restore's transaction has written the successor token, not
    committed it (PostgreSQL: the revocation waits on the presented token's row lock, then finds only
    the rows it saw before: the successor was not among them, and the chain restored for 14 more
    days; SQLite: the sign-out waits for the write lock). Found by review, session 13."""
    owner, thief = thief_with_the_owners_remember_cookie(app)

    insert = svc.remember._insert
    admin: list[threading.Thread] = []

    def insert_then_the_admin_signs_out_everywhere(conn, *args, **kwargs):
        out = insert(conn, *args, **kwargs)
        if not admin:  # another process: its own connection, waiting on this transaction's lock
            admin.append(threading.Thread(target=svc.sign_out.everywhere, args=(user.id, "admin_revoked")))
            admin[0].start()
            time.sleep(0.3)
        return out

    svc.remember._insert = insert_then_the_admin_signs_out_everywhere
    try:
        assert restored(restore(thief))
    finally:
        svc.remember._insert = insert
    admin[0].join(30)
    assert not admin[0].is_alive()
    nothing_of_the_account_verifies_or_restores(app, clock, owner, thief)


def test_two_recovery_code_generations_at_once_leave_one_set(app, svc, user, backend):
    """Instance A has deleted the old codes and is about to insert its new ones when instance B
    starts its own generation. Under READ COMMITTED, B's delete did not see A's new rows: both sets of
    ten stayed live, one of them a sheet the user never kept (found by review, session 13). B now
    waits for A, then voids A's set."""
    from authsvc.core.recovery_codes import RecoveryCodes
    from authsvc.rules.second_step import recovery_code

    other = db.make_engine(backend)
    try:
        old = svc.recovery_codes.generate(user.id)
        b_started = threading.Event()

        def a_before_insert():
            if threading.current_thread().name == "A":
                b_started.wait(10)
                time.sleep(0.3)  # B's first statement is under way (and waits, if it locks)

        results: dict = {}
        with statements(svc.engine, "INSERT INTO RECOVERY_CODES", a_before_insert), \
                statements(other, "SELECT USERS.ID", b_started.set), \
                statements(other, "DELETE FROM RECOVERY_CODES", b_started.set):
            a = threading.Thread(name="A", target=lambda: results.__setitem__("A", svc.recovery_codes.generate(user.id)))
            a.start()
            time.sleep(0.1)
            results["B"] = RecoveryCodes(other, svc.clock).generate(user.id)
            a.join(30)
        assert svc.recovery_codes.remaining(user.id) == 10
        assert not any(svc.recovery_codes.use(user.id, recovery_code(c)) for c in old + results["A"])
        assert all(svc.recovery_codes.use(user.id, recovery_code(c)) for c in results["B"])
    finally:
        other.dispose()


@pytest.mark.asvs("V6.5.1")
def test_one_authenticator_code_both_instances_read_as_new_is_accepted_by_one(app, svc, user, clock, other_instance):
    """Both instances have read the account's last step, and found the code's step newer, before
    either records it: the conditional write (``UPDATE ... WHERE last_step < :step``) lets one
    through, and the other answers ``reused``. With ``<=`` both signed in with one code. (The
    threads of test_totp.py rarely interleave like this: that test passed with ``<=``.)"""
    from authsvc.core.sealing import Sealer
    from authsvc.core.totp import ACCEPTED_CODE, REUSED_CODE, SEALING_INFO, TotpStore
    from tests.conftest import STRONG_KEY
    from tests.security.factors import enroll

    code = enroll(app, user, clock).code()
    two = TotpStore(other_instance.engine, Sealer(STRONG_KEY, (), SEALING_INFO), clock)
    both_read = threading.Barrier(2, timeout=10)  # each waits, before its write, for the other's read
    with statements(svc.engine, "UPDATE TOTP_FACTORS", both_read.wait), \
            statements(other_instance.engine, "UPDATE TOTP_FACTORS", both_read.wait):
        results = race(lambda: svc.totp.check(user.id, code), lambda: two.check(user.id, code))
    assert sorted(results) == [ACCEPTED_CODE, REUSED_CODE]
