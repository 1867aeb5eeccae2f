"""Control: abuse resistance of POST /login (ASVS 5.0 V6.3.1, V6.1.1, V2.4.1, V6.3.8, V16.5.2, V15.3.4).

Each test plays one attack on the login throttle through the real HTTP interface:

- guessing many passwords from one address (per-client limit, Flask-Limiter, real time);
- guessing one account's password from ever new addresses, IPv4 or a whole IPv6 /64 (per-account
  back-off, moved along with the ``clock`` fixture);
- spoofing X-Forwarded-For to get fresh addresses, or to lock a victim's address out;
- flooding an account so that its owner is locked out (known-device cookies), forging that cookie
  or bringing one from another account;
- spraying many accounts (global limit), racing parallel requests past the check;
- telling which accounts exist, or which limit fired, from the 429;
- making the service fail open by breaking its rate-limit storage.

Every throttled attempt is also checked to have run no argon2 at all (the hasher is counted).
The per-client limit uses real time, so per-account tests give each attempt its own address.
"""

from __future__ import annotations

import collections
import io
import itertools
import json
import os
import re
import sys
import threading
import time
import tomllib
import types
import uuid
from pathlib import Path

import pytest

from authsvc.server import cli
from authsvc.web.errors import respond
from authsvc.core.throttle import Verdict, success_verdict, window_index
from tests.conftest import (
    PASSWORD,
    STRONG_KEY,
    TEST_POLICY,
    add_user,
    build_app,
    csrf,
    csrf_in,
    make_env,
    new_client,
)

WRONG = "not the password at all 1234"
DEVICE = "__Host-authsvc_device"
HOST = "auth.example.test"
_ips = itertools.count(1)


# --- helpers ---------------------------------------------------------------------------------------

def fresh_ip() -> str:
    """A never-used IPv4 address: an attacker with a botnet."""
    n = next(_ips)
    return f"198.{18 + n // 65000 % 2}.{n // 250 % 250}.{n % 250 + 1}"


def policy_file(tmp_path: Path, argon2: dict | None = None, **throttle) -> str:
    """The test policy (cheap argon2) with ``[throttle]`` (and ``[argon2]``) keys overridden."""
    sections = tomllib.loads(Path(TEST_POLICY).read_text())
    sections.setdefault("argon2", {}).update(argon2 or {})
    sections.setdefault("throttle", {}).update(throttle)
    lines = []
    for name, values in sections.items():
        lines += [f"[{name}]"] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = tmp_path / f"policy-{uuid.uuid4().hex[:8]}.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class Browser:
    """One browser: its own cookies (session, CSRF token, device cookie), address set per request."""

    def __init__(self, app, ip: str | None = None) -> None:
        self.client = new_client(app)
        self.ip = ip
        self.last_ip = ip
        self.token = None

    def post_login(self, username: str, password: str = WRONG, *, ip: str | None = None, headers=None):
        if self.token is None:
            self.token = csrf(self.client)
        self.last_ip = ip or self.ip or fresh_ip()
        environ = {"REMOTE_ADDR": self.last_ip}
        return self.client.post("/login", data={"csrf_token": self.token, "username": username,
                                                "password": password},
                                headers=headers or {}, environ_base=environ)

    def logout(self):
        """Sign out from the address that signed in (the session is bound to it)."""
        environ = {"REMOTE_ADDR": self.last_ip}
        page = self.client.get("/", environ_base=environ)
        token = csrf_in(page.get_data(as_text=True))
        assert self.client.post("/logout", data={"csrf_token": token}, environ_base=environ).status_code == 303
        self.token = None

    @property
    def device_cookie(self):
        c = self.client.get_cookie(DEVICE, domain=HOST)
        return c.value if c else None


@pytest.fixture
def app(tmp_path, clock):
    """The test app without throttle.successes_per_account: most tests here sign one account in
    many times to try another control (device limits, back-off, the global window), which that
    limit would cut short. It has its own tests (below, on the default policy)."""
    return build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, successes_per_account=[]))


@pytest.fixture
def argon2_calls(svc, monkeypatch):
    """How many argon2 verifications ran (a throttled attempt must run none)."""
    calls = []
    real = svc.hasher.verify

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(svc.hasher, "verify", counting)
    return calls


def slow_argon2(svc, monkeypatch) -> list:
    """argon2 verifications that take 0.3 s (every parallel request arrives while the first is
    still hashing); returns the list each call appends to."""
    calls = []
    real = svc.hasher.verify

    def slow_verify(*args, **kwargs):
        calls.append(1)
        time.sleep(0.3)
        return real(*args, **kwargs)
    monkeypatch.setattr(svc.hasher, "verify", slow_verify)
    return calls


def assert_throttled(resp, retry_after: int | None = None):
    assert resp.status_code == 429, resp.status_code
    assert resp.headers["Retry-After"].isdigit()
    if retry_after is not None:
        assert int(resp.headers["Retry-After"]) == retry_after
    assert "Too many attempts" in resp.get_data(as_text=True)


def fail_until_throttled(app, username: str, limit: int = 50) -> int:
    """Failures from fresh addresses until the first 429; returns how many got through."""
    browser = Browser(app)
    for n in range(limit):
        if browser.post_login(username).status_code == 429:
            return n
    raise AssertionError(f"no 429 after {limit} failures")


def comparable(resp, username: str) -> tuple:
    """Status, body and headers with the parts that differ per request anyway masked out."""
    body = resp.get_data(as_text=True).replace(f'value="{username}"', 'value="USER"')
    body = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value="T"', body)
    headers = sorted((k, re.sub(r"=[^;]*;", "=V;", v, count=1) if k == "Set-Cookie" else v)
                     for k, v in resp.headers.items() if k != "X-Request-ID")
    return resp.status_code, body, headers


# --- per-client limit (Flask-Limiter, real time) ------------------------------------------------------

@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_password_spray_from_one_address_is_cut_off_after_10_per_minute(app, argon2_calls):
    # Every attempt names a different account, so only the per-client limit can stop it.
    browser = Browser(app, ip="203.0.113.10")
    for n in range(10):
        assert browser.post_login(f"sprayed{n}").status_code == 401, f"attempt {n + 1} refused early"
    assert len(argon2_calls) == 10
    resp = browser.post_login("sprayed10")
    assert_throttled(resp)
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert len(argon2_calls) == 10  # the refused attempt ran no argon2
    assert Browser(app, ip="203.0.113.11").post_login("sprayed11").status_code == 401  # others unaffected


class FakeTime(types.SimpleNamespace):
    """Stands in for the ``time`` module inside authsvc.web.limiter's memory storage, so an hour can pass."""

    def __init__(self) -> None:
        super().__init__(offset=0.0)

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name):  # monotonic, sleep, ...: the real ones
        return getattr(time, name)


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_slow_spray_from_one_address_is_cut_off_after_100_per_hour(app, monkeypatch, argon2_calls):
    fake = FakeTime()
    monkeypatch.setattr("authsvc.web.limiter.time", fake)
    browser = Browser(app, ip="203.0.113.20")
    for n in range(100):
        if n and n % 10 == 0:
            fake.offset += 61  # stay under 10 per minute
        assert browser.post_login(f"slow{n}").status_code == 401, f"attempt {n + 1} refused early"
    fake.offset += 61
    resp = browser.post_login("slow100")
    assert_throttled(resp)
    assert 60 < int(resp.headers["Retry-After"]) <= 3600  # the hourly limit, not the minute one
    assert len(argon2_calls) == 100


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_rotating_addresses_inside_one_ipv6_64_shares_one_bucket(app):
    browser = Browser(app)
    for n in range(10):
        assert browser.post_login(f"v6user{n}", ip=f"2001:db8:1:2::{n + 1:x}").status_code == 401
    assert_throttled(browser.post_login("v6user10", ip="2001:db8:1:2:ffff:ffff:ffff:ffff"))
    assert browser.post_login("v6user11", ip="2001:db8:1:3::1").status_code == 401  # another /64


@pytest.mark.asvs("V15.3.4", "V6.3.1")
def test_new_x_forwarded_for_per_request_gets_nothing_without_trusted_proxies(app, argon2_calls):
    browser = Browser(app, ip="203.0.113.30")
    statuses = [browser.post_login(f"xff{n}", headers={"X-Forwarded-For": fresh_ip(), "X-Real-IP": fresh_ip(),
                                                         "Forwarded": f"for={fresh_ip()}"}).status_code
                for n in range(12)]
    assert statuses == [401] * 10 + [429] * 2
    assert len(argon2_calls) == 10


@pytest.mark.asvs("V15.3.4", "V6.3.1")
def test_victim_address_in_x_forwarded_for_does_not_lock_the_victim_out(app):
    victim = "192.0.2.55"
    attacker = Browser(app, ip="203.0.113.40")
    for n in range(11):
        attacker.post_login(f"frame{n}", headers={"X-Forwarded-For": victim})
    assert_throttled(attacker.post_login("frame11", headers={"X-Forwarded-For": victim}))
    assert Browser(app, ip=victim).post_login("frame12").status_code == 401


@pytest.mark.asvs("V15.3.4", "V6.3.1")
def test_one_trusted_proxy_keys_on_the_hop_it_appended_not_the_spoofed_one(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_TRUSTED_PROXY_NETWORKS="10.0.0.0/24")
    proxy = "10.0.0.1"
    real = "203.0.113.50"
    browser = Browser(app, ip=proxy)
    for n in range(10):  # the attacker puts a new spoofed address first each time; the proxy appends the real one
        assert browser.post_login(f"hop{n}", headers={"X-Forwarded-For": f"{fresh_ip()}, {real}"}).status_code == 401
    assert_throttled(browser.post_login("hop10", headers={"X-Forwarded-For": f"{fresh_ip()}, {real}"}))
    # Another client behind the same proxy is not the attacker, even if it names the attacker first.
    resp = browser.post_login("hop11", headers={"X-Forwarded-For": f"{real}, 198.51.100.9"})
    assert resp.status_code == 401


# --- sign-ins refused before the view count toward the per-client limit ----------------------------------

SIGN_INS = ["/login", "/login/mfa", "/login/passkey", "/login/mfa/passkey"]
PASSKEY_SIGN_INS = ("/login/passkey", "/login/mfa/passkey")
EVIL = "https://evil.example.test"
FORM = "application/x-www-form-urlencoded"


class Unread(io.BytesIO):
    """A request body the service must never read (reading it fails the request with a 500)."""

    def read(self, *args):
        raise AssertionError("the body of a refused request was read")

    readline = read1 = readinto = read


def refused_before_the_view(app, c, path: str, kind: str):
    """POST ``path`` as ``kind`` would: each is refused by a hook that runs before the view (and so
    before the per-client limit wrapped around it). Returns the response."""
    token = csrf(c)
    fields = {"username": "mallory", "password": WRONG, "code": "123456"}
    if kind == "cross-site":  # another site's page posts a form with a token it obtained
        return c.post(path, data={"csrf_token": token, **fields},
                      headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    if kind in ("cross-site-unread-body", "cross-site-unread-form"):  # the refusal, its count and every
        # after_request hook (the CSP form-action one of authsvc.web.views.oidc among them) read none of the body
        content_type = "application/json" if kind == "cross-site-unread-body" else FORM
        return c.post(path, input_stream=Unread(b"a" * 60000), content_type=content_type, content_length=60000,
                      headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    if kind == "two-session-cookies":  # a sibling host planted a session cookie beside the browser's own
        # (Werkzeug's test client keeps one cookie per name, so the header is written out.)
        name = app.extensions["authsvc"].cookies.session
        jarless = new_client(app, use_cookies=False)
        jarless.environ_base["REMOTE_ADDR"] = c.environ_base["REMOTE_ADDR"]
        return jarless.post(path, data={"csrf_token": token, **fields}, headers={"Cookie": f"{name}=a; {name}=b"})
    if kind == "no-csrf-token":
        return c.post(path, data=fields)
    if kind == "forged-csrf-token":
        return c.post(path, data={"csrf_token": token[:-4] + "AAAA", **fields})
    if kind == "undecodable-body":  # percent-escapes that are not UTF-8, in the token too
        return c.post(path, data=f"csrf_token=%ff%fe{token}&username=%ff&password=%c3", content_type=FORM)
    if kind == "json-without-header-token":  # the passkey scripts' content type, a form's token-less
        return c.post(path, data=json.dumps({"csrf_token": token, **fields}), content_type="application/json")
    if kind == "malformed-multipart":  # no boundary: nothing parses, so no token either
        return c.post(path, data=f"csrf_token={token}", content_type="multipart/form-data")
    raise AssertionError(kind)


REFUSED = {  # kind -> the refusal's own status
    "cross-site": 403, "cross-site-unread-body": 403, "cross-site-unread-form": 403, "two-session-cookies": 400, "no-csrf-token": 400,
    "forged-csrf-token": 400, "undecodable-body": 400, "json-without-header-token": 400, "malformed-multipart": 400,
}


def well_formed_attempt(c, path: str):
    """A sign-in attempt the hooks let through to the view (and its per-client limit)."""
    if path in PASSKEY_SIGN_INS:
        return c.post(path, data="{}", content_type="application/json", headers={"X-CSRF-Token": csrf(c)})
    return c.post(path, data={"csrf_token": csrf(c), "username": "mallory", "password": WRONG, "code": "123456"})


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("path", SIGN_INS)
@pytest.mark.parametrize("kind", list(REFUSED))
def test_the_nth_sign_in_refused_before_the_view_gets_429_and_spends_the_addresses_budget(app, user, path, kind):
    """The cross-site, two-cookie and CSRF checks refuse in hooks that run before the view, so before
    its per-client limit: such posts were never counted, and one address could send them without end
    (a CSRF check reads the body, up to 64 KiB). Now the 11th in a minute is 429 (policy: 10 a
    minute), in the budget the address's sign-ins use; another address's sign-in is unaffected."""
    ip = fresh_ip()
    c = new_client(app)
    c.environ_base["REMOTE_ADDR"] = ip
    statuses = [refused_before_the_view(app, c, path, kind).status_code for _ in range(12)]
    assert statuses == [REFUSED[kind]] * 10 + [429] * 2, statuses
    # The same budget: the address's next attempt that would reach the view is refused too.
    assert well_formed_attempt(c, path).status_code == 429
    # Another address: its refusal is its own, and its owner signs in.
    other = new_client(app)
    other.environ_base["REMOTE_ADDR"] = fresh_ip()
    assert refused_before_the_view(app, other, path, kind).status_code == REFUSED[kind]
    assert other.post("/login", data={"csrf_token": csrf(other), "username": "alice",
                                      "password": PASSWORD}).status_code == 303


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("kind", ["cross-site", "forged-csrf-token"])
def test_a_device_cookie_does_not_exempt_a_sign_in_refused_before_the_view(app, user, kind):
    """A known device's well-formed sign-ins have a budget of their own; a post no page of this site
    sends is no owner's sign-in and spends the anonymous per-client budget, device cookie or not."""
    owner = Browser(app, ip=fresh_ip())
    assert owner.post_login("alice", PASSWORD).status_code == 303  # the one anonymous attempt so far
    c = owner.client
    c.delete_cookie(app.extensions["authsvc"].cookies.session, domain=HOST)  # keep only the device cookie
    c.environ_base["REMOTE_ADDR"] = owner.ip
    statuses = [refused_before_the_view(app, c, "/login", kind).status_code for _ in range(10)]
    assert statuses == [REFUSED[kind]] * 9 + [429], statuses


@pytest.mark.asvs("V16.5.2", "V6.3.1")
@pytest.mark.parametrize("kind", ["cross-site", "no-csrf-token"])
def test_a_sign_in_refused_before_the_view_fails_closed_when_the_ratelimit_storage_is_down(tmp_path, clock, kind):
    """Counting it needs the storage: down, the refusal is a 503 as a sign-in would be, never a 500."""
    app = build_app(tmp_path, clock, AUTHSVC_RATELIMIT_STORAGE_URI=DEAD_STORAGE)
    c = new_client(app)
    resp = refused_before_the_view(app, c, "/login", kind)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
    assert "Traceback" not in resp.get_data(as_text=True)


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("spelling", ["ALICE", " Alice ", "ａｌｉｃｅ", "ＡＬＩＣＥ", "Alice\t"])
def test_authelia_cve_2026_47203_failures_under_any_spelling_share_one_back_off(app, user, spelling):
    """Authelia CVE-2026-47203's class: the name not canonicalised before the throttle, so another
    spelling of the account gets a fresh budget. The failures counted under "alice" back off every
    spelling that signs in as alice (the right password too), and guesses alternating spellings
    reach the back-off after exactly as many failures as one spelling does."""
    browser = Browser(app)
    allowed = app.extensions["authsvc"].policy.throttle.failures_before_backoff
    for _ in range(allowed):
        assert browser.post_login("alice").status_code == 401
    assert_throttled(browser.post_login(spelling, PASSWORD), 30)


def test_guesses_alternating_spellings_back_off_after_as_many_failures_as_one(app, user):
    spellings = ["alice", "ALICE", " Alice ", "ａｌｉｃｅ", "ＡＬＩＣＥ"]
    browser = Browser(app)
    for n in range(50):
        if browser.post_login(spellings[n % len(spellings)]).status_code == 429:
            break
    assert n == app.extensions["authsvc"].policy.throttle.failures_before_backoff


# --- per-account back-off (the clock fixture moves time) --------------------------------------------

@pytest.mark.asvs("V6.3.1", "V6.1.1")
def test_guessing_one_account_from_new_addresses_backs_off_30s_then_doubling(app, user, clock, argon2_calls):
    browser = Browser(app)  # every attempt from a fresh address: IP rotation buys nothing
    for n in range(5):
        assert browser.post_login("alice").status_code == 401, f"failure {n + 1} refused early"
    expected = [30, 60, 120, 240, 480, 900, 900]
    for wait in expected:
        assert_throttled(browser.post_login("alice"), wait)
        clock.advance(wait - 1)
        assert_throttled(browser.post_login("alice"), 1)  # not a second early
        clock.advance(1)
        assert browser.post_login("alice").status_code == 401
    assert len(argon2_calls) == 5 + len(expected)


@pytest.mark.asvs("V6.3.1")
def test_correct_password_is_refused_while_backing_off_with_the_same_response(app, user, argon2_calls):
    browser = Browser(app)
    for _ in range(5):
        browser.post_login("alice")
    wrong = browser.post_login("alice", WRONG)
    right = browser.post_login("alice", PASSWORD)
    assert_throttled(right, 30)
    assert comparable(right, "alice") == comparable(wrong, "alice")
    assert len(argon2_calls) == 5


@pytest.mark.asvs("V6.3.1")
def test_burst_straddling_a_window_boundary_still_backs_off(app, user, clock):
    # Four failures late in one 15-minute period and one early in the next: a fixed window would
    # count 4 + 1; the window slides, so five within 900 s back off.
    browser = Browser(app)
    clock.advance(900 - clock.now % 900 - 10)
    for _ in range(4):
        assert browser.post_login("alice").status_code == 401
    clock.advance(20)
    assert browser.post_login("alice").status_code == 401
    assert_throttled(browser.post_login("alice"), 30)


@pytest.mark.asvs("V6.3.1", "V6.1.1")
def test_failures_spread_wider_than_the_window_never_back_off(app, user, clock):
    browser = Browser(app)
    for _ in range(12):  # one every 225 s: at most 4 in any 900 s
        assert browser.post_login("alice").status_code == 401
        clock.advance(225)


@pytest.mark.asvs("V6.3.1")
def test_success_resets_the_failure_count(app, user, clock):
    browser = Browser(app)
    for _ in range(4):
        assert browser.post_login("alice").status_code == 401
    assert browser.post_login("alice", PASSWORD).status_code == 303
    browser.logout()
    for n in range(5):
        assert browser.post_login("alice").status_code == 401, f"failure {n + 1} after the success refused"
    assert_throttled(browser.post_login("alice"), 30)


@pytest.mark.asvs("V6.3.1", "V6.1.1")
def test_a_hundred_consecutive_failures_stop_anonymous_attempts_until_unlocked(app, user, svc, clock,
                                                                               argon2_calls):
    browser = Browser(app)
    for n in range(100):
        assert browser.post_login("alice").status_code == 401, f"failure {n + 1} refused"
        clock.advance(901)  # wait out every back-off: only the NIST cap is left
    clock.advance(30 * 86400)
    assert_throttled(browser.post_login("alice", PASSWORD))
    assert len(argon2_calls) == 100
    svc.throttle.unlock("alice")  # `authsvc user unlock alice`
    assert browser.post_login("alice", PASSWORD).status_code == 303


# --- known devices ---------------------------------------------------------------------------------------

def owner_with_device(app) -> Browser:
    owner = Browser(app, ip="192.0.2.10")
    assert owner.post_login("alice", PASSWORD).status_code == 303
    assert owner.device_cookie
    owner.logout()
    return owner


@pytest.mark.asvs("V6.3.1", "V6.1.1")
def test_attacker_flooding_the_account_does_not_lock_out_the_owners_browser(app, user, argon2_calls):
    owner = owner_with_device(app)
    attacker = Browser(app)
    for _ in range(30):
        attacker.post_login("alice")
    assert_throttled(attacker.post_login("alice", PASSWORD))  # even the right password, anonymously
    calls = len(argon2_calls)
    assert owner.post_login("alice", PASSWORD).status_code == 303
    assert len(argon2_calls) == calls + 1
    # The owner's login hands the attacker no fresh attempts.
    assert_throttled(attacker.post_login("alice"))


@pytest.mark.asvs("V6.3.1", "V6.1.1")
def test_attacker_behind_the_owners_address_does_not_lock_out_the_owners_browser(app, user, argon2_calls):
    owner = owner_with_device(app)
    nat = owner.ip  # the attacker shares the owner's address (office NAT, or a spoofed hop)
    attacker = Browser(app, ip=nat)
    statuses = [attacker.post_login(f"guess{n}") for n in range(11)]
    assert_throttled(statuses[-1])
    assert owner.post_login("alice", PASSWORD).status_code == 303


@pytest.mark.asvs("V6.3.1")
def test_a_device_cookie_does_not_lift_the_per_client_limit_for_other_accounts(app, user):
    owner = owner_with_device(app)  # a genuine cookie, but for alice
    attacker = Browser(app, ip="203.0.113.90")
    attacker.client.set_cookie(DEVICE, owner.device_cookie, domain=HOST)
    statuses = [attacker.post_login(f"not-alice-{n}").status_code for n in range(11)]
    assert statuses == [401] * 10 + [429]


@pytest.mark.asvs("V6.3.1")
def test_a_stolen_device_cookie_is_throttled_on_its_own(app, user):
    owner = owner_with_device(app)
    for _ in range(5):
        assert owner.post_login("alice").status_code == 401
    assert_throttled(owner.post_login("alice"), 30)


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("forgery", ["garbage", "truncated", "other-key", "other-account", "too-long"])
def test_forged_or_foreign_device_cookie_gets_the_anonymous_bucket(app, user, forgery):
    from itsdangerous import URLSafeTimedSerializer

    add_user(app, "mallory")
    owner = owner_with_device(app)
    genuine = owner.device_cookie
    mallory = Browser(app, ip="192.0.2.66")
    assert mallory.post_login("mallory", PASSWORD).status_code == 303
    cookie = {
        "garbage": "eyJhIjoieCJ9.abc.def",
        "truncated": genuine[:-3],
        "other-key": URLSafeTimedSerializer("x" * 48, salt="authsvc.device").dumps(
            {"a": "0" * 32, "d": "A" * 22}),
        "other-account": mallory.device_cookie,
        "too-long": genuine + "A" * 600,
    }[forgery]
    fail_until_throttled(app, "alice")
    attacker = Browser(app)
    attacker.client.set_cookie(DEVICE, cookie, domain=HOST)
    assert_throttled(attacker.post_login("alice", PASSWORD))


# --- known devices cannot take the service's capacity (security review, finding 1) ----------------------
#
# The review's attack: an account holder mints device cookies (each successful login used to issue a
# new known device, without limit), then floods correct-password logins with them: known devices
# were exempt from every per-client limit and the global limit, and their argon2 queue unbounded.

SESSION = "__Host-authsvc_session"
# The default policy's known-device limits (test.toml inherits them), written out so that each attack
# below runs, and fails, on code that has no such limits: test_the_known_device_defaults_are_these.
KNOWN_PER_CLIENT = 30   # throttle.per_client_known_device, per minute
PER_DEVICE = 10         # throttle.per_device, per minute
CAP = 10                # throttle.max_devices_per_account


def again(browser: Browser, username: str = "alice", password: str = PASSWORD, *, ip: str | None = None):
    """Sign in once more from this browser, signed out first (its device cookie kept)."""
    browser.client.delete_cookie(SESSION, domain=HOST)
    browser.token = None
    return browser.post_login(username, password, ip=ip)


def mint_devices(app, n: int, username: str = "alice") -> list[Browser]:
    """``n`` browsers that each signed in once, from an address of their own: n device cookies."""
    browsers = [Browser(app, ip=fresh_ip()) for _ in range(n)]
    for b in browsers:
        assert b.post_login(username, PASSWORD).status_code == 303
        assert b.device_cookie
    return browsers


def known_devices(svc, username: str = "alice") -> int:
    return svc.known_devices.count(svc.accounts.by_username(username).id)


def throttled_reasons(caplog) -> list[str]:
    return [json.loads(r.getMessage()).get("reason") for r in caplog.records
            if r.name == "authsvc.audit" and '"login_throttled"' in r.getMessage()]


def test_the_known_device_defaults_are_these(svc):
    t = svc.policy.throttle
    assert (t.per_client_known_device, t.per_device, t.max_devices_per_account) == \
        ((f"{KNOWN_PER_CLIENT} per minute", "300 per hour"), (f"{PER_DEVICE} per minute", "60 per hour"), CAP)


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_device_cookies_minted_from_one_address_are_cut_off_by_the_known_device_per_client_limit(
        app, user, svc, caplog):
    # The review's attack in small: ten device cookies of the attacker's own account, then
    # correct-password logins round them all from one address.
    devices = mint_devices(app, 10)
    amount = KNOWN_PER_CLIENT
    statuses = [again(devices[n % 10], ip="203.0.113.100").status_code for n in range(amount + 5)]
    assert statuses == [303] * amount + [429] * 5, statuses
    assert set(throttled_reasons(caplog)) == {"per_client_known_device"}
    # Counted apart: the same address still has its anonymous budget (and another account's
    # known devices their own, see below).
    assert Browser(app, ip="203.0.113.100").post_login("somebody").status_code == 401


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_one_device_cookie_from_ever_new_addresses_is_cut_off_by_its_per_device_limit(app, user, svc, caplog):
    [device] = mint_devices(app, 1)
    amount = PER_DEVICE
    statuses = [again(device).status_code for _ in range(amount + 3)]  # a fresh address every time
    assert statuses == [303] * amount + [429] * 3, statuses
    assert set(throttled_reasons(caplog)) == {"per_device"}
    # Another device of the same account has its own budget.
    [other] = mint_devices(app, 1)
    assert again(other).status_code == 303


@pytest.mark.asvs("V6.3.1")
def test_an_account_holder_behind_the_owners_address_cannot_spend_the_owners_known_device_budget(app, user, svc):
    add_user(app, "mallory")
    nat = "192.0.2.200"
    owner = owner_with_device(app)
    mallory = mint_devices(app, 3, "mallory")
    amount = KNOWN_PER_CLIENT
    statuses = [again(mallory[n % 3], "mallory", ip=nat).status_code for n in range(amount + 1)]
    assert statuses[-1] == 429
    assert again(owner, ip=nat).status_code == 303


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_an_account_has_at_most_max_devices_per_account_known_devices_least_recently_used_forgotten(
        app, user, svc, clock):
    cap = CAP
    devices = mint_devices(app, cap + 2)
    # The two oldest cookies are still validly signed, but no longer known: they are anonymous,
    # so the account's anonymous back-off holds them as it holds any attacker.
    fail_until_throttled(app, "alice")
    for old in devices[:2]:
        assert_throttled(again(old))
    for kept in devices[2:4]:
        assert again(kept).status_code == 303
    assert known_devices(svc) == cap
    # Using a device makes it the most recently used: minting one more forgets the least recently
    # used one (between equal times, the one registered first), not the one just used.
    clock.advance(1)
    assert again(devices[3]).status_code == 303
    svc.throttle.unlock("alice")
    mint_devices(app, 1)
    assert known_devices(svc) == cap
    ids = [svc.devices.serializer.loads(b.device_cookie)["d"] for b in devices]
    assert [svc.known_devices.is_known("alice", i) for i in ids[2:5]] == [False, True, True]


@pytest.mark.asvs("V6.3.1")
def test_a_known_devices_success_keeps_its_id_and_adds_no_row(app, user, svc):
    owner = owner_with_device(app)
    first = svc.devices.serializer.loads(owner.device_cookie)["d"]
    for _ in range(3):
        assert again(owner).status_code == 303
    assert svc.devices.serializer.loads(owner.device_cookie)["d"] == first
    assert known_devices(svc) == 1


@pytest.mark.asvs("V6.3.1")
def test_a_device_cookie_replayed_after_its_device_was_forgotten_is_anonymous(app, user, svc):
    cap = CAP
    owner = owner_with_device(app)
    copy = owner.device_cookie  # a copy kept by whoever had the browser
    mint_devices(app, cap)     # the owner's device is now the least recently used: forgotten
    fail_until_throttled(app, "alice")
    replay = Browser(app)
    replay.client.set_cookie(DEVICE, copy, domain=HOST)
    assert_throttled(replay.post_login("alice", PASSWORD))


@pytest.mark.asvs("V6.3.1")
def test_a_device_id_registered_to_another_account_is_not_known_for_this_one(app, user, svc):
    # Even a cookie signed by the server (as with a leaked key) for alice, carrying the id of a
    # device registered to mallory, is anonymous: the registry is per account.
    add_user(app, "mallory")
    [mallory] = mint_devices(app, 1, "mallory")
    mallory_id = svc.devices.serializer.loads(mallory.device_cookie)["d"]
    fail_until_throttled(app, "alice")
    forged = Browser(app)
    forged.client.set_cookie(DEVICE, svc.devices.issue("alice", mallory_id), domain=HOST)
    assert_throttled(forged.post_login("alice", PASSWORD))


@pytest.mark.asvs("V6.3.1", "V7.4.3")
@pytest.mark.parametrize("how", ["password_change", "cli_passwd", "cli_disable", "cli_revoke"])
def test_ending_the_accounts_sessions_forgets_its_known_devices(app, user, svc, monkeypatch, tmp_path, how):
    """Whoever minted device cookies with the old password keeps no known-device budget (its own
    per-client limit, a failure bucket of its own per device) for guessing the new one."""
    from tests.conftest import run_cli

    devices = mint_devices(app, 3)
    new_password = "a brand new passphrase 2027"
    password = PASSWORD if how in ("cli_disable", "cli_revoke") else new_password
    if how == "password_change":
        page = devices[0].client.get("/", environ_base={"REMOTE_ADDR": devices[0].last_ip})
        token = csrf_in(page.get_data(as_text=True))
        resp = devices[0].client.post("/account/password", environ_base={"REMOTE_ADDR": devices[0].last_ip},
                                      data={"csrf_token": token, "current_password": PASSWORD,
                                            "new_password": new_password})
        assert resp.status_code == 200, resp.status_code
    elif how == "cli_passwd":
        assert run_cli(monkeypatch, tmp_path, "user", "passwd", "alice", "--password-stdin",
                       stdin=new_password + "\n") == 0
    elif how == "cli_disable":
        assert run_cli(monkeypatch, tmp_path, "user", "disable", "alice") == 0
    else:
        assert run_cli(monkeypatch, tmp_path, "sessions", "revoke", "alice") == 0
    if how == "cli_disable":
        assert run_cli(monkeypatch, tmp_path, "user", "enable", "alice") == 0
    # The old device cookies are anonymous now: the account's anonymous back-off holds them.
    fail_until_throttled(app, "alice")
    for old in devices[1:]:
        assert_throttled(again(old, password=password))
    assert known_devices(svc) == 0


@pytest.mark.asvs("V6.3.1", "V7.4.1")
def test_a_stolen_remember_cookie_given_away_by_its_replay_takes_the_device_cookie_down_with_it(app, user, svc,
                                                                                                clock):
    """The thief copied the owner's browser: remember-me cookie and device cookie. When the copy's
    rotated remember cookie comes back (theft: every session and token of the user ends), the
    copied device cookie must not keep the owner's known-device budget for guessing the password
    after a change: it is anonymous, held by the account's back-off like any attacker."""
    owner = Browser(app, ip="192.0.2.10")
    environ = {"REMOTE_ADDR": owner.ip}
    form = {"csrf_token": csrf(owner.client), "username": "alice", "password": PASSWORD, "remember": "on"}
    assert owner.client.post("/login", data=form, environ_base=environ).status_code == 303
    remember = svc.cookies.remember
    copied = {name: owner.client.get_cookie(name, domain=HOST).value for name in (DEVICE, remember)}
    thief = Browser(app, ip="203.0.113.66")
    for name, value in copied.items():
        thief.client.set_cookie(name, value, domain=HOST)
    clock.advance(svc.policy.sessions.idle_timeout_seconds + 1)  # the owner's session idled out
    assert owner.client.get("/login", environ_base=environ).status_code == 303  # restored: rotated
    assert owner.client.get("/", environ_base=environ).status_code == 200  # and the new session used
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds + 1)
    thief.client.get("/login", environ_base={"REMOTE_ADDR": thief.ip})  # the copy comes back: theft
    assert svc.sessions.list_live(user.id) == []
    assert known_devices(svc) == 0
    fail_until_throttled(app, "alice")
    thief.client.delete_cookie(remember, domain=HOST)
    assert_throttled(thief.post_login("alice", PASSWORD))


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_successes_count_in_the_global_limit(tmp_path, clock, caplog):
    # Without successes_per_account, which would refuse one account's successes first.
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, global_logins="5 per minute",
                                                                successes_per_account=[]))
    add_user(app)
    mint_devices(app, 5)  # five correct passwords from five addresses: five argon2 runs
    assert_throttled(Browser(app).post_login("alice", PASSWORD))
    assert throttled_reasons(caplog) == ["global"]
    clock.advance(60)
    assert Browser(app).post_login("alice", PASSWORD).status_code == 303


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_known_device_logins_count_in_the_global_limit_but_are_never_refused_by_it(tmp_path, clock, caplog):
    # Without successes_per_account, which would refuse one account's successes first.
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, global_logins="3 per minute",
                                                                successes_per_account=[]))
    add_user(app)
    owner = owner_with_device(app)          # 1 (anonymous)
    assert again(owner).status_code == 303  # 2 (known)
    assert again(owner).status_code == 303  # 3 (known)
    assert_throttled(Browser(app).post_login("alice", PASSWORD))  # the known ones filled it
    assert again(owner).status_code == 303  # still never refused by it
    assert throttled_reasons(caplog) == ["global"]


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_parallel_device_cookie_logins_stay_within_the_known_device_limits(app, user, svc):
    # Ten device cookies, each in its own thread, logging in as fast as they can from one address:
    # no more pass than the known-device per-client limit, whatever the interleaving.
    devices = mint_devices(app, 10)
    amount = KNOWN_PER_CLIENT
    statuses: list[int] = []
    lock = threading.Lock()

    def flood(b: Browser) -> None:
        for _ in range(6):
            status = again(b, ip="203.0.113.101").status_code
            with lock:
                statuses.append(status)
    threads = [threading.Thread(target=flood, args=(b,)) for b in devices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 60 and set(statuses) <= {303, 429, 503}, statuses
    assert 1 <= statuses.count(303) <= amount, statuses


@pytest.mark.asvs("V2.4.1", "V6.3.1")
def test_one_accounts_device_cookies_verify_one_at_a_time_so_other_accounts_known_devices_find_a_slot(
        app, user, svc, monkeypatch):
    # Ten device cookies of one account, all at the same moment: only one reaches argon2, the
    # others are refused at once ("busy"), so the account holds at most one known argon2 slot.
    add_user(app, "bob")
    devices = mint_devices(app, 10)
    [bob] = mint_devices(app, 1, "bob")
    for b in [*devices, bob]:
        b.client.delete_cookie(SESSION, domain=HOST)
        b.token = csrf(b.client)
    calls = slow_argon2(svc, monkeypatch)
    start = threading.Barrier(len(devices))
    statuses = []

    def attempt(b: Browser) -> None:
        start.wait()
        statuses.append(b.post_login("alice", PASSWORD).status_code)
    threads = [threading.Thread(target=attempt, args=(b,)) for b in devices]
    for t in threads:
        t.start()
    assert bob.post_login("bob", PASSWORD).status_code == 303  # another account's known device: its own gate
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [303] + [429] * 9, statuses
    assert len(calls) == 2  # one of alice's, and bob's
    assert [again(b).status_code for b in devices[:3]] == [303] * 3  # nothing left held


# --- global limit ------------------------------------------------------------------------------------

@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_spraying_many_accounts_hits_the_global_limit(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, global_logins="20 per minute"))
    add_user(app)
    owner = owner_with_device(app)  # its first login ran argon2 too: 1 of the 20
    calls = []
    real = app.extensions["authsvc"].hasher.verify
    app.extensions["authsvc"].hasher.verify = lambda *a, **k: calls.append(1) or real(*a, **k)
    sprayer = Browser(app)
    for n in range(19):
        assert sprayer.post_login(f"spray{n}").status_code == 401, f"failure {n + 1} refused early"
    clock.advance(15)
    assert_throttled(sprayer.post_login("spray19"), 45)
    assert_throttled(sprayer.post_login("alice", PASSWORD))  # anonymous attempts all wait
    assert len(calls) == 19
    assert owner.post_login("alice", PASSWORD).status_code == 303  # known devices are never refused by it
    clock.advance(45)
    assert sprayer.post_login("spray20").status_code == 401


# --- races ---------------------------------------------------------------------------------------------

@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_parallel_requests_cannot_overrun_the_account_throttle(app, user, svc, monkeypatch):
    browser = Browser(app)
    for _ in range(4):
        browser.post_login("alice")
    calls = slow_argon2(svc, monkeypatch)
    attackers = [Browser(app) for _ in range(12)]
    for a in attackers:
        a.token = csrf(a.client)
    start = threading.Barrier(len(attackers))
    statuses = []

    def attack(b):
        start.wait()
        statuses.append(b.post_login("alice").status_code)
    threads = [threading.Thread(target=attack, args=(a,)) for a in attackers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(calls) == 1, f"{len(calls)} parallel guesses reached argon2"
    assert sorted(statuses) == [401] + [429] * 11


@pytest.mark.asvs("V2.4.1")
def test_a_503_while_hashing_is_saturated_does_not_leave_the_account_gated(app, user, svc, monkeypatch):
    from authsvc.core.hashing import HashingBusy

    def busy(*args, **kwargs):
        raise HashingBusy(retry_after=3)
    monkeypatch.setattr(svc.hasher, "verify", busy)
    resp = Browser(app).post_login("alice", PASSWORD)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "3"
    monkeypatch.undo()
    assert Browser(app).post_login("alice", PASSWORD).status_code == 303


@pytest.mark.asvs("V2.4.1")
def test_flood_from_ever_new_addresses_does_not_spin_the_in_memory_sweeper(app, svc, monkeypatch):
    # limits' stock MemoryStorage starts a sweeper thread 10 ms after every write and each sweep
    # visits every key: a flood of new addresses made every request costlier as it went on.
    from authsvc.web.limiter import SweptMemoryStorage

    limiter = app.extensions["authsvc_limiter"]
    assert isinstance(limiter.storage, SweptMemoryStorage) and isinstance(svc.throttle.storage, SweptMemoryStorage)
    started = []
    real_timer = threading.Timer

    class CountingTimer(real_timer):
        def start(self):
            started.append(1)
            super().start()
    monkeypatch.setattr(threading, "Timer", CountingTimer)
    storage = SweptMemoryStorage()
    began = time.monotonic()
    for n in range(5000):
        storage.acquire_entry(f"LIMITER/v4:10.{n // 65536}.{n // 256 % 256}.{n % 256}/login", 10, 60)
        storage.incr(f"authsvc:acct:{n}:c", 60)
    assert len(started) <= 2 + int(time.monotonic() - began), f"{len(started)} sweeps for 10,000 writes"


@pytest.mark.asvs("V2.4.1")
def test_a_spray_of_new_usernames_leaves_one_key_each_past_the_back_off(clock):
    # A wrong password for a username nobody tried before must be remembered for the consecutive
    # count's whole memory (30 days), so a spray of ever new usernames costs storage for that long:
    # one key per username, not two (a slot counter beside the count doubled it).
    from authsvc.core.policy import load_policy
    from authsvc.core.throttle import Throttle
    from authsvc.web.limiter import SweptMemoryStorage

    rules = load_policy(TEST_POLICY).throttle
    lasting: dict[str, float] = {}

    class Recording(SweptMemoryStorage):
        def incr(self, key, expiry, amount=1):
            if expiry > rules.backoff_max_seconds + rules.failure_window_seconds + 60:  # past any block
                lasting[key] = expiry
            return super().incr(key, expiry, amount)

    throttle = Throttle(Recording(), rules, clock)
    names = [f"sprayed-{n}" for n in range(50)]
    for name in names:
        for _ in range(rules.failures_before_backoff + 2):  # into the back-off, every slot written
            with throttle.attempt(name, None) as attempt:
                if attempt.verdict.allowed:
                    attempt.record_failure()
            clock.advance(1)
    assert len(lasting) == len(names) and all(key.endswith(":anon:c") for key in lasting), sorted(lasting)[:4]
    assert set(lasting.values()) == {rules.consecutive_failure_memory_seconds}


def test_the_swept_storage_answers_as_limits_own_memory_storage(monkeypatch):
    # SweptMemoryStorage re-implements limits' MemoryStorage on its public interface: same counts,
    # same windows, under one frozen clock (each module's ``time``), through expiry and clearing.
    import random

    from limits.storage import MemoryStorage

    from authsvc.web.limiter import SweptMemoryStorage

    frozen = FakeTime()
    frozen.time = lambda: 1_900_000_000.0 + frozen.offset
    monkeypatch.setattr("limits.storage.memory.time", frozen)
    monkeypatch.setattr("authsvc.web.limiter.time", frozen)

    class Unstarted:
        """limits' expiry timer, never run: it would expire keys on another thread, at any moment
        between two of the steps below (the frozen clock jumps), and the comparison would race it."""

        def __init__(self, *args, **kwargs) -> None:
            pass

        def start(self) -> None:
            pass

        def is_alive(self) -> bool:
            return True

    import threading
    import types

    monkeypatch.setattr("limits.storage.memory.threading", types.SimpleNamespace(RLock=threading.RLock, Timer=Unstarted))
    ours, theirs = SweptMemoryStorage(), MemoryStorage()
    rng = random.Random(16)
    for step in range(3000):
        key, op = f"k{rng.randrange(3)}", rng.randrange(6)
        if op == 0:
            frozen.offset += rng.choice([0.5, 1, 3, 9, 11, 61])
        elif op == 1:
            limit, expiry = rng.choice([(3, 10), (5, 60)])
            assert ours.acquire_entry(key, limit, expiry) == theirs.acquire_entry(key, limit, expiry), step
        elif op == 2:
            (start, count), (their_start, their_count) = (s.get_moving_window(key, 5, 60) for s in (ours, theirs))
            assert count == their_count and (not count or start == their_start), step
        elif op == 3:
            assert ours.incr(f"c{key}", 30) == theirs.incr(f"c{key}", 30), step
        elif op == 4:
            assert ours.get(f"c{key}") == theirs.get(f"c{key}"), step
        elif rng.random() < 0.2:
            cleared = rng.choice([key, f"c{key}"])
            ours.clear(cleared)
            theirs.clear(cleared)
    ours.incr("ck0", 30)
    ours.reset()
    assert ours.get("ck0") == 0 and ours.get_moving_window("k0", 5, 60)[1] == 0


@pytest.mark.asvs("V2.4.1")
def test_hashing_flood_beyond_max_concurrent_gets_503_after_the_queue_timeout(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(
        tmp_path, argon2={"max_concurrent": 1, "queue_timeout_seconds": 0.3}))
    add_user(app)
    svc = app.extensions["authsvc"]
    holding, release = threading.Event(), threading.Event()

    def hold_the_only_slot() -> None:  # another request's argon2, for as long as the test needs
        with svc.hasher._slots.held():
            holding.set()
            release.wait(30)
    holder = threading.Thread(target=hold_the_only_slot)
    holder.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        resp = Browser(app).post_login("alice", PASSWORD)
        waited = time.monotonic() - began
    finally:
        release.set()
        holder.join(30)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
    assert 0.3 <= waited < 3
    assert Browser(app).post_login("alice", PASSWORD).status_code == 303  # slot free: no gate left behind


# --- hashing priority: a flood cannot take argon2 from known devices -----------------------------------

PRIORITY = {"max_concurrent": 2, "anonymous_max_concurrent": 1, "anonymous_queue": 1, "queue_timeout_seconds": 0.3}


@pytest.mark.asvs("V2.4.1", "V6.3.1")
def test_anonymous_logins_cannot_take_the_last_argon2_slot_from_a_known_device(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, argon2=PRIORITY))
    add_user(app)
    svc = app.extensions["authsvc"]
    owner = owner_with_device(app)
    newcomer = Browser(app, ip="192.0.2.11")  # the owner on a new browser: anonymous like an attacker
    with svc.hasher._anonymous.held():  # an attacker's verification holds the anonymous slot
        began = time.monotonic()
        resp = newcomer.post_login("alice", PASSWORD)
        waited = time.monotonic() - began
        assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
        assert 0.3 <= waited < 3  # it queued for the anonymous slot, then gave up
        assert owner.post_login("alice", PASSWORD).status_code == 303  # the reserved slot
    assert newcomer.post_login("alice", PASSWORD).status_code == 303  # nothing left held


@pytest.mark.asvs("V2.4.1")
def test_known_devices_keep_to_their_share_of_argon2_slots(tmp_path, clock):
    """The partition works both ways: with max_concurrent = 2 a process runs at most one argon2 per
    kind, so known devices logging in at once never run more argon2s than there are slots for."""
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, argon2=PRIORITY))
    add_user(app)
    svc = app.extensions["authsvc"]
    owner = owner_with_device(app)
    with svc.hasher._known.held():  # another known device's verification is running
        began = time.monotonic()
        resp = owner.post_login("alice", PASSWORD)
        assert resp.status_code == 503 and 0.3 <= time.monotonic() - began < 3
        assert Browser(app, ip="192.0.2.12").post_login("alice", PASSWORD).status_code == 303  # anonymous share
    assert owner.post_login("alice", PASSWORD).status_code == 303


@pytest.mark.asvs("V2.4.1")
def test_known_device_logins_beyond_the_known_queue_get_503_at_once_instead_of_a_server_thread_each(
        tmp_path, clock):
    # The known class's queue was unbounded: a flood of known-device logins tied up every server
    # thread, and /auth/verify waited behind them. Now at most known_queue (default 1) wait.
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(
        tmp_path, argon2={"max_concurrent": 2, "anonymous_max_concurrent": 1, "queue_timeout_seconds": 60}))
    add_user(app)
    svc = app.extensions["authsvc"]
    owner = owner_with_device(app)
    holding, release = threading.Event(), threading.Event()

    def hold_the_known_slot() -> None:
        with svc.hasher._known.held():
            holding.set()
            release.wait(60)
    holder = threading.Thread(target=hold_the_known_slot)
    queued = threading.Thread(target=lambda: svc.hasher.verify(None, "x", anonymous=False))
    answer = []
    login = threading.Thread(target=lambda: answer.append(owner.post_login("alice", PASSWORD)))
    holder.start()
    try:
        assert holding.wait(10)
        queued.start()  # another known device's verification waits for the slot: the queue is full
        deadline = time.monotonic() + 10
        while svc.hasher._known._waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        login.start()
        login.join(10)  # far less than the 60 s a queued login would wait
        assert not login.is_alive(), "a known-device login beyond the queue holds a server thread"
    finally:
        release.set()
        for t in (holder, queued, login):
            if t.ident is not None:
                t.join(70)
    assert answer[0].status_code == 503 and int(answer[0].headers["Retry-After"]) >= 1
    assert owner.post_login("alice", PASSWORD).status_code == 303  # nothing left held


def test_anonymous_slots_refuse_at_once_beyond_the_queue():
    from authsvc.core.hashing import HashingBusy, Slots

    slots = Slots(1, 1, timeout=30)
    got_it = threading.Event()

    def waiter() -> None:
        with slots.held():
            got_it.set()
    with slots.held():
        thread = threading.Thread(target=waiter)
        thread.start()
        deadline = time.monotonic() + 10
        while slots._waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert slots._waiting == 1
        began = time.monotonic()
        with pytest.raises(HashingBusy) as busy, slots.held():
            pass
        assert time.monotonic() - began < 5  # refused at once, not after the 30 s queue timeout
        assert busy.value.retry_after == 30
        assert not got_it.is_set()
    thread.join(10)
    assert got_it.is_set()  # the queued one got the slot when it was freed
    assert slots._waiting == 0
    with slots.held():  # and let it go again
        pass


def test_a_queue_timeout_frees_the_waiting_place():
    from authsvc.core.hashing import HashingBusy, Slots

    slots = Slots(1, 1, timeout=0.05)
    with slots.held():
        for _ in range(3):  # each waits, times out and leaves its place to the next
            with pytest.raises(HashingBusy), slots.held():
                pass
        assert slots._waiting == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
@pytest.mark.asvs("V2.4.1")
def test_anonymous_argon2_runs_at_lower_cpu_priority_and_known_devices_at_normal(app, user, svc, monkeypatch):
    seen = []
    real = svc.hasher._ph

    class Probe:
        def verify(self, stored, password):
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return real.verify(stored, password)

        def __getattr__(self, name):
            return getattr(real, name)
    monkeypatch.setattr(svc.hasher, "_ph", Probe())
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lowered = min(19, base + svc.policy.argon2.anonymous_nice)
    assert svc.policy.argon2.anonymous_nice == 10  # the default policy's
    attacker = Browser(app)
    assert attacker.post_login("alice").status_code == 401
    assert attacker.post_login("nobody").status_code == 401
    owner = owner_with_device(app)  # its first login is anonymous too
    assert owner.post_login("alice").status_code == 401  # known device, wrong password
    assert owner.post_login("alice", PASSWORD).status_code == 303
    thief = Browser(app)  # the owner's genuine cookie, presented for another account: anonymous
    thief.client.set_cookie(DEVICE, owner.device_cookie, domain=HOST)
    assert thief.post_login("bob").status_code == 401
    assert seen == [lowered, lowered, lowered, base, base, lowered]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the request thread untouched


# --- nothing to learn from a 429 -----------------------------------------------------------------------

@pytest.mark.asvs("V6.3.8")
def test_unknown_and_existing_accounts_throttle_identically(app, user, clock):
    def run(username):
        browser = Browser(app)
        out = []
        for step in range(8):
            out.append(comparable(browser.post_login(username), username))
            if step == 6:
                clock.advance(30)
        return out
    existing = run("alice")
    unknown = run("zelda")  # same length as "alice": even Content-Length must match
    assert [o[0] for o in existing] == [401] * 5 + [429, 429, 401]
    assert existing == unknown


@pytest.mark.asvs("V6.3.8")
def test_every_limit_answers_with_the_same_429_page(tmp_path, clock, caplog):
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, global_logins="7 per minute"))
    add_user(app)
    browser = Browser(app)
    for _ in range(5):
        browser.post_login("alice")
    per_account = browser.post_login("alice")          # 5 failures so far
    for n in range(2):
        browser.post_login(f"global{n}")
    global_ = browser.post_login("global2")           # 7 failures: the global limit
    for n in range(10):
        browser.post_login(f"client{n}", ip="203.0.113.60")
    per_client = browser.post_login("client10", ip="203.0.113.60")
    pages = []
    for resp in (per_account, global_, per_client):
        assert_throttled(resp)
        pages.append((resp.get_data(), sorted(resp.headers.keys()), resp.headers["Content-Type"]))
    assert pages[0] == pages[1] == pages[2]
    # Three different limits fired: only the audit log says which.
    reasons = [json.loads(r.getMessage()).get("reason") for r in caplog.records
               if r.name == "authsvc.audit" and '"login_throttled"' in r.getMessage()]
    assert reasons[:2] == ["backoff", "global"] and reasons[-1] == "per_client"


def test_throttled_api_responses_are_json(app):
    with app.test_request_context("/api/v1/session"):
        resp = respond(429, retry_after=30)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "30"
    assert resp.get_json() == {"error": "throttled", "message": "Too many attempts. Please wait and try again."}


# --- fail closed ---------------------------------------------------------------------------------------

DEAD_STORAGE = "redis://127.0.0.1:1"  # nothing listens on port 1: connection refused


@pytest.mark.asvs("V16.5.2", "V6.3.1")
def test_unreachable_ratelimit_storage_refuses_logins_with_503_not_unlimited(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_RATELIMIT_STORAGE_URI=DEAD_STORAGE)
    add_user(app)
    svc = app.extensions["authsvc"]
    calls = []
    real = svc.hasher.verify
    svc.hasher.verify = lambda *a, **k: calls.append(1) or real(*a, **k)
    for password in (WRONG, PASSWORD):
        resp = Browser(app).post_login("alice", password)
        assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
        assert "Traceback" not in resp.get_data(as_text=True)
    assert calls == []
    ready = new_client(app).get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["ratelimit_storage"] == "unavailable"


@pytest.mark.asvs("V16.5.2")
def test_throttle_storage_down_fails_closed_even_without_a_per_client_limit(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_RATELIMIT_STORAGE_URI=DEAD_STORAGE,
                    AUTHSVC_POLICY=policy_file(tmp_path, per_client=[]))
    add_user(app)
    resp = Browser(app).post_login("alice", PASSWORD)
    assert resp.status_code == 503 and resp.headers["Retry-After"]


@pytest.mark.asvs("V16.5.2")
def test_memory_fallback_keeps_logins_working_and_still_throttled(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_RATELIMIT_STORAGE_URI=DEAD_STORAGE,
                    AUTHSVC_POLICY=policy_file(tmp_path, storage_failure="memory"))
    add_user(app)
    assert Browser(app).post_login("alice", PASSWORD).status_code == 303
    assert fail_until_throttled(app, "alice") == 5
    browser = Browser(app, ip="203.0.113.70")
    assert [browser.post_login(f"mem{n}").status_code for n in range(11)] == [401] * 10 + [429]
    ready = new_client(app).get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["ratelimit_storage"] == "unavailable"


# --- shared storage ---------------------------------------------------------------------------------------

def redis_url_or_skip() -> str:
    url = os.environ.get("AUTHSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        import redis
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is "unreachable"
        message = f"Redis at {url} is unreachable ({type(exc).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return url


@pytest.mark.asvs("V6.3.1")
def test_two_instances_on_one_redis_share_every_count(tmp_path, clock):
    url = redis_url_or_skip()
    prefix = f"authsvc-test-{uuid.uuid4().hex}"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    apps = [build_app(tmp_path / name, clock, AUTHSVC_RATELIMIT_STORAGE_URI=url,
                      AUTHSVC_RATELIMIT_KEY_PREFIX=prefix) for name in ("a", "b")]
    try:
        for app in apps:
            add_user(app)
        browsers = [Browser(app) for app in apps]
        for n in range(5):  # alternate instances: each sees only half the failures locally
            assert browsers[n % 2].post_login("alice").status_code == 401
        assert_throttled(browsers[1].post_login("alice", PASSWORD), 30)
        assert_throttled(browsers[0].post_login("alice", PASSWORD), 30)
        ip = "203.0.113.80"
        for n in range(10):
            assert browsers[n % 2].post_login(f"shared{n}", ip=ip).status_code == 401
        assert_throttled(browsers[0].post_login("shared10", ip=ip))
        assert_throttled(browsers[1].post_login("shared11", ip=ip))
    finally:
        import redis
        conn = redis.Redis.from_url(url)
        keys = list(conn.scan_iter(f"*{prefix}*"))
        if keys:
            conn.delete(*keys)


# --- configuration audit ------------------------------------------------------------------------------------

@pytest.mark.asvs("V6.1.1")
@pytest.mark.parametrize("throttle, key", [
    ({"per_client": []}, "throttle.per_client"),
    ({"failures_before_backoff": 0}, "throttle.failures_before_backoff"),
    ({"failures_before_backoff": 21}, "throttle.failures_before_backoff"),
    ({"backoff_initial_seconds": 0}, "throttle backoff"),
    ({"backoff_max_seconds": 10}, "throttle backoff"),
    ({"per_client_known_device": []}, "throttle.per_client_known_device"),
    ({"per_device": []}, "throttle.per_device"),
    ({"max_devices_per_account": 0}, "throttle.max_devices_per_account"),
    ({"max_devices_per_account": 51}, "throttle.max_devices_per_account"),
    ({"successes_per_account": []}, "throttle.successes_per_account"),
])
def test_authsvc_check_warns_about_limits_that_are_off_or_too_loose(tmp_path, monkeypatch, capsys, throttle, key):
    env = make_env(tmp_path, AUTHSVC_POLICY=policy_file(tmp_path, **throttle))
    for name in [n for n in os.environ if n.startswith("AUTHSVC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("warning:") and key in line for line in out.splitlines()), out


def test_authsvc_check_is_quiet_about_the_shipped_limits(tmp_path, monkeypatch, capsys):
    for name in [n for n in os.environ if n.startswith("AUTHSVC_")]:
        monkeypatch.delenv(name)
    for name, value in make_env(tmp_path, AUTHSVC_SECRET_KEY=STRONG_KEY).items():
        monkeypatch.setenv(name, value)
    cli.main(["check"])
    assert "throttle" not in capsys.readouterr().out


# --- an account's successes are counted too (review finding 1: a correct-password flood) ---------

# The default policy's success limits (test.toml inherits them), written out so that each attack
# below runs, and fails, on code without them: test_the_success_limit_defaults_are_these.
SUCCESSES_PER_10S = 3       # throttle.successes_per_account: spreads a burst (known-device argon2 slots)
SUCCESSES_PER_MINUTE = 10
SUCCESSES_PER_HOUR = 60


@pytest.mark.parametrize(("windows", "now", "expected"), [
    ([], 0.0, Verdict(True)),
    ([(9, 10, 60)], 120.0, Verdict(True)),
    ([(10, 10, 60)], 120.0, Verdict(False, 60, "successes")),     # the window 120-180 just began
    ([(10, 10, 60)], 179.5, Verdict(False, 1, "successes")),      # never 0: at least a second
    ([(11, 10, 60)], 150.0, Verdict(False, 30, "successes")),
    ([(3, 10, 60), (60, 60, 3600)], 3599.0, Verdict(False, 1, "successes")),
    ([(10, 10, 60), (60, 60, 3600)], 0.0, Verdict(False, 3600, "successes")),  # the longest wait
    ([(0, 0, 60)], 5.0, Verdict(False, 55, "successes")),         # a zero limit refuses everything
    # three windows, the default's shape: 3 per 10 s, 10 per minute, 60 per hour
    ([(2, 3, 10), (9, 10, 60), (59, 60, 3600)], 55.0, Verdict(True)),        # each one short of full
    ([(3, 3, 10), (3, 10, 60), (3, 60, 3600)], 0.0, Verdict(False, 10, "successes")),    # a burst: 10 s
    ([(3, 3, 10), (3, 10, 60), (3, 60, 3600)], 4.0, Verdict(False, 6, "successes")),     # to the window's end
    ([(3, 3, 10), (6, 10, 60), (6, 60, 3600)], 19.999, Verdict(False, 1, "successes")),
    ([(4, 3, 10), (4, 10, 60), (4, 60, 3600)], 0.5, Verdict(False, 10, "successes")),    # over: still 10 s
    ([(3, 3, 10), (9, 10, 60), (9, 60, 3600)], 57.0, Verdict(False, 3, "successes")),    # minute ends too
    ([(1, 3, 10), (10, 10, 60), (10, 60, 3600)], 30.0, Verdict(False, 30, "successes")),  # the minute's, not 10 s
    ([(0, 3, 10), (10, 10, 60), (40, 60, 3600)], 599.0, Verdict(False, 1, "successes")),
    ([(1, 3, 10), (1, 10, 60), (60, 60, 3600)], 360.0, Verdict(False, 3240, "successes")),  # the hour's
    ([(3, 3, 10), (10, 10, 60), (60, 60, 3600)], 365.0, Verdict(False, 3235, "successes")),  # all full: longest
    ([(3, 3, 10), (10, 10, 60), (60, 60, 3600)], 3595.0, Verdict(False, 5, "successes")),   # all end together
    ([(0, 3, 10), (0, 10, 60), (0, 60, 3600)], 3599.9, Verdict(True)),
])
def test_success_windows_decide_by_count_and_end_of_window(windows, now, expected):
    assert success_verdict(windows, now) == expected


@pytest.mark.parametrize(("now", "period", "index"), [(0.0, 60, 0), (59.999, 60, 0), (60.0, 60, 1),
                                                      (1_800_000_000.0, 3600, 500_000), (-1.0, 60, -1),
                                                      (9.999, 10, 0), (10.0, 10, 1)])
def test_window_index_is_the_fixed_window_the_time_falls_in(now, period, index):
    assert window_index(now, period) == index


def default_app(tmp_path, clock):
    # The default throttle policy, successes_per_account included. The test clock starts on a whole
    # hour, so the 10 s, minute and hour windows all start with it.
    assert clock() % 3600 == 0
    return build_app(tmp_path, clock)


def right_password(app, username: str = "alice"):
    """The account's password from a new browser and a new address: no per-client limit applies."""
    return Browser(app).post_login(username, PASSWORD)


def paced_successes(app, clock, n: int, username: str = "alice") -> None:
    """``n`` successes of one account from the start of a 10 s window, 3 per window (the clock moved
    10 s after each 3): within the short rate, so each gets in while the longer windows have room."""
    for k in range(n):
        if k and k % SUCCESSES_PER_10S == 0:
            clock.advance(10)
        assert right_password(app, username).status_code == 303, (k, clock())


def argon2_times(app, clock, monkeypatch) -> list[float]:
    """The clock's time of every argon2 verification (a refused attempt must run none)."""
    svc = app.extensions["authsvc"]
    times: list[float] = []
    real = svc.hasher.verify
    monkeypatch.setattr(svc.hasher, "verify", lambda *a, **k: (times.append(clock()), real(*a, **k))[1])
    return times


def test_the_success_limit_defaults_are_these(tmp_path, clock):
    t = default_app(tmp_path, clock).extensions["authsvc"].policy.throttle
    assert tuple(t.successes_per_account) == (f"{SUCCESSES_PER_10S} per 10 seconds",
                                              f"{SUCCESSES_PER_MINUTE} per minute", f"{SUCCESSES_PER_HOUR} per hour")


@pytest.mark.asvs("V6.3.1")
def test_an_account_holder_flooding_correct_passwords_from_new_addresses_is_cut_off_before_argon2(
        tmp_path, clock, monkeypatch, caplog):
    # The review's correct-password flood without device cookies, from ever new addresses: no
    # per-client limit applies and every success reset the failure counters.
    app = default_app(tmp_path, clock)
    add_user(app)
    calls = argon2_times(app, clock, monkeypatch)
    start = clock()
    # 3 in 10 s, then the rest of the 10 s window refused.
    responses = [right_password(app) for _ in range(SUCCESSES_PER_10S + 3)]
    assert [r.status_code for r in responses] == [303] * SUCCESSES_PER_10S + [429] * 3
    assert_throttled(responses[-1], retry_after=10)
    assert len(calls) == SUCCESSES_PER_10S, "a refused success ran argon2"
    clock.advance(4)
    assert_throttled(right_password(app), retry_after=6)    # until the 10 s window ends, no longer
    clock.advance(6)
    # 10 a minute: 3 + 3 + 3 + 1, then refused until the minute ends though the 10 s window has room.
    paced_successes(app, clock, SUCCESSES_PER_MINUTE - SUCCESSES_PER_10S)
    assert clock() - start == 30
    assert_throttled(right_password(app), retry_after=30)
    assert len(calls) == SUCCESSES_PER_MINUTE
    clock.advance(30)
    # 60 an hour: five more minutes of 10, then refused until the hour ends.
    minutes = SUCCESSES_PER_HOUR // SUCCESSES_PER_MINUTE
    for minute in range(1, minutes):
        paced_successes(app, clock, SUCCESSES_PER_MINUTE)
        hour_full = minute == minutes - 1
        assert_throttled(right_password(app), retry_after=3600 - (clock() - start) if hour_full else 30)
        clock.advance(30)
    assert clock() - start == 360
    assert_throttled(right_password(app), retry_after=3600 - 360)
    assert len(calls) == SUCCESSES_PER_HOUR, "a refused success ran argon2"
    assert set(throttled_reasons(caplog)) == {"successes"}
    clock.advance(3600 - 360)  # the next hour
    assert right_password(app).status_code == 303


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_a_burst_of_correct_passwords_gets_at_most_3_argon2_runs_per_10_s_window_and_10_per_minute(
        tmp_path, clock, monkeypatch):
    # Phase 5 of scripts/bench-flood in small: the account holder sends its correct password from
    # new addresses as fast as it can (here every half second of the clock, for over two minutes,
    # starting mid-window). Its argon2 runs are spread: at most 3 in each 10 s window of the clock
    # (fixed windows: 6 at most in any 10 s, 3 each side of a window's end) and 10 in each minute,
    # so it can no longer take the known-device argon2 slots with a whole minute's budget at once.
    # Every refusal while the minute has room says to come back within 10 s.
    app = default_app(tmp_path, clock)
    add_user(app)
    runs = argon2_times(app, clock, monkeypatch)
    start = clock()
    clock.advance(7)
    refusals = []
    for _ in range(260):
        resp = right_password(app)
        assert resp.status_code in (303, 429), resp.status_code
        if resp.status_code == 429:
            ran_this_minute = sum(1 for t in runs if window_index(t, 60) == window_index(clock(), 60))
            refusals.append((ran_this_minute, int(resp.headers["Retry-After"])))
        clock.advance(0.5)
    per_10s = collections.Counter(window_index(t, 10) for t in runs)
    per_minute = collections.Counter(window_index(t, 60) for t in runs)
    assert max(per_10s.values()) == SUCCESSES_PER_10S, per_10s
    assert max(per_minute.values()) == SUCCESSES_PER_MINUTE, per_minute
    assert max(sum(1 for u in runs if t <= u < t + 10) for t in runs) <= 2 * SUCCESSES_PER_10S
    assert max(sum(1 for u in runs if t <= u < t + 60) for t in runs) <= 2 * SUCCESSES_PER_MINUTE
    assert sorted(runs)[:SUCCESSES_PER_10S + 1] == [start + 7, start + 7.5, start + 8, start + 10]
    waits = [wait for ran, wait in refusals if ran < SUCCESSES_PER_MINUTE]
    assert waits and all(1 <= wait <= 10 for wait in waits), waits


def test_known_device_successes_fill_the_same_account_window(tmp_path, clock):
    # The owner's known device and new browsers share the account's windows: each rate refuses the
    # known device as it refuses anonymous logins. (At most 9 attempts of the device cookie, within
    # its own per_device limit, which runs on real time.)
    app = default_app(tmp_path, clock)
    add_user(app)
    owner = Browser(app)
    assert owner.post_login("alice", PASSWORD).status_code == 303    # one success, and a device cookie
    assert [again(owner).status_code for _ in range(SUCCESSES_PER_10S - 1)] == [303] * (SUCCESSES_PER_10S - 1)
    assert_throttled(again(owner), retry_after=10)
    assert_throttled(right_password(app), retry_after=10)
    clock.advance(10)
    assert [again(owner).status_code for _ in range(SUCCESSES_PER_10S)] == [303] * SUCCESSES_PER_10S
    clock.advance(10)
    paced_successes(app, clock, SUCCESSES_PER_10S)                   # 9 this minute
    clock.advance(10)
    assert again(owner).status_code == 303                           # the minute's 10th
    assert_throttled(again(owner), retry_after=30)
    clock.advance(30)
    for _ in range(SUCCESSES_PER_HOUR // SUCCESSES_PER_MINUTE - 1):
        paced_successes(app, clock, SUCCESSES_PER_MINUTE)
        clock.advance(30)
    assert_throttled(again(owner), retry_after=3600 - 360)         # the hour's 60 filled by new browsers


def test_nobody_without_the_password_can_fill_an_accounts_success_window(tmp_path, clock):
    # Failures (from the attacker's many addresses) never count as successes: the owner's known
    # device still signs in, and so does the owner's new browser once the failures' back-off ends.
    app = default_app(tmp_path, clock)
    add_user(app)
    owner = owner_with_device(app)
    for n in range(40):
        Browser(app).post_login("alice", f"guess number {n}")
    assert again(owner).status_code == 303
    assert app.extensions["authsvc"].throttle._success_room("alice").allowed


def test_other_accounts_are_not_limited_by_one_accounts_successes(tmp_path, clock):
    app = default_app(tmp_path, clock)
    add_user(app)
    add_user(app, "bob")
    for _ in range(SUCCESSES_PER_10S):
        assert right_password(app).status_code == 303
    assert_throttled(right_password(app), retry_after=10)
    assert right_password(app, "bob").status_code == 303
    assert right_password(app, "BOB").status_code == 303   # one account, any spelling
    assert right_password(app, "ＡＬＩＣＥ").status_code == 429
    clock.advance(10)
    paced_successes(app, clock, SUCCESSES_PER_MINUTE - SUCCESSES_PER_10S)   # alice's minute is full
    assert_throttled(right_password(app), retry_after=30)
    assert right_password(app, "bob").status_code == 303
    assert right_password(app, "ＡＬＩＣＥ").status_code == 429


def test_an_admin_unlock_is_not_a_success(tmp_path, clock):
    app = default_app(tmp_path, clock)
    add_user(app)
    throttle = app.extensions["authsvc"].throttle
    for _ in range(SUCCESSES_PER_MINUTE + 3):
        throttle.unlock("alice")
    assert throttle._success_room("alice").allowed


def test_refused_device_cookie_attempts_read_no_registry(app, user, svc, monkeypatch):
    # The per-client limits go by the cookie's signature; the registry is asked only of attempts
    # they let through, so a flood of refused device-cookie attempts costs no database read.
    [device] = mint_devices(app, 1)
    reads = []
    real = svc.known_devices.is_known
    monkeypatch.setattr(svc.known_devices, "is_known", lambda *a: (reads.append(1), real(*a))[1])
    statuses = [again(device).status_code for _ in range(PER_DEVICE + 5)]
    assert statuses.count(429) >= 5, statuses
    assert len(reads) == statuses.count(303), (len(reads), statuses)

