"""Control 5: login and logout, CSRF on every form, session fixation, session binding, cookies.

Every test plays an attacker (or the victim an attacker is waiting for) against the real HTTP
interface: a forged or missing CSRF token, a cookie planted before login, a stolen cookie replayed
from another browser, credentials smuggled in a URL or a JSON body. Cookies are read the way a
browser would see them: from the ``Set-Cookie`` headers, and the Flask session payload decoded.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa
from flask_login import encode_cookie
from itsdangerous import URLSafeTimedSerializer

from authsvc.web.auth import FLASK_LOGIN_REMEMBER_COOKIE, binding_identifier
from authsvc.web.csrf import SALT as CSRF_SALT
from authsvc.core.models import remember_tokens
from authsvc.core.signing import timed_serializer
from authsvc.web.views.login import GENERIC_FAILURE
from tests.conftest import (
    HTTPS,
    PASSWORD,
    STRONG_KEY,
    add_user,
    cookie_value,
    csrf,
    login,
    new_client,
    set_cookie_headers,
)

SESSION = "__Host-authsvc_session"
REMEMBER = "__Host-authsvc_remember"
DEVICE = "__Host-authsvc_device"
HOST = HTTPS.split("://")[1]
TOKEN = re.compile(r"[A-Za-z0-9_-]{43,}\Z")
SESSION_KEYS = {"_user_id", "_fresh", "_id", "csrf_token"}
OTHER_KEY = "an-entirely-different-secret-key-0123456789abcdef"
NEW_PASSWORD = "a brand new passphrase for 2027 qz"


# --- helpers ---------------------------------------------------------------------------------------

def session_payload(value: str) -> dict:
    """The JSON inside a Flask session cookie (``[.]payload.timestamp.signature``), unverified."""
    compressed = value.startswith(".")
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


def session_of(client) -> dict:
    value = cookie_value(client, SESSION)
    return session_payload(value) if value else {}


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    first, *attrs = [part.strip() for part in header.split(";")]
    name, _, value = first.partition("=")
    parsed = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        parsed[key.lower()] = val
    return name, value, parsed


def verify(client, **kwargs):
    return client.get("/auth/verify", **kwargs)


def logged_in(app, username: str = "alice", **client_kwargs):
    client = new_client(app, **client_kwargs)
    assert login(client, username).status_code == 303
    assert verify(client).status_code == 200
    return client


PASSKEY_SCRIPT = '<script src="/static/passkeys.js" defer></script>'


class _Forms(HTMLParser):
    """Collects each <form> with its inputs, and every tag's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v or "") for k, v in attrs}
        self.tags.append((tag, attrs))
        if tag == "form":
            self.forms.append({"attrs": attrs, "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attrs)


def forms_of(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def login_form(html: str) -> dict:
    [form] = [f for f in forms_of(html) if f["attrs"].get("action") == "/login"]
    return form


# --- the login form --------------------------------------------------------------------------------

@pytest.mark.asvs("V6.2.6", "V6.2.7", "V3.5.1")
def test_login_form_lets_password_managers_and_paste_work_and_carries_a_csrf_token(client):
    page = client.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    form = login_form(html)
    assert form["attrs"]["method"].lower() == "post"
    inputs = {i.get("name"): i for i in form["inputs"]}
    assert set(inputs) >= {"username", "password", "remember", "csrf_token"}
    assert inputs["password"]["type"] == "password"
    assert inputs["password"]["autocomplete"] == "current-password"
    assert inputs["remember"]["type"] == "checkbox"
    assert inputs["csrf_token"]["type"] == "hidden" and inputs["csrf_token"]["value"]
    assert 'autocomplete="off"' not in html.lower()
    assert "onpaste" not in html.lower()


@pytest.mark.asvs("V3.2.2", "V1.2.1")
@pytest.mark.parametrize("hostile_next", [
    '"><script>alert(1)</script>',
    "/account\"><script>alert(1)</script>",
    'https://app.example.test/x?q="><script>alert(1)</script>',
    "https://app.example.test/x' onfocus='alert(1)",
])
def test_reflected_xss_through_next_is_escaped_or_dropped(client, hostile_next):
    html = client.get("/login", query_string={"next": hostile_next}).get_data(as_text=True)
    # The page's one script is the passkey button's static file (issue 17); nothing else may be.
    assert html.lower().count("<script") == html.count(PASSKEY_SCRIPT) == 1
    parser = _Forms()
    parser.feed(html)
    assert [attrs for tag, attrs in parser.tags if tag == "script"] == [{"src": "/static/passkeys.js", "defer": ""}]
    assert not [(tag, a) for tag, attrs in parser.tags for a in attrs if a.startswith("on")]
    nexts = [i for i in login_form(html)["inputs"] if i.get("name") == "next"]
    assert len(nexts) <= 1
    assert all(set(i) == {"type", "name", "value"} for i in nexts)


@pytest.mark.asvs("V3.5.1")
def test_next_is_carried_through_the_post_to_an_allowed_app(client, user):
    target = "https://app.example.test/dashboard?tab=1"
    form = login_form(client.get("/login", query_string={"next": target}).get_data(as_text=True))
    carried = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("name")}
    assert carried["next"] == target
    response = client.post("/login", data={"csrf_token": carried["csrf_token"], "username": "alice",
                                           "password": PASSWORD, "next": carried["next"]})
    assert response.status_code == 303
    assert response.headers["Location"] == target


def test_successful_login_is_303_to_the_default_page(client, user):
    response = login(client)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    ok = verify(client)
    assert ok.status_code == 200
    assert ok.headers["X-Auth-User"] == "alice"
    assert ok.headers["X-Auth-User-Id"] == str(user.id)
    assert ok.get_data() == b""


@pytest.mark.asvs("V6.3.8")
def test_wrong_password_and_unknown_user_get_the_same_generic_401(app, user):
    bodies = []
    for username, password in [("alice", "not the right password at all"), ("mallory", PASSWORD)]:
        client = new_client(app)
        response = login(client, username, password)
        assert response.status_code == 401
        html = response.get_data(as_text=True)
        assert html.count(GENERIC_FAILURE) == 1
        assert login_form(html)  # the form comes back so the user can retry
        assert verify(client).status_code == 401
        assert "_user_id" not in session_of(client)
        bodies.append(re.sub(r'value="[^"]*"', 'value=""', html))
    assert bodies[0] == bodies[1]


# --- CSRF on every form ----------------------------------------------------------------------------

def _raw_csrf(client) -> str:
    return session_of(client)["csrf_token"]


def _forged(client, key: str) -> str:
    """authsvc's token format (authsvc.web.csrf), for this session's raw token, signed with ``key``."""
    return timed_serializer(key, (), CSRF_SALT).dumps(_raw_csrf(client))


def _flask_wtf_sha1(client) -> str:
    """The token Flask-WTF made: the right key and session value, but HMAC-SHA1 and its salt."""
    return URLSafeTimedSerializer(STRONG_KEY, salt="wtf-csrf-token").dumps(_raw_csrf(client))


def _tampered(token: str) -> str:
    # Change a character of the signed payload (not the signature's last character, whose low
    # bits base64 ignores), so the token is genuinely different.
    i = 3
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


BAD_TOKENS = {
    "missing": lambda app, client, page: None,
    "empty": lambda app, client, page: "",
    "tampered": lambda app, client, page: _tampered(csrf(client, page)),
    "another_sessions_token": lambda app, client, page: csrf(new_client(app)),
    "signed_with_another_key": lambda app, client, page: _forged(client, OTHER_KEY),
    "flask_wtf_hmac_sha1": lambda app, client, page: _flask_wtf_sha1(client),
    "truncated": lambda app, client, page: csrf(client, page)[:-1],
}


class _FormCase:
    """One protected form: how to reach it, what to post, and how to tell it had no effect."""

    def __init__(self, app):
        self.app = app
        self.svc = app.extensions["authsvc"]
        self.account = add_user(app)


class LoginCase(_FormCase):
    page, path = "/login", "/login"
    accepted = 303  # signed in: on to the next page

    def client(self):
        return new_client(self.app)

    def data(self):
        return {"username": "alice", "password": PASSWORD}

    def assert_no_effect(self, client):
        assert verify(client).status_code == 401
        assert "_user_id" not in session_of(client)

    def assert_effect(self, client):
        assert verify(client).status_code == 200


class LogoutCase(_FormCase):
    page, path = "/", "/logout"
    accepted = 303

    def client(self):
        return logged_in(self.app)

    def data(self):
        return {}

    def assert_no_effect(self, client):
        assert verify(client).status_code == 200

    def assert_effect(self, client):
        assert verify(client).status_code == 401


class PasswordCase(_FormCase):
    page, path = "/", "/account/password"
    accepted = 200  # the account page again, saying the password changed

    def client(self):
        return logged_in(self.app)

    def data(self):
        return {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    def assert_no_effect(self, client):
        assert self.svc.accounts.by_id(self.account.id).password_hash == self.account.password_hash

    def assert_effect(self, client):
        assert self.svc.accounts.by_id(self.account.id).password_hash != self.account.password_hash


class RevokeCase(_FormCase):
    page = "/"
    accepted = 303

    def client(self):
        client = logged_in(self.app)
        [live] = self.svc.sessions.list_live(self.account.id)
        self.path = f"/account/sessions/{live.id}/revoke"
        return client

    def data(self):
        return {}

    def assert_no_effect(self, client):
        assert verify(client).status_code == 200
        assert len(self.svc.sessions.list_live(self.account.id)) == 1

    def assert_effect(self, client):
        assert self.svc.sessions.list_live(self.account.id) == []


FORMS = {"login": LoginCase, "logout": LogoutCase, "password_change": PasswordCase, "session_revoke": RevokeCase}


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("bad", list(BAD_TOKENS))
@pytest.mark.parametrize("form", list(FORMS))
def test_cross_site_request_forgery_is_refused_with_400(app, form, bad):
    case = FORMS[form](app)
    client = case.client()
    csrf(client, case.page)  # the victim's session holds a token of its own
    data = case.data()
    token = BAD_TOKENS[bad](app, client, case.page)
    if token is not None:
        data["csrf_token"] = token
    response = client.post(case.path, data=data)
    assert response.status_code == 400
    case.assert_no_effect(client)


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("form", list(FORMS))
def test_the_genuine_csrf_token_is_accepted_on_every_form(app, form):
    """The control for the test above: the same request with this session's own token works,
    so the 400s are the token check and nothing else."""
    case = FORMS[form](app)
    client = case.client()
    csrf(client, case.page)
    data = {**case.data(), "csrf_token": _forged(client, STRONG_KEY)}
    response = client.post(case.path, data=data)
    assert response.status_code == case.accepted
    case.assert_effect(client)


# --- logout ----------------------------------------------------------------------------------------

@pytest.mark.asvs("V3.5.3")
def test_logout_by_get_link_is_refused_and_the_session_survives(app, user):
    client = logged_in(app)
    assert client.get("/logout").status_code == 405
    assert verify(client).status_code == 200


@pytest.mark.asvs("V7.4.1", "V14.3.1")
def test_logout_ends_the_session_server_side_and_clears_the_browser(app, user):
    client = new_client(app)
    assert login(client, remember=True).status_code == 303
    stolen = {name: cookie_value(client, name) for name in (SESSION, REMEMBER)}
    assert all(stolen.values())

    response = client.post("/logout", data={"csrf_token": csrf(client, "/")})
    assert response.status_code == 303
    assert response.headers["Location"] == "/login"
    # What authsvc owns is deleted by name; "cookies" would wipe the whole registrable domain.
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    cleared = {parse_set_cookie(h)[0]: parse_set_cookie(h) for h in set_cookie_headers(response)}
    for name in (SESSION, REMEMBER):
        _, value, attrs = cleared[name]
        assert value == "" and attrs.get("max-age") == "0"
    assert DEVICE not in cleared, "the device cookie outlives a sign-out (it keeps the throttle off this browser)"
    assert cookie_value(client, DEVICE)
    assert verify(client).status_code == 401

    # An attacker who copied both cookies before the logout gets nothing from them.
    replay = new_client(app)
    replay.set_cookie(SESSION, stolen[SESSION], domain=HOST)
    assert verify(replay).status_code == 401
    replay.set_cookie(REMEMBER, stolen[REMEMBER], domain=HOST)
    assert replay.get("/login").status_code == 200
    assert verify(replay).status_code == 401


@pytest.mark.asvs("V7.4.4")
def test_account_page_offers_a_post_logout_button(app, user):
    client = logged_in(app)
    page = client.get("/")
    assert page.status_code == 200
    [logout] = [f for f in forms_of(page.get_data(as_text=True)) if f["attrs"].get("action") == "/logout"]
    assert logout["attrs"]["method"].lower() == "post"
    assert any(i.get("name") == "csrf_token" and i.get("value") for i in logout["inputs"])


# --- fixation and token freshness ------------------------------------------------------------------

@pytest.mark.asvs("V7.2.4")
def test_session_fixation_cookie_planted_before_login_stays_anonymous(app, user):
    victim = new_client(app)
    planted_token = csrf(victim)  # the attacker loaded the login page and planted its cookie
    planted = cookie_value(victim, SESSION)
    assert "csrf_token" in session_payload(planted)  # the attacker's cookie is a real, signed one

    assert login(victim).status_code == 303
    assert cookie_value(victim, SESSION) != planted
    assert verify(victim).status_code == 200
    # The CSRF token the attacker knows from before the login is dead in the victim's session.
    assert session_of(victim).get("csrf_token") != session_payload(planted)["csrf_token"]
    assert victim.post("/logout", data={"csrf_token": planted_token}).status_code == 400
    assert verify(victim).status_code == 200

    attacker = new_client(app)
    attacker.set_cookie(SESSION, planted, domain=HOST)
    assert verify(attacker).status_code == 401
    assert attacker.get("/api/v1/session").status_code == 401


@pytest.mark.asvs("V7.2.2", "V7.2.4")
def test_two_logins_of_one_user_get_different_cookies_and_server_sessions(app, user):
    svc = app.extensions["authsvc"]
    client = new_client(app)
    assert login(client).status_code == 303
    first_cookie, first = cookie_value(client, SESSION), session_of(client)
    first_sid = client.get("/api/v1/session").get_json()["session_id"]

    # Re-login from the same, still logged-in browser (the login page itself redirects it away).
    relogin = client.post("/login", data={"csrf_token": csrf(client, "/"), "username": "alice", "password": PASSWORD})
    assert relogin.status_code == 303
    second_cookie, second = cookie_value(client, SESSION), session_of(client)
    second_sid = client.get("/api/v1/session").get_json()["session_id"]

    assert first_cookie != second_cookie
    assert first["_user_id"] != second["_user_id"]
    assert first_sid != second_sid
    assert {s.id for s in svc.sessions.list_live(user.id)} >= {second_sid}


@pytest.mark.asvs("V7.2.3")
def test_fifty_logins_mint_fifty_distinct_high_entropy_tokens(app, user, clock):
    tokens = set()
    for i in range(50):
        clock.advance(6)  # within throttle.successes_per_account (3 in 10 s, 10 a minute, 60 an hour)
        client = new_client(app)
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{i + 1}"  # stay under the per-client limit
        assert login(client).status_code == 303
        token = session_of(client)["_user_id"]
        assert TOKEN.match(token), token
        tokens.add(token)
    assert len(tokens) == 50


@pytest.mark.asvs("V14.3.3")
def test_session_cookie_holds_only_an_opaque_token_and_flags(app, user):
    client = new_client(app)
    assert login(client).status_code == 303
    client.get("/")  # mints the post-login csrf token too
    payload = session_of(client)
    assert set(payload) <= SESSION_KEYS
    assert {"_user_id", "_fresh", "_id"} <= set(payload)
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", payload["_user_id"])
    flat = json.dumps(payload).lower()
    assert "alice" not in flat
    assert PASSWORD.lower() not in flat and "argon2" not in flat
    assert str(user.id) != payload["_user_id"]


# --- strong session protection -----------------------------------------------------------------------

@pytest.mark.parametrize("elsewhere", [
    pytest.param({"headers": {"User-Agent": "Mozilla/5.0 (attacker)"}}, id="other-user-agent"),
    pytest.param({"environ_base": {"REMOTE_ADDR": "203.0.113.66"}}, id="other-address"),
])
def test_stolen_cookie_replayed_from_another_client_is_refused_and_revokes_the_session(app, user, elsewhere):
    victim = logged_in(app)
    stolen = cookie_value(victim, SESSION)
    thief = new_client(app, use_cookies=False)
    thief.environ_base.update(elsewhere.get("environ_base", {}))
    replay = thief.get("/auth/verify", headers={"Cookie": f"{SESSION}={stolen}", **elsewhere.get("headers", {})})
    assert replay.status_code == 401
    assert "X-Auth-User" not in replay.headers
    # The server-side session is gone, not just the thief's copy of it.
    assert verify(victim).status_code == 401
    assert app.extensions["authsvc"].sessions.list_live(user.id) == []


def test_the_session_is_bound_to_the_proxyfix_address_not_to_a_client_sent_x_forwarded_for(app, user):
    # Flask-Login's own identifier believes the first X-Forwarded-For hop; the binding is authsvc's.
    client = new_client(app)
    assert login(client, headers={"X-Forwarded-For": "203.0.113.99"}).status_code == 303
    ua = client.environ_base.get("HTTP_USER_AGENT", "")
    assert session_of(client)["_id"] == binding_identifier(client.environ_base["REMOTE_ADDR"], ua)
    assert client.get("/api/v1/session", headers={"X-Forwarded-For": "198.51.100.200"}).status_code == 200


def test_a_signed_session_cookie_without_its_binding_is_not_a_login(app, user):
    client = logged_in(app)
    with client.session_transaction(base_url=HTTPS) as sess:  # signed with the real key: only `_id` is gone
        del sess["_id"]
    assert client.get("/api/v1/session").status_code == 401
    assert "_user_id" not in session_of(client)


@pytest.mark.parametrize("name", ["remember_token", FLASK_LOGIN_REMEMBER_COOKIE])
def test_a_flask_login_remember_cookie_for_a_live_session_never_signs_in(app, user, name):
    # Flask-Login's remember-me (user id | HMAC of the secret key) is off: a valid one, even for a
    # live session token and from the owner's own address and agent, is never read.
    victim = logged_in(app)
    with app.test_request_context():
        forged = encode_cookie(session_of(victim)["_user_id"])
    thief = new_client(app, use_cookies=False)
    response = thief.get("/api/v1/session", headers={"Cookie": f"{name}={forged}"})
    assert response.status_code == 401
    assert set_cookie_headers(response) == []


# --- cookies ---------------------------------------------------------------------------------------

@pytest.mark.asvs("V3.3.1", "V3.3.2", "V3.3.3", "V3.3.4")
def test_every_cookie_is_host_prefixed_secure_httponly_lax(app, user):
    client = new_client(app)
    seen = list(set_cookie_headers(client.get("/login")))
    seen += set_cookie_headers(client.post("/login", data={"csrf_token": csrf(client), "username": "alice",
                                                          "password": PASSWORD, "remember": "on"}))
    seen += set_cookie_headers(client.get("/"))
    seen += set_cookie_headers(client.post("/logout", data={"csrf_token": csrf(client, "/")}))
    # A remember-me restore rotates the remember cookie and starts a session.
    restored = new_client(app)
    assert login(restored, remember=True).status_code == 303
    remembered = new_client(app)
    remembered.set_cookie(REMEMBER, cookie_value(restored, REMEMBER), domain=HOST)
    seen += set_cookie_headers(remembered.get("/login"))

    names = {parse_set_cookie(h)[0] for h in seen}
    assert {SESSION, REMEMBER, DEVICE} <= names
    for header in seen:
        name, _, attrs = parse_set_cookie(header)
        assert name.startswith("__Host-"), header
        assert "secure" in attrs, header
        assert "httponly" in attrs, header
        assert attrs.get("samesite") == "Lax", header
        assert attrs.get("path") == "/", header
        assert "domain" not in attrs, header


@pytest.mark.asvs("V7.6.2")
@pytest.mark.parametrize("path", ["/auth/verify", "/healthz", "/readyz", "/api/v1/session", "/"])
def test_anonymous_requests_do_not_mint_a_cookie(client, path):
    response = client.get(path)
    assert response.status_code < 500
    assert set_cookie_headers(response) == []


@pytest.mark.asvs("V7.6.2", "V14.3.3")
def test_login_page_sets_only_a_session_cookie_with_only_a_csrf_token(client):
    response = client.get("/login")
    [header] = set_cookie_headers(response)
    name, value, _ = parse_set_cookie(header)
    assert name == SESSION
    assert set(session_payload(value)) == {"csrf_token"}


@pytest.mark.asvs("V7.6.2")
def test_verify_answers_401_with_an_empty_body_for_anonymous_clients(client):
    response = client.get("/auth/verify")
    assert response.status_code == 401
    assert response.get_data() == b""
    assert "X-Auth-User" not in response.headers


def test_session_api_reports_the_session_or_a_json_401(app, user):
    anonymous = new_client(app).get("/api/v1/session")
    assert anonymous.status_code == 401
    assert anonymous.get_json()["error"] == "unauthenticated"
    data = logged_in(app).get("/api/v1/session").get_json()
    assert data["username"] == "alice" and data["user_id"] == user.id


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_answer(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


# --- credentials only in a form POST ---------------------------------------------------------------

@pytest.mark.asvs("V14.2.1")
def test_credentials_in_the_query_string_do_not_log_in(client, user):
    response = client.get("/login", query_string={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert verify(client).status_code == 401
    token = csrf(client)
    response = client.post("/login", query_string={"username": "alice", "password": PASSWORD},
                           data={"csrf_token": token})
    assert response.status_code == 400
    assert verify(client).status_code == 401


@pytest.mark.asvs("V14.2.1", "V3.5.1")
def test_json_body_login_does_not_log_in(client, user):
    token = csrf(client)
    for kwargs in ({"json": {"csrf_token": token, "username": "alice", "password": PASSWORD}},
                   {"json": {"username": "alice", "password": PASSWORD}, "headers": {"X-CSRFToken": token}}):
        response = client.post("/login", **kwargs)
        assert response.status_code == 400
        assert verify(client).status_code == 401


# --- usernames --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["ALICE", "Alice", "ａｌｉｃｅ", "ＡＬＩＣＥ", "alice ", " alice"])
def test_case_and_width_variants_reach_the_one_account(app, user, spelling):
    client = new_client(app)
    assert login(client, spelling).status_code == 303
    assert verify(client).headers["X-Auth-User"] == "alice"


@pytest.mark.asvs("V1.2.4")
@pytest.mark.parametrize("username", [
    "' OR 1=1--", "alice' --", "alice'/*", '" OR ""="', "' UNION SELECT 1,2,3--", "alice'; DROP TABLE users;--",
])
def test_sql_injection_looking_usernames_just_fail(app, user, username):
    client = new_client(app)
    response = login(client, username)
    assert response.status_code == 401
    assert verify(client).status_code == 401
    assert app.extensions["authsvc"].accounts.by_username("alice") is not None


HOSTILE_NEXT = ["/\\github.com", "\\/github.com", "https://amazon.com\\.lp.com", "//evil.example", "/\t/evil.example",
                "https://app.example.test@evil.example/", "javascript:alert(1)", "/\\/evil.example/%2e%2e"]


@pytest.mark.parametrize("next", HOSTILE_NEXT)
def test_flask_security_cve_2023_49438_a_hostile_next_posted_with_the_sign_in_lands_on_the_default(app, next):
    """Flask-Security-Too CVE-2023-49438 and GHSA-w2j7-f3c6-g8cw through the form itself: ``next``
    posted with a right password (a password-only account, and an account with an authenticator
    app, through its second step) lands on the default page, never off the allow-list."""
    from tests.security.factors import enroll, second_step

    add_user(app)
    client = new_client(app)
    answer = login(client, next=next)
    assert answer.status_code == 303 and answer.headers["Location"] == "/", answer.headers.get("Location")
    bob = add_user(app, "bob")
    bobs_app = enroll(app, bob, app.extensions["authsvc"].clock)
    other = new_client(app)
    first = login(other, "bob", next=next)
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/mfa")
    assert "evil" not in first.headers["Location"] and "github" not in first.headers["Location"]
    answer = second_step(other, bobs_app.code(), next=next)
    assert answer.status_code == 303 and answer.headers["Location"] == "/", answer.headers.get("Location")


# --- a sign-in that an account change overtakes ------------------------------------------------------

NEW_PASSWORD = "a completely different passphrase 7"


def _change_password(svc, user_id: int) -> None:
    """What POST /account/password and `authsvc user passwd` do once the checks passed: the new
    hash, then every session and remember-me token ended and the known devices forgotten."""
    svc.accounts.set_password_hash(user_id, svc.hasher.hash(NEW_PASSWORD))
    svc.sign_out.everywhere(user_id, "password_changed")


def _disable(svc, user_id: int) -> None:
    svc.accounts.set_disabled(user_id, True)
    svc.sign_out.everywhere(user_id, "account_disabled")


@pytest.mark.parametrize("change", [_change_password, _disable], ids=["password_changed", "disabled"])
def test_a_sign_in_checked_while_the_password_changed_leaves_nothing_behind(app, clock, monkeypatch, capsys, change):
    """argon2 takes a while: the owner's password change (or an admin's disable) can commit, and
    sign every session out, while a sign-in with the old password is being checked. That sign-in's
    session, remember-me token and known device would come after the sign-out and outlive it: the
    sign-in is refused instead, and nothing it made stays."""
    svc = app.extensions["authsvc"]
    user = add_user(app)
    real_verify = svc.hasher.verify

    def verify_while_the_owner_acts(stored, password, *, anonymous):
        checked = real_verify(stored, password, anonymous=anonymous)  # the old hash, read before
        clock.advance(1)
        change(svc, user.id)
        return checked

    monkeypatch.setattr(svc.hasher, "verify", verify_while_the_owner_acts)
    attacker = new_client(app)
    answer = login(attacker, remember=True)
    monkeypatch.setattr(svc.hasher, "verify", real_verify)
    assert answer.status_code == 401 and GENERIC_FAILURE in answer.get_data(as_text=True)
    assert attacker.get("/auth/verify").status_code == 401
    assert svc.sessions.list_live(user.id) == [] and svc.known_devices.count(user.id) == 0
    with svc.engine.connect() as conn:
        live_tokens = conn.execute(sa.select(sa.func.count()).select_from(remember_tokens).where(
            remember_tokens.c.user_id == user.id, remember_tokens.c.revoked_at.is_(None))).scalar_one()
    assert live_tokens == 0
    assert '"reason":"changed_during_sign_in"' in capsys.readouterr().out
