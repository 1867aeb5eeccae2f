"""The OIDC mode against a fake provider over real HTTP: authorization code with PKCE (S256) and a
nonce, every spoiled ID token and callback a 401 (never a 500), local next only, back-channel
logout with hostile logout tokens."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("authlib", reason="the OIDC mode needs Flask-Authsvc[oidc] (Authlib)")

from authsvc_fake_provider import CLIENT_ID, PROVIDER_KEY, FakeProvider, Running
from flask import Flask, render_template_string
from flask_authsvc import Authsvc, ConfigError
from flask_login import LoginManager, UserMixin, current_user, login_required
from joserfc.jwk import RSAKey
from markupsafe import Markup


class User(UserMixin):
    def __init__(self, identity):
        self.id = identity.user_id
        self.username = identity.username


@pytest.fixture(scope="module")
def running_provider():
    fake = FakeProvider()
    with Running(fake):   # one server for the module: its shutdown takes half a second
        yield fake


@pytest.fixture
def provider(running_provider):
    running_provider.codes.clear()
    running_provider.token_requests.clear()
    running_provider.issuer = None
    running_provider.iss_supported = False
    running_provider.key = PROVIDER_KEY
    running_provider.jwks_stall = 0.0
    return running_provider


def make_app(provider: FakeProvider, before=None, ended=None, **config):
    """The app; ``before(app)`` runs before ``Authsvc(app)`` (an extension the app binds first);
    ``ended``: the record of ended sign-ins (default: the extension's own)."""
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-only-" + "k" * 32, AUTHSVC_URL=provider.base, AUTHSVC_MODE="oidc",
                      AUTHSVC_CLIENT_ID=CLIENT_ID, AUTHSVC_SCOPES="openid profile")
    app.config.update(config)
    if before is not None:
        before(app)
    authsvc = Authsvc(app, LoginManager(app), ended_sessions=ended)
    authsvc.user_loader(User)

    @app.get("/private")
    @login_required
    def private():
        i = authsvc.identity
        return f"{current_user.username} {i.user_id} {','.join(i.groups)} {','.join(i.methods)}"

    @app.get("/secure")
    @authsvc.required(mfa=True)
    def secure():
        return "two factors"

    return app, authsvc


@pytest.fixture
def app(provider):
    return make_app(provider)[0]


@pytest.fixture
def client(app):
    return app.test_client()


def start(client, path="/private") -> str:
    """The app's redirect to the provider's authorization endpoint, followed from ``path``."""
    first = client.get(path)
    assert first.status_code == 302, first.get_data(as_text=True)
    login = client.get(first.headers["Location"])
    assert login.status_code == 302, login.get_data(as_text=True)
    return login.headers["Location"]


def sign_in(client, provider, path="/private", **changes):
    url = start(client, path)
    code, state = provider.issue_code(url, **changes)
    return client.get(f"/authsvc/callback?code={code}&state={state}")


# --- the flow ------------------------------------------------------------------------------------

def test_code_flow_with_pkce_and_nonce_signs_in_and_returns(client, provider):
    url = start(client, "/private?page=2")
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(f"{provider.base}/oauth/authorize?")
    assert params["response_type"] == "code" and params["client_id"] == CLIENT_ID
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["nonce"] and params["state"] and params["scope"] == "openid profile"
    assert params["redirect_uri"] == "http://localhost/authsvc/callback"
    code, state = provider.issue_code(url)
    back = client.get(f"/authsvc/callback?code={code}&state={state}")
    assert back.status_code == 303 and back.headers["Location"] == "/private?page=2"
    assert client.get("/private").get_data(as_text=True) == "alice s-7f3a staff pwd,otp,mfa"
    assert "code_verifier" in provider.token_requests[0]        # the provider checked it against the challenge


def test_a_wrong_pkce_verifier_is_refused_by_the_provider_and_a_401_here(client, provider):
    url = start(client)
    code, state = provider.issue_code(url)
    provider.codes[code]["params"]["code_challenge"] = "A" * 43   # as if the code had been stolen for another
    assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 401
    assert client.get("/private").status_code == 302


def test_state_that_this_browser_did_not_start_is_refused(client, provider):
    url = start(client)
    code, _ = provider.issue_code(url)
    assert client.get(f"/authsvc/callback?code={code}&state=forged").status_code == 401
    assert client.get(f"/authsvc/callback?code={code}").status_code == 401


def test_login_csrf_a_callback_in_another_browser_is_refused(app, provider):
    attacker, victim = app.test_client(), app.test_client()
    code, state = provider.issue_code(start(attacker))
    assert victim.get(f"/authsvc/callback?code={code}&state={state}").status_code == 401
    assert victim.get("/private").status_code == 302


def test_a_callback_replayed_is_refused(client, provider):
    url = start(client)
    code, state = provider.issue_code(url)
    assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 303
    assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 401


def test_provider_error_answer_is_a_401(client, provider):
    url = start(client)
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert client.get(f"/authsvc/callback?error=access_denied&state={state}").status_code == 401


def test_abandoned_login_starts_do_not_grow_the_session_cookie_until_sign_in_fails(client, provider):
    """Each start keeps Authlib's state (about 180 bytes) in the session cookie for an hour: 21
    abandoned starts (tabs, back buttons, or a page of the attacker's that makes the browser GET
    /authsvc/login 21 times) made it over 4 KB, which a browser drops, and sign-in failed for
    the hour. Only the last few starts are kept."""
    from flask_authsvc.oidc import MAX_PENDING_SIGN_INS

    urls = [client.get("/authsvc/login?next=/private").headers["Location"] for _ in range(40)]
    assert len(client.get_cookie("session").value) < 2000
    for url in urls[:-MAX_PENDING_SIGN_INS]:          # the oldest are forgotten: their callback is a 401
        code, state = provider.issue_code(url)
        assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 401
    code, state = provider.issue_code(urls[-MAX_PENDING_SIGN_INS])   # the oldest kept still completes
    assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 303
    assert client.get("/private").status_code == 200


# --- spoiled ID tokens ---------------------------------------------------------------------------

OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})


@pytest.mark.parametrize("changes", [
    {"nonce": "another-nonce"},
    {"aud": "another-client"},
    {"iss": "https://evil.example"},
    {"exp": 1_000_000},
    {"preferred_username": None},
    {"preferred_username": "Alice"},
    {"preferred_username": "\u0430lice"},
    {"preferred_username": "alice\n"},
    {"preferred_username": ["alice"]},
    {"sub": "s p a c e"},
    {"sub": "x" * 256},
    {"groups": "staff"},
    {"groups": ["st aff"]},
    {"amr": "pwd"},
    {"amr": ["PWD"]},
], ids=repr)
def test_spoiled_id_token_is_a_401(client, provider, changes):
    assert sign_in(client, provider, **changes).status_code == 401
    assert client.get("/private").status_code == 302


@pytest.mark.parametrize("changes", [
    {"aud": "another-client", "azp": CLIENT_ID},        # Authlib takes an azp naming this client for aud
    {"aud": ["another-client"], "azp": CLIENT_ID},
    {"aud": []},                                         # no audience at all
    {"aud": ["another-client", CLIENT_ID]},              # several audiences: azp must name this client
    {"aud": [CLIENT_ID, "another-client"], "azp": "another-client"},
    {"aud": CLIENT_ID, "azp": "another-client"},         # issued to another client
    {"aud": [CLIENT_ID], "azp": ""},
    {"aud": {CLIENT_ID: True}},
], ids=repr)
def test_an_id_token_not_for_this_client_is_a_401(client, provider, changes):
    """An ID token is for this app only when its aud names the client id (OpenID Connect Core
    3.1.3.7, steps 3 to 5): with several audiences, or an azp, the azp must be the client id."""
    assert sign_in(client, provider, **changes).status_code == 401
    assert client.get("/private").status_code == 302


@pytest.mark.parametrize("changes", [{"aud": [CLIENT_ID]}, {"aud": CLIENT_ID, "azp": CLIENT_ID},
                                     {"aud": [CLIENT_ID, "another-client"], "azp": CLIENT_ID}], ids=repr)
def test_an_id_token_for_this_client_signs_in(client, provider, changes):
    assert sign_in(client, provider, **changes).status_code == 303
    assert client.get("/private").status_code == 200


def test_id_token_signed_by_another_key_is_a_401(client, provider):
    url = start(client)
    nonce = parse_qs(urlsplit(url).query)["nonce"][0]
    code, state = provider.issue_code(url, id_token=provider.sign(provider.claims(nonce), key=OTHER_KEY))
    assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 401


def test_unsigned_id_token_is_a_401(client, provider):
    import base64
    import json
    url = start(client)
    nonce = parse_qs(urlsplit(url).query)["nonce"][0]

    def b64(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    unsigned = f"{b64({'alg': 'none'})}.{b64(provider.claims(nonce))}."
    code, state = provider.issue_code(url, id_token=unsigned)
    assert client.get(f"/authsvc/callback?code={code}&state={state}").status_code == 401


# --- where the browser goes back to ------------------------------------------------------------------

@pytest.mark.parametrize("hostile", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "\\\\evil",
                                     "javascript:alert(1)", "/ok\r\nSet-Cookie: a=b", "/caf\u00e9", "evil", "/" + "a" * 3000])
def test_next_off_this_app_lands_on_the_root(client, provider, hostile):
    login = client.get("/authsvc/login", query_string={"next": hostile})
    code, state = provider.issue_code(login.headers["Location"])
    back = client.get(f"/authsvc/callback?code={code}&state={state}")
    assert back.status_code == 303 and back.headers["Location"] == "/"


# --- the provider itself ------------------------------------------------------------------------------

def test_discovery_naming_another_issuer_is_refused(client, provider):
    provider.issuer = "https://evil.example"
    assert client.get("/authsvc/login").status_code == 503


def test_provider_not_answering_is_a_503():
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 40, AUTHSVC_URL="http://127.0.0.1:9", AUTHSVC_MODE="oidc",
                      AUTHSVC_CLIENT_ID=CLIENT_ID)
    Authsvc(app, LoginManager(app))
    assert app.test_client().get("/authsvc/login").status_code == 503


def test_oidc_mode_needs_a_secret_key(provider):
    with pytest.raises(ConfigError) as raised:
        make_app(provider, SECRET_KEY=None)
    assert raised.value.setting == "SECRET_KEY"


# --- sign out, step-up ----------------------------------------------------------------------------

PER_SUBJECT = 20  # each record's per-subject bound in these tests: small, so they reach the collapse
OWN = "http://localhost"     # the test client's origin: the app's own pages
FROM_HERE = {"Origin": OWN, "Sec-Fetch-Site": "same-origin"}


def sign_out(client, headers=FROM_HERE, **kwargs):
    return client.post("/authsvc/logout", headers=headers, **kwargs)


def test_logout_ends_the_local_sign_in_and_goes_to_authsvc(client, provider):
    assert sign_in(client, provider).status_code == 303
    out = sign_out(client)
    assert out.status_code == 303 and out.headers["Location"] == f"{provider.base}/"
    assert client.get("/private").status_code == 302


def test_a_session_cookie_copied_before_logout_signs_nobody_in_after_it(client, provider, app):
    """Flask's session is a signed cookie the server keeps no copy of: the Logout is recorded, so a
    copy saved before it (stolen, or left on a shared computer) is refused after it."""
    assert sign_in(client, provider).status_code == 303
    copy = client.get_cookie("session").value
    thief = app.test_client()
    thief.set_cookie("session", copy)
    assert thief.get("/private").status_code == 200
    assert sign_out(client).status_code == 303
    assert thief.get("/private").status_code == 302
    assert sign_in(client, provider).status_code == 303   # signing in again afterwards works
    assert client.get("/private").status_code == 200


@pytest.mark.parametrize("ended_by", ["logout", "backchannel", "nothing"])
def test_a_copied_session_cookie_never_outlives_a_day_nor_the_record_of_its_logout(provider, monkeypatch, ended_by):
    """A copy of the app's cookie (Flask keeps it 31 days) against the clock: a sign-in lasts a day,
    as authsvc's session does (whose expiry sends no logout token), and the record of a Logout or a
    back-channel logout is kept at least that long, so no copy comes back when it is forgotten."""
    import time

    app, _ = make_app(provider)
    victim, thief, other = app.test_client(), app.test_client(), app.test_client()
    assert sign_in(victim, provider).status_code == 303
    copy = victim.get_cookie("session").value
    thief.set_cookie("session", copy)
    if ended_by == "logout":
        assert sign_out(victim).status_code == 303
    elif ended_by == "backchannel":
        token = provider.logout_token(sid="sid-1")  # the victim's sign-in
        assert other.post("/authsvc/backchannel-logout", data={"logout_token": token}).status_code == 200
    assert thief.get("/private").status_code == (200 if ended_by == "nothing" else 302)
    real = time.time
    for hours in (23, 25, 24 * 30):
        later = real() + hours * 3600
        monkeypatch.setattr(time, "time", lambda: later)
        monkeypatch.setattr(app.extensions["authsvc"].oidc.ended, "_clock", lambda: later)
        # another user's back-channel logout: the record drops what it no longer needs
        token = provider.logout_token(sid=f"another-{hours}")
        assert other.post("/authsvc/backchannel-logout", data={"logout_token": token}).status_code == 200
        expected = 200 if ended_by == "nothing" and hours < 24 else 302
        thief.set_cookie("session", copy)  # the very same copy, replayed
        assert thief.get("/private").status_code == expected, hours


def test_one_users_sign_in_and_out_cycles_neither_flush_anothers_logout_nor_stop_anyones_sign_in(provider):
    """Every Logout adds a record. Forgetting the oldest once full let one user, signing in and out
    over and over, push out another's Logout (a copy of that cookie, stolen before it, signed in
    again); refusing every sign-in once full let that one user stop everybody's sign-in for a day.
    Now a subject's own records are collapsed into one past PER_SUBJECT: the record never fills up
    with one account's sign-outs, and every sign-out still stands."""
    from flask_authsvc.logout_tokens import MemoryEndedSessions

    ended = MemoryEndedSessions(max_entries=3, per_subject=PER_SUBJECT)
    app, _ = make_app(provider, ended=ended)
    victim, thief, attacker = app.test_client(), app.test_client(), app.test_client()
    assert sign_in(victim, provider).status_code == 303
    stolen = victim.get_cookie("session").value
    assert sign_out(victim).status_code == 303
    own_copies = []
    for i in range(PER_SUBJECT * 4):
        login = attacker.get("/authsvc/login")
        assert login.status_code == 302, i
        code, state = provider.issue_code(login.headers["Location"], preferred_username="mallory",
                                          sub="s-mallory", sid="sid-m")
        assert attacker.get(f"/authsvc/callback?code={code}&state={state}").status_code == 303, i
        if i < PER_SUBJECT + 2:
            own_copies.append(attacker.get_cookie("session").value)
        assert sign_out(attacker).status_code == 303
        assert not ended.full(), i
    thief.set_cookie("session", stolen)
    assert thief.get("/private").status_code == 302                # the victim's Logout still stands
    for copy in own_copies:                                        # and each of the cycler's own
        thief.set_cookie("session", copy)
        assert thief.get("/private").status_code == 302
    carol = app.test_client()
    code, state = provider.issue_code(carol.get("/authsvc/login").headers["Location"], preferred_username="carol",
                                      sub="s-carol", sid="sid-c")
    assert carol.get(f"/authsvc/callback?code={code}&state={state}").status_code == 303
    assert carol.get("/private").status_code == 200                # another user signs in as ever
    assert sign_in(attacker, provider).status_code == 303          # and so does the cycler, afresh
    assert attacker.get("/private").status_code == 200


def test_a_record_full_of_distinct_subjects_refuses_sign_ins_rather_than_forget(provider, caplog):
    """Past max_entries distinct subjects with records under a day old the record is full: forgetting
    would let a signed-out cookie in again, so new sign-ins are refused (503, logged) instead."""
    import time

    from flask_authsvc.logout_tokens import MAX_SIGN_IN_SECONDS, MemoryEndedSessions

    now = [time.time()]
    ended = MemoryEndedSessions(max_entries=3, clock=lambda: now[0])
    app, _ = make_app(provider, ended=ended)
    copies = []
    for name in ("ann", "bob", "cid"):
        user = app.test_client()
        login = user.get("/authsvc/login")
        assert login.status_code == 302
        code, state = provider.issue_code(login.headers["Location"], preferred_username=name, sub=f"s-{name}",
                                          sid=f"sid-{name}")
        assert user.get(f"/authsvc/callback?code={code}&state={state}").status_code == 303
        copies.append(user.get_cookie("session").value)
        assert sign_out(user).status_code == 303
    with caplog.at_level(logging.ERROR, logger="flask_authsvc"):
        assert app.test_client().get("/authsvc/login").status_code == 503
    assert "ended sign-ins is full" in caplog.text
    thief = app.test_client()
    for copy in copies:
        thief.set_cookie("session", copy)
        assert thief.get("/private").status_code == 302            # every Logout still stands
    now[0] += MAX_SIGN_IN_SECONDS + 1                              # every record's sign-in is too old now
    assert sign_in(app.test_client(), provider).status_code == 303


def test_an_https_app_without_secure_session_cookies_starts_no_sign_in_and_says_which_setting(provider, caplog):
    """The sign-in lives in Flask's session cookie. Served over https with Flask's default
    SESSION_COOKIE_SECURE = False, the cookie would also go to http://the-app/ in the clear (a browser
    pushed there before HSTS): no sign-in starts, and the log names the setting and the fix."""
    app, _ = make_app(provider)
    client = app.test_client()
    at = "https://blog.example.test"
    first = client.get("/private", base_url=at)
    with caplog.at_level(logging.ERROR, logger="flask_authsvc"):
        refused = client.get(first.headers["Location"], base_url=at)
    assert refused.status_code == 503 and "Set-Cookie" not in refused.headers
    assert "set SESSION_COOKIE_SECURE = True" in caplog.text
    app, _ = make_app(provider, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-session")
    client = app.test_client()
    url = client.get(client.get("/private", base_url=at).headers["Location"], base_url=at).headers["Location"]
    code, state = provider.issue_code(url)
    back = client.get(f"/authsvc/callback?code={code}&state={state}", base_url=at)
    assert back.status_code == 303 and "; Secure" in back.headers["Set-Cookie"]
    assert client.get("/private", base_url=at).status_code == 200


HTTPS_APP = "https://blog.example.test"


@pytest.mark.parametrize("config, says", [
    ({}, "set SESSION_COOKIE_NAME = '__Host-session'"),
    ({"SESSION_COOKIE_NAME": "blog_session"}, "set SESSION_COOKIE_NAME = '__Host-session'"),
    ({"SESSION_COOKIE_NAME": "__Secure-session"}, "set SESSION_COOKIE_NAME = '__Host-session'"),
    ({"SESSION_COOKIE_NAME": "__host-session"}, "set SESSION_COOKIE_NAME = '__Host-session'"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "SESSION_COOKIE_DOMAIN": "example.test"}, "unset SESSION_COOKIE_DOMAIN"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "SESSION_COOKIE_PATH": "/blog"}, "set SESSION_COOKIE_PATH = '/'"),
    ({"SESSION_COOKIE_NAME": "__Host-session", "APPLICATION_ROOT": "/blog"}, "set SESSION_COOKIE_PATH = '/'"),
], ids=repr)
def test_an_https_app_whose_session_cookie_a_sibling_could_plant_starts_no_sign_in(provider, caplog, config, says):
    """A sibling subdomain sets ``session=<its own signed sign-in>; Domain=example.test; Path=/private``:
    the browser sends it first and the app reads it, so the victim works in the attacker's account.
    Only a ``__Host-`` cookie (this host only, https, Path=/, no Domain) cannot be planted: an app
    served over https starts no sign-in without one, and the log names the setting and the fix."""
    app, _ = make_app(provider, SESSION_COOKIE_SECURE=True, **config)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_authsvc"):
        refused = client.get("/authsvc/login?next=/private", base_url=HTTPS_APP)
    assert refused.status_code == 503 and "Set-Cookie" not in refused.headers
    assert says in caplog.text


def test_an_https_app_with_a_host_prefixed_session_cookie_signs_in(provider):
    app, _ = make_app(provider, SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-session")
    client = app.test_client()
    login = client.get("/authsvc/login?next=/private", base_url=HTTPS_APP)
    code, state = provider.issue_code(login.headers["Location"])
    back = client.get(f"/authsvc/callback?code={code}&state={state}", base_url=HTTPS_APP)
    assert back.status_code == 303
    cookie = back.headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=") and "; Secure" in cookie and "; Path=/" in cookie
    assert "Domain" not in cookie
    assert client.get("/private", base_url=HTTPS_APP).get_data(as_text=True).startswith("alice ")


def test_a_request_with_two_session_cookies_is_refused_and_every_copy_expired(app, provider, caplog):
    """Cookie tossing on an app where a sibling can still plant (plain http, or a cookie named
    before the __Host- rule): the request carries the victim's cookie and the planted one, the
    planted one first. Refused (400), nobody signed in, nothing of either copy written back, and the
    answer deletes every copy the browser may hold (each domain and path of this request's), so no
    request after it reads the planted one."""
    attacker, victim = app.test_client(), app.test_client()
    assert sign_in(attacker, provider, preferred_username="mallory", sub="s-mallory", sid="sid-m").status_code == 303
    assert sign_in(victim, provider).status_code == 303
    planted, own = attacker.get_cookie("session").value, victim.get_cookie("session").value
    browser = app.test_client(use_cookies=False)
    at = "http://blog.example.test"
    with caplog.at_level(logging.WARNING, logger="flask_authsvc"):
        refused = browser.get("/private", base_url=at, headers={"Cookie": f"session={planted}; session={own}"})
    assert refused.status_code == 400 and "mallory" not in refused.get_data(as_text=True)
    assert "two session cookies" in caplog.text
    deleted = {(c.split("; Domain=")[1].split(";")[0] if "; Domain=" in c else None, c.split("; Path=")[1].split(";")[0])
               for c in refused.headers.getlist("Set-Cookie") if c.startswith("session=;") and "Expires=Thu, 01 Jan 1970" in c}
    assert {(None, "/"), (None, "/private"), ("example.test", "/"), ("example.test", "/private"),
            ("blog.example.test", "/"), ("blog.example.test", "/private")} <= deleted
    assert not [c for c in refused.headers.getlist("Set-Cookie") if c.startswith("session=") and "1970" not in c]
    for path in ("/authsvc/login", "/authsvc/callback?code=x&state=y", "/"):    # every route, the extension's too
        assert browser.get(path, headers={"Cookie": f"session={own}; session={planted}"}).status_code == 400


# --- cross-site sign-out: an <img> or a form on another site must not end the sign-in ----------------

@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_get_signs_nobody_out_and_offers_the_button_unframed(client, provider, method):
    """<img src=".../authsvc/logout"> on any site: the browser GETs it with the app's cookie."""
    assert sign_in(client, provider).status_code == 303
    page = client.open("/authsvc/logout", method=method, headers={"Sec-Fetch-Site": "cross-site"})
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store" and page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    if method == "GET":
        assert ('<form class="authsvc-logout" method="post" action="/authsvc/logout">'
                '<button type="submit">Sign out</button></form>') in page.get_data(as_text=True)
    assert client.get("/private").status_code == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client, provider, method):
    assert sign_in(client, provider).status_code == 303
    assert client.open("/authsvc/logout", method=method, headers=FROM_HERE).status_code == 405
    assert client.get("/private").status_code == 200


CROSS_SITE_POSTS = [
    {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example"},                         # a browser without fetch metadata
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": OWN, "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},                            # a sibling subdomain, no Origin
    {"Origin": "http://blog.localhost", "Sec-Fetch-Site": "same-site"},
    {"Origin": "null"},                                         # a sandboxed frame, a data: page
    {"Origin": "HTTP://LOCALHOST"},                             # case
    {"Origin": "http://Localhost", "Sec-Fetch-Site": "same-origin"},
    {"Origin": "http://localhost:8080"},                        # port
    {"Origin": "http://localhost:80"},
    {"Origin": "https://localhost"},                            # scheme
    {"Origin": "https://localhost", "Sec-Fetch-Site": "same-origin"},
    {"Origin": "http://localhost.evil.example"},
    {"Origin": f"{OWN}, https://evil.example"},
]


@pytest.mark.parametrize("headers", CROSS_SITE_POSTS)
def test_a_post_from_another_site_is_refused_and_signs_nobody_out(client, provider, caplog, headers):
    assert sign_in(client, provider).status_code == 303
    with caplog.at_level(logging.WARNING, logger="flask_authsvc"):
        refused = sign_out(client, headers)
    assert refused.status_code == 403 and refused.headers["Cache-Control"] == "no-store"
    assert "Not signed out" in refused.get_data(as_text=True)
    assert "authsvc: sign-out refused: " in caplog.text
    assert client.get("/private").status_code == 200


def test_a_refusal_of_an_https_origin_on_an_http_app_names_proxyfix(client, provider, caplog):
    assert sign_in(client, provider).status_code == 303
    with caplog.at_level(logging.WARNING, logger="flask_authsvc"):
        assert sign_out(client, {"Origin": "https://localhost"}).status_code == 403
    assert "foreign_origin" in caplog.text and "ProxyFix(x_proto=1)" in caplog.text


@pytest.mark.parametrize("headers", [FROM_HERE, {"Origin": OWN}, {"Sec-Fetch-Site": "same-origin"},
                                     {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
                                     {"Sec-Fetch-Site": "none"}, {}])
def test_a_post_from_the_apps_own_page_signs_out(client, provider, headers):
    assert sign_in(client, provider).status_code == 303
    assert sign_out(client, headers).status_code == 303
    assert client.get("/private").status_code == 302


def test_the_own_origin_follows_the_host_the_browser_used(app, provider):
    client = app.test_client()
    assert sign_in(client, provider).status_code == 303
    at = {"base_url": "https://blog.example.test:8443"}
    assert sign_out(client, {"Origin": "https://blog.example.test"}, **at).status_code == 403
    assert client.get("/private").status_code == 200
    assert sign_out(client, {"Origin": "https://blog.example.test:8443"}, **at).status_code == 303


def test_logout_form_is_a_post_form_with_an_escaped_label(app):
    authsvc = app.extensions["authsvc"].extension
    with app.test_request_context("/"):
        form = authsvc.logout_form('Log "out" <now>')
    assert form == ('<form class="authsvc-logout" method="post" action="/authsvc/logout">'
                    '<button type="submit">Log &#34;out&#34; &lt;now&gt;</button></form>')
    assert form.__html__() == str(form)                     # Markup: a template does not escape it again
    with app.test_request_context("/"):
        assert '<button type="submit"><b>Out</b></button>' in authsvc.logout_form(Markup("<b>Out</b>"))


# --- with Flask-WTF's CSRFProtect: the form carries its token, which CSRFProtect checks ---------------
# Every test here runs with CSRFProtect bound before Authsvc and after it: the extension exempts its
# back-channel endpoint (authsvc posts there, server to server, without a CSRF token) either way.

@pytest.fixture(params=["csrfprotect_first", "csrfprotect_after"])
def csrf_app(provider, request):
    flask_wtf = pytest.importorskip("flask_wtf", reason="Flask-WTF is not installed")
    if request.param == "csrfprotect_first":
        app, _ = make_app(provider, before=flask_wtf.CSRFProtect)
    else:
        app, _ = make_app(provider)
        flask_wtf.CSRFProtect().init_app(app)

    @app.get("/")
    def index():
        return render_template_string("{{ authsvc.logout_form() }}")

    @app.post("/notes")
    def notes():
        return "saved"

    @app.post("/backchannel-logout")
    def backchannel_logout():   # the app's own view of the same name (CSRFProtect exempts by name)
        return "the app's"
    return app


def signed_in_with_token(app, provider, page="/"):
    """A client signed in, and the CSRF token of the Sign out form on ``page`` (the field right
    before the button)."""
    client = app.test_client()
    assert sign_in(client, provider).status_code == 303
    html = client.get(page).get_data(as_text=True)
    token = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)"><button', html)
    assert token, html
    return client, token.group(1)


def test_with_csrfprotect_the_form_carries_the_token_and_signs_out(csrf_app, provider):
    client, token = signed_in_with_token(csrf_app, provider)
    assert sign_out(client, FROM_HERE, data={"csrf_token": token}).status_code == 303
    assert client.get("/private").status_code == 302


def test_with_csrfprotect_a_post_without_the_token_is_refused(csrf_app, provider):
    client = csrf_app.test_client()
    assert sign_in(client, provider).status_code == 303
    assert sign_out(client, FROM_HERE).status_code == 400
    assert sign_out(client, FROM_HERE, data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/private").status_code == 200


def test_with_csrfprotect_a_valid_token_does_not_let_another_site_sign_out(csrf_app, provider):
    client, token = signed_in_with_token(csrf_app, provider)
    assert sign_out(client, {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
                    data={"csrf_token": token}).status_code == 403
    assert client.get("/private").status_code == 200


def test_the_get_page_carries_the_token_too(csrf_app, provider):
    client, token = signed_in_with_token(csrf_app, provider, "/authsvc/logout")
    assert sign_out(client, FROM_HERE, data={"csrf_token": token}).status_code == 303


def test_with_csrfprotect_a_signed_logout_token_still_ends_the_session(csrf_app, provider):
    """authsvc's server posts the logout token without a CSRF token; CSRFProtect must not refuse it
    (a silent failure: the user signed out at authsvc would stay signed in here)."""
    client = csrf_app.test_client()
    assert sign_in(client, provider).status_code == 303
    for _ in range(2):   # the first request exempts it (CSRFProtect bound after), the next ones too
        answer = post_logout(csrf_app.test_client(), provider.logout_token())
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert client.get("/private").status_code == 302


def test_with_csrfprotect_a_forged_logout_token_is_still_refused(csrf_app, provider):
    """Exempt from the CSRF token, not from the signature."""
    client = csrf_app.test_client()
    assert sign_in(client, provider).status_code == 303
    answer = post_logout(csrf_app.test_client(), provider.logout_token(key=OTHER_KEY))
    assert answer.status_code == 400 and answer.get_json()["error_description"] == "bad_signature"
    assert client.get("/private").status_code == 200


def test_with_csrfprotect_the_apps_other_posts_stay_protected(csrf_app, provider):
    client = csrf_app.test_client()
    assert sign_in(client, provider).status_code == 303
    assert post_logout(csrf_app.test_client(), provider.logout_token(sid="sid-9")).status_code == 200
    assert client.post("/notes", data={"text": "hi"}).status_code == 400
    assert client.post("/notes", data={"logout_token": provider.logout_token()}).status_code == 400
    # a view of the app's named like the extension's, in another module, is not exempted with it
    assert client.post("/backchannel-logout", data={"logout_token": provider.logout_token()}).status_code == 400
    assert sign_out(client, FROM_HERE).status_code == 400   # the extension's own Sign out still needs the token
    assert client.get("/private").status_code == 200


def test_csrf_field_name_follows_wtf_csrf_field_name(provider):
    flask_wtf = pytest.importorskip("flask_wtf", reason="Flask-WTF is not installed")
    app, authsvc = make_app(provider, WTF_CSRF_FIELD_NAME="_token")
    flask_wtf.CSRFProtect(app)
    with app.test_request_context("/"):
        assert '<input type="hidden" name="_token" value="' in authsvc.logout_form()


def test_a_sign_in_record_without_its_local_id_is_refused(client, provider, app):
    """A session written by an older version (no local sign-in id) cannot be signed out by the
    Logout: it is treated as signed out now."""
    assert sign_in(client, provider).status_code == 303
    with client.session_transaction() as session:
        record = dict(session["_authsvc"])
        del record["n"]
        session["_authsvc"] = record
    assert client.get("/private").status_code == 302


# --- RFC 9207: the authorization response's issuer -------------------------------------------------

@pytest.mark.parametrize("iss, status", [(None, 401), ("https://evil.example", 401), ("", 401),
                                         ("{base}/", 401), ("{base}", 303)])
def test_iss_in_the_authorization_response_must_be_the_issuer_when_advertised(client, provider, iss, status):
    provider.iss_supported = True
    code, state = provider.issue_code(start(client))
    query = {"code": code, "state": state}
    if iss is not None:
        query["iss"] = iss.format(base=provider.base)
    assert client.get("/authsvc/callback", query_string=query).status_code == status
    assert client.get("/private").status_code == (200 if status == 303 else 302)


def test_a_repeated_iss_is_refused(client, provider):
    provider.iss_supported = True
    code, state = provider.issue_code(start(client))
    url = f"/authsvc/callback?code={code}&state={state}&iss={provider.base}&iss=https://evil.example"
    assert client.get(url).status_code == 401


def test_a_wrong_iss_is_refused_even_when_not_advertised(client, provider):
    code, state = provider.issue_code(start(client))
    assert client.get(f"/authsvc/callback?code={code}&state={state}&iss=https://evil.example").status_code == 401


def test_required_mfa_steps_up_with_prompt_login(client, provider):
    assert sign_in(client, provider, amr=["pwd"]).status_code == 303
    page = client.get("/secure")
    assert page.status_code == 403
    assert 'href="/authsvc/login?next=/secure&amp;step_up=1"' in page.get_data(as_text=True)
    step_up = client.get("/authsvc/login?next=/secure&step_up=1")
    assert parse_qs(urlsplit(step_up.headers["Location"]).query)["prompt"] == ["login"]
    code, state = provider.issue_code(step_up.headers["Location"])
    assert client.get(f"/authsvc/callback?code={code}&state={state}").headers["Location"] == "/secure"
    assert client.get("/secure").get_data(as_text=True) == "two factors"


# --- back-channel logout -------------------------------------------------------------------------------

def post_logout(client, token):
    return client.post("/authsvc/backchannel-logout", data={"logout_token": token})


def test_backchannel_logout_of_the_sid_ends_the_sign_in(client, provider, app):
    assert sign_in(client, provider).status_code == 303
    other = app.test_client()
    assert sign_in(other, provider, sid="sid-2").status_code == 303
    answer = post_logout(app.test_client(), provider.logout_token(sid="sid-1"))
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert client.get("/private").status_code == 302
    assert other.get("/private").status_code == 200       # another sid of the same user stays


def test_backchannel_logout_of_a_subject_ends_its_earlier_sign_ins(client, provider, app):
    assert sign_in(client, provider).status_code == 303
    assert post_logout(app.test_client(), provider.logout_token(sid=None)).status_code == 200
    assert client.get("/private").status_code == 302
    assert sign_in(client, provider).status_code == 303   # a sign-in after it is not ended
    assert client.get("/private").status_code == 200


@pytest.mark.parametrize("changes, reason", [
    ({"nonce": "n"}, "nonce_present"),
    ({"events": None}, "not_a_logout_token"),
    ({"events": {"http://schemas.openid.net/event/backchannel-logout": "yes"}}, "not_a_logout_token"),
    ({"aud": "another-client"}, "wrong_audience"),
    ({"iss": "https://evil.example"}, "wrong_issuer"),
    ({"iat": 1_000_000}, "bad_iat"),
    ({"iat": None}, "bad_iat"),
    ({"exp": 1_000_000}, "expired"),
    ({"sid": None, "sub": None}, "no_sid_or_sub"),
    ({"sid": 5}, "bad_sid_or_sub"),
])
def test_hostile_logout_tokens_are_400_and_end_nothing(client, provider, app, caplog, changes, reason):
    caplog.set_level(logging.WARNING, "flask_authsvc")
    assert sign_in(client, provider).status_code == 303
    answer = post_logout(app.test_client(), provider.logout_token(**changes))
    assert answer.status_code == 400 and answer.get_json()["error_description"] == reason
    assert client.get("/private").status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "x" * 20_000, "ä"])
def test_malformed_logout_tokens_are_400(client, provider, token):
    assert post_logout(client, token).status_code == 400


def test_logout_token_signed_by_another_key_or_unsigned_is_400(client, provider, app):
    assert sign_in(client, provider).status_code == 303
    assert post_logout(app.test_client(), provider.logout_token(key=OTHER_KEY)).status_code == 400
    _, claims, _ = provider.logout_token().split(".")
    import base64
    none_header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert post_logout(app.test_client(), f"{none_header}.{claims}.").status_code == 400
    assert client.get("/private").status_code == 200


def test_an_id_token_is_not_a_logout_token(client, provider, app):
    assert sign_in(client, provider).status_code == 303
    id_token = provider.sign(provider.claims("some-nonce"))
    assert post_logout(app.test_client(), id_token).status_code == 400
    assert client.get("/private").status_code == 200


ROTATED_KEY = RSAKey.generate_key(2048, parameters={"kid": "k2"})


def test_a_logout_token_signed_by_a_rotated_in_key_is_checked_against_the_fresh_jwks(client, provider, app):
    """authsvc signs with a new key at once after ``authsvc oidc keys rotate``: a kid missing from
    the cached JWKS makes the extension fetch it again (once), as Authlib does for ID tokens."""
    assert sign_in(client, provider).status_code == 303          # the JWKS (k1) is cached now
    provider.key = ROTATED_KEY
    fetched = provider.jwks_fetches
    assert post_logout(app.test_client(), provider.logout_token()).status_code == 200
    assert provider.jwks_fetches == fetched + 1
    assert client.get("/private").status_code == 302


def test_an_unknown_kid_refetches_once_and_is_still_refused(client, provider, app):
    assert sign_in(client, provider).status_code == 303
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k9"})
    fetched = provider.jwks_fetches
    assert post_logout(app.test_client(), provider.logout_token(key=stranger)).status_code == 400
    assert provider.jwks_fetches == fetched + 1
    assert client.get("/private").status_code == 200


def test_unknown_kids_from_anyone_fetch_the_jwks_at_most_once_a_while(client, provider, app):
    """The back-channel endpoint takes anonymous POSTs: each token with a kid not in the cached JWKS
    made the app fetch the provider's JWKS again, as often as anyone cared to post. Now once per
    JWKS_REFRESH_SECONDS per process; a token whose kid is unknown meanwhile is a 503 (authsvc
    retries it, and by then the fetch may go ahead)."""
    from flask_authsvc.oidc import JWKS_REFRESH_SECONDS

    assert sign_in(client, provider).status_code == 303          # the JWKS is cached now
    oidc = app.extensions["authsvc"].oidc
    start = oidc.clock()
    oidc.clock = lambda: start
    fetched = provider.jwks_fetches
    answers = [post_logout(app.test_client(), provider.logout_token(
        key=RSAKey.import_key(OTHER_KEY.as_dict(private=True), {"kid": f"random-{i}"}))).status_code
        for i in range(20)]
    assert provider.jwks_fetches == fetched + 1
    assert answers[0] == 400 and set(answers[1:]) == {503}
    provider.key = ROTATED_KEY                                     # a real rotation meanwhile
    assert post_logout(app.test_client(), provider.logout_token()).status_code == 503
    assert client.get("/private").status_code == 200
    oidc.clock = lambda: start + JWKS_REFRESH_SECONDS + 0.1        # authsvc's retry, a little later
    assert post_logout(app.test_client(), provider.logout_token()).status_code == 200
    assert provider.jwks_fetches == fetched + 2
    assert client.get("/private").status_code == 302
    # a token signed with a key the cached JWKS has never fetches
    assert post_logout(app.test_client(), provider.logout_token(sid="sid-3")).status_code == 200
    assert provider.jwks_fetches == fetched + 2


def test_a_stalled_jwks_answer_holds_the_request_only_until_the_timeout(provider, monkeypatch):
    """With no timeout, a provider (or a route) that stalls held the app's worker as long as it
    stalled, and anyone could make it wait there (an unknown kid forces the fetch)."""
    import time

    import flask_authsvc.oidc

    monkeypatch.setattr(flask_authsvc.oidc, "HTTP_TIMEOUT", 0.5)
    app, _ = make_app(provider)
    assert sign_in(app.test_client(), provider).status_code == 303
    provider.jwks_stall = 3.0
    began = time.monotonic()
    stranger = RSAKey.import_key(OTHER_KEY.as_dict(private=True), {"kid": "stranger"})
    assert post_logout(app.test_client(), provider.logout_token(key=stranger)).status_code == 503
    assert time.monotonic() - began < 2


# --- a provider whose certificate this process does not trust ------------------------------------------

def test_tls_failures_get_the_ca_bundle_hint_and_others_do_not():
    import ssl

    import requests
    from flask_authsvc.oidc import TLS_HINT, _tls_hint

    wrapped = requests.exceptions.ConnectionError("outer")
    wrapped.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert _tls_hint(requests.exceptions.SSLError("certificate verify failed")) == TLS_HINT
    assert _tls_hint(wrapped) == TLS_HINT
    assert _tls_hint(requests.exceptions.ConnectionError(ssl.SSLError("handshake"))) == TLS_HINT
    assert _tls_hint(requests.exceptions.ConnectionError("refused")) == ""
    assert _tls_hint(ValueError("not JSON")) == ""
    looping = OSError("a")
    looping.__context__ = looping                  # a cycle ends the walk, never hangs
    assert _tls_hint(looping) == ""
