"""Two authsvc instances, one truth: docs/deployment.md's configuration, attacked across instances.

Two real ``authsvc serve --workers 2`` processes (four worker processes in all) on different ports,
each with its own instance folder as on separate hosts, share one PostgreSQL schema and one Redis
key prefix, with the environment file of the deployment guide. A test addresses either instance
directly, playing the TLS proxy (one trusted hop: ``X-Forwarded-For`` chooses the client address),
or, in the last test, goes through nginx running deploy/nginx/loadbalancer.conf.

The threats: an attacker who alternates instances to multiply his guesses (per-client limit,
per-account back-off, known-device counters); a revocation (logout, password change,
``authsvc sessions revoke``) that one instance made and another, with its verify cache, ignores for
longer than the policy's bound of one second; two instances racing to rotate one remember-me cookie
(exactly one may win, and the loser must not be taken for a thief); a remember-me cookie stolen and
used through one instance while its owner, signed in, signs out through the other; a restore whose
response is lost on a dropped connection and retried elsewhere (not theft), also by two tabs at once;
two administrators creating the same account at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from urllib.parse import urlencode

import pytest
import requests
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet
from limits import parse as parse_limit

from authsvc.core import config
from authsvc.web.app import create_app
from authsvc.core.models import remember_tokens
from authsvc.core.models import sessions as sessions_table
from authsvc.core.policy import load_policy
from tests.backends import pg_schema, redis_prefix, redis_url
from tests.conftest import PASSWORD, TEST_POLICY, csrf_in
from tests.integration import conftest as stack_helpers
from tests.security import oidc_helpers as oidc
from tests.integration.conftest import (
    APP_HOST,
    APP_PREFIX,
    AUTH_HOST,
    echo_app,
    example_test_resolves_to_loopback,
    free_port,
    make_tls,
    nginx_server,
    require_binary,
    require_module,
)
from tests.integration.instances import (
    NEW_PASSWORD,
    PUBLIC_URL,
    ROOT,
    Browser,
    cli,
    deployment_env,
    instances,
    parallel,
    seconds_until_refused,
)

pytestmark = pytest.mark.integration

POLICY = load_policy(TEST_POLICY)
# The spec's bound: a revocation reaches every instance within one second, cache or no cache.
REVOCATION_BOUND_SECONDS = 1.0
USERS = ("pat", "dex", "lou", "pam", "rev", "vic", "rem", "sam", "lb", "thf", "lor", "two", "ops")
LOADBALANCER = ROOT / "deploy" / "nginx" / "loadbalancer.conf"


class Deployment:
    def __init__(self, env, one, two, admin, checked):
        self.env = env
        self.one = one          # instance 1
        self.two = two          # instance 2
        self.admin = admin      # the same configuration in-process: seeds accounts, reads the tables
        self.checked = checked  # what `authsvc check` said about this configuration

    @property
    def both(self):
        return (self.one, self.two)

    def svc(self):
        return self.admin.extensions["authsvc"]

    def user_id(self, name: str) -> int:
        return self.svc().accounts.by_username(name).id

    def diagnostics(self) -> str:
        return "\n".join(i.diagnostics() for i in self.both)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_module("requests")
    folder = tmp_path_factory.mktemp("scaleout")
    with contextlib.ExitStack() as running:
        _schema, database_url = running.enter_context(pg_schema("scaleout"))
        prefix = running.enter_context(redis_prefix("scaleout"))
        env = deployment_env(folder, database_url=database_url, storage_uri=redis_url(), key_prefix=prefix)
        upgraded = cli(env, "db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        admin, checked = [], []

        def seed():  # while the instances boot
            with ThreadPoolExecutor(1) as pool:
                check = pool.submit(cli, env, "check")
                admin.append(create_app(config.from_env(env)))
                running.callback(admin[0].extensions["authsvc"].engine.dispose)
                svc = admin[0].extensions["authsvc"]
                for name in USERS:
                    svc.accounts.create(name, svc.hasher.hash(PASSWORD))
                checked.append(check.result())
        one, two = running.enter_context(instances(folder, env, count=2, workers=2, meanwhile=seed))
        yield Deployment(env, one, two, admin[0], checked[0])


@pytest.fixture(autouse=True)
def show_instance_logs_on_failure(request):
    deployment = request.getfixturevalue("deployment") if "deployment" in request.fixturenames else None
    yield
    report = getattr(request.node, "rep_call", None)
    if deployment is not None and report is not None and report.failed:
        print(deployment.diagnostics())


def per_client_amount() -> int:
    return min(parse_limit(limit).amount for limit in POLICY.throttle.per_client)


def test_the_guides_configuration_passes_authsvc_check(deployment):
    """docs/deployment.md's environment (with this machine's servers) is sound for production by the
    service's own audit: no error, no warning, not even the memory:// note."""
    result = deployment.checked
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines() == [line for line in result.stdout.strip().splitlines()
                                                  if line.startswith("ok:")], result.stdout


# --- limits count across instances -------------------------------------------------------------------

@pytest.mark.asvs("V6.3.1")
def test_attacker_alternating_instances_gets_no_more_per_client_attempts_than_against_one(deployment):
    """Guessing from one address, alternating instance 1 and 2 (and so four worker processes): the
    per-client limit on POST /login counts in Redis, so the budget is the policy's, not 4x it."""
    amount = per_client_amount()
    attacker = Browser("203.0.113.77")
    token = attacker.csrf(deployment.one)
    statuses = []
    for i in range(amount + 3):
        instance = deployment.both[i % 2]
        response = attacker.post(instance, "/login", data={"csrf_token": token, "username": f"nobody{i}",
                                                            "password": "not the password at all"})
        statuses.append(response.status_code)
    assert statuses == [401] * amount + [429] * 3, statuses
    # The count is this address's: another client is still heard on either instance.
    other = Browser("203.0.113.78")
    assert other.login(deployment.two, "nobody", "not the password at all").status_code == 401


@pytest.mark.asvs("V6.3.1")
def test_attacker_alternating_instances_gets_no_more_per_account_attempts_than_against_one(deployment):
    """Guessing one account's password from a fresh address each time, alternating instances: the
    account's back-off counts in Redis, so it starts after the policy's failures_before_backoff,
    the right password then gets 429 too (no oracle), and the owner's known browser still gets in."""
    owner = Browser("198.51.100.9")
    assert owner.login(deployment.one, "pat").status_code == 303
    assert owner.cookie("authsvc_device"), "no known-device cookie after a login"
    allowed = POLICY.throttle.failures_before_backoff
    statuses = []
    for i in range(allowed + 1):
        attacker = Browser(f"198.51.100.{10 + i}")
        statuses.append(attacker.login(deployment.both[i % 2], "pat", "wrong password number one").status_code)
    assert statuses == [401] * allowed + [429], statuses
    for instance in deployment.both:
        assert Browser("198.51.100.40").login(instance, "pat").status_code == 429, \
            "the right password got through a backing-off account"
    assert owner.login(deployment.two, "pat").status_code == 303, "the owner's known device was locked out"


@pytest.mark.asvs("V6.3.1")
def test_known_device_counter_is_shared_by_instances_and_apart_from_the_anonymous_one(deployment):
    """A known-device cookie issued by instance 1 is honoured by instance 2, and that device's own
    failure counter is counted by both together: its back-off starts after the same number of
    failures whichever instance they went to, and leaves other browsers of the account alone."""
    device = Browser("198.51.100.30")
    assert device.login(deployment.one, "dex").status_code == 303
    allowed = POLICY.throttle.failures_before_backoff
    statuses = [device.login(deployment.both[(i + 1) % 2], "dex", "wrong password number two").status_code
                for i in range(allowed + 1)]
    assert statuses == [401] * allowed + [429], statuses
    assert device.login(deployment.one, "dex").status_code == 429
    assert Browser("198.51.100.31").login(deployment.one, "dex").status_code == 303, \
        "the device's failures blocked the account's other browsers"


# --- revocation reaches every instance -----------------------------------------------------------------

def logged_in_on(instance, name: str, ip: str) -> Browser:
    b = Browser(ip)
    response = b.login(instance, name)
    assert response.status_code == 303, response.status_code
    return b


def warm(deployment, *browsers: Browser) -> None:
    """Every browser verified on both instances, several times (both workers): any verify cache
    now holds their sessions."""
    for b in browsers:
        for instance in deployment.both:
            assert [b.verify(instance) for _ in range(4)] == [200] * 4


def clone(b: Browser) -> Browser:
    """A copy of the browser's cookies (another tab, or a thief's copy) at the same place."""
    c = Browser(b.ip, b.ua)
    c.cookies = dict(b.cookies)
    return c


@pytest.mark.asvs("V7.4.1", "V7.6.1")
def test_logout_on_one_instance_is_401_on_the_other_within_one_second(deployment):
    b = logged_in_on(deployment.one, "lou", "198.51.100.41")
    copy = clone(b)
    warm(deployment, copy)
    token = b.csrf(deployment.one, "/")
    assert b.post(deployment.one, "/logout", data={"csrf_token": token}).status_code == 303
    accepted_for = parallel(
        lambda: seconds_until_refused(lambda: copy.verify(deployment.two), bound=REVOCATION_BOUND_SECONDS),
        lambda: seconds_until_refused(lambda: copy.verify(deployment.one), bound=REVOCATION_BOUND_SECONDS))
    assert max(accepted_for) <= REVOCATION_BOUND_SECONDS, \
        f"the logged-out session was still accepted {accepted_for} s after the logout"


@pytest.mark.asvs("V7.4.3")
def test_password_change_on_one_instance_ends_other_sessions_on_the_other_within_one_second(deployment):
    here = logged_in_on(deployment.one, "pam", "198.51.100.50")
    there = logged_in_on(deployment.two, "pam", "198.51.100.51")
    warm(deployment, here, there)
    token = here.csrf(deployment.one, "/")
    changed = here.post(deployment.one, "/account/password",
                        data={"csrf_token": token, "current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert changed.status_code == 200 and "Password changed" in changed.text, changed.status_code
    accepted_for = seconds_until_refused(lambda: there.verify(deployment.two), bound=REVOCATION_BOUND_SECONDS)
    assert accepted_for <= REVOCATION_BOUND_SECONDS, \
        f"a session of the old password was still accepted {accepted_for} s after the change"
    assert [here.verify(i) for i in deployment.both] == [200, 200], "the changing session itself was ended"
    assert Browser("198.51.100.52").login(deployment.two, "pam").status_code == 401
    assert Browser("198.51.100.53").login(deployment.two, "pam", NEW_PASSWORD).status_code == 303


@pytest.mark.asvs("V7.4.5")
def test_cli_sessions_revoke_is_401_on_both_instances_within_one_second(deployment):
    on_one = logged_in_on(deployment.one, "rev", "198.51.100.60")
    on_two = logged_in_on(deployment.two, "rev", "198.51.100.61")
    bystander = logged_in_on(deployment.two, "vic", "198.51.100.62")
    warm(deployment, on_one, on_two)
    revoked = cli(deployment.env, "sessions", "revoke", "rev")
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 2 session(s)" in revoked.stdout, revoked.stdout
    accepted_for = parallel(
        lambda: seconds_until_refused(lambda: on_one.verify(deployment.two), bound=REVOCATION_BOUND_SECONDS),
        lambda: seconds_until_refused(lambda: on_two.verify(deployment.one), bound=REVOCATION_BOUND_SECONDS))
    assert max(accepted_for) <= REVOCATION_BOUND_SECONDS, \
        f"a revoked session was still accepted {accepted_for} s after `authsvc sessions revoke`"
    assert [bystander.verify(i) for i in deployment.both] == [200, 200], "another user's session was ended"


@pytest.mark.asvs("V7.4.5")
def test_cli_sessions_revoke_run_from_another_directory_is_401_within_one_second(deployment, tmp_path):
    """The operator runs the command from wherever his shell is, with no AUTHSVC_INSTANCE_PATH: its
    instance folder is its working directory's, shared with no server. The servers learn of the
    revocation through the database alone: every worker's cached answer ends within its lifetime."""
    b = logged_in_on(deployment.one, "ops", "198.51.100.65")
    warm(deployment, b)
    stop = threading.Event()
    meanwhile: list[int] = []

    def keep_warm():  # so the caches hold the session when the revocation commits
        while not stop.is_set():
            meanwhile.extend(b.verify(instance) for instance in deployment.both)
            time.sleep(0.02)
    warming = threading.Thread(target=keep_warm)
    warming.start()
    try:
        home = tmp_path / "operator-home"
        home.mkdir()
        env = {k: v for k, v in deployment.env.items() if k != "AUTHSVC_INSTANCE_PATH"}
        revoked = cli(env, "sessions", "revoke", "ops", cwd=home)
    finally:
        stop.set()
        warming.join()
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 1 session(s)" in revoked.stdout, revoked.stdout
    assert 200 in meanwhile and set(meanwhile) <= {200, 401}, meanwhile
    accepted_for = parallel(
        lambda: seconds_until_refused(lambda: b.verify(deployment.one), bound=REVOCATION_BOUND_SECONDS),
        lambda: seconds_until_refused(lambda: b.verify(deployment.two), bound=REVOCATION_BOUND_SECONDS))
    assert max(accepted_for) <= REVOCATION_BOUND_SECONDS, \
        f"the revoked session was still accepted {accepted_for} s after `authsvc sessions revoke` from {home}"


# --- races between instances -------------------------------------------------------------------------

@pytest.mark.asvs("V7.4.1")
def test_concurrent_remember_rotation_on_both_instances_has_exactly_one_winner(deployment):
    """Two tabs of one browser restore from the same remember cookie at the same moment, one through
    each instance. The conditional UPDATE (under PostgreSQL's READ COMMITTED) lets one rotate; the
    other is a race inside the grace window, refused without clearing the cookie and without the
    replay alarm that would sign the user out everywhere."""
    svc = deployment.svc()
    user_id = deployment.user_id("rem")
    elsewhere = logged_in_on(deployment.one, "rem", "198.51.100.70")
    rounds = 6
    for round_ in range(rounds):
        ip, ua = f"198.51.100.{71 + round_}", f"Mozilla/5.0 RaceTab/{round_}"
        value, _ = svc.remember.issue(user_id, ip, ua)
        tabs = [Browser(ip, ua), Browser(ip, ua)]
        for tab in tabs:
            tab.cookies = {svc.cookies.remember: value}
        gate = threading.Barrier(2, timeout=30)

        def restore(tab, instance, gate=gate):
            gate.wait()
            return tab.get(instance, "/login").status_code
        statuses = parallel(partial(restore, tabs[0], deployment.one), partial(restore, tabs[1], deployment.two))
        assert sorted(statuses) == [200, 303], f"round {round_}: {statuses}"
        winner, loser = (tabs[0], tabs[1]) if statuses[0] == 303 else (tabs[1], tabs[0])
        assert [winner.verify(i) for i in deployment.both] == [200, 200]
        assert [loser.verify(i) for i in deployment.both] == [401, 401]
        assert loser.cookies.get(svc.cookies.remember) == value, "the racing tab's cookie was cleared"
        assert winner.cookies.get(svc.cookies.remember) not in (None, value), "the winner got no new cookie"
    with svc.engine.connect() as conn:
        tokens = conn.execute(sa.select(remember_tokens).where(remember_tokens.c.user_id == user_id)).all()
        live = conn.execute(sa.select(sa.func.count()).select_from(sessions_table).where(
            sessions_table.c.user_id == user_id, sessions_table.c.revoked_at.is_(None))).scalar_one()
    assert len(tokens) == 2 * rounds, "a rotation issued more (or fewer) than one successor"
    assert sum(t.rotated_at is not None for t in tokens) == rounds
    assert all(t.revoked_at is None for t in tokens), "a race was taken for theft: tokens revoked"
    assert live == 1 + rounds
    assert [elsewhere.verify(i) for i in deployment.both] == [200, 200], "mass revocation after a race"
    for instance in deployment.both:
        assert "remember_replay_detected" not in [line for line in instance.log_text().splitlines()
                                                  if f'"user_id":{user_id}' in line]


def user_tokens(deployment, user_id: int):
    with deployment.svc().engine.connect() as conn:
        return conn.execute(sa.select(remember_tokens).where(remember_tokens.c.user_id == user_id)
                            .order_by(remember_tokens.c.id)).all()


def a_minute_passes_for(deployment, user_id: int) -> None:
    """Move the user's recorded rotations a minute back: the next reuse comes well after the grace,
    without the test sleeping through it."""
    with deployment.svc().engine.begin() as conn:
        conn.execute(remember_tokens.update().where(remember_tokens.c.user_id == user_id,
                                                    remember_tokens.c.rotated_at.is_not(None))
                     .values(rotated_at=remember_tokens.c.rotated_at - 60))


def load_and_drop_the_connection(b: Browser, instance, path: str = "/login") -> None:
    """The browser sends its request, then the connection drops before any answer is read: the
    server acts on the request, but the browser never sees the response (nor its cookies)."""
    cookies = "; ".join(f"{k}={v}" for k, v in b.cookies.items())
    request = (f"GET {path} HTTP/1.1\r\nHost: {AUTH_HOST}\r\nX-Forwarded-For: {b.ip}\r\n"
               f"X-Forwarded-Proto: https\r\nUser-Agent: {b.ua}\r\nCookie: {cookies}\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", instance.port), timeout=30) as conn:
        conn.sendall(request.encode())


def wait_until(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.05)


@pytest.mark.asvs("V7.4.1")
def test_thief_using_a_remember_cookie_through_one_instance_is_caught_when_the_owner_signs_out_on_the_other(
        deployment):
    """Finding 4 across instances: the thief restores from the owner's cookie through instance 2
    and uses the session at an app (both instances' caches warm); the owner, still signed in,
    signs out through instance 1 presenting the rotated-away cookie. That logout is the replay:
    within the revocation bound the thief is refused everywhere and his chain restores nothing."""
    svc = deployment.svc()
    owner = Browser("198.51.100.130")
    assert owner.login(deployment.one, "thf", remember=True).status_code == 303
    name = next(k for k in owner.cookies if k.endswith("authsvc_remember"))
    thief = Browser("203.0.113.130", "curl/8.0")
    thief.cookies = {name: owner.cookies[name]}
    assert thief.get(deployment.two, "/login").status_code == 303
    warm(deployment, thief)
    thief_chain = thief.only("authsvc_remember")
    a_minute_passes_for(deployment, deployment.user_id("thf"))
    remember = owner.cookies.pop(name)  # the form's token from the account page, without the cookie
    token = owner.csrf(deployment.one, "/")
    owner.cookies[name] = remember
    assert owner.post(deployment.one, "/logout", data={"csrf_token": token}).status_code == 303
    accepted_for = parallel(
        lambda: seconds_until_refused(lambda: thief.verify(deployment.two), bound=REVOCATION_BOUND_SECONDS),
        lambda: seconds_until_refused(lambda: thief.verify(deployment.one), bound=REVOCATION_BOUND_SECONDS))
    assert max(accepted_for) <= REVOCATION_BOUND_SECONDS, \
        f"the thief's session was still accepted {accepted_for} s after the owner's logout gave him away"
    assert [thief_chain.get(i, "/login").status_code for i in deployment.both] == [200, 200]
    assert all(t.revoked_at is not None for t in user_tokens(deployment, deployment.user_id("thf")))
    assert "remember_replay_detected" in deployment.one.log_text()
    assert svc.sessions.list_live(deployment.user_id("thf")) == []


@pytest.mark.asvs("V7.4.1")
def test_restore_whose_response_is_lost_on_a_dropped_connection_is_retried_on_the_other_instance(deployment):
    """Finding 5 against the real servers: the connection drops while instance 1 restores from the
    remember cookie, so the browser keeps the old cookie and gets no session. Its retry a minute
    later, through instance 2, is restored; the unused successor and its session are ended; the
    user's other browser is not signed out and nothing is taken for theft."""
    svc = deployment.svc()
    user_id = deployment.user_id("lor")
    elsewhere = logged_in_on(deployment.one, "lor", "198.51.100.140")
    ip, ua = "198.51.100.141", "Mozilla/5.0 LostResponse/1"
    value, _ = svc.remember.issue(user_id, ip, ua)
    b = Browser(ip, ua)
    b.cookies = {svc.cookies.remember: value}
    load_and_drop_the_connection(b, deployment.one)
    wait_until(lambda: len(user_tokens(deployment, user_id)) == 2, "the rotation on instance 1")
    lost_successor = user_tokens(deployment, user_id)[1]
    a_minute_passes_for(deployment, user_id)
    assert b.cookies == {svc.cookies.remember: value}
    r = b.get(deployment.two, "/login")
    assert r.status_code == 303, "the retry of a lost response was refused"
    assert [b.verify(i) for i in deployment.both] == [200, 200]
    assert [elsewhere.verify(i) for i in deployment.both] == [200, 200], "a lost response signed the user out"
    ended = next(t for t in user_tokens(deployment, user_id) if t.id == lost_successor.id)
    assert ended.revoke_reason == "unused_successor"
    with svc.engine.connect() as conn:
        reason = conn.execute(sa.select(sessions_table.c.revoke_reason).where(
            sessions_table.c.id == ended.session_id)).scalar_one()
    assert reason == "remember_unused"
    assert any("remember_successor_unused" in line and f'"user_id":{user_id}' in line
               for line in deployment.two.log_text().splitlines())
    for instance in deployment.both:
        assert "remember_replay_detected" not in [line for line in instance.log_text().splitlines()
                                                  if f'"user_id":{user_id}' in line]


@pytest.mark.asvs("V7.4.1")
def test_two_tabs_retrying_a_lost_response_through_both_instances_at_once_restore_exactly_one(deployment):
    """Both tabs of the browser retry the lost response at the same moment, one through each
    instance: exactly one is restored, the other is a race (cookie kept), nobody is signed out."""
    svc = deployment.svc()
    user_id = deployment.user_id("two")
    elsewhere = logged_in_on(deployment.one, "two", "198.51.100.150")
    for round_ in range(4):
        ip, ua = f"198.51.100.{151 + round_}", f"Mozilla/5.0 LostTwice/{round_}"
        value, _ = svc.remember.issue(user_id, ip, ua)
        lost = Browser(ip, ua)
        lost.cookies = {svc.cookies.remember: value}
        assert lost.get(deployment.one, "/login").status_code == 303  # ... and its answer is thrown away
        a_minute_passes_for(deployment, user_id)
        tabs = [Browser(ip, ua), Browser(ip, ua)]
        for tab in tabs:
            tab.cookies = {svc.cookies.remember: value}
        gate = threading.Barrier(2, timeout=30)

        def retry(tab, instance, gate=gate):
            gate.wait()
            return tab.get(instance, "/login").status_code
        statuses = parallel(partial(retry, tabs[0], deployment.one), partial(retry, tabs[1], deployment.two))
        assert sorted(statuses) == [200, 303], f"round {round_}: {statuses}"
        loser = tabs[0] if statuses[0] == 200 else tabs[1]
        assert loser.cookies.get(svc.cookies.remember) == value, "the racing tab's cookie was cleared"
        assert [elsewhere.verify(i) for i in deployment.both] == [200, 200], f"round {round_}: signed out"
    tokens = user_tokens(deployment, user_id)
    assert len(tokens) == 4 * 3, "a retry issued more (or fewer) than one new successor"
    assert sum(t.revoke_reason == "unused_successor" for t in tokens) == 4
    for instance in deployment.both:
        assert "remember_replay_detected" not in [line for line in instance.log_text().splitlines()
                                                  if f'"user_id":{user_id}' in line]


@pytest.mark.asvs("V7.2.4")
def test_one_user_signing_in_on_both_instances_at_once_gets_one_session_per_login(deployment):
    """Six of the user's browsers sign in at the same moment, three through each instance. Known
    browsers (device cookie) have a throttle bucket each but share the account's known-device gate,
    and unknown ones share the account's bucket: either way one password check of the account runs
    at a time, so some are told to retry (429), never an error (one account's device cookies must
    not take the known argon2 slots of everyone else: review finding 1). Every 303 is exactly one
    new live session, and each browser's previous session is ended, not left behind."""
    svc = deployment.svc()
    user_id = deployment.user_id("sam")
    known = [logged_in_on(deployment.both[i % 2], "sam", f"198.51.100.{110 + i}") for i in range(6)]
    before = {b.cookie("authsvc_session") for b in known}
    gate = threading.Barrier(len(known), timeout=30)

    def sign_in(b, instance):
        token = b.csrf(instance)
        gate.wait()
        return b.post(instance, "/login", data={"csrf_token": token, "username": "sam", "password": PASSWORD})
    answers = parallel(*(partial(sign_in, b, deployment.both[i % 2]) for i, b in enumerate(known)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {303, 429} and 303 in statuses, statuses
    signed_in = [b for b, status in zip(known, statuses) if status == 303]
    after = {b.cookie("authsvc_session") for b in signed_in}
    assert len(after) == len(signed_in) and not after & before, "a session was shared"
    for b in signed_in:
        assert [b.verify(i) for i in deployment.both] == [200, 200]
    assert len(svc.sessions.list_live(user_id)) == len(known), "replaced sessions were left live"

    strangers = [Browser(f"198.51.100.{120 + i}") for i in range(4)]
    gate = threading.Barrier(len(strangers), timeout=30)
    answers = parallel(*(partial(sign_in, b, deployment.both[i % 2]) for i, b in enumerate(strangers)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {303, 429} and 303 in statuses, statuses
    assert len(svc.sessions.list_live(user_id)) == len(known) + statuses.count(303)


def test_creating_the_same_user_from_two_places_at_once_makes_one_account(deployment):
    """`authsvc user add` run twice at the same moment, with two spellings of one name: the unique
    normalized username decides; one command creates the account, the other says it exists."""
    results = parallel(
        lambda: cli(deployment.env, "user", "add", "gina", "--password-stdin", stdin=PASSWORD + "\n"),
        lambda: cli(deployment.env, "user", "add", "GINA", "--password-stdin", stdin=PASSWORD + "\n"))
    assert sorted(r.returncode for r in results) == [0, 1], [(r.returncode, r.stdout, r.stderr) for r in results]
    made, refused = sorted(results, key=lambda r: r.returncode)
    assert "created user" in made.stdout
    assert "already exists" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    names = [a.username_key for a in deployment.svc().accounts.all()]
    assert names.count("gina") == 1
    assert Browser("198.51.100.90").login(deployment.two, "Gina").status_code == 303


# --- the OpenID Provider across instances ----------------------------------------------------------------

def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def _oidc_code(b: Browser, instance, client_id: str) -> tuple[str, str]:
    """The browser part on ``instance``: (code, PKCE verifier)."""
    verifier, challenge = oidc.pkce()
    params = oidc.authorize_params(client_id, challenge=challenge, scope="openid profile groups offline_access")
    response = b.get(instance, "/oauth/authorize?" + urlencode(params))
    assert response.status_code == 302, (response.status_code, response.text[:300])
    got = oidc.query(response.headers["Location"])
    assert got["iss"] == PUBLIC_URL and got["state"] == "st4te"
    return got["code"], verifier


def _token(b: Browser, instance, client, **data) -> requests.Response:
    return b.post(instance, "/oauth/token", data=data, headers=_basic(*client))


def _refresh(b: Browser, instance, client, refresh_token: str) -> requests.Response:
    return _token(b, instance, client, grant_type="refresh_token", refresh_token=refresh_token)


def _userinfo(b: Browser, instance, access_token: str) -> int:
    return b.get(instance, "/oauth/userinfo", headers={"Authorization": f"Bearer {access_token}"}).status_code


@pytest.mark.asvs("V10.4.2", "V10.4.5", "V7.4.1")
def test_oidc_provider_flow_across_instances(deployment):
    """The OpenID Provider on two instances sharing PostgreSQL and Redis: authorize on instance 1,
    the token exchange on 2 (the ID token verifies with 1's JWKS: one signing key for both), refresh
    on 1; the rotated-away refresh token replayed on 2 revokes the family everywhere; a logout on 1
    ends the refresh token on 2 within the revocation bound; the token endpoint's per-client throttle
    counts both instances' requests together (Redis), not each instance's alone."""
    svc = deployment.svc()
    user = svc.accounts.create("oid", svc.hasher.hash(PASSWORD))
    svc.groups.add("scale-ops")
    svc.groups.join(user.id, "scale-ops")
    made = svc.oidc.clients.add("Scale", (oidc.WEB,), public=False, trusted=True,
                                scopes=("openid", "profile", "groups", "offline_access"))
    client = (made.client.client_id, made.client_secret)
    one, two = deployment.one, deployment.two
    b = logged_in_on(one, "oid", "198.51.100.160")

    # authorize on 1, exchange on 2, verify with the keys 1 publishes
    code, verifier = _oidc_code(b, one, client[0])
    exchanged = _token(b, two, client, grant_type="authorization_code", code=code, code_verifier=verifier,
                       redirect_uri=oidc.WEB)
    assert exchanged.status_code == 200, exchanged.text
    first = exchanged.json()
    keys = KeySet.import_key_set(b.get(one, "/oauth/jwks").json())
    id_token = jwt.decode(first["id_token"], keys, algorithms=["ES256", "RS256"])
    jwt.JWTClaimsRegistry(now=int(time.time()), iss={"essential": True, "value": PUBLIC_URL},
                          aud={"essential": True, "value": client[0]}).validate(id_token.claims)
    assert id_token.claims["preferred_username"] == "oid" and id_token.claims["groups"] == ["scale-ops"]
    assert b.get(one, "/.well-known/openid-configuration").json()["issuer"] == PUBLIC_URL
    assert [_userinfo(b, i, first["access_token"]) for i in (one, two)] == [200, 200]

    # refresh on 1: rotation, seen by 2 at once
    refreshed = _refresh(b, one, client, first["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert [_userinfo(b, i, first["access_token"]) for i in (one, two)] == [401, 401]
    assert _userinfo(b, two, second["access_token"]) == 200

    # the old refresh token replayed on 2: the whole family ends, on both
    replay = _refresh(b, two, client, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert [_userinfo(b, i, second["access_token"]) for i in (one, two)] == [401, 401]
    assert _refresh(b, one, client, second["refresh_token"]).status_code == 400, "the family outlived its replay"
    assert any("oidc_refresh_replayed" in i.log_text() for i in (one, two))

    # a code spent on 2 and replayed on 1: refused, and what 2 issued from it ends
    code, verifier = _oidc_code(b, one, client[0])
    redeem = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": oidc.WEB}
    issued = _token(b, two, client, **redeem).json()
    assert _token(b, one, client, **redeem).status_code == 400, "a code spent on instance 2 was accepted on 1"
    assert [_userinfo(b, i, issued["access_token"]) for i in (one, two)] == [401, 401]
    assert _refresh(b, two, client, issued["refresh_token"]).status_code == 400

    # a logout on 1 ends the refresh token on 2 within the bound
    code, verifier = _oidc_code(b, one, client[0])
    current = _token(b, two, client, grant_type="authorization_code", code=code, code_verifier=verifier,
                     redirect_uri=oidc.WEB).json()
    token = b.csrf(one, "/")
    copy = clone(b)  # the browser's cookies are gone after the logout; its tokens are the client's
    assert b.post(one, "/logout", data={"csrf_token": token}).status_code == 303
    latest = {"refresh": current["refresh_token"]}

    def refresh_on_two() -> int:
        response = _refresh(copy, two, client, latest["refresh"])
        if response.status_code == 200:  # still working: it rotated; keep the new one
            latest["refresh"] = response.json()["refresh_token"]
            return 200
        assert response.status_code == 400 and response.json()["error"] == "invalid_grant", response.text
        return 401
    accepted_for = seconds_until_refused(refresh_on_two, bound=REVOCATION_BOUND_SECONDS)
    assert accepted_for <= REVOCATION_BOUND_SECONDS, \
        f"a refresh token of the logged-out session still worked on instance 2 {accepted_for} s after the logout"
    assert _userinfo(copy, two, current["access_token"]) == 401

    # the per-client throttle of the token endpoint is shared through Redis
    flood = svc.oidc.clients.add("Flood", (oidc.WEB,), public=False, trusted=True)
    flood_client = (flood.client.client_id, flood.client_secret)
    amount = min(parse_limit(limit).amount for limit in POLICY.oidc.token_requests_per_client)
    statuses = [_token(Browser(f"198.51.100.{170 + i % 50}"), deployment.both[i % 2], flood_client,
                       grant_type="authorization_code", code=f"guess-{i}", code_verifier="v" * 43,
                       redirect_uri=oidc.WEB).status_code for i in range(amount + 2)]
    assert statuses == [400] * amount + [429] * 2, statuses
    assert _token(Browser("198.51.100.230"), two, client, grant_type="authorization_code", code="x",
                  code_verifier="v" * 43, redirect_uri=oidc.WEB).status_code == 400, "another client was starved"


# --- the load balancer as shipped ------------------------------------------------------------------------

def _requests_count(instance, method: str, path: str) -> int:
    """How many access lines (JSON, authsvc.server.access_log) of this instance are for ``method path``."""
    count = 0
    for line in instance.log_text().splitlines():
        if '"path":' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        count += entry.get("method") == method and entry.get("path") == path
    return count


@pytest.mark.asvs("V7.6.1")
def test_nginx_load_balancer_config_spreads_requests_and_survives_losing_an_instance(deployment, tmp_path):
    """deploy/nginx/loadbalancer.conf as shipped, over TLS, in front of both instances and an app:
    sign in once, and the app's requests are checked by both instances with no stickiness; the
    login POST reached exactly one instance; sign out through either and the app refuses; and when
    an instance dies, a session it never saw is still served by the other. (Run last: it kills
    instance 2.)"""
    require_binary("nginx")
    require_binary("openssl")
    tls = make_tls(tmp_path / "tls")
    port = free_port()
    auth, app = f"https://{AUTH_HOST}:{port}", f"https://{APP_HOST}:{port}"
    # The instances were configured for port 443; here nginx listens on a high port. The origin is
    # what matters for next: only the login page's absolute URL would differ, and it is not used.
    with contextlib.ExitStack() as running, pytest.MonkeyPatch.context() as mp:
        app_server = running.enter_context(echo_app())
        mp.setattr(stack_helpers, "NGINX_TEMPLATE", LOADBALANCER)
        running.enter_context(nginx_server(tmp_path / "nginx", port, {
            "AUTH_HOST": AUTH_HOST, "APP_HOST": APP_HOST, "HTTPS_PORT": str(port),
            "TLS_CERT": str(tls.cert), "TLS_KEY": str(tls.key),
            "AUTHSVC_ADDR_1": f"127.0.0.1:{deployment.one.port}",
            "AUTHSVC_ADDR_2": f"127.0.0.1:{deployment.two.port}",
            "APP_ADDR": f"127.0.0.1:{app_server.server_address[1]}",
        }))
        running.enter_context(example_test_resolves_to_loopback())
        s = requests.Session()
        s.trust_env = False
        s.verify = str(tls.ca)
        s.headers["User-Agent"] = "authsvc-loadbalancer-test"

        def get(url):
            return s.get(url, allow_redirects=False, timeout=30)

        posts_before = sum(_requests_count(i, "POST", "/login") for i in deployment.both)
        verifies_before = [_requests_count(i, "GET", "/auth/verify") for i in deployment.both]
        page = get(f"{auth}/login")
        token = csrf_in(page.text)
        signed_in = s.post(f"{auth}/login", data={"csrf_token": token, "username": "lb", "password": PASSWORD},
                           allow_redirects=False, timeout=30)
        assert signed_in.status_code == 303, signed_in.status_code
        for _ in range(8):
            r = get(f"{app}{APP_PREFIX}/page")
            assert r.status_code == 200 and r.json()["user"] == ["lb"], (r.status_code, r.text[:200])
        assert sum(_requests_count(i, "POST", "/login") for i in deployment.both) == posts_before + 1
        verifies = [_requests_count(i, "GET", "/auth/verify") - before
                    for i, before in zip(deployment.both, verifies_before)]
        assert all(n > 0 for n in verifies), f"verify requests per instance: {verifies}: not balanced"

        deployment.two.crash()
        for _ in range(4):
            r = get(f"{app}{APP_PREFIX}/page")
            assert r.status_code == 200 and r.json()["user"] == ["lb"], "losing an instance lost the session"
        account = get(f"{auth}/")
        token = csrf_in(account.text)
        assert s.post(f"{auth}/logout", data={"csrf_token": token}, allow_redirects=False,
                      timeout=30).status_code == 303
        r = get(f"{app}{APP_PREFIX}/page")
        assert r.status_code == 302 and r.headers["Location"].startswith(f"https://{AUTH_HOST}"), r.status_code
