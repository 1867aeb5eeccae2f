"""Logout at the OpenID Provider: RP-initiated logout (the end_session_endpoint) and back-channel
logout (a signed logout token POSTed to every app of an ended session), through the real endpoints.

Threats: a post_logout_redirect_uri that is not the client's registered one byte for byte (prefix,
suffix, case, another client's, a fragment, ``javascript:``), a forged or foreign id_token_hint
(another key, another issuer, ``alg: none``, HS256 over the public key, another client's, too old),
logout CSRF (a link on any site must not sign the user out), a back-channel token that a receiver
could not verify or that carries the wrong claims, a session ending without its apps hearing of it
(every way a session ends), a receiver that fails (retried, then audited, never logged with the
token), a slow receiver holding up the user's request.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import importlib.util
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.conftest import HTTPS, PASSWORD, browser, csrf, csrf_in, login, run_cli
from tests.security.oidc_helpers import WEB, add_client, exchange, get_code
from tests.security.oidc_receiver import start_receiver

def _flask_client_check():
    """clients/flask's logout_token_problem, loaded from its file (the package is not installed here)."""
    path = Path(__file__).resolve().parents[2] / "clients" / "flask" / "src" / "flask_authsvc" / "logout_tokens.py"
    spec = importlib.util.spec_from_file_location("authsvc_test_flask_logout_tokens", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.logout_token_problem


flask_client_check = _flask_client_check()
LOGOUT_URI = "https://app.example.com/signed-out"
OTHER_LOGOUT_URI = "https://other.example.com/bye"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def events(svc, monkeypatch):
    """Audit events emitted during the test (the request's and the sender thread's)."""
    seen: list[tuple[str, dict]] = []
    original = svc.audit.emit

    def spy(event, **fields):
        seen.append((event, fields))
        original(event, **fields)
    monkeypatch.setattr(svc.audit, "emit", spy)
    return seen


@pytest.fixture
def web(svc):
    return add_client(svc, trusted=True, post_logout_redirect_uris=(LOGOUT_URI,))


@pytest.fixture
def other(svc):
    return add_client(svc, "Other", ("https://other.example.com/cb",), trusted=True,
                      post_logout_redirect_uris=(OTHER_LOGOUT_URI,))


@pytest.fixture
def signed_in(client, user):
    assert login(client).status_code == 303
    return client


def id_token_of(client, web) -> str:
    cid, secret = web
    code, verifier = get_code(client, cid)
    body = exchange(client, cid, secret, code, verifier).get_json()
    assert "id_token" in body, body
    return body["id_token"]


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==="))


def live(client) -> bool:
    return client.get("/api/v1/session").status_code == 200


def end_session(client, headers=None, **params):
    return client.get("/oauth/logout?" + urlencode(params), headers=headers or {})


def sign(svc, claims: dict, *, header: dict | None = None) -> str:
    """A token signed with the provider's own current key (to test the claim checks alone)."""
    key = svc.oidc.keys.current()
    private = ECKey.import_key(key.private_key)
    return jwt.encode(header or {"alg": "ES256", "kid": key.kid}, claims, private, algorithms=["ES256"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- discovery and the ID token's sid -----------------------------------------------------------------

def test_discovery_names_the_end_session_endpoint_and_back_channel_support(client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["end_session_endpoint"] == f"{HTTPS}/oauth/logout"
    assert meta["backchannel_logout_supported"] is True and meta["backchannel_logout_session_supported"] is True


def test_sid_in_the_id_token_is_a_json_string(signed_in, web):
    claims = claims_of(id_token_of(signed_in, web))
    assert isinstance(claims["sid"], str) and claims["sid"]


# --- RP-initiated logout: the return address ---------------------------------------------------------

HOSTILE_RETURNS = {
    "prefix": LOGOUT_URI + "/../../evil",
    "suffix": LOGOUT_URI + ".evil.example",
    "shorter": LOGOUT_URI[:-1],
    "trailing_slash": LOGOUT_URI + "/",
    "case_host": LOGOUT_URI.replace("app.example.com", "APP.example.com"),
    "case_path": LOGOUT_URI.replace("signed-out", "Signed-Out"),
    "query_added": LOGOUT_URI + "?next=https://evil.example",
    "fragment": LOGOUT_URI + "#x",
    "other_clients": OTHER_LOGOUT_URI,
    "javascript": "javascript:alert(document.domain)",
    "data": "data:text/html,<script>alert(1)</script>",
    "http_for_https": LOGOUT_URI.replace("https:", "http:"),
    "userinfo": "https://app.example.com@evil.example/signed-out",
    "encoded": LOGOUT_URI.replace("-", "%2D"),
    "whitespace": " " + LOGOUT_URI,
    "control": LOGOUT_URI + "\r\nX: y",
    "huge": LOGOUT_URI + "?" + "a" * 5000,
    "lookalike": LOGOUT_URI.replace("example", "exаmple"),  # Cyrillic a
    "other_port": LOGOUT_URI.replace("app.example.com", "app.example.com:8443"),
    "the_login_redirect_uri": WEB,
}


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", HOSTILE_RETURNS.values(), ids=HOSTILE_RETURNS.keys())
@pytest.mark.parametrize("with_hint", [True, False], ids=["hint", "client_id"])
def test_unregistered_post_logout_redirect_uri_gets_a_page_never_a_redirect_and_logs_nobody_out(
        svc, signed_in, web, other, events, uri, with_hint):
    cid, _ = web
    params = {"id_token_hint": id_token_of(signed_in, web)} if with_hint else {"client_id": cid}
    response = end_session(signed_in, post_logout_redirect_uri=uri, state="s", **params)
    assert response.status_code == 400 and "Location" not in response.headers
    assert "not one the application registered" in response.get_data(as_text=True)
    assert live(signed_in)
    assert ("oidc_logout_refused", {"reason": "post_logout_redirect_uri_" + (
        "too_long" if len(uri) > 2048 else "not_registered"), "client_id": None if with_hint else cid}) in events


def test_post_logout_redirect_uri_without_a_client_is_refused(signed_in, web):
    response = end_session(signed_in, post_logout_redirect_uri=LOGOUT_URI)
    assert response.status_code == 400 and "Location" not in response.headers and live(signed_in)


def test_repeated_parameters_are_refused(signed_in, web):
    cid, _ = web
    query = urlencode([("client_id", cid), ("post_logout_redirect_uri", LOGOUT_URI),
                       ("post_logout_redirect_uri", "https://evil.example/")])
    response = signed_in.get("/oauth/logout?" + query)
    assert response.status_code == 400 and "Location" not in response.headers and live(signed_in)


@pytest.mark.asvs("V10.6.2")
def test_hint_of_this_session_signs_out_at_once_and_returns_to_the_registered_uri_with_state(
        svc, signed_in, web, events):
    hint = id_token_of(signed_in, web)
    response = end_session(signed_in, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI, state="st 4/te")
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(LOGOUT_URI + "?") and parse_qs(urlsplit(location).query) == {"state": ["st 4/te"]}
    assert not live(signed_in)
    assert ("oidc_logout", {"step": "end_now", "client_id": web[0]}) in events
    assert [f for e, f in events if e == "logout"] == [{"session_id": 1, "via": "oidc", "client_id": web[0]}]


def test_an_expired_hint_of_this_session_still_signs_out(svc, signed_in, web, clock):
    hint = id_token_of(signed_in, web)
    clock.advance(svc.policy.oidc.id_token_lifetime_seconds + 60)
    signed_in.get("/")  # the session stays live (not idle)
    response = end_session(signed_in, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI)
    assert response.status_code == 303 and response.headers["Location"] == LOGOUT_URI
    assert not live(signed_in)


def test_signed_out_browser_is_sent_straight_back(client, web):
    cid, _ = web
    response = end_session(client, client_id=cid, post_logout_redirect_uri=LOGOUT_URI, state="x")
    assert response.status_code == 303 and response.headers["Location"] == LOGOUT_URI + "?state=x"


def test_without_a_return_address_the_user_sees_a_signed_out_page(svc, signed_in, web):
    response = end_session(signed_in, id_token_hint=id_token_of(signed_in, web))
    assert response.status_code == 200 and "You are signed out" in response.get_data(as_text=True)
    assert not live(signed_in)


# --- RP-initiated logout: logout CSRF ---------------------------------------------------------------------

@pytest.mark.asvs("V10.6.2", "V3.5.1")
def test_cross_site_link_without_hint_only_asks_and_signs_nobody_out(svc, signed_in, web, events):
    cid, _ = web
    response = signed_in.get("/oauth/logout?" + urlencode({"client_id": cid, "post_logout_redirect_uri": LOGOUT_URI}),
                             headers={"Sec-Fetch-Site": "cross-site", "Referer": "https://evil.example/"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Sign out?" in page and "Location" not in response.headers
    assert live(signed_in)
    assert ("oidc_logout", {"step": "confirm", "client_id": cid}) in events
    # Its form: CSRF token, the client and the return address, never the hint.
    assert 'name="csrf_token"' in page and "id_token_hint" not in page
    # The page's form-action allows the client's origin (the post ends in a redirect there).
    assert "https://app.example.com" in response.headers["Content-Security-Policy"]


def test_a_bare_cross_site_get_only_asks(signed_in):
    response = signed_in.get("/oauth/logout", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200 and "Sign out?" in response.get_data(as_text=True) and live(signed_in)


def test_hint_of_another_session_of_the_same_user_only_asks(app, svc, user, web):
    first = browser(app)
    assert login(first).status_code == 303
    hint = id_token_of(first, web)
    second = browser(app, ip="198.51.100.8")
    assert login(second).status_code == 303
    response = end_session(second, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI)
    assert response.status_code == 200 and "Sign out?" in response.get_data(as_text=True)
    assert live(first) and live(second)


def test_hint_of_another_user_only_asks(app, svc, user, web):
    from tests.conftest import add_user

    add_user(app, "bob")
    alice = browser(app)
    assert login(alice).status_code == 303
    bob = browser(app, ip="198.51.100.9")
    assert login(bob, "bob").status_code == 303
    response = end_session(alice, id_token_hint=id_token_of(bob, web))
    assert response.status_code == 200 and "Sign out?" in response.get_data(as_text=True) and live(alice)


@pytest.mark.asvs("V3.5.1")
def test_confirmation_post_without_its_csrf_token_signs_nobody_out(signed_in, web):
    cid, _ = web
    response = signed_in.post("/oauth/logout/confirm", data={"decision": "logout", "client_id": cid,
                                                               "post_logout_redirect_uri": LOGOUT_URI})
    assert response.status_code in (400, 403) and "Location" not in response.headers and live(signed_in)


def test_confirmation_post_from_another_site_signs_nobody_out(signed_in, web):
    cid, _ = web
    token = csrf(signed_in, "/oauth/logout?client_id=" + cid)
    response = signed_in.post("/oauth/logout/confirm", data={"csrf_token": token, "decision": "logout",
                                                               "client_id": cid},
                              headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert response.status_code in (400, 403) and live(signed_in)


def test_confirmed_logout_ends_the_session_and_returns_with_state(signed_in, web, events):
    cid, _ = web
    page = end_session(signed_in, client_id=cid, post_logout_redirect_uri=LOGOUT_URI, state="abc")
    response = signed_in.post("/oauth/logout/confirm", data={
        "csrf_token": csrf_in(page.get_data(as_text=True)), "decision": "logout", "client_id": cid,
        "post_logout_redirect_uri": LOGOUT_URI, "state": "abc"})
    assert response.status_code == 303 and response.headers["Location"] == LOGOUT_URI + "?state=abc"
    assert not live(signed_in)
    assert ("oidc_logout", {"step": "confirmed", "client_id": cid}) in events


def test_confirmation_post_rechecks_the_return_address(signed_in, web):
    cid, _ = web
    page = end_session(signed_in, client_id=cid, post_logout_redirect_uri=LOGOUT_URI)
    response = signed_in.post("/oauth/logout/confirm", data={
        "csrf_token": csrf_in(page.get_data(as_text=True)), "decision": "logout", "client_id": cid,
        "post_logout_redirect_uri": "https://evil.example/"})
    assert response.status_code == 400 and "Location" not in response.headers and live(signed_in)


def test_a_remembered_browser_without_a_live_session_is_asked_and_then_forgotten(app, svc, user, web, clock):
    client = browser(app)
    assert login(client, remember=True).status_code == 303
    clock.advance(svc.policy.sessions.idle_timeout_seconds + 1)  # the session is idle; the cookie remains
    cid, _ = web
    page = end_session(client, client_id=cid, post_logout_redirect_uri=LOGOUT_URI, headers=None)
    assert page.status_code == 200 and "remembers your sign-in" in page.get_data(as_text=True)
    response = client.post("/oauth/logout/confirm", data={
        "csrf_token": csrf_in(page.get_data(as_text=True)), "decision": "logout", "client_id": cid,
        "post_logout_redirect_uri": LOGOUT_URI})
    assert response.status_code == 303 and response.headers["Location"] == LOGOUT_URI
    home = client.get("/")  # nothing left to restore a session from
    assert home.status_code == 303 and "/login" in home.headers["Location"] and not live(client)


def test_stay_signed_in_keeps_the_session(signed_in, web):
    cid, _ = web
    page = end_session(signed_in, client_id=cid)
    response = signed_in.post("/oauth/logout/confirm", data={
        "csrf_token": csrf_in(page.get_data(as_text=True)), "decision": "stay", "client_id": cid})
    assert response.status_code == 303 and urlsplit(response.headers["Location"]).path == "/"
    assert live(signed_in)


# --- RP-initiated logout: forged and foreign hints ------------------------------------------------------------

def _forged(svc, signed_in, web, kind: str) -> str:
    genuine = id_token_of(signed_in, web)
    claims = claims_of(genuine)
    header = json.loads(base64.urlsafe_b64decode(genuine.split(".")[0] + "==="))
    if kind == "other_key_same_kid":
        other = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
        return jwt.encode(header, claims, other, algorithms=["ES256"])
    if kind == "alg_none":
        return b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode()) + "."
    if kind == "hs256_public_key_as_secret":
        public = KeySet.import_key_set(signed_in.get("/oauth/jwks").get_json()).keys[0]
        secret = json.dumps(public.as_dict(), sort_keys=True).encode()
        head = b64(json.dumps({"alg": "HS256", "kid": header["kid"]}).encode())
        body = b64(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64(mac)}"
    if kind == "tampered_sub":
        head, body, sig = genuine.split(".")
        return f"{head}.{b64(json.dumps({**claims, 'sub': 'someone-else'}).encode())}.{sig}"
    if kind == "other_issuer":
        return sign(svc, {**claims, "iss": "https://evil.example"})
    if kind == "too_old":
        return sign(svc, {**claims, "iat": claims["iat"] - svc.policy.sessions.absolute_lifetime_seconds - 1})
    if kind == "issued_in_future":
        return sign(svc, {**claims, "iat": claims["iat"] + 3600})
    if kind == "no_audience":
        return sign(svc, {k: v for k, v in claims.items() if k != "aud"})
    if kind == "sid_not_a_string":
        return sign(svc, {**claims, "sid": 1})
    if kind == "garbage":
        return "not.a.jwt"
    if kind == "huge":
        return genuine + "A" * 9000
    raise AssertionError(kind)


FORGERIES = ["other_key_same_kid", "alg_none", "hs256_public_key_as_secret", "tampered_sub", "other_issuer",
             "too_old", "issued_in_future", "no_audience", "sid_not_a_string", "garbage", "huge"]


@pytest.mark.asvs("V10.6.2")
@pytest.mark.parametrize("kind", FORGERIES)
def test_forged_or_foreign_id_token_hint_is_refused_without_redirect_or_logout(svc, signed_in, web, events, kind):
    hint = _forged(svc, signed_in, web, kind)
    response = end_session(signed_in, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI, state="s")
    assert response.status_code == 400 and "Location" not in response.headers
    assert live(signed_in)
    assert any(e == "oidc_logout_refused" and f["reason"].startswith("id_token_hint_") for e, f in events)


def test_hint_for_another_client_than_client_id_is_refused(svc, signed_in, web, other):
    response = end_session(signed_in, id_token_hint=id_token_of(signed_in, web), client_id=other[0],
                           post_logout_redirect_uri=OTHER_LOGOUT_URI)
    assert response.status_code == 400 and "Location" not in response.headers and live(signed_in)


def test_hint_signed_by_a_rotated_key_still_published_is_accepted(svc, signed_in, web):
    hint = id_token_of(signed_in, web)
    svc.oidc.keys.rotate()
    response = end_session(signed_in, id_token_hint=hint, post_logout_redirect_uri=LOGOUT_URI)
    assert response.status_code == 303 and not live(signed_in)


def test_unknown_client_id_is_refused(signed_in):
    response = end_session(signed_in, client_id="nope", post_logout_redirect_uri=LOGOUT_URI)
    assert response.status_code == 400 and "Location" not in response.headers and live(signed_in)


# --- back-channel logout ---------------------------------------------------------------------------------------

@pytest.fixture
def receiver(tmp_path, monkeypatch):
    got, server = start_receiver(tmp_path / "tls")
    monkeypatch.setenv("SSL_CERT_FILE", str(got.ca))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    yield got
    server.shutdown()
    server.server_close()


@pytest.fixture
def bc_client(svc, receiver):
    """A confidential client with a back-channel logout URI (the receiver)."""
    svc.backchannel.backoff = 0.05  # retries in tens of milliseconds, not seconds
    return add_client(svc, "Backchannel", trusted=True, backchannel_logout_uri=receiver.url)


def check_logout_token(client, body: bytes, client_id: str, *, sub: str, sid: str) -> dict:
    form = parse_qs(body.decode("ascii"), strict_parsing=True)
    assert list(form) == ["logout_token"] and len(form["logout_token"]) == 1
    keys = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    token = jwt.decode(form["logout_token"][0], keys, algorithms=["ES256"])  # raises if the signature is wrong
    claims = token.claims
    assert token.header["typ"] == "logout+jwt" and token.header["kid"]
    assert claims["iss"] == HTTPS and claims["aud"] == client_id
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert isinstance(claims["sid"], str) and claims["sid"] == sid
    assert claims["sub"] == sub and "nonce" not in claims
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 22
    assert isinstance(claims["iat"], int) and 0 < claims["exp"] - claims["iat"] <= 300
    # And the Flask client extension's own check (clients/flask) accepts it.
    assert flask_client_check(claims, issuer=HTTPS, client_id=client_id, now=claims["iat"]) is None
    return claims


def _end_by_logout(ctx):
    ctx.client.post("/logout", data={"csrf_token": csrf(ctx.client, "/")})


def _end_by_rp_logout(ctx):
    assert end_session(ctx.client, id_token_hint=ctx.id_token).status_code == 200


def _end_by_confirmed_rp_logout(ctx):
    page = end_session(ctx.client, client_id=ctx.client_id)
    ctx.client.post("/oauth/logout/confirm", data={"csrf_token": csrf_in(page.get_data(as_text=True)),
                                                    "decision": "logout", "client_id": ctx.client_id})


def _end_by_password_change(ctx):
    other = browser(ctx.app, ip="198.51.100.20")
    assert login(other).status_code == 303
    response = other.post("/account/password", data={"csrf_token": csrf(other, "/"), "current_password": PASSWORD,
                                                      "new_password": "another long pass phrase 77"})
    assert response.status_code == 200


def _end_on_the_account_page(ctx):
    ctx.client.post(f"/account/sessions/{ctx.session_id}/revoke", data={"csrf_token": csrf(ctx.client, "/")})


def _end_by_session_cap(ctx):
    store = ctx.svc.sessions
    ctx.monkeypatch.setattr(store, "policy", dataclasses.replace(store.policy, max_sessions_per_user=1))
    assert login(browser(ctx.app, ip="198.51.100.21")).status_code == 303


def _end_by_cli_revoke(ctx):
    assert run_cli(ctx.monkeypatch, ctx.tmp_path, "sessions", "revoke", "alice") == 0


def _end_by_cli_disable(ctx):
    assert run_cli(ctx.monkeypatch, ctx.tmp_path, "user", "disable", "alice") == 0


def _end_by_logout_after_a_step_up(ctx):
    """The step-up gave the session a new token (ASVS V7.2.4): its sid, which clients hold, stays."""
    ctx.svc.clock.advance(ctx.svc.policy.mfa.step_up_seconds + 1)
    token = csrf(ctx.client, "/")
    assert ctx.client.post("/account/step-up", data={"csrf_token": token, "password": PASSWORD}).status_code == 200
    alice = ctx.svc.accounts.by_username("alice").id
    assert [s.id for s in ctx.svc.sessions.list_live(alice)] == [ctx.session_id]  # the same session, a new token
    _end_by_logout(ctx)


ENDINGS = {"logout": _end_by_logout, "logout_after_a_step_up": _end_by_logout_after_a_step_up,
           "rp_logout_with_hint": _end_by_rp_logout,
           "rp_logout_confirmed": _end_by_confirmed_rp_logout, "password_change": _end_by_password_change,
           "account_page": _end_on_the_account_page, "session_cap": _end_by_session_cap,
           "cli_sessions_revoke": _end_by_cli_revoke, "cli_user_disable": _end_by_cli_disable}


@dataclasses.dataclass
class Ctx:
    app: object
    svc: object
    client: object
    client_id: str
    id_token: str
    session_id: int
    monkeypatch: object
    tmp_path: object


@pytest.mark.asvs("V7.6.1", "V7.4.1")
@pytest.mark.parametrize("ending", ENDINGS.values(), ids=ENDINGS.keys())
def test_every_way_a_session_ends_sends_a_verifiable_logout_token(app, svc, user, receiver, bc_client, events,
                                                                   monkeypatch, tmp_path, ending):
    client = browser(app)
    assert login(client).status_code == 303
    id_token = id_token_of(client, bc_client)
    claims = claims_of(id_token)
    session_id = svc.sessions.list_live(user.id)[0].id
    ending(Ctx(app, svc, client, bc_client[0], id_token, session_id, monkeypatch, tmp_path))
    assert svc.backchannel.drain(15)
    got = receiver.wait_for(1)
    assert len(got) == 1, [g.path for g in got]
    assert got[0].path == "/backchannel"
    assert got[0].headers["content-type"] == "application/x-www-form-urlencoded"
    check_logout_token(client, got[0].body, bc_client[0], sub=claims["sub"], sid=claims["sid"])


def test_clients_without_tokens_in_the_session_hear_nothing(app, svc, user, receiver, bc_client, web):
    client = browser(app)
    assert login(client).status_code == 303
    id_token_of(client, web)  # tokens for the other app only
    _end_by_logout(Ctx(app, svc, client, "", "", 0, None, None))
    assert svc.backchannel.drain(10)
    time.sleep(0.2)
    assert receiver.got == []


def test_a_failing_receiver_is_retried_with_backoff_then_succeeds(app, svc, user, receiver, bc_client, events):
    receiver.statuses = [500, 503, 200]
    client = browser(app)
    assert login(client).status_code == 303
    claims = claims_of(id_token_of(client, bc_client))
    _end_by_logout(Ctx(app, svc, client, "", "", 0, None, None))
    assert svc.backchannel.drain(15)
    assert receiver.answered == [500, 503, 200]
    tokens = [parse_qs(g.body.decode())["logout_token"][0] for g in receiver.got]
    assert len(set(tokens)) == 1  # the same token (same jti) each time: a receiver can tell a repeat
    check_logout_token(client, receiver.got[-1].body, bc_client[0], sub=claims["sub"], sid=claims["sid"])
    sent = [f for e, f in events if e == "oidc_backchannel_logout_sent"]
    assert len(sent) == 1 and sent[0]["attempts"] == 3 and sent[0]["status"] == 200


@pytest.mark.asvs("V16.3.4")
def test_a_receiver_failing_every_time_is_audited_without_the_token(app, svc, user, receiver, bc_client, events,
                                                                    capsys):
    receiver.statuses = [500]
    client = browser(app)
    assert login(client).status_code == 303
    id_token_of(client, bc_client)
    _end_by_logout(Ctx(app, svc, client, "", "", 0, None, None))
    assert svc.backchannel.drain(15)
    assert len(receiver.got) == svc.backchannel.attempts
    failed = [f for e, f in events if e == "oidc_backchannel_logout_failed"]
    assert failed == [{"client_id": bc_client[0], "session_id": 1, "attempts": svc.backchannel.attempts,
                       "reason": "http_500", "status": 500}]
    token = parse_qs(receiver.got[0].body.decode())["logout_token"][0]
    out = capsys.readouterr()
    assert token not in out.out + out.err and token.split(".")[2] not in out.out + out.err


def test_a_receiver_refusing_the_token_is_not_retried(app, svc, user, receiver, bc_client, events):
    receiver.statuses = [400]
    client = browser(app)
    assert login(client).status_code == 303
    id_token_of(client, bc_client)
    _end_by_logout(Ctx(app, svc, client, "", "", 0, None, None))
    assert svc.backchannel.drain(15)
    assert receiver.answered == [400]
    assert [f["reason"] for e, f in events if e == "oidc_backchannel_logout_failed"] == ["http_400"]


def test_a_receiver_whose_certificate_is_not_trusted_gets_nothing(app, svc, user, receiver, bc_client, events,
                                                                 monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE")  # the system's trust store: it does not know the test CA
    client = browser(app)
    assert login(client).status_code == 303
    id_token_of(client, bc_client)
    _end_by_logout(Ctx(app, svc, client, "", "", 0, None, None))
    assert svc.backchannel.drain(15)
    assert receiver.got == []
    assert {f["reason"] for e, f in events if e == "oidc_backchannel_logout_failed"} == {"tls"}


def test_a_slow_receiver_does_not_delay_the_users_logout(app, svc, user, receiver, bc_client):
    receiver.delay = 2.0
    client = browser(app)
    assert login(client).status_code == 303
    id_token_of(client, bc_client)
    token = csrf(client, "/")
    started = time.monotonic()
    response = client.post("/logout", data={"csrf_token": token})
    took = time.monotonic() - started
    assert response.status_code == 303 and took < 1.0, took
    assert receiver.wait_for(1, timeout=10) and svc.backchannel.drain(10)


def test_a_full_queue_drops_and_audits_instead_of_blocking(app, svc, user, events, monkeypatch):
    monkeypatch.setattr(svc.backchannel, "capacity", 0)
    client = browser(app)
    assert login(client).status_code == 303
    _end_by_logout(Ctx(app, svc, client, "", "", 0, None, None))
    assert ("oidc_backchannel_logout_dropped", {"sessions": 1, "reason": "queue_full"}) in events


# --- the account page's apps -------------------------------------------------------------------------------------

def test_account_page_lists_the_apps_signed_in_to(app, svc, signed_in, web, other):
    id_token_of(signed_in, web)
    page = signed_in.get("/").get_data(as_text=True)
    assert "Wiki" in page and "Other" not in page and "Revoke" in page


def test_revoking_an_app_ends_its_consent_and_its_tokens(app, svc, signed_in, web, events):
    cid, secret = web
    code, verifier = get_code(signed_in, cid)
    body = exchange(signed_in, cid, secret, code, verifier).get_json()
    svc.oidc.consents.grant(1, cid, ("openid",))
    response = signed_in.post("/account/apps/revoke", data={"csrf_token": csrf(signed_in, "/"), "client_id": cid})
    assert response.status_code == 303
    assert signed_in.get("/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    assert svc.oidc.consents.granted(1, cid) is None
    assert live(signed_in)  # the authsvc session itself stays
    assert ("oidc_consent_revoked", {"client_id": cid, "consent": True, "revoked": 1, "by": "user"}) in events


def test_revoking_an_app_needs_the_csrf_token(signed_in, web):
    cid, _ = web
    id_token_of(signed_in, web)
    response = signed_in.post("/account/apps/revoke", data={"client_id": cid})
    assert response.status_code in (400, 403)


def test_revoking_an_app_of_another_user_or_unknown_is_404(app, svc, user, web):
    from tests.conftest import add_user

    add_user(app, "bob")
    alice = browser(app)
    assert login(alice).status_code == 303
    id_token_of(alice, web)
    bob = browser(app, ip="198.51.100.30")
    assert login(bob, "bob").status_code == 303
    for cid in (web[0], "unknown"):
        assert bob.post("/account/apps/revoke", data={"csrf_token": csrf(bob, "/"), "client_id": cid}).status_code == 404


@pytest.mark.parametrize("how", ["logout_button", "app_logout_then_confirm"])
def test_signing_out_after_an_idle_spell_ends_the_session_and_tells_its_apps(app, svc, user, receiver, bc_client,
                                                                           how):
    """The browser's session timed out (idle) but was never revoked; the user signs out (the page's
    button, or through an app: the confirmation page, then its form). Before, nothing was ended: the
    apps of that session heard nothing and their refresh tokens went on working for days (found by
    review, session 13). A link alone (GET /oauth/logout) still ends nothing: it asks first."""
    from tests.security.oidc_helpers import refresh

    client = browser(app)
    assert login(client).status_code == 303
    cid, secret = bc_client
    code, verifier = get_code(client, cid)
    body = exchange(client, cid, secret, code, verifier).get_json()
    claims = claims_of(body["id_token"])
    svc.clock.advance(svc.policy.sessions.idle_timeout_seconds + 1)
    if how == "logout_button":
        assert client.post("/logout", data={"csrf_token": csrf(client, "/login")}).status_code == 303
    else:
        page = end_session(client, id_token_hint=body["id_token"])
        assert page.status_code == 200 and unrevoked(svc, user) == 1  # asked: a link alone ends nothing
        confirmed = client.post("/oauth/logout/confirm", data={
            "csrf_token": csrf_in(page.get_data(as_text=True)), "decision": "logout", "client_id": cid})
        assert confirmed.status_code in (200, 302, 303)
    assert svc.backchannel.drain(15)
    got = receiver.wait_for(1)
    assert len(got) == 1
    check_logout_token(client, got[0].body, cid, sub=claims["sub"], sid=claims["sid"])
    assert refresh(client, cid, secret, body["refresh_token"]).status_code == 400
    assert unrevoked(svc, user) == 0


def unrevoked(svc, user) -> int:
    import sqlalchemy as sa

    from authsvc.core.models import sessions

    with svc.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sessions).where(
            sessions.c.user_id == user.id, sessions.c.revoked_at.is_(None))).scalar_one()
