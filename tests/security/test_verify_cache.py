"""/auth/verify's cache and fast path: what a short-lived answer must never let through.

verify answers a live session below Flask (:class:`authsvc.web.views.verify.VerifyApp`), from a
per-process cache (:mod:`authsvc.core.verify_cache`) whose entries live at most
``sessions.verify_cache_seconds`` (1 s at most) and which the process that ends a session empties
at once. The threats: a revocation, logout or disabled account that the process which made it keeps
answering 200 for; another worker process, another instance or an ``authsvc`` command's change
answered for longer than ``sessions.verify_cache_seconds``; a record read before a revocation
cached after it; a cached record outliving its idle or absolute timeout; a fast answer missing the
security headers the Flask view sends; a cache that grows with the number of users. Two apps built
on one ``tmp_path`` share the database: two worker processes of one instance.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import request_started

from authsvc.core import config, db
from authsvc.web.app import create_app
from authsvc.core.models import users
from authsvc.core.verify_cache import VerifyCache
from tests.conftest import (
    TEST_POLICY,
    add_user,
    build_app,
    cookie_value,
    csrf,
    login,
    make_env,
    new_client,
    run_cli,
    verify,
)

HOST = "auth.example.test"


class Monotonic:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()  # from the real clock: entries made before the swap age too

    def __call__(self) -> float:
        return self.now


def frozen_cache(app) -> Monotonic:
    """Stop the cache's clock, so that an entry expires only when a test says so (not because the
    machine was slow): before that, only the process's own invalidation ends it."""
    tick = app.extensions["authsvc"].sessions.cache.clock = Monotonic()
    return tick


def copy_of(app, original):
    """A client of ``app`` holding ``original``'s session cookie (same address and user agent)."""
    name = app.extensions["authsvc"].cookies.session
    c = new_client(app)
    c.set_cookie(name, cookie_value(original, name), domain=HOST)
    return c


@pytest.fixture
def alice(app, user):
    frozen_cache(app)
    c = new_client(app)
    assert login(c).status_code == 303
    assert verify(c) == 200  # this worker's cache now holds the session
    return c


@pytest.fixture
def worker_b(tmp_path, clock, app):
    """A second worker process of the same instance: same database, its own cache (stopped)."""
    app = build_app(tmp_path, clock)
    frozen_cache(app)
    return app


def cache_lifetime_passes(*apps) -> None:
    """``sessions.verify_cache_seconds`` pass on the stopped cache clocks of ``apps``."""
    for app in apps:
        cache = app.extensions["authsvc"].sessions.cache
        cache.clock.now += cache.ttl


def other_instance(tmp_path, clock):
    """Another instance: same database, its own instance folder (another host)."""
    settings = config.from_env(make_env(tmp_path), instance_path=str(tmp_path / "elsewhere"))
    app = create_app(settings, clock=clock)
    app.config["TESTING"] = False
    return app


# --- revocation: at once in the process that made it, within verify_cache_seconds elsewhere ----------
# Another worker process hears of nothing (no shared file): its cached answer ends with the entry.

@pytest.mark.asvs("V7.4.1")
def test_logout_is_refused_at_once_by_its_worker_and_within_verify_cache_seconds_by_another(app, alice, worker_b):
    b = copy_of(worker_b, alice)
    assert verify(b) == 200  # cached in worker B too
    warm = copy_of(app, alice)
    assert verify(warm) == 200  # and in this worker
    assert alice.post("/logout", data={"csrf_token": csrf(alice, "/")}).status_code == 303
    assert verify(warm) == 401
    cache_lifetime_passes(worker_b)
    assert verify(b) == 401


@pytest.mark.asvs("V7.4.2")
def test_disabling_an_account_is_refused_at_once_by_its_worker_and_within_verify_cache_seconds_by_every_other(
        app, svc, user, alice, worker_b):
    b = copy_of(worker_b, alice)
    assert verify(b) == 200
    svc.accounts.set_disabled(user.id, True)
    assert verify(alice) == 401
    cache_lifetime_passes(worker_b)
    assert verify(b) == 401


@pytest.mark.asvs("V7.4.5")
def test_a_revocation_by_the_cli_is_refused_by_every_worker_within_verify_cache_seconds(app, alice, worker_b,
                                                                                         tmp_path, monkeypatch):
    b = copy_of(worker_b, alice)
    assert verify(b) == 200
    assert run_cli(monkeypatch, tmp_path, "sessions", "revoke", "alice") == 0  # its own app: another process
    cache_lifetime_passes(app, worker_b)
    assert (verify(alice), verify(b)) == (401, 401)


def test_session_cap_revocation_is_refused_at_once_by_its_worker_and_within_verify_cache_seconds_by_another(
        app, svc, user, worker_b, clock):
    frozen_cache(app)
    first = new_client(app)
    assert login(first).status_code == 303

    def another_login(i):
        clock.advance(6)  # within throttle.successes_per_account (3 in 10 s, 10 a minute)
        c = new_client(app)
        c.environ_base["REMOTE_ADDR"] = f"198.51.100.{i + 1}"
        assert login(c).status_code == 303

    for i in range(svc.policy.sessions.max_sessions_per_user - 1):
        another_login(i)
    b = copy_of(worker_b, first)
    assert (verify(first), verify(b)) == (200, 200)  # cached in both workers, nothing to touch for a minute
    another_login(svc.policy.sessions.max_sessions_per_user)
    assert verify(first) == 401, "the oldest session was ended by the cap"
    cache_lifetime_passes(worker_b)
    assert verify(b) == 401


def test_a_record_read_before_sessions_ended_is_not_cached_after_it(app, svc, user):
    """A verify that read the record just before a revocation committed, and stores it just after,
    must not make the revoked session live again for the cache's lifetime."""
    cache = VerifyCache(0.5, clock=Monotonic())
    record = svc.sessions.load(svc.sessions.create(user.id, "198.51.100.1", "ua", False)[0])
    before = cache.generation()  # the read starts
    cache.invalidate()           # a revocation commits
    cache.put(b"token", record, before)
    assert cache.get(b"token") is None
    cache.put(b"token", record, cache.generation())  # a read after the revocation is kept
    assert cache.get(b"token") is record


def test_ending_sessions_drops_every_cached_entry_of_the_process(app, svc, user):
    cache = VerifyCache(0.5, clock=Monotonic())
    record = svc.sessions.load(svc.sessions.create(user.id, "198.51.100.1", "ua", False)[0])
    for i in range(3):
        cache.put(bytes([i]), record, cache.generation())
    cache.invalidate()
    assert [cache.get(bytes([i])) for i in range(3)] == [None] * 3 and len(cache) == 0


# --- another instance: within verify_cache_seconds --------------------------------------------------

@pytest.mark.asvs("V7.4.1")
def test_another_instance_refuses_a_revoked_session_within_verify_cache_seconds(tmp_path, clock, app, svc, alice):
    elsewhere = other_instance(tmp_path, clock)
    tick = frozen_cache(elsewhere)
    there = copy_of(elsewhere, alice)
    assert verify(there) == 200
    assert alice.post("/logout", data={"csrf_token": csrf(alice, "/")}).status_code == 303
    assert verify(alice) == 401
    tick.now += svc.policy.sessions.verify_cache_seconds * 0.9
    assert verify(there) == 200, "the other instance is not told: only the cache lifetime bounds it"
    tick.now += svc.policy.sessions.verify_cache_seconds * 0.1
    assert verify(there) == 401


def test_a_change_made_directly_in_the_database_is_seen_within_verify_cache_seconds(app, svc, user, alice):
    tick = svc.sessions.cache.clock
    assert verify(alice) == 200
    with svc.engine.begin() as conn:  # no store involved: nothing invalidates the cache
        conn.execute(users.update().where(users.c.id == user.id).values(disabled=True))
    tick.now += svc.policy.sessions.verify_cache_seconds
    assert verify(alice) == 401


def test_check_refuses_a_verify_cache_longer_than_one_second(tmp_path):
    policy = tmp_path / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text() + "\n[sessions]\nverify_cache_seconds = 1.5\n")
    settings = config.from_env(make_env(tmp_path, AUTHSVC_POLICY=str(policy)), instance_path=str(tmp_path))
    assert "sessions.verify_cache_seconds" in {p.setting for p in config.audit(settings) if p.severity == "error"}


# --- timeouts stay exact -----------------------------------------------------------------------------

@pytest.mark.asvs("V7.3.1")
def test_a_warm_cache_does_not_stretch_the_idle_timeout(app, svc, clock, alice):
    clock.advance(svc.policy.sessions.idle_timeout_seconds)
    assert verify(alice) == 401


@pytest.mark.asvs("V7.3.2")
def test_a_warm_cache_does_not_stretch_the_absolute_lifetime(app, svc, clock, alice):
    policy = svc.policy.sessions
    step = policy.idle_timeout_seconds // 2  # active every half idle timeout: never idle
    for _ in range(policy.absolute_lifetime_seconds // step - 1):
        clock.advance(step)
        assert verify(alice) == 200
    clock.advance(step)
    assert verify(alice) == 401


def test_activity_answered_from_the_cache_still_counts_against_the_idle_timeout(app, svc, clock, alice):
    policy = svc.policy.sessions
    clock.advance(policy.touch_interval_seconds)
    assert verify(alice) == 200  # the touch is written, not skipped because the record was cached
    clock.advance(policy.idle_timeout_seconds - 1)
    assert verify(alice) == 200


# --- the fast answer is the Flask view's answer ------------------------------------------------------

def flask_view_answer(app, client, headers=None):
    """The same request through Flask only (the fast path taken out of the WSGI chain)."""
    chain = app.wsgi_app
    fast = chain.app
    chain.app = fast.flask_wsgi
    try:
        return client.get("/auth/verify", headers=headers or {})
    finally:
        chain.app = fast


@pytest.mark.asvs("V3.4.1", "V3.4.3", "V3.4.4")
@pytest.mark.parametrize("trusted_proxies, proto, status", [
    ("0", None, 200), ("1", "https", 200), ("1", "http", 200), ("1", "gopher", 200),
    ("1", "wss", 400),  # a websocket request: Flask's router refuses it, so must the fast path
])
def test_fast_answer_has_exactly_the_headers_and_status_of_the_flask_view(tmp_path, clock, trusted_proxies, proto,
                                                                          status):
    app = build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES=trusted_proxies)
    add_user(app)
    c = new_client(app)
    if proto:
        c.environ_base.update(HTTP_X_FORWARDED_FOR="198.51.100.7", HTTP_X_FORWARDED_PROTO="https")
    assert login(c).status_code == 303
    if proto:
        c.environ_base["HTTP_X_FORWARDED_PROTO"] = proto
    fast, slow = c.get("/auth/verify"), flask_view_answer(app, c)
    assert (fast.status_code, fast.get_data()) == (slow.status_code, slow.get_data()) == (status, b"")

    def comparable(response):
        return sorted((k, v) for k, v in response.headers.items() if k != "X-Request-ID")

    assert comparable(fast) == comparable(slow)
    assert ("Strict-Transport-Security" in fast.headers) == (proto in (None, "https", "wss"))
    assert fast.headers["X-Request-ID"] and "Set-Cookie" not in fast.headers


def test_fast_answer_follows_a_header_policy_other_than_the_default(tmp_path, clock):
    """The fast answer's headers are written out from the settings (authsvc.web.headers.fixed_headers),
    Talisman's from its arguments: HSTS preload, another max-age and more allowed origins must come
    out the same from both."""
    policy = tmp_path / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text()
                      + "\n[headers]\nhsts_max_age_seconds = 63072000\nhsts_preload = true\n")
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=str(policy),
                    AUTHSVC_REDIRECT_ALLOWED_ORIGINS="https://app.example.test,https://wiki.example.test")
    add_user(app)
    c = new_client(app)
    assert login(c).status_code == 303
    fast, slow = c.get("/auth/verify"), flask_view_answer(app, c)
    assert fast.status_code == slow.status_code == 200

    def comparable(response):
        return sorted((k, v) for k, v in response.headers.items() if k != "X-Request-ID")

    assert comparable(fast) == comparable(slow)
    assert fast.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains; preload"
    assert "form-action 'self' https://app.example.test https://wiki.example.test;" in \
        fast.headers["Content-Security-Policy"]


@pytest.mark.parametrize("query, passed_on", [
    ("app_cookie=1", True), ("redirect=1&app_cookie=1", True), ("app%5Fcookie=%31", True),
    ("app_cookie=1&app_cookie=0", True), ("app_cookie=&app_cookie=1", False), ("app_cookie=0", False),
    ("app_cookies=1", False), ("", False),
])
def test_fast_answer_and_flask_view_read_app_cookie_alike(app, alice, query, passed_on):
    """One reading of ``?app_cookie=`` for both: the first value counts, escapes are decoded."""
    alice.set_cookie("theme", "dark", domain=HOST)
    fast = alice.get(f"/auth/verify?{query}")
    chain = app.wsgi_app
    mounted = chain.app
    chain.app = mounted.flask_wsgi
    try:
        slow = alice.get(f"/auth/verify?{query}")
    finally:
        chain.app = mounted
    assert fast.status_code == slow.status_code == 200
    assert fast.headers.getlist("Cookie") == slow.headers.getlist("Cookie") == (["theme=dark"] if passed_on else [])


def test_a_websocket_upgrade_of_the_verify_path_is_left_to_flask(app, alice):
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket"}
    fast = alice.get("/auth/verify", headers=upgrade)
    assert fast.status_code == flask_view_answer(app, alice, headers=upgrade).status_code == 400


@pytest.mark.parametrize("trusted_proxies", ["0", "1"])
def test_a_request_id_is_taken_only_from_a_trusted_proxy_and_only_when_well_formed(tmp_path, clock,
                                                                                   trusted_proxies):
    app = build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES=trusted_proxies)
    add_user(app)
    c = new_client(app)
    assert login(c).status_code == 303
    echoed = c.get("/auth/verify", headers={"X-Request-ID": "req-42"})
    assert echoed.status_code == 200
    assert (echoed.headers["X-Request-ID"] == "req-42") == (trusted_proxies == "1")
    replaced = c.get("/auth/verify", headers={"X-Request-ID": "bad id;\u00e9"}).headers["X-Request-ID"]
    assert len(replaced) == 16 and replaced.isalnum()


def test_a_live_session_is_answered_without_flasks_request_hooks(app, alice):
    """Not a security property: the guard that the fast path is in use (a silent fall back to the
    Flask view would pass every other test and cost several times the CPU)."""
    seen = []

    def started(sender, **extra):
        seen.append(1)

    request_started.connect(started, app)
    try:
        assert verify(alice) == 200
        assert seen == []
        assert verify(new_client(app)) == 401
        assert seen == [1], "anything but a live session goes through the Flask view"
    finally:
        request_started.disconnect(started, app)


# --- configuration and bounds ------------------------------------------------------------------------

def test_the_cache_needs_no_instance_folder(tmp_path, clock):
    """Nothing of the cache lives in a file: an unusable instance folder changes nothing about it."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    settings = config.from_env(make_env(tmp_path), instance_path=str(blocked))
    app = create_app(settings, clock=clock)
    db.upgrade(app.extensions["authsvc"].engine)
    assert app.extensions["authsvc"].sessions.cache is not None
    add_user(app)
    c = new_client(app)
    assert login(c).status_code == 303
    copy = copy_of(app, c)
    assert (verify(c), verify(copy)) == (200, 200)
    assert c.post("/logout", data={"csrf_token": csrf(c, "/")}).status_code == 303
    assert verify(copy) == 401


def test_verify_cache_seconds_zero_turns_the_cache_off(tmp_path, clock):
    policy = tmp_path / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text() + "\n[sessions]\nverify_cache_seconds = 0\n")
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=str(policy))
    assert app.extensions["authsvc"].sessions.cache is None


def test_the_cache_is_bounded_and_forgets_expired_entries(tmp_path, app, svc, user):
    tick = Monotonic()
    cache = VerifyCache(0.5, max_entries=3, clock=tick)
    record = svc.sessions.load(svc.sessions.create(user.id, "198.51.100.1", "ua", False)[0])
    for i in range(10):
        cache.put(bytes([i]), record, cache.generation())
    assert len(cache) == 3
    assert cache.get(bytes([9])) is record and cache.get(bytes([0])) is None
    tick.now += 0.5
    assert cache.get(bytes([9])) is None
    cache.put(b"new", record, cache.generation())
    assert len(cache) == 1


def test_an_entry_that_expires_as_it_is_stored_leaves_the_cache_empty_not_broken(app, svc, user):
    """A lifetime too small to move the monotonic clock (now + ttl == now): the entry is expired the
    moment it is stored; storing must drop it and return, not fail the request."""
    tick = Monotonic()
    tick.now = 1e9  # 1e9 + 1e-9 == 1e9 in floating point
    cache = VerifyCache(1e-9, clock=tick)
    record = svc.sessions.load(svc.sessions.create(user.id, "198.51.100.1", "ua", False)[0])
    cache.put(b"digest", record, cache.generation())
    assert len(cache) == 0 and cache.get(b"digest") is None
