"""/auth/verify's cache and fast path: what a short-lived answer must never let through.

verify answers a live session below Flask (:class:`authsvc.views.verify.VerifyApp`), from a
per-process cache (:mod:`authsvc.verify_cache`) that the instance's revocation epoch
(:mod:`authsvc.revocation`) invalidates. The threats: a revocation, logout or disabled account
that one worker process knows about and another keeps answering 200 for; another instance
answering for longer than ``sessions.verify_cache_seconds``; a cached record outliving its idle or
absolute timeout; a fast answer missing the security headers the Flask view sends; a cache that
grows with the number of users. Two apps built on one ``tmp_path`` share the database and the
instance folder: two worker processes of one instance.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import request_started

from authsvc import config, db
from authsvc.app import create_app
from authsvc.models import sessions, users
from authsvc.revocation import RevocationEpoch
from authsvc.verify_cache import VerifyCache
from tests.conftest import (
    TEST_POLICY,
    add_user,
    build_app,
    cookie_value,
    csrf,
    login,
    make_env,
    new_client,
    verify,
)

HOST = "auth.example.test"


class Monotonic:
    """The cache's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = time.monotonic()  # from the real clock: entries made before the swap age too

    def __call__(self) -> float:
        return self.now


def bump_in_another_process(path: str) -> None:
    code = "import sys; from authsvc.revocation import RevocationEpoch; RevocationEpoch(sys.argv[1]).bump()"
    subprocess.run([sys.executable, "-c", code, path], check=True)


def frozen_cache(app) -> Monotonic:
    """Stop the cache's clock, so that an entry expires only when a test says so (not because the
    machine was slow): a revocation then passes only through the epoch."""
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
    """A second worker process of the same instance: same database, same instance folder."""
    app = build_app(tmp_path, clock)
    frozen_cache(app)
    return app


def other_instance(tmp_path, clock):
    """Another instance: same database, its own instance folder (another host)."""
    settings = config.from_env(make_env(tmp_path), instance_path=str(tmp_path / "elsewhere"))
    app = create_app(settings, clock=clock)
    app.config["TESTING"] = False
    return app


# --- revocation reaches every worker at once --------------------------------------------------------

@pytest.mark.asvs("V7.4.1")
def test_logout_in_one_worker_is_refused_at_once_by_another_workers_warm_cache(app, alice, worker_b):
    b = copy_of(worker_b, alice)
    assert verify(b) == 200  # cached in worker B too
    assert alice.post("/logout", data={"csrf_token": csrf(alice, "/")}).status_code == 303
    assert verify(b) == 401


@pytest.mark.asvs("V7.4.2")
def test_disabling_an_account_is_refused_at_once_by_every_worker(app, svc, user, alice, worker_b):
    b = copy_of(worker_b, alice)
    assert verify(b) == 200
    svc.accounts.set_disabled(user.id, True)
    assert (verify(alice), verify(b)) == (401, 401)


@pytest.mark.asvs("V7.4.5")
def test_a_revocation_signalled_by_another_process_is_refused_at_once(app, svc, alice, worker_b):
    b = copy_of(worker_b, alice)
    assert verify(b) == 200
    with svc.engine.begin() as conn:  # what `authsvc sessions revoke` does, from its own process:
        conn.execute(sessions.update().values(revoked_at=1.0, revoke_reason="admin_revoked"))
    bump_in_another_process(svc.sessions.revocations.path)
    assert (verify(alice), verify(b)) == (401, 401)


def test_session_cap_revocation_in_one_worker_is_refused_by_another(app, svc, user, worker_b, clock):
    frozen_cache(app)
    first = new_client(app)
    assert login(first).status_code == 303
    b = copy_of(worker_b, first)
    assert verify(b) == 200
    for i in range(svc.policy.sessions.max_sessions_per_user):
        clock.advance(6)  # within throttle.successes_per_account (10 a minute)
        c = new_client(app)
        c.environ_base["REMOTE_ADDR"] = f"198.51.100.{i + 1}"
        assert login(c).status_code == 303
    assert verify(b) == 401, "the oldest session was ended by the cap"


def test_the_epoch_is_one_number_for_every_process_using_the_folder(tmp_path):
    here = RevocationEpoch(str(tmp_path / "epoch"))
    before = here.current()
    bump_in_another_process(here.path)
    assert here.current() == before + 1


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
    assert verify(there) == 200, "the other instance is not signalled: only the cache lifetime bounds it"
    tick.now += svc.policy.sessions.verify_cache_seconds * 0.1
    assert verify(there) == 401


def test_a_change_made_directly_in_the_database_is_seen_within_verify_cache_seconds(app, svc, user, alice):
    tick = svc.sessions.cache.clock
    assert verify(alice) == 200
    with svc.engine.begin() as conn:  # no store involved: nothing moves the epoch
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
    """The fast answer's headers are written out from the settings (authsvc.headers.fixed_headers),
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

def test_an_unusable_instance_folder_turns_the_cache_off_and_verify_still_works(tmp_path, clock):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    settings = config.from_env(make_env(tmp_path), instance_path=str(blocked))
    app = create_app(settings, clock=clock)
    db.upgrade(app.extensions["authsvc"].engine)
    assert app.extensions["authsvc"].sessions.cache is None
    add_user(app)
    c = new_client(app)
    assert login(c).status_code == 303
    assert verify(c) == 200


def test_verify_cache_seconds_zero_turns_the_cache_off(tmp_path, clock):
    policy = tmp_path / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text() + "\n[sessions]\nverify_cache_seconds = 0\n")
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=str(policy))
    assert app.extensions["authsvc"].sessions.cache is None


def test_the_cache_is_bounded_and_forgets_expired_entries(tmp_path, app, svc, user):
    tick = Monotonic()
    cache = VerifyCache(0.5, RevocationEpoch(str(tmp_path / "epoch")), max_entries=3, clock=tick)
    record = svc.sessions.load(svc.sessions.create(user.id, "198.51.100.1", "ua", False)[0])
    for i in range(10):
        cache.put(bytes([i]), record, cache.mark())
    assert len(cache) == 3
    assert cache.get(bytes([9])) is record and cache.get(bytes([0])) is None
    tick.now += 0.5
    assert cache.get(bytes([9])) is None
    cache.put(b"new", record, cache.mark())
    assert len(cache) == 1
