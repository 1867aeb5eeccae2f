"""The OpenID Provider end to end through the Flask test client: the real login form, the real
authorize, token, userinfo and revocation endpoints, ID tokens verified with the published JWKS.

Threats: a redirect_uri that is not the registered one, an unknown client (error page, never a
redirect), code replay (revokes what the code issued), PKCE missing / plain / wrong, a code used by
another client, a refresh token used twice (revokes the family), prompt=none signed out, tokens
after the session ends, an ID token verified with alg none or HS256 over the public key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet, OctKey

from authsvc.rules import oidc_requests as decide
from tests.conftest import HTTPS, PASSWORD, browser, csrf, csrf_in, login, verify
from tests.security.oidc_helpers import (
    NATIVE,
    SPA,
    WEB,
    add_client,
    allow,
    authorize,
    authorize_params,
    exchange,
    consent_page,
    get_code,
    get_code_with_consent,
    pkce,
    query,
    refresh,
    userinfo,
    verify_id_token,
)


HOST = HTTPS.split("://")[1]


@pytest.fixture
def web(svc):
    """A trusted confidential web app: (client_id, secret)."""
    return add_client(svc, trusted=True)


@pytest.fixture
def signed_in(client, user):
    assert login(client).status_code == 303
    return client


def tokens(client, web, redirect_uri=WEB, **kw):
    cid, secret = web
    code, verifier = get_code(client, cid, redirect_uri, **kw)
    response = exchange(client, cid, secret, code, verifier, redirect_uri)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# --- the whole flow -------------------------------------------------------------------------------

@pytest.mark.asvs("V10.4.10")
def test_code_flow_with_pkce_gives_a_verifiable_id_token_and_userinfo(svc, signed_in, web):
    cid, secret = web
    verifier, challenge = pkce()
    response = authorize(signed_in, authorize_params(cid, challenge=challenge, state="s-1 2", nonce="n-42"))
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["state"] == "s-1 2" and got["iss"] == HTTPS  # RFC 9207
    body = exchange(signed_in, cid, secret, got["code"], verifier).get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    token = verify_id_token(signed_in, body["id_token"], cid, now=svc.clock())
    assert token.header["alg"] == "ES256" and token.header["kid"]
    claims = token.claims
    assert claims["nonce"] == "n-42" and claims["amr"] == ["pwd"] and claims["acr"] == "1fa"
    assert claims["auth_time"] == int(svc.clock()) and claims["sid"]
    assert claims["sub"] != "alice" and claims["sub"] != "1" and len(claims["sub"]) >= 40
    info = userinfo(signed_in, body["access_token"])
    assert info.status_code == 200
    assert info.get_json() == {"sub": claims["sub"], "preferred_username": "alice"}


def test_client_secret_post_works_too_and_the_subject_is_stable(svc, signed_in, web):
    cid, secret = web
    first = tokens(signed_in, web)
    code, verifier = get_code(signed_in, cid)
    second = exchange(signed_in, cid, secret, code, verifier, basic=False).get_json()
    sub = [verify_id_token(signed_in, t["id_token"], cid, now=svc.clock()).claims["sub"] for t in (first, second)]
    assert sub[0] == sub[1]


@pytest.mark.asvs("V10.4.10")
@pytest.mark.parametrize("secret", ["", "wrong", None])
def test_a_confidential_client_without_its_secret_gets_nothing(signed_in, web, secret):
    cid, _ = web
    code, verifier = get_code(signed_in, cid)
    response = exchange(signed_in, cid, secret, code, verifier)
    assert response.status_code in (400, 401) and "access_token" not in response.get_data(as_text=True)


def test_discovery_and_jwks(client, svc):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["issuer"] == HTTPS and meta["jwks_uri"] == f"{HTTPS}/oauth/jwks"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    keys = client.get("/oauth/jwks").get_json()["keys"]
    assert len(keys) == 1 and keys[0]["alg"] == "ES256" and keys[0]["use"] == "sig" and "d" not in keys[0]


def test_the_signing_key_is_sealed_at_rest(svc, client):
    client.get("/oauth/jwks")
    import sqlalchemy as sa

    from authsvc.core.models import oidc_signing_keys
    with svc.engine.connect() as conn:
        stored = conn.execute(sa.select(oidc_signing_keys.c.private_key)).scalar_one()
    assert b"PRIVATE" not in stored and stored[:1] == b"\x01"  # authsvc.core.sealing's version byte


# --- redirect_uri and unknown clients: an error page, never a redirect ---------------------------

HOSTILE_REDIRECTS = [
    WEB + "/", WEB + "x", WEB + "?a=1", WEB + "#f", WEB.upper(), "https://APP.example.com/callback",
    "https://evil.com@app.example.com/callback", "https://app.example.com.evil.com/callback",
    "https://app.example.com:443/callback", "https://app.example.com:8443/callback",
    "http://app.example.com/callback", "https://app.example.com/%63allback", "javascript:alert(1)",
    " " + WEB, WEB + "\t", "https://аpp.example.com/callback", "https://evil.com/callback", "",
]


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("redirect_uri", HOSTILE_REDIRECTS)
def test_a_redirect_uri_not_registered_gets_an_error_page_never_a_redirect(svc, signed_in, web, redirect_uri):
    _, challenge = pkce()
    response = authorize(signed_in, authorize_params(web[0], redirect_uri, challenge=challenge))
    assert response.status_code == 400 and "Location" not in response.headers
    assert "return address" in response.get_data(as_text=True)


@pytest.mark.asvs("V10.4.1")
def test_a_missing_redirect_uri_is_not_replaced_by_a_registered_one(signed_in, web):
    _, challenge = pkce()
    params = authorize_params(web[0], challenge=challenge)
    del params["redirect_uri"]
    response = authorize(signed_in, params)
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("client_id", ["unknown", "", "x" * 500, None])
def test_an_unknown_client_gets_an_error_page_never_a_redirect(signed_in, client_id):
    _, challenge = pkce()
    response = authorize(signed_in, authorize_params(client_id, challenge=challenge))
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.asvs("V10.4.1")
def test_the_same_holds_for_a_signed_out_browser_and_bad_pkce(client, web):
    response = authorize(client, authorize_params(web[0], "https://evil.com/cb", challenge=None))
    assert response.status_code == 400 and "Location" not in response.headers


def test_a_repeated_redirect_uri_is_an_error_page(signed_in, web):
    _, challenge = pkce()
    query_string = urlencode(authorize_params(web[0], challenge=challenge)) + "&redirect_uri=" + WEB
    response = signed_in.get("/oauth/authorize?" + query_string)
    assert response.status_code == 400 and "Location" not in response.headers


@pytest.mark.asvs("V10.4.1")
def test_a_public_native_client_may_use_any_loopback_port(svc, signed_in):
    cid, secret = add_client(svc, "CLI", (NATIVE,), public=True)
    assert secret is None
    redirect_uri = "http://127.0.0.1:53682/callback"
    code, verifier = get_code_with_consent(signed_in, cid, redirect_uri)
    body = exchange(signed_in, cid, None, code, verifier, redirect_uri).get_json()
    assert body["access_token"]
    response = authorize(signed_in, authorize_params(cid, "http://localhost:53682/callback", challenge=pkce()[1]))
    assert response.status_code == 400 and "Location" not in response.headers


def test_a_confidential_client_gets_no_loopback_port_exception(svc, signed_in):
    cid, _ = add_client(svc, "Dev", (NATIVE,), trusted=True)
    response = authorize(signed_in, authorize_params(cid, "http://127.0.0.1:53682/callback", challenge=pkce()[1]))
    assert response.status_code == 400 and "Location" not in response.headers


# --- errors that do go back to the client carry state and iss ------------------------------------

@pytest.mark.asvs("V10.6.1", "V10.4.4")
@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token", "none", ""])
def test_only_the_code_response_type_is_offered(signed_in, web, response_type):
    response = authorize(signed_in, authorize_params(web[0], challenge=pkce()[1], response_type=response_type))
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["error"] == "unsupported_response_type" and got["state"] == "st4te" and got["iss"] == HTTPS
    assert "code" not in got and "access_token" not in response.headers["Location"]


@pytest.mark.asvs("V10.4.4")
@pytest.mark.parametrize("grant_type", ["password", "client_credentials", "implicit",
                                        "urn:ietf:params:oauth:grant-type:device_code", ""])
def test_other_grants_are_refused(client, web, grant_type):
    cid, secret = web
    auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    response = client.post("/oauth/token", data={"grant_type": grant_type, "username": "alice",
                                                 "password": "x", "scope": "openid"},
                           headers={"Authorization": auth})
    assert response.status_code == 400 and response.get_json()["error"] == "unsupported_grant_type"


@pytest.mark.asvs("V10.4.6")
@pytest.mark.parametrize("extra, expected", [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
])
def test_pkce_missing_or_plain_is_refused_at_authorize(signed_in, web, extra, expected):
    params = authorize_params(web[0], challenge=pkce()[1])
    params.update(extra)
    response = authorize(signed_in, {k: v for k, v in params.items() if v is not None})
    got = query(response.headers["Location"])
    assert got["error"] == expected and "code" not in got and got["iss"] == HTTPS


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("scope", ["profile", "openid admin", "openid  profile", ""])
def test_scopes_not_offered_are_refused(signed_in, web, scope):
    response = authorize(signed_in, authorize_params(web[0], challenge=pkce()[1], scope=scope))
    assert query(response.headers["Location"])["error"] == "invalid_scope"


# --- each client its own scopes (ASVS V10.4.11) --------------------------------------------------

@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("scope", [
    "openid groups", "openid offline_access", "openid profile groups offline_access", "groups openid profile",
    "openid profile profile groups",
])
def test_a_scope_the_client_was_not_given_is_refused_with_invalid_scope_and_no_code(svc, signed_in, scope):
    cid, _ = add_client(svc, "Narrow", (WEB,), trusted=True, scopes=("openid", "profile"))
    response = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], scope=scope))
    assert response.status_code == 302 and response.headers["Location"].startswith(WEB)
    got = query(response.headers["Location"])
    assert got["error"] == "invalid_scope" and "code" not in got and got["state"] == "st4te" and got["iss"] == HTTPS
    assert "may ask for: openid profile" in got["error_description"]


@pytest.mark.asvs("V10.4.11")
def test_a_client_not_given_offline_access_never_holds_a_refresh_token(svc, signed_in):
    cid, secret = add_client(svc, "Narrow", (WEB,), trusted=True, scopes=("openid", "profile"))
    body = tokens(signed_in, (cid, secret), scope="openid profile")
    assert "refresh_token" not in body and body["scope"] == "openid profile"
    assert refresh(signed_in, cid, secret, "x" * 43).get_json()["error"] == "unauthorized_client"


@pytest.mark.asvs("V10.4.11")
def test_the_default_registration_is_a_sign_in_without_groups_or_refresh(svc, signed_in):
    made = svc.oidc.clients.add("Default", (WEB,), public=False, trusted=True)
    assert made.client.scopes == ("openid", "profile")
    cid = made.client.client_id
    assert "code" in query(get_code_location(signed_in, cid, "openid profile"))
    for scope in ("openid groups", "openid offline_access"):
        assert query(get_code_location(signed_in, cid, scope))["error"] == "invalid_scope"


def get_code_location(client, cid, scope):
    return authorize(client, authorize_params(cid, challenge=pkce()[1], scope=scope)).headers["Location"]


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("scope", ["openid profile groups", "openid groups", "openid profile offline_access groups"])
def test_a_refresh_cannot_widen_the_scope(svc, signed_in, web, scope):
    cid, secret = web
    body = tokens(signed_in, web, scope="openid profile offline_access")
    wider = refresh_with(signed_in, cid, secret, body["refresh_token"], scope)
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_scope"
    assert "access_token" not in wider.get_json()


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("scope", ["openid  profile", "openid\tprofile offline_access", "openid PROFILE",
                                   "openid pr\u043efile", "openid " + "profile " * 80])
def test_a_refresh_with_an_odd_scope_spelling_is_refused(svc, signed_in, web, scope):
    cid, secret = web
    body = tokens(signed_in, web, scope="openid profile offline_access")
    odd = refresh_with(signed_in, cid, secret, body["refresh_token"], scope)
    assert odd.status_code == 400 and odd.get_json()["error"] == "invalid_scope"


@pytest.mark.asvs("V10.4.11")
def test_a_refresh_may_narrow_and_an_omitted_scope_keeps_the_granted_one(svc, signed_in, web):
    cid, secret = web
    body = tokens(signed_in, web, scope="openid profile groups offline_access")
    same = refresh_with(signed_in, cid, secret, body["refresh_token"], None).get_json()
    assert same["scope"] == "openid profile groups offline_access"
    narrowed = refresh_with(signed_in, cid, secret, same["refresh_token"], "openid offline_access").get_json()
    assert narrowed["scope"] == "openid offline_access"
    answer = userinfo(signed_in, narrowed["access_token"]).get_json()
    assert "preferred_username" not in answer and "groups" not in answer


def refresh_with(client, cid, secret, refresh_token, scope):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        data["scope"] = scope
    auth = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    return client.post("/oauth/token", data=data, headers={"Authorization": f"Basic {auth}"})


# --- response_mode: query only (ASVS V10.4.12) ----------------------------------------------------

@pytest.mark.asvs("V10.4.12")
@pytest.mark.parametrize("mode", [
    "fragment", "form_post", "query.jwt", "jwt", "fragment.jwt", "form_post.jwt", "web_message", "okta_post_message",
    "unknown", "QUERY", "Query", " query", "query ", "query\t", "query\n", "query\x00", "qu\u0435ry", "ｑuery",
    "query,fragment", "query fragment", "query+fragment", "query%20", "",
])
@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_a_response_mode_other_than_query_is_refused_and_no_code_issued(svc, signed_in, mode, trusted):
    cid, _ = add_client(svc, "Modes", (WEB,), trusted=trusted)
    response = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], response_mode=mode))
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    location = response.headers["Location"]
    got = query(location)
    assert got["error"] == "invalid_request" and "code" not in got and "#" not in location
    assert got["state"] == "st4te" and got["iss"] == HTTPS
    assert "response_mode" in got["error_description"]


@pytest.mark.asvs("V10.4.12")
def test_response_mode_twice_is_refused_even_when_one_is_query(svc, signed_in, web):
    params = list(authorize_params(web[0], challenge=pkce()[1]).items())
    for modes in (("query", "fragment"), ("query", "query")):
        response = signed_in.get("/oauth/authorize?" + urlencode(params + [("response_mode", m) for m in modes]))
        got = query(response.headers["Location"])
        assert got["error"] == "invalid_request" and "code" not in got


@pytest.mark.asvs("V10.4.12")
def test_response_mode_on_the_consent_form_is_checked_again(svc, signed_in):
    cid, _ = add_client(svc, "Forum", (WEB,))
    page, params, _verifier = consent_page(signed_in, cid)
    form = dict(params, csrf_token=csrf_in(page.get_data(as_text=True)), decision="allow", response_mode="form_post")
    back = signed_in.post("/oauth/authorize/consent", data=form)
    got = query(back.headers["Location"])
    assert got["error"] == "invalid_request" and "code" not in got


@pytest.mark.asvs("V10.4.12")
def test_response_mode_query_and_none_give_a_code_in_the_query(signed_in, web):
    for extra in ({}, {"response_mode": "query"}):
        response = authorize(signed_in, authorize_params(web[0], challenge=pkce()[1], **extra))
        assert "code" in query(response.headers["Location"]) and "#" not in response.headers["Location"]
    assert _discovery_modes(signed_in) == ["query"]


def _discovery_modes(client):
    return client.get("/.well-known/openid-configuration").get_json()["response_modes_supported"]


# --- codes ----------------------------------------------------------------------------------------

@pytest.mark.asvs("V10.4.2")
def test_a_code_used_twice_fails_and_revokes_the_tokens_it_issued(signed_in, web, svc):
    cid, secret = web
    code, verifier = get_code(signed_in, cid)
    body = exchange(signed_in, cid, secret, code, verifier).get_json()
    assert userinfo(signed_in, body["access_token"]).status_code == 200
    again = exchange(signed_in, cid, secret, code, verifier)
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    assert userinfo(signed_in, body["access_token"]).status_code == 401
    assert refresh(signed_in, cid, secret, body["refresh_token"]).status_code == 400


@pytest.mark.asvs("V10.4.3")
def test_a_code_expires_after_sixty_seconds(signed_in, web, clock):
    cid, secret = web
    code, verifier = get_code(signed_in, cid)
    clock.advance(60)
    response = exchange(signed_in, cid, secret, code, verifier)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


@pytest.mark.asvs("V10.4.2")
def test_a_code_of_another_client_is_refused(svc, signed_in, web):
    other_id, other_secret = add_client(svc, "Other", ("https://other.example.com/cb",), trusted=True)
    code, verifier = get_code(signed_in, web[0])
    stolen = exchange(signed_in, other_id, other_secret, code, verifier, "https://other.example.com/cb")
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    stolen = exchange(signed_in, other_id, other_secret, code, verifier)
    assert stolen.status_code == 400
    assert exchange(signed_in, *web, code, verifier).status_code == 200  # the owner's code is untouched


def test_the_redirect_uri_must_be_the_authorize_one(svc, signed_in):
    cid, secret = add_client(svc, "Two", (WEB, "https://app.example.com/other"), trusted=True)
    code, verifier = get_code(signed_in, cid)
    response = exchange(signed_in, cid, secret, code, verifier, "https://app.example.com/other")
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


@pytest.mark.asvs("V10.4.6")
@pytest.mark.parametrize("verifier", [None, "", "a" * 43, "short", "x" * 129, "plain"])
def test_a_missing_or_wrong_verifier_gets_no_tokens(signed_in, web, verifier):
    cid, secret = web
    code, right = get_code(signed_in, cid)
    if verifier == "plain":  # the challenge itself, as a plain-method client would send
        verifier = base64.urlsafe_b64encode(hashlib.sha256(right.encode()).digest()).rstrip(b"=").decode()
    response = exchange(signed_in, cid, secret, code, verifier)
    assert response.status_code == 400 and "access_token" not in response.get_data(as_text=True)


@pytest.mark.asvs("V10.4.6")
def test_a_public_client_needs_pkce_and_no_secret(svc, signed_in):
    cid, _ = add_client(svc, "SPA", (SPA,), public=True)
    code, verifier = get_code_with_consent(signed_in, cid, SPA)
    assert exchange(signed_in, cid, None, code, None, SPA).status_code == 400
    code, verifier = get_code_with_consent(signed_in, cid, SPA)
    body = exchange(signed_in, cid, None, code, verifier, SPA).get_json()
    assert body["access_token"] and body["refresh_token"]


# --- refresh tokens -------------------------------------------------------------------------------

@pytest.mark.asvs("V10.4.5")
def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(signed_in, web):
    cid, secret = web
    first = tokens(signed_in, web)
    second = refresh(signed_in, cid, secret, first["refresh_token"]).get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert userinfo(signed_in, first["access_token"]).status_code == 401  # the old pair ended
    assert userinfo(signed_in, second["access_token"]).status_code == 200
    replay = refresh(signed_in, cid, secret, first["refresh_token"])
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    assert userinfo(signed_in, second["access_token"]).status_code == 401
    assert refresh(signed_in, cid, secret, second["refresh_token"]).status_code == 400


def _winner_saves_after_the_losers_revocation(svc, app, requests):
    """Post ``requests`` (zero-argument callables, each on its own test client) at once, holding
    every token save until a family revocation has run: the order in which the loser of a
    parallel replay revokes the family before the winner has saved its new pair. Their responses."""
    import threading

    store = svc.oidc.tokens
    real_save, real_revoke = store.save, store.revoke_family
    revoked = threading.Event()

    def save(**kw):
        revoked.wait(10)
        return real_save(**kw)

    def revoke_family(*args, **kw):
        try:
            return real_revoke(*args, **kw)
        finally:
            revoked.set()
    store.save, store.revoke_family = save, revoke_family
    try:
        from tests.security.test_postgres_store import race
        return race(*requests)
    finally:
        store.save, store.revoke_family = real_save, real_revoke


@pytest.mark.asvs("V10.4.5")
def test_keycloak_cve_2026_1035_a_refresh_token_posted_twice_at_once_leaves_no_live_token(app, svc, signed_in, web):
    """Keycloak CVE-2026-1035's class: one refresh token posted twice at once. One request spends
    it, the other sees a replay and revokes the family; the first must not then save a pair that
    outlives the revocation (it did, until session 11). Both are refused and nothing of the family
    works: not the new pair, not the one before."""
    from tests.conftest import new_client

    cid, secret = web
    first = tokens(signed_in, web)
    answers = _winner_saves_after_the_losers_revocation(svc, app, [
        lambda: refresh(new_client(app), cid, secret, first["refresh_token"]) for _ in range(2)])
    assert [a.status_code for a in answers] == [400, 400], [a.get_data(as_text=True) for a in answers]
    assert {a.get_json()["error"] for a in answers} == {"invalid_grant"}
    assert userinfo(signed_in, first["access_token"]).status_code == 401
    with svc.engine.connect() as conn:
        import sqlalchemy as sa

        from authsvc.core.models import oidc_tokens
        live = conn.execute(sa.select(sa.func.count()).select_from(oidc_tokens).where(
            oidc_tokens.c.revoked_at.is_(None))).scalar_one()
    assert live == 0


@pytest.mark.asvs("V10.4.2")
def test_a_code_posted_twice_at_once_leaves_no_live_token(app, svc, signed_in, web):
    """The same race on the code: the loser's replay revokes the family (none of its tokens is
    saved yet), then the winner saves; the winner's pair is born revoked and its request refused."""
    from tests.conftest import new_client

    cid, secret = web
    code, verifier = get_code(signed_in, cid)
    answers = _winner_saves_after_the_losers_revocation(svc, app, [
        lambda: exchange(new_client(app), cid, secret, code, verifier) for _ in range(2)])
    assert [a.status_code for a in answers] == [400, 400], [a.get_data(as_text=True) for a in answers]
    with svc.engine.connect() as conn:
        import sqlalchemy as sa

        from authsvc.core.models import oidc_tokens
        rows = conn.execute(sa.select(oidc_tokens.c.revoked_at, oidc_tokens.c.revoke_reason)).all()
    assert rows and all(r.revoked_at is not None for r in rows), rows
    assert {r.revoke_reason for r in rows} == {"family_revoked"}


def test_no_refresh_token_without_offline_access(signed_in, web):
    body = tokens(signed_in, web, scope="openid")
    assert "refresh_token" not in body


def test_a_refresh_token_of_another_client_is_refused(svc, signed_in, web):
    other = add_client(svc, "Other", ("https://other.example.com/cb",), trusted=True)
    body = tokens(signed_in, web)
    assert refresh(signed_in, *other, body["refresh_token"]).status_code == 400


def _audit_events(out: str, name: str) -> list[dict]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [e for e in lines if e.get("event") == name]


@pytest.mark.asvs("V10.4.2")
@pytest.mark.parametrize("how", ["wrong_verifier", "no_verifier", "malformed_verifier", "wrong_redirect_uri"])
def test_a_leaked_code_posted_without_its_verifier_or_redirect_uri_spends_nothing(svc, signed_in, capsys, how):
    """Anyone may name a public client at the token endpoint. A code that leaks (a log, the history,
    another app on the device) posted with a wrong or missing verifier, or another redirect URI, was
    refused but spent first, so the app's own exchange then failed and the user's sign-in was lost
    (found by review, session 14). Now nothing is spent, and a later replay of the used code by such
    a post revokes nothing either."""
    cid, _ = add_client(svc, "SPA", (SPA,), public=True)
    code, verifier = get_code_with_consent(signed_in, cid, SPA)
    thief = {"wrong_verifier": lambda: exchange(signed_in, cid, None, code, "a" * 43, SPA),
             "no_verifier": lambda: exchange(signed_in, cid, None, code, None, SPA),
             "malformed_verifier": lambda: exchange(signed_in, cid, None, code, "short", SPA),
             "wrong_redirect_uri": lambda: exchange(signed_in, cid, None, code, verifier, "https://elsewhere.example/cb")}
    capsys.readouterr()
    assert thief[how]().status_code == 400
    refused = [e.get("reason") for e in _audit_events(capsys.readouterr().out, "oidc_token_refused")]
    expected = {"wrong_verifier": ["pkce_failed"], "wrong_redirect_uri": ["code_wrong_redirect_uri"]}
    assert refused == expected.get(how, []), (how, refused)   # a missing or malformed verifier: a 400 invalid_request
    owner = exchange(signed_in, cid, None, code, verifier, SPA)
    assert owner.status_code == 200, (how, owner.get_json())
    assert thief[how]().status_code == 400      # the used code again, without the proof: no replay judgement
    assert userinfo(signed_in, owner.get_json()["access_token"]).status_code == 200   # the family lives


@pytest.mark.asvs("V10.4.5")
@pytest.mark.parametrize("thief", ["public", "confidential"])
def test_a_leaked_refresh_token_posted_by_another_client_spends_nothing_and_kills_no_family(svc, signed_in, web,
                                                                                          capsys, thief):
    """A confidential client's refresh token leaks, its secret does not. The thief posts the token
    as another client: any public one (no secret to know) or its own. Refused, and the token is not
    spent: until the review of session 13's OIDC flow it was spent before Authlib compared the
    client, so the owner's next refresh looked like a replay, its whole family was revoked and the
    audit named the owner. The refusal is audited against the client that posted it."""
    cid, secret = web
    if thief == "public":
        other, other_secret = add_client(svc, "SPA", (SPA,), public=True)
    else:
        other, other_secret = add_client(svc, "Other", ("https://other.example.com/cb",), trusted=True)
    body = tokens(signed_in, web)
    capsys.readouterr()
    stolen = refresh(signed_in, other, other_secret, body["refresh_token"])
    assert stolen.status_code == 400 and stolen.get_json()["error"] == "invalid_grant"
    assert "access_token" not in stolen.get_json()
    assert userinfo(signed_in, body["access_token"]).status_code == 200  # the owner's pair lives
    own = refresh(signed_in, cid, secret, body["refresh_token"])
    assert own.status_code == 200, own.get_json()  # no replay: the family lives
    assert userinfo(signed_in, own.get_json()["access_token"]).status_code == 200
    out = capsys.readouterr().out
    refused = _audit_events(out, "oidc_token_refused")
    assert [(e["reason"], e["client_id"]) for e in refused] == [("refresh_other_client", other)]
    assert _audit_events(out, "oidc_refresh_replayed") == []


@pytest.mark.asvs("V10.4.8")
def test_rotation_never_extends_the_refresh_lifetime(signed_in, web, clock, svc):
    cid, secret = web
    body = tokens(signed_in, web)
    lifetime = svc.policy.oidc.refresh_token_lifetime_seconds
    # keep the session alive and rotate at the end of the lifetime: the last one still ends on time
    clock.advance(lifetime - 10)
    body = refresh(signed_in, cid, secret, body["refresh_token"]).get_json()
    clock.advance(20)
    assert refresh(signed_in, cid, secret, body["refresh_token"]).status_code == 400


# --- the session behind the tokens ----------------------------------------------------------------

@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("how", ["logout", "password", "disable", "admin_revoke"])
def test_tokens_end_with_the_session_that_authorised_them(signed_in, web, svc, user, how):
    cid, secret = web
    body = tokens(signed_in, web)
    if how == "logout":
        page = signed_in.get("/")
        signed_in.post("/logout", data={"csrf_token": csrf_in(page.get_data(as_text=True))})
    elif how == "password":
        svc.sessions.revoke_all(user.id, "password_changed")
    elif how == "disable":
        svc.accounts.set_disabled(user.id, True)
    else:
        svc.sessions.revoke_all(user.id, "admin_revoked")
    assert userinfo(signed_in, body["access_token"]).status_code == 401
    assert refresh(signed_in, cid, secret, body["refresh_token"]).status_code == 400


def test_the_session_cap_ends_the_tokens_of_the_evicted_session(app, svc, web, user):
    first = browser(app, "198.51.100.1")
    assert login(first).status_code == 303
    body = tokens(first, web)
    for i in range(svc.policy.sessions.max_sessions_per_user):
        svc.sessions.create(user.id, "198.51.100.9", "x", False)
    assert userinfo(first, body["access_token"]).status_code == 401


def test_back_channel_logout_hook_lists_the_clients_of_a_session(svc, signed_in, user):
    cid, secret = add_client(svc, "BC", (WEB,), trusted=True, backchannel_logout_uri="https://app.example.com/bc")
    plain = add_client(svc, "Plain", ("https://p.example.com/cb",), trusted=True)
    tokens(signed_in, (cid, secret))
    tokens(signed_in, plain, redirect_uri="https://p.example.com/cb")
    session_id = svc.sessions.list_live(user.id)[0].id
    assert svc.oidc.sessions_ended([session_id]) == [(cid, session_id)]


# --- prompt, max_age, step-up, consent -----------------------------------------------------------

def test_a_signed_out_browser_is_sent_through_the_login_and_back(client, user, web):
    params = authorize_params(web[0], challenge=pkce()[1])
    response = authorize(client, params)
    assert response.status_code == 303
    to_login = urlsplit(response.headers["Location"])
    assert to_login.path == "/login"
    next_url = parse_qs(to_login.query)["next"][0]
    assert next_url.startswith("/oauth/authorize?")
    back = login(client, next=next_url)
    assert back.status_code == 303 and back.headers["Location"].endswith(next_url)
    final = client.get(next_url)
    assert final.status_code == 302 and "code" in query(final.headers["Location"])


def test_prompt_none_signed_out_answers_login_required_without_a_page(client, web):
    response = authorize(client, authorize_params(web[0], challenge=pkce()[1], prompt="none"))
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["error"] == "login_required" and got["state"] == "st4te" and got["iss"] == HTTPS


def test_prompt_login_and_max_age_send_a_signed_in_browser_to_sign_in_again(signed_in, web, clock):
    for extra in ({"prompt": "login"}, {"max_age": "10"}):
        clock.advance(11)
        response = authorize(signed_in, authorize_params(web[0], challenge=pkce()[1], **extra))
        assert response.status_code == 303 and "reauth=1" in response.headers["Location"]
        assert "prompt" not in response.headers["Location"] and "max_age" not in response.headers["Location"]
        form = signed_in.get(response.headers["Location"])
        assert form.status_code == 200 and 'name="password"' in form.get_data(as_text=True)


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "10"}, {"max_age": "0"}])
def test_a_browser_sent_to_sign_in_again_gets_no_code_by_coming_back_without_signing_in(signed_in, web, clock, extra):
    """prompt=login and max_age send the browser to the form, and the form comes back to the request
    without them. Whoever holds the browser (not the user: the client asked for the user's password
    before something sensitive) skips the form and loads that address itself: the same answer, until
    a sign-in after it; then a code whose auth_time is that sign-in."""
    cid, secret = web
    clock.advance(11)
    sent = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], **extra))
    assert sent.status_code == 303 and "reauth=1" in sent.headers["Location"]
    back = query(sent.headers["Location"])["next"]
    for _ in range(2):
        skipped = signed_in.get(back)
        assert skipped.status_code == 303 and "reauth=1" in skipped.headers["Location"], skipped.headers.get("Location")
        assert query(skipped.headers["Location"])["next"] == back
    clock.advance(5)
    form = signed_in.get(sent.headers["Location"])  # the user signs in again
    again = signed_in.post("/login", data={"csrf_token": csrf_in(form.get_data(as_text=True)), "username": "alice",
                                           "password": PASSWORD})
    assert again.status_code == 303
    signed_in_at = clock()
    verifier, challenge = pkce()
    done = signed_in.get(back.replace(query(back)["code_challenge"], challenge))
    assert done.status_code == 302 and done.headers["Location"].startswith(WEB)
    body = exchange(signed_in, cid, secret, query(done.headers["Location"])["code"], verifier).get_json()
    assert verify_id_token(signed_in, body["id_token"], cid, now=clock()).claims["auth_time"] == int(signed_in_at)


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}, {"max_age": "10"},
                                   {"prompt": "login", "max_age": "0"}])
def test_a_signed_out_browser_asked_to_sign_in_again_signs_in_once(client, user, web, clock, extra):
    """A signed-out browser's request with prompt=login or max_age: the one sign-in it needs
    anyway satisfies it. Its way back kept prompt=login (and max_age), so the fresh session was
    sent to the form a second time (found by review of session 13's OIDC flow)."""
    cid, secret = web
    verifier, challenge = pkce()
    sent = authorize(client, authorize_params(cid, challenge=challenge, **extra))
    assert sent.status_code == 303 and urlsplit(sent.headers["Location"]).path == "/login"
    back = login(client, next=query(sent.headers["Location"])["next"])
    assert back.status_code == 303
    signed_in_at = clock()
    clock.advance(1)
    done = client.get(back.headers["Location"])
    assert done.status_code == 302 and done.headers["Location"].startswith(WEB), done.headers["Location"]
    body = exchange(client, cid, secret, query(done.headers["Location"])["code"], verifier).get_json()
    assert verify_id_token(client, body["id_token"], cid, now=clock()).claims["auth_time"] == int(signed_in_at)


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}, {"max_age": "86400000"}])
def test_a_signed_out_browser_with_a_remember_cookie_gets_no_code_from_the_restore(app, svc, user, clock, extra):
    """The same request in a browser whose session is gone but whose remember-me cookie lives: the
    sign-in page restores a session from the cookie (no factor proved) and goes straight back. That
    restore must not pass for the sign-in the client asked for, however often the way back is
    loaded: the form, until the password is typed."""
    cid, secret = add_client(svc, trusted=True)
    first = browser(app)
    assert login(first, remember=True).status_code == 303
    remember = first.get_cookie(svc.cookies.remember, domain=HOST).value
    clock.advance(2 * 86400)  # the session is gone (absolute lifetime 1 day); the cookie lives
    held = browser(app)
    held.set_cookie(svc.cookies.remember, remember, domain=HOST)
    verifier, challenge = pkce()
    sent = authorize(held, authorize_params(cid, challenge=challenge, **extra))
    assert sent.status_code == 303 and urlsplit(sent.headers["Location"]).path == "/login"
    restored = held.get(sent.headers["Location"])  # restores from the cookie, then back to next
    assert restored.status_code == 303 and verify(held) == 200
    way_back = restored.headers["Location"]
    for _ in range(2):
        skipped = held.get(way_back)
        assert skipped.status_code == 303 and "reauth=1" in skipped.headers["Location"], skipped.headers["Location"]
    form = held.get(skipped.headers["Location"])
    assert form.status_code == 200 and 'name="password"' in form.get_data(as_text=True)
    again = held.post("/login", data={"csrf_token": csrf_in(form.get_data(as_text=True)), "username": "alice",
                                      "password": PASSWORD, "next": query(skipped.headers["Location"])["next"]})
    assert again.status_code == 303
    done = held.get(again.headers["Location"])
    assert done.status_code == 302 and done.headers["Location"].startswith(WEB), done.headers.get("Location")
    assert exchange(held, cid, secret, query(done.headers["Location"])["code"], verifier).status_code == 200


def test_a_silent_request_after_a_sign_in_was_asked_for_gets_login_required(signed_in, web, clock):
    cid, _ = web
    clock.advance(11)
    assert authorize(signed_in, authorize_params(cid, challenge=pkce()[1], prompt="login")).status_code == 303
    silent = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], prompt="none"))
    assert silent.status_code == 302 and query(silent.headers["Location"])["error"] == "login_required"


def test_a_restored_sessions_auth_time_is_the_sign_in_that_issued_the_cookie_not_the_restore(app, svc, user, clock):
    """A remember-me cookie restores a session without a password. Its ID token's auth_time is when
    the password was typed, days ago, not the restore: a client that judges freshness by auth_time
    (OIDC Core 2) must not take the cookie for a sign-in just now. Through rotations too."""
    cid, secret = add_client(svc, trusted=True)
    first = browser(app)
    assert login(first, remember=True).status_code == 303
    signed_in_at = clock()
    remember = first.get_cookie(svc.cookies.remember, domain=HOST).value
    for _ in range(2):  # each restore rotates the cookie: the chain keeps the sign-in's time
        clock.advance(2 * 86400)  # the session is gone (absolute lifetime 1 day); the cookie lives
        restored = browser(app)
        restored.set_cookie(svc.cookies.remember, remember, domain=HOST)
        assert restored.get("/").status_code == 303 and verify(restored) == 200  # restored, then back
        remember = restored.get_cookie(svc.cookies.remember, domain=HOST).value
    code, verifier = get_code(restored, cid)
    body = exchange(restored, cid, secret, code, verifier).get_json()
    claims = verify_id_token(restored, body["id_token"], cid, now=clock()).claims
    assert claims["auth_time"] == int(signed_in_at) and clock() - signed_in_at >= 4 * 86400
    # max_age sends it to sign in: the restore is no authentication.
    sent = authorize(restored, authorize_params(cid, challenge=pkce()[1], max_age="86400000"))
    assert sent.status_code == 303 and "reauth=1" in sent.headers["Location"]


@pytest.mark.asvs("V6.3.3")
def test_a_client_requiring_mfa_refuses_a_one_factor_account_without_a_factor(svc, signed_in):
    cid, _ = add_client(svc, "Admin", (WEB,), trusted=True, require_mfa=True)
    response = authorize(signed_in, authorize_params(cid, challenge=pkce()[1]))
    assert response.status_code == 400 and "second factor" in response.get_data(as_text=True)


@pytest.mark.asvs("V10.7.1", "V10.7.2")
def test_an_untrusted_client_asks_for_consent_once(svc, signed_in):
    cid, secret = add_client(svc, "Forum", (WEB,))
    page, params, verifier = consent_page(signed_in, cid)
    html = page.get_data(as_text=True)
    assert "Allow Forum?" in html and "your username" in html
    assert "remembered for Forum until you revoke it" in html  # how long the answer lasts (V10.7.2)
    assert "Access while you are away lasts until" in html      # offline_access asked: its lifetime too
    got = query(allow(signed_in, page, params).headers["Location"])  # a code straight back
    assert got["state"] == "st4te" and got["iss"] == HTTPS
    assert exchange(signed_in, cid, secret, got["code"], verifier).status_code == 200
    code, verifier = get_code(signed_in, cid)  # remembered: no page this time
    assert exchange(signed_in, cid, secret, code, verifier).status_code == 200


@pytest.mark.asvs("V10.7.1", "V10.7.2")
@pytest.mark.parametrize("redirect_uri", [SPA, "http://127.0.0.1:50123/callback"], ids=["spa", "native"])
def test_a_public_client_is_asked_for_consent_every_time(svc, signed_in, redirect_uri):
    """No secret, so anyone can send its client_id: a remembered yes is never reused for it, not even
    for the very same scopes, and a silent request (prompt=none) is refused, never answered."""
    registered = SPA if redirect_uri == SPA else NATIVE
    cid, _ = add_client(svc, "Pad", (registered,), public=True, trusted=True)  # trusted: ignored for public
    for _ in range(3):
        page, params, verifier = consent_page(signed_in, cid, redirect_uri, scope="openid profile")
        assert "you are asked every time" in page.get_data(as_text=True)
        assert "remembered for" not in page.get_data(as_text=True)
        code = query(allow(signed_in, page, params, redirect_uri).headers["Location"])["code"]
        assert exchange(signed_in, cid, None, code, verifier, redirect_uri).status_code == 200
    assert svc.oidc.consents.granted(1, cid) == frozenset({"openid", "profile"})  # shown on the account page
    for prompt in ("none", "consent"):
        response = authorize(signed_in, authorize_params(cid, redirect_uri, challenge=pkce()[1], prompt=prompt,
                                                         scope="openid profile"))
        if prompt == "none":
            got = query(response.headers["Location"])
            assert got["error"] == "consent_required" and "code" not in got
        else:
            assert response.status_code == 200 and "Allow Pad?" in response.get_data(as_text=True)


@pytest.mark.asvs("V10.7.1")
def test_a_confidential_clients_remembered_consent_still_skips_the_page_but_prompt_consent_asks(svc, signed_in):
    cid, secret = add_client(svc, "Forum", (WEB,))
    get_code_with_consent(signed_in, cid)
    code, verifier = get_code(signed_in, cid, prompt="none")  # silent, remembered: answered
    assert exchange(signed_in, cid, secret, code, verifier).status_code == 200
    consent_page(signed_in, cid, prompt="consent")


@pytest.mark.asvs("V10.7.1")
def test_consent_needs_the_csrf_token_and_deny_tells_the_client(svc, signed_in):
    cid, _ = add_client(svc, "Forum", (WEB,))
    params = authorize_params(cid, challenge=pkce()[1])
    html = authorize(signed_in, params).get_data(as_text=True)
    forged = signed_in.post("/oauth/authorize/consent", data=dict(params, decision="allow"))
    assert forged.status_code == 400
    deny = signed_in.post("/oauth/authorize/consent", data=dict(params, csrf_token=csrf_in(html), decision="deny"))
    assert query(deny.headers["Location"])["error"] == "access_denied"
    assert svc.oidc.consents.granted(1, cid) is None
    none = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], prompt="none"))
    assert query(none.headers["Location"])["error"] == "consent_required"


# --- revocation -----------------------------------------------------------------------------------

def test_revoking_a_refresh_token_ends_its_family(signed_in, web):
    cid, secret = web
    body = tokens(signed_in, web)
    auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    response = signed_in.post("/oauth/revoke", data={"token": body["refresh_token"]}, headers={"Authorization": auth})
    assert response.status_code == 200
    assert userinfo(signed_in, body["access_token"]).status_code == 401
    assert refresh(signed_in, cid, secret, body["refresh_token"]).status_code == 400


def test_another_client_cannot_revoke_a_token(svc, signed_in, web):
    other_id, other_secret = add_client(svc, "Other", ("https://other.example.com/cb",), trusted=True)
    body = tokens(signed_in, web)
    auth = "Basic " + base64.b64encode(f"{other_id}:{other_secret}".encode()).decode()
    assert signed_in.post("/oauth/revoke", data={"token": body["access_token"]},
                          headers={"Authorization": auth}).status_code == 200  # RFC 7009: says nothing
    assert userinfo(signed_in, body["access_token"]).status_code == 200


# --- ID token algorithm confusion -----------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(claims: dict, header: dict, key: bytes | None) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


@pytest.mark.asvs("V9.1.1")
@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_an_id_token_forged_with_alg_none_or_hs256_over_the_public_key_does_not_verify(svc, signed_in, web, alg):
    body = tokens(signed_in, web)
    genuine = verify_id_token(signed_in, body["id_token"], web[0], now=svc.clock())
    claims = dict(genuine.claims, sub="someone-else")
    jwks = signed_in.get("/oauth/jwks").get_json()
    public = json.dumps(jwks["keys"][0], sort_keys=True).encode()
    forged = _forge(claims, {"alg": alg, "kid": genuine.header["kid"]}, None if alg == "none" else public)
    keys = KeySet.import_key_set(jwks)
    with pytest.raises((JoseError, ValueError)):
        jwt.decode(forged, keys, algorithms=["ES256"])
    # Even a verifier that lets the token pick HS256 finds no symmetric key in the JWKS to check it with.
    with pytest.raises((JoseError, ValueError, BadSignatureError)):
        jwt.decode(forged, keys, algorithms=["ES256", "HS256"])
    with pytest.raises((JoseError, ValueError)):
        jwt.decode(forged, OctKey.import_key(public), algorithms=["ES256"])


@pytest.mark.asvs("V9.1.1")
def test_an_id_token_from_a_rotated_away_key_stops_verifying_after_its_lifetime(svc, signed_in, web, clock):
    body = tokens(signed_in, web)
    old_kid = verify_id_token(signed_in, body["id_token"], web[0], now=svc.clock()).header["kid"]
    svc.oidc.keys.rotate()
    kids = [k["kid"] for k in signed_in.get("/oauth/jwks").get_json()["keys"]]
    assert old_kid in kids and len(kids) == 2  # still published while its tokens live
    fresh = tokens(signed_in, web)
    assert verify_id_token(signed_in, fresh["id_token"], web[0], now=svc.clock()).header["kid"] != old_kid
    clock.advance(svc.policy.oidc.id_token_lifetime_seconds + 1)
    kids = [k["kid"] for k in signed_in.get("/oauth/jwks").get_json()["keys"]]
    assert old_kid not in kids
    with pytest.raises(JoseError):
        verify_id_token(signed_in, body["id_token"], web[0], now=svc.clock())


@pytest.mark.asvs("V9.1.1")
def test_a_key_rotation_while_an_id_token_is_signed_never_gives_a_kid_naming_another_key(svc, signed_in, web,
                                                                                        monkeypatch):
    """`authsvc oidc keys rotate` (or another instance's) commits while an ID token is being made:
    simulated by a rotation after every read of the current key. Authlib asks for the algorithm,
    the header and the private key separately, and each read the current key, so the header's
    ``kid`` named one key and the signature was another's: no relying party could verify the token
    (found by review of session 13's OIDC flow). One read per ID token: ``kid``, ``alg`` and
    signature are one key's, which the JWKS still publishes after the rotation."""
    cid, secret = web
    keys = svc.oidc.keys
    keys.current()
    code, verifier = get_code(signed_in, cid)
    real, reads = keys.current, []

    def current_then_rotated():
        key = real()
        reads.append(key.kid)
        keys.rotate()
        return key
    monkeypatch.setattr(keys, "current", current_then_rotated)
    response = exchange(signed_in, cid, secret, code, verifier)
    monkeypatch.setattr(keys, "current", real)
    assert response.status_code == 200, response.get_json()
    token = verify_id_token(signed_in, response.get_json()["id_token"], cid, now=svc.clock())
    # Every read was followed by a rotation: the kid is the last read's key, which signed it.
    assert token.header["kid"] == reads[-1] and token.header["alg"] == "ES256"


def test_a_signing_key_that_does_not_open_gets_a_503_and_leaves_the_code_unspent(svc, signed_in, web, monkeypatch,
                                                                                  capsys):
    """AUTHSVC_SECRET_KEY changed and the old one left out of the fallbacks: the signing key does not
    open. The token endpoint answered 500 (the ``unhandled_error`` alert) after spending the code and
    saving a pair nobody got, and the JWKS endpoint 500 too (found by review of session 13's OIDC
    flow). Now: 503 ``temporarily_unavailable`` in JSON before the code is spent, the log line says
    what to do, and the JWKS still publishes the public halves (tokens signed before still verify).
    With the old secret key back in the fallbacks the same code is exchanged."""
    from authsvc.core.oidc.keys import SEALING_INFO
    from authsvc.core.sealing import Sealer

    cid, secret = web
    svc.oidc.keys.current()
    code, verifier = get_code(signed_in, cid)
    real = svc.oidc.keys.sealer
    monkeypatch.setattr(svc.oidc.keys, "sealer", Sealer("another-secret-key-" * 3, (), SEALING_INFO))
    capsys.readouterr()
    published = signed_in.get("/oauth/jwks")
    assert published.status_code == 200 and len(published.get_json()["keys"]) == 1
    refused = exchange(signed_in, cid, secret, code, verifier)
    assert refused.status_code == 503, refused.get_data(as_text=True)[:300]
    assert refused.get_json()["error"] == "temporarily_unavailable" and "access_token" not in refused.get_json()
    assert refused.headers["Cache-Control"] == "no-store"
    captured = capsys.readouterr()
    assert "unhandled_error" not in captured.out + captured.err
    assert "AUTHSVC_SECRET_KEY_FALLBACKS" in captured.out + captured.err  # the log line says what to do
    assert [e["reason"] for e in _audit_events(captured.out, "oidc_token_refused")] == ["signing_key_unavailable"]
    with svc.engine.connect() as conn:
        import sqlalchemy as sa

        from authsvc.core.models import oidc_tokens
        assert conn.execute(sa.select(sa.func.count()).select_from(oidc_tokens)).scalar_one() == 0
    monkeypatch.setattr(svc.oidc.keys, "sealer", real)  # the operator puts the old secret key back
    done = exchange(signed_in, cid, secret, code, verifier)
    assert done.status_code == 200, done.get_json()
    verify_id_token(signed_in, done.get_json()["id_token"], cid, now=svc.clock())


def test_a_nonce_seen_before_for_the_client_is_refused(signed_in, web):
    get_code(signed_in, web[0], nonce="same")
    response = authorize(signed_in, authorize_params(web[0], challenge=pkce()[1], nonce="same"))
    got = query(response.headers["Location"])
    assert got["error"] == "invalid_request" and "code" not in got and got["iss"] == HTTPS


# --- CSP form-action: browsers apply it to the redirects after a form post ------------------------

def _form_action(response) -> str:
    policy = response.headers["Content-Security-Policy"]
    return next(d for d in policy.split("; ") if d.startswith("form-action "))


def test_the_sign_in_and_consent_pages_of_a_client_allow_its_origin_in_form_action(svc, client, user):
    cid, _ = add_client(svc, "Forum", ("https://forum.example.net/cb",))
    params = authorize_params(cid, "https://forum.example.net/cb", challenge=pkce()[1])
    to_login = authorize(client, params).headers["Location"]
    page = client.get(to_login)
    assert "https://forum.example.net" in _form_action(page)
    assert "https://forum.example.net" not in _form_action(client.get("/login"))
    next_url = parse_qs(urlsplit(to_login).query)["next"][0]
    login(client, next=next_url)
    consent = client.get(next_url)
    assert "Allow Forum?" in consent.get_data(as_text=True)
    assert "https://forum.example.net" in _form_action(consent)


def test_a_next_naming_an_unregistered_redirect_uri_adds_nothing(svc, client):
    cid, _ = add_client(svc, "Forum", ("https://forum.example.net/cb",))
    evil = "/oauth/authorize?" + urlencode({"client_id": cid, "redirect_uri": "https://evil.example.com/cb"})
    page = client.get("/login?" + urlencode({"next": evil}))
    assert "evil" not in _form_action(page)
    assert "evil" not in _form_action(client.get("/login?" + urlencode({"next": "/oauth/authorize?client_id=x"})))


@pytest.mark.asvs("V10.4.5")
def test_a_code_issued_before_the_user_revokes_the_app_is_not_exchanged(app, svc, user):
    """"Revoke" on the account page ends the consent and the tokens; a code the app had not
    exchanged yet was exchanged after it for live tokens, a refresh token among them (found by
    review, session 13). The app's unexchanged codes for the user end with the rest."""
    client = browser(app)
    assert login(client).status_code == 303
    cid, secret = add_client(svc, trusted=True)
    first, verifier = get_code(client, cid)
    assert exchange(client, cid, secret, first, verifier).status_code == 200  # the app is listed
    code, verifier = get_code(client, cid, scope="openid offline_access")
    revoked = client.post("/account/apps/revoke", data={"csrf_token": csrf(client, "/"), "client_id": cid})
    assert revoked.status_code in (200, 303)
    late = exchange(client, cid, secret, code, verifier)
    assert late.status_code == 400 and late.get_json()["error"] == "invalid_grant"


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("change", ["scopes_narrowed", "no_longer_trusted", "mfa_required"])
def test_a_code_written_after_the_client_was_narrowed_is_refused_at_the_token_endpoint(app, svc, user, monkeypatch,
                                                                                       change):
    """The admin's `oidc client update` lands while a sign-in to the client is under way: the
    request read the client before and writes its code after the update ended the client's codes.
    The code carried the scope taken away, a one-factor sign-in or no consent into live tokens
    (found by review, session 13); the token endpoint now judges each code against the client as it
    is (oidc_requests.code_verdict)."""
    client = browser(app)
    assert login(client).status_code == 303
    cid, secret = add_client(svc, trusted=True)
    issue = svc.oidc.codes.issue

    def the_admin_first(*args, **kwargs):
        if change == "scopes_narrowed":
            svc.oidc.clients.update(cid, scopes=("openid", "profile", "offline_access"))
        else:
            svc.oidc.clients.update(cid, **({"trusted": False} if change == "no_longer_trusted" else {"require_mfa": True}))
        return issue(*args, **kwargs)

    monkeypatch.setattr(svc.oidc.codes, "issue", the_admin_first)
    code, verifier = get_code(client, cid, scope="openid groups offline_access")
    response = exchange(client, cid, secret, code, verifier)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant", response.get_json()


@pytest.mark.parametrize(("code", "client", "verdict"), [
    ({}, {}, "ok"),
    ({"scope": "openid groups"}, {"client_scopes": ("openid",)}, "scope_narrowed"),
    ({}, {"require_mfa": True}, "mfa_required"),
    ({"multi_factor": True}, {"require_mfa": True}, "ok"),
    ({}, {"trusted": False}, "no_consent"),
    ({}, {"trusted": False, "granted": frozenset({"openid"})}, "no_consent"),
    ({}, {"trusted": False, "granted": frozenset({"openid", "profile"})}, "ok"),
    ({}, {"trusted": False, "public": True}, "ok"),  # a public client asks every time: nothing remembered
])
def test_code_verdict(code, client, verdict):
    given = {"scope": "openid profile", "multi_factor": False, **code}
    settings = {"client_scopes": ("openid", "profile", "groups"), "trusted": True, "public": False,
                "require_mfa": False, "granted": None, **client}
    assert decide.code_verdict(**given, **settings) == verdict


# --- bad input: 4xx, never 500 --------------------------------------------------------------------

@pytest.mark.parametrize("headers, data", [
    ({"Authorization": "Basic !!!notbase64"}, {"grant_type": "authorization_code", "code": "x"}),
    ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, {"grant_type": "authorization_code"}),
    ({"Authorization": "Basic " + base64.b64encode("é:é".encode()).decode()}, {"grant_type": "refresh_token",
                                                                               "refresh_token": "x"}),
    ({"Authorization": "Bearer x"}, {"grant_type": "authorization_code", "code": "x" * 5000}),
    ({}, {"grant_type": "authorization_code", "code": "x", "client_id": "\x00"}),
    ({}, {"grant_type": "refresh_token", "refresh_token": "y" * 5000, "client_id": "z" * 5000}),
    ({}, {}),
])
def test_hostile_token_requests_get_a_4xx(client, web, headers, data):
    response = client.post("/oauth/token", data=data, headers=headers)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize("raw", [b"\xff:\xfe", b"client:\xed\xa0\x80", b"\xc3:x", b"c:\x80"])
def test_basic_credentials_that_are_not_utf_8_get_invalid_client_not_a_500(client, web, raw, capsys):
    """Authlib raised UnicodeDecodeError reading them: a 500 at both endpoints, and the
    unhandled_error alert on demand (found by review, session 13)."""
    headers = {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    for path, data in (("/oauth/token", {"grant_type": "refresh_token", "refresh_token": "x"}),
                       ("/oauth/revoke", {"token": "x"})):
        response = client.post(path, data=data, headers=headers)
        assert response.status_code == 401 and response.get_json() == {"error": "invalid_client"}, path
        assert response.headers["Cache-Control"] == "no-store" and "Basic" in response.headers["WWW-Authenticate"]
    assert "unhandled_error" not in capsys.readouterr().err


@pytest.mark.parametrize(("header", "unreadable"), [
    (None, False), ("", False), ("Bearer \xff", False), ("Basic " + base64.b64encode(b"a:b").decode(), False),
    ("basic " + base64.b64encode("é:é".encode()).decode(), False), ("Basic !!!", True), ("Basic YQ", True),
    ("BASIC " + base64.b64encode(b"\xff:\xfe").decode(), True), ("Basic", False),
])
def test_unreadable_basic(header, unreadable):
    assert decide.unreadable_basic(header) is unreadable


@pytest.mark.parametrize("query_string", [
    "client_id=%ff%fe", "client_id=%00", "state=" + "s" * 5000, "scope=%ff", "redirect_uri=%e2%80%ae",
    "client_id=a&client_id=b",
])
def test_hostile_authorize_requests_get_a_4xx_and_no_redirect(client, web, query_string):
    response = client.get("/oauth/authorize?" + query_string)
    assert 400 <= response.status_code < 500 and "Location" not in response.headers


@pytest.mark.parametrize("header", ["Bearer", "Bearer " + "x" * 5000, "Basic abc", "bearer \x00", ""])
def test_hostile_userinfo_requests_get_401(client, header):
    response = client.get("/oauth/userinfo", headers={"Authorization": header} if header else {})
    assert response.status_code in (400, 401)


def test_a_revocation_without_client_authentication_is_refused(client, signed_in, web):
    body = tokens(signed_in, web)
    response = client.post("/oauth/revoke", data={"token": body["access_token"]})
    assert response.status_code in (400, 401)
    assert userinfo(signed_in, body["access_token"]).status_code == 200


def test_a_wrong_password_page_of_an_oidc_sign_in_keeps_the_clients_form_action(svc, client, user):
    cid, _ = add_client(svc, "Forum", ("https://forum.example.net/cb",))
    next_url = "/oauth/authorize?" + urlencode(authorize_params(cid, "https://forum.example.net/cb",
                                                                challenge=pkce()[1]))
    again = login(client, password="wrong password, twenty chars", next=next_url)
    assert again.status_code == 401 and "https://forum.example.net" in _form_action(again)


# --- storage down ---------------------------------------------------------------------------------

@pytest.mark.asvs("V16.5.2", "V16.5.3")
def test_database_down_every_provider_endpoint_fails_closed_with_a_503(svc, signed_in, web, monkeypatch):
    """With the database unreachable no endpoint may answer as if it could decide: no code, no
    token, no claims, no redirect to the client, never a 500 or a stack trace. The JSON endpoints
    answer JSON; the browser's page is authsvc's own 503."""
    from sqlalchemy.exc import OperationalError

    cid, secret = web
    body = tokens(signed_in, web)
    code, verifier = get_code(signed_in, cid)
    _, challenge = pkce()

    def down(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("database is down"))
    monkeypatch.setattr(svc.engine, "connect", down)
    monkeypatch.setattr(svc.engine, "begin", down)
    auth = "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()
    answers = {
        "authorize": authorize(signed_in, authorize_params(cid, challenge=challenge)),
        "token (code)": exchange(signed_in, cid, secret, code, verifier),
        "token (refresh)": refresh(signed_in, cid, secret, body["refresh_token"]),
        "userinfo": userinfo(signed_in, body["access_token"]),
        "revoke": signed_in.post("/oauth/revoke", data={"token": body["refresh_token"]}, headers={"Authorization": auth}),
        "jwks": signed_in.get("/oauth/jwks"),
    }
    for name, answer in answers.items():
        text = answer.get_data(as_text=True)
        assert answer.status_code == 503, (name, answer.status_code, text[:300])
        assert "Location" not in answer.headers and "Traceback" not in text and "database is down" not in text, name
        assert "code=" not in text and body["access_token"] not in text, name
    for name in ("token (code)", "token (refresh)", "userinfo", "revoke"):
        assert answers[name].is_json, name


def test_tokens_end_with_the_sign_out_generation_even_when_the_revocation_after_it_failed(svc, client, user):
    """A sign-out everywhere moves the account's sign-out generation, then revokes; when the database
    fails between the two, /auth/verify already calls the session signed out, and so must every
    token check (a review of session 13's fixes found the provider reading revoked_at only)."""
    import sqlalchemy.exc

    assert login(client).status_code == 303
    cid, secret = add_client(svc, trusted=True)
    code, verifier = get_code(client, cid)
    body = exchange(client, cid, secret, code, verifier).get_json()
    revoke_all = svc.sessions.revoke_all

    def deadlocked(*args, **kwargs):
        raise sqlalchemy.exc.OperationalError("UPDATE sessions", {}, Exception("deadlock detected"))

    svc.sessions.revoke_all = deadlocked
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError):
            svc.sign_out.everywhere(user.id, "admin_revoked")
    finally:
        svc.sessions.revoke_all = revoke_all
    assert verify(client) == 401
    assert userinfo(client, body["access_token"]).status_code == 401
    assert refresh(client, cid, secret, body["refresh_token"]).status_code == 400
