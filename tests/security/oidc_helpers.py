"""Helpers for the OpenID Provider's tests: a relying party made of plain HTTP requests through the
Flask test client (the real endpoints, the real login form), and ID token verification with the
provider's published JWKS."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet

from authsvc.rules.oidc_requests import SUPPORTED_SCOPES
from tests.conftest import HTTPS

WEB = "https://app.example.com/callback"
SPA = "https://spa.example.com/cb"
NATIVE = "http://127.0.0.1/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def add_client(svc, name="Wiki", redirect_uris=(WEB,), **kw):
    """A registered client; unless ``scopes`` says otherwise it may ask for every offered scope."""
    kw.setdefault("scopes", SUPPORTED_SCOPES)
    made = svc.oidc.clients.add(name, tuple(redirect_uris), public=kw.pop("public", False), **kw)
    return made.client.client_id, made.client_secret


def authorize_params(client_id, redirect_uri=WEB, *, challenge=None, scope="openid profile offline_access",
                     state="st4te", nonce=None, **extra):
    """A code + PKCE request; a fresh nonce each time (a nonce seen before for the client is refused)."""
    nonce = nonce or secrets.token_urlsafe(12)
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def authorize(client, params):
    return client.get("/oauth/authorize?" + urlencode(params))


def query(location: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def get_code(client, client_id, redirect_uri=WEB, **kw) -> tuple[str, str]:
    """Run the browser part for a signed-in ``client``: (code, verifier)."""
    verifier, challenge = pkce()
    response = authorize(client, authorize_params(client_id, redirect_uri, challenge=challenge, **kw))
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    got = query(response.headers["Location"])
    assert response.headers["Location"].startswith(redirect_uri)
    return got["code"], verifier


def consent_page(client, client_id, redirect_uri=WEB, **kw):
    """The authorization request of a signed-in ``client`` that must show the consent page:
    (page, params, verifier)."""
    verifier, challenge = pkce()
    params = authorize_params(client_id, redirect_uri, challenge=challenge, **kw)
    page = authorize(client, params)
    assert page.status_code == 200 and "Allow " in page.get_data(as_text=True), page.headers.get("Location")
    return page, params, verifier


def allow(client, page, params, redirect_uri=WEB):
    """Press Allow on ``page``: the 303 straight back to ``redirect_uri`` with a code."""
    from tests.conftest import csrf_in

    form = {k: v for k, v in params.items() if k != "prompt"}
    back = client.post("/oauth/authorize/consent",
                       data=dict(form, csrf_token=csrf_in(page.get_data(as_text=True)), decision="allow"))
    assert back.status_code == 303 and back.headers["Location"].startswith(redirect_uri), back.headers.get("Location")
    return back


def get_code_with_consent(client, client_id, redirect_uri=WEB, **kw) -> tuple[str, str]:
    """The browser part through the consent page (a public client's every time): (code, verifier)."""
    page, params, verifier = consent_page(client, client_id, redirect_uri, **kw)
    return query(allow(client, page, params, redirect_uri).headers["Location"])["code"], verifier


def exchange(client, client_id, secret, code, verifier, redirect_uri=WEB, *, basic=True, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    headers = {}
    if secret is None:
        data["client_id"] = client_id
    elif basic:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    else:
        data.update(client_id=client_id, client_secret=secret)
    return client.post("/oauth/token", data=data, headers=headers)


def refresh(client, client_id, secret, refresh_token, **extra):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    headers = {}
    if secret is None:
        data["client_id"] = client_id
    else:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token", data=data, headers=headers)


def userinfo(client, access_token):
    return client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {access_token}"})


def verify_id_token(client, id_token: str, client_id: str, *, now: float, algorithms=("ES256",)):
    """Verify as a relying party would: signature by a published key, iss, aud, exp (at ``now``)."""
    keys = KeySet.import_key_set(client.get("/oauth/jwks").get_json())
    token = jwt.decode(id_token, keys, algorithms=list(algorithms))
    claims = jwt.JWTClaimsRegistry(now=int(now), iss={"essential": True, "value": HTTPS},
                                   aud={"essential": True, "value": client_id})
    claims.validate(token.claims)
    return token
