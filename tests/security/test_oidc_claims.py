"""The OpenID Provider's scopes and claims end to end: ``profile`` gives ``preferred_username``,
``groups`` gives the user's group names (issue 18's groups), in the ID token and at userinfo.

Threats: a client reading groups it did not ask for (or the user did not allow), another user's
groups in a token, a group membership that outlives its removal at userinfo, hostile spellings of
the scope (case, look-alikes, duplicates, unknown scopes, a huge string) slipping a claim through
or breaking the endpoint. The pure rule's threat list is tests/security/test_oidc_request_rules.py.
"""

from __future__ import annotations

import pytest

from tests.conftest import HTTPS, add_user, browser, csrf_in, login
from tests.security.oidc_helpers import (
    add_client,
    authorize,
    authorize_params,
    exchange,
    get_code,
    pkce,
    query,
    refresh,
    userinfo,
    verify_id_token,
)


@pytest.fixture
def web(svc):
    return add_client(svc, trusted=True)


@pytest.fixture
def member(svc, user):
    """alice, in two groups (added in the wrong order, with other case: stored normalised, sorted)."""
    for name in ("Ops", "admins", "nobody-here"):
        svc.groups.add(name)
    svc.groups.join(user.id, "ops")
    svc.groups.join(user.id, "ADMINS")
    return user


@pytest.fixture
def signed_in(client, member):
    assert login(client).status_code == 303
    return client


def tokens(client, web, scope, **kw):
    cid, secret = web
    code, verifier = get_code(client, cid, scope=scope, **kw)
    response = exchange(client, cid, secret, code, verifier)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def id_claims(svc, client, body, cid):
    return verify_id_token(client, body["id_token"], cid, now=svc.clock()).claims


# --- what each scope gives ------------------------------------------------------------------------

@pytest.mark.asvs("V10.3.2")
def test_the_groups_scope_puts_the_users_group_names_in_the_id_token_and_userinfo(svc, signed_in, web):
    body = tokens(signed_in, web, "openid groups")
    claims = id_claims(svc, signed_in, body, web[0])
    assert claims["groups"] == ["admins", "ops"]
    assert all(isinstance(name, str) for name in claims["groups"])
    assert "preferred_username" not in claims
    info = userinfo(signed_in, body["access_token"]).get_json()
    assert info == {"sub": claims["sub"], "groups": ["admins", "ops"]}


def test_profile_gives_preferred_username_and_no_groups(svc, signed_in, web):
    body = tokens(signed_in, web, "openid profile")
    claims = id_claims(svc, signed_in, body, web[0])
    assert claims["preferred_username"] == "alice" and "groups" not in claims
    assert userinfo(signed_in, body["access_token"]).get_json() == {"sub": claims["sub"],
                                                                     "preferred_username": "alice"}


@pytest.mark.asvs("V10.3.2")
def test_openid_alone_gives_neither_username_nor_groups(svc, signed_in, web):
    body = tokens(signed_in, web, "openid")
    claims = id_claims(svc, signed_in, body, web[0])
    assert "groups" not in claims and "preferred_username" not in claims
    assert set(userinfo(signed_in, body["access_token"]).get_json()) == {"sub"}


def test_every_scope_together(svc, signed_in, web):
    body = tokens(signed_in, web, "offline_access groups profile openid")
    claims = id_claims(svc, signed_in, body, web[0])
    assert claims["groups"] == ["admins", "ops"] and claims["preferred_username"] == "alice"
    assert body["refresh_token"]


def test_a_user_in_no_group_gets_an_empty_list_not_a_missing_claim(svc, client, user, web):
    assert login(client).status_code == 303
    body = tokens(client, web, "openid groups")
    assert id_claims(svc, client, body, web[0])["groups"] == []
    assert userinfo(client, body["access_token"]).get_json()["groups"] == []


def test_another_users_groups_never_appear(app, svc, member, web):
    bob = add_user(app, "bob")
    svc.groups.join(bob.id, "nobody-here")
    theirs = browser(app, "198.51.100.20")
    assert login(theirs, "bob").status_code == 303
    body = tokens(theirs, web, "openid groups")
    assert id_claims(svc, theirs, body, web[0])["groups"] == ["nobody-here"]
    mine = browser(app, "198.51.100.21")
    assert login(mine).status_code == 303
    body = tokens(mine, web, "openid groups")
    assert id_claims(svc, mine, body, web[0])["groups"] == ["admins", "ops"]


def test_userinfo_reads_the_groups_as_they_are_now(svc, signed_in, web, member):
    """A user taken out of a group no longer gets it at userinfo, nor after a refresh."""
    cid, secret = web
    body = tokens(signed_in, web, "openid groups offline_access")
    assert userinfo(signed_in, body["access_token"]).get_json()["groups"] == ["admins", "ops"]
    svc.groups.leave(member.id, "admins")
    assert userinfo(signed_in, body["access_token"]).get_json()["groups"] == ["ops"]
    svc.groups.remove("ops")
    renewed = refresh(signed_in, cid, secret, body["refresh_token"]).get_json()
    assert userinfo(signed_in, renewed["access_token"]).get_json()["groups"] == []


def test_a_refreshed_token_keeps_the_granted_scope_and_no_more(svc, signed_in, web):
    cid, secret = web
    body = tokens(signed_in, web, "openid offline_access")
    renewed = refresh(signed_in, cid, secret, body["refresh_token"])
    assert renewed.status_code == 200
    assert "groups" not in userinfo(signed_in, renewed.get_json()["access_token"]).get_json()
    wider = signed_in.post("/oauth/token", data={"grant_type": "refresh_token", "scope": "openid groups offline_access",
                                                 "refresh_token": renewed.get_json()["refresh_token"]},
                           headers={"Authorization": _basic(cid, secret)})
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_scope"


def _basic(cid, secret):
    import base64

    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


# --- published metadata --------------------------------------------------------------------------

def test_discovery_offers_the_groups_scope_and_claim(client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["scopes_supported"] == ["openid", "profile", "groups", "offline_access"]
    assert "groups" in meta["claims_supported"] and "preferred_username" in meta["claims_supported"]


# --- consent --------------------------------------------------------------------------------------

@pytest.mark.asvs("V10.7.1", "V10.7.2")
def test_consent_names_the_groups_and_asking_for_them_later_asks_again(svc, signed_in):
    cid, secret = add_client(svc, "Forum", ("https://app.example.com/callback",))
    params = authorize_params(cid, challenge=pkce()[1], scope="openid profile")
    html = authorize(signed_in, params).get_data(as_text=True)
    assert "groups you are in" not in html
    signed_in.post("/oauth/authorize/consent", data=dict(params, csrf_token=csrf_in(html), decision="allow"))
    get_code(signed_in, cid, scope="openid profile")  # remembered
    wider = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], scope="openid profile groups"))
    assert wider.status_code == 200 and "the names of the groups you are in" in wider.get_data(as_text=True)
    silent = authorize(signed_in, authorize_params(cid, challenge=pkce()[1], scope="openid groups", prompt="none"))
    assert query(silent.headers["Location"])["error"] == "consent_required"


# --- hostile scope strings at the endpoint ---------------------------------------------------------

@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("scope", [
    pytest.param("openid GROUPS", id="upper_case"), pytest.param("openid Groups", id="title_case"),
    pytest.param("openid group", id="singular"), pytest.param("openid groups admin", id="unknown_beside"),
    pytest.param("openid groups:admins", id="parameterised"), pytest.param("openid gr\u043eups", id="cyrillic_o"),
    pytest.param("openid groups\u200b", id="zero_width"), pytest.param("openid groups\x00", id="nul"),
    pytest.param("openid groups\r\nX: y", id="crlf"), pytest.param("openid,groups", id="comma"),
    pytest.param("groups", id="no_openid"), pytest.param("openid  groups", id="double_space"),
    pytest.param("openid " + "groups " * 2000, id="huge"),
])
def test_hostile_scope_strings_get_invalid_scope_and_no_code(signed_in, web, scope):
    response = authorize(signed_in, authorize_params(web[0], challenge=pkce()[1], scope=scope))
    assert response.status_code == 302
    got = query(response.headers["Location"])
    assert got["error"] == "invalid_scope" and "code" not in got and got["iss"] == HTTPS
    assert got["state"] == "st4te"


def test_a_duplicated_groups_scope_gives_one_claim(svc, signed_in, web):
    body = tokens(signed_in, web, "groups openid groups groups")
    assert id_claims(svc, signed_in, body, web[0])["groups"] == ["admins", "ops"]
    assert body["scope"] == "openid groups"  # the code and its tokens carry the scope in its one form
