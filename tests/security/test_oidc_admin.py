"""The OpenID Provider's administration and policy: `authsvc oidc client add/list/update/remove`, `authsvc
oidc keys rotate`, the [oidc] policy's floors, and a client's --require-mfa through the real second
step."""

from __future__ import annotations

import json
import logging

import pytest

from authsvc.core import config
from authsvc.core.policy import PolicyError, load_policy
from tests.conftest import TEST_POLICY, csrf_in, login, make_env, run_cli
from tests.security.factors import enroll, second_step, sign_in
from tests.security.oidc_helpers import (
    NATIVE,
    WEB,
    add_client,
    authorize,
    authorize_params,
    exchange,
    get_code,
    get_code_with_consent,
    pkce,
    query,
    refresh,
    userinfo,
)


def cli_json(monkeypatch, tmp_path, capsys, *argv) -> tuple[int, dict | str]:
    code = run_cli(monkeypatch, tmp_path, *argv)
    out = capsys.readouterr().out
    try:  # the last line: with AUTHSVC_LOG=stdout the audit event's line comes first
        return code, json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return code, out


@pytest.mark.asvs("V10.4.10")
def test_client_add_prints_the_secret_once_and_stores_only_its_digest(app, svc, monkeypatch, tmp_path, capsys):
    code, out = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "add", "Wiki", "--redirect-uri", WEB,
                         "--json")
    assert code == 0 and set(out) == {"client_id", "client_secret"} and len(out["client_secret"]) >= 43
    client = svc.oidc.clients.get(out["client_id"])
    assert client.check_client_secret(out["client_secret"]) and not client.check_client_secret(out["client_secret"] + "x")
    assert out["client_secret"].encode() not in client.secret_hash
    code, listed = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "list")
    assert out["client_id"] in listed and out["client_secret"] not in listed


def test_a_public_client_gets_no_secret(app, monkeypatch, tmp_path, capsys):
    code, out = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "add", "CLI", "--redirect-uri",
                         "http://127.0.0.1/callback", "--public", "--json")
    assert code == 0 and set(out) == {"client_id"}


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri, extra", [
    ("http://app.example.com/cb", []), ("http://localhost:8080/cb", ["--public"]), ("https://app.example.com/cb#x", []),
    ("javascript:alert(1)", ["--public"]), ("com.example.app:/cb", []), ("https://user@app.example.com/cb", []),
])
def test_client_add_refuses_unsound_redirect_uris(app, monkeypatch, tmp_path, capsys, uri, extra):
    code = run_cli(monkeypatch, tmp_path, "oidc", "client", "add", "Bad", "--redirect-uri", uri, *extra)
    assert code == 2 and "refused" in capsys.readouterr().err
    assert app.extensions["authsvc"].oidc.clients.all() == []


@pytest.mark.asvs("V10.4.11")
def test_client_add_stores_the_scopes_and_list_shows_them(app, svc, monkeypatch, tmp_path, capsys):
    code, out = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "add", "Blog", "--redirect-uri", WEB,
                         "--scopes", "groups openid profile groups", "--json")
    assert code == 0 and svc.oidc.clients.get(out["client_id"]).scopes == ("openid", "profile", "groups")
    code, default = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "add", "Plain", "--redirect-uri", WEB,
                             "--json")
    assert code == 0 and svc.oidc.clients.get(default["client_id"]).scopes == ("openid", "profile")
    code, listed = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "list", "--json")
    assert code == 0 and [(c["name"], c["scopes"]) for c in listed] == [
        ("Blog", ["openid", "profile", "groups"]), ("Plain", ["openid", "profile"])]
    assert all("secret" not in key for c in listed for key in c)
    assert run_cli(monkeypatch, tmp_path, "oidc", "client", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(out["client_id"] in line and "\topenid profile groups\t" in line for line in lines)


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("scopes", [
    "profile", "", "openid admin", "openid GROUPS", "openid  profile", " openid", "openid\tprofile",
    "openid gr\u043eups", "openid ｐrofile", "openid offline_access\u200b", "openid " + "profile " * 100,
])
def test_client_add_refuses_scopes_it_cannot_give(app, monkeypatch, tmp_path, capsys, scopes):
    code = run_cli(monkeypatch, tmp_path, "oidc", "client", "add", "Bad", "--redirect-uri", WEB, "--scopes", scopes)
    err = capsys.readouterr().err
    assert code == 2 and "refused: --scopes" in err and "offered: openid profile groups offline_access" in err
    assert app.extensions["authsvc"].oidc.clients.all() == []


@pytest.mark.asvs("V10.7.1")
def test_client_add_refuses_a_trusted_public_client(app, monkeypatch, tmp_path, capsys):
    code = run_cli(monkeypatch, tmp_path, "oidc", "client", "add", "CLI", "--redirect-uri",
                   "http://127.0.0.1/callback", "--public", "--trusted")
    assert code == 2 and "always asked for consent" in capsys.readouterr().err
    assert app.extensions["authsvc"].oidc.clients.all() == []


def test_client_remove_ends_its_tokens(app, svc, client, user, monkeypatch, tmp_path, capsys):
    cid, secret = add_client(svc, trusted=True)
    login(client)
    code, verifier = get_code(client, cid)
    body = exchange(client, cid, secret, code, verifier).get_json()
    assert run_cli(monkeypatch, tmp_path, "oidc", "client", "remove", cid) == 0
    assert client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).status_code == 401
    assert run_cli(monkeypatch, tmp_path, "oidc", "client", "remove", cid) == 1


# --- oidc client update ----------------------------------------------------------------------------

def update_client(monkeypatch, tmp_path, client_id, *options) -> int:
    """``authsvc oidc client update OPTIONS -- CLIENT_ID``: a client id may begin with ``-``."""
    return run_cli(monkeypatch, tmp_path, "oidc", "client", "update", *options, "--", client_id)


def signed_in_tokens(client, cid, secret, scope="openid profile groups offline_access") -> dict:
    login(client)
    code, verifier = get_code(client, cid, scope=scope)
    body = exchange(client, cid, secret, code, verifier).get_json()
    assert body["scope"] == scope and body["refresh_token"], body
    return body


@pytest.mark.asvs("V10.4.11")
def test_client_update_scopes_replaces_the_list_and_widening_ends_nothing(app, svc, client, user, monkeypatch,
                                                                             tmp_path, capsys):
    cid, secret = add_client(svc, trusted=True, scopes=("openid", "profile", "offline_access"))
    body = signed_in_tokens(client, cid, secret, "openid profile offline_access")
    assert update_client(monkeypatch, tmp_path, cid, "--scopes",
                   "openid groups profile offline_access groups") == 0
    out = capsys.readouterr().out
    assert "scopes: openid profile groups offline_access" in out and "scopes taken away" not in out
    assert svc.oidc.clients.get(cid).scopes == ("openid", "profile", "groups", "offline_access")
    assert userinfo(client, body["access_token"]).status_code == 200
    assert refresh(client, cid, secret, body["refresh_token"]).status_code == 200


@pytest.mark.asvs("V10.4.11")
def test_narrowing_scopes_revokes_the_clients_tokens_codes_and_consents(app, svc, client, user, monkeypatch,
                                                                          tmp_path, capsys, caplog):
    """A refresh token issued before the narrowing gets neither the removed scope nor any other: the
    client's tokens end with it (an access token would otherwise keep groups until it expires)."""
    caplog.set_level(logging.INFO, "authsvc.audit")
    everything = "openid profile groups offline_access"
    cid, secret = add_client(svc)                                  # not trusted: the user consents
    login(client)
    code, verifier = get_code_with_consent(client, cid, scope=everything)
    body = exchange(client, cid, secret, code, verifier).get_json()
    code, verifier = get_code(client, cid, scope=everything)       # the consent is remembered
    other = exchange(client, cid, secret, code, verifier).get_json()
    unused, unused_verifier = get_code(client, cid, scope=everything)
    assert svc.oidc.consents.granted(user.id, cid)
    assert update_client(monkeypatch, tmp_path, cid, "--scopes",
                   "openid profile offline_access") == 0
    out = capsys.readouterr().out
    assert "scopes taken away (groups): revoked 2 token(s), 1 unused code(s) and 1 consent(s)" in out
    assert refresh(client, cid, secret, body["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert refresh(client, cid, secret, other["refresh_token"], scope="openid groups").status_code == 400
    assert userinfo(client, body["access_token"]).status_code == 401
    assert exchange(client, cid, secret, unused, unused_verifier).get_json()["error"] == "invalid_grant"
    assert svc.oidc.consents.granted(user.id, cid) is None
    asked = authorize(client, authorize_params(cid, challenge=pkce()[1], scope="openid groups"))
    assert query(asked.headers["Location"])["error"] == "invalid_scope"
    event = [json.loads(r.getMessage()) for r in caplog.records if "oidc_client_updated" in r.getMessage()][-1]
    assert (event["client_id"], event["scopes_removed"], event["revoked"], event["codes_deleted"],
            event["consents_revoked"], event["credential_rotated"]) == (cid, "groups", 2, 1, 1, False)


def test_client_update_redirect_uris_replace_the_list(app, svc, client, user, monkeypatch, tmp_path, capsys):
    cid, secret = add_client(svc, trusted=True, redirect_uris=(WEB, "https://app.example.com/other"))
    login(client)
    dropped, dropped_verifier = get_code(client, cid)                       # sent to WEB, not yet exchanged
    kept, kept_verifier = get_code(client, cid, "https://app.example.com/other")
    new = "https://app.example.com/new-callback"
    assert update_client(monkeypatch, tmp_path, cid, "--redirect-uri", new,
                   "--redirect-uri", new, "--redirect-uri", "https://app.example.com/other") == 0
    assert svc.oidc.clients.get(cid).redirect_uris == (new, "https://app.example.com/other")
    # a code sent to a URI taken off the list cannot be exchanged there any more; one sent to a kept URI can
    assert exchange(client, cid, secret, dropped, dropped_verifier).get_json()["error"] == "invalid_grant"
    assert exchange(client, cid, secret, kept, kept_verifier, "https://app.example.com/other").status_code == 200
    assert authorize(client, authorize_params(cid, WEB, challenge=pkce()[1])).status_code == 400  # old one: gone
    code, verifier = get_code(client, cid, new)
    assert exchange(client, cid, secret, code, verifier, new).status_code == 200


def test_client_update_post_logout_redirect_uris_replace_the_list(app, svc, monkeypatch, tmp_path, capsys):
    cid, _ = add_client(svc, post_logout_redirect_uris=("https://app.example.com/bye",))
    assert update_client(monkeypatch, tmp_path, cid, "--post-logout-redirect-uri",
                   "https://app.example.com/signed-out", "--post-logout-redirect-uri",
                   "https://app.example.com/later") == 0
    assert svc.oidc.clients.get(cid).post_logout_redirect_uris == ("https://app.example.com/signed-out",
                                                                  "https://app.example.com/later")
    assert svc.oidc.clients.get(cid).redirect_uris == (WEB,)       # what was not given is kept


@pytest.mark.asvs("V10.4.10")
def test_rotate_secret_prints_the_new_one_once_and_the_old_one_is_refused(app, svc, client, user, monkeypatch,
                                                                          tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    cid, old = add_client(svc, trusted=True)
    body = signed_in_tokens(client, cid, old)
    code, out = cli_json(monkeypatch, tmp_path, capsys, "oidc", "client", "update", "--rotate-secret", "--json", "--", cid)
    assert code == 0 and out["client_id"] == cid and len(out["client_secret"]) >= 43 and out["tokens_revoked"] == 0
    new = out["client_secret"]
    code, verifier = get_code(client, cid)
    refused = exchange(client, cid, old, code, verifier)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"
    assert refresh(client, cid, old, body["refresh_token"]).status_code == 401
    assert refresh(client, cid, new, body["refresh_token"]).status_code == 200   # issued tokens stay
    assert update_client(monkeypatch, tmp_path, cid, "--rotate-secret") == 0
    text = capsys.readouterr().out
    newest = text.split("client_secret: ", 1)[1].split()[0]
    assert text.count(newest) == 1 and "the old secret no longer works" in text
    assert svc.oidc.clients.get(cid).check_client_secret(newest) and not svc.oidc.clients.get(cid).check_client_secret(new)
    assert run_cli(monkeypatch, tmp_path, "oidc", "client", "list", "--json") == 0
    assert newest not in capsys.readouterr().out
    for secret in (old, new, newest):
        assert secret not in caplog.text
    assert "oidc_client_updated" in caplog.text


def test_client_update_changes_the_name_flags_and_logout_uris_it_is_given(app, svc, monkeypatch, tmp_path, capsys):
    cid, _ = add_client(svc, post_logout_redirect_uris=("https://app.example.com/bye",))
    bc = "https://app.example.com/backchannel"
    assert update_client(monkeypatch, tmp_path, cid, "--name", "  Wiki (staff)  ", "--require-mfa",
                         "--trusted", "--backchannel-logout-uri", bc) == 0
    out = capsys.readouterr().out
    assert "flags: trusted,require-mfa" in out and f"back-channel logout URI: {bc}" in out
    c = svc.oidc.clients.get(cid)
    assert (c.name, c.trusted, c.require_mfa, c.backchannel_logout_uri) == ("Wiki (staff)", True, True, bc)
    assert c.post_logout_redirect_uris == ("https://app.example.com/bye",) and c.redirect_uris == (WEB,)
    assert update_client(monkeypatch, tmp_path, cid, "--no-require-mfa", "--no-trusted",
                         "--no-backchannel-logout-uri", "--no-post-logout-redirect-uri") == 0
    c = svc.oidc.clients.get(cid)
    assert (c.name, c.trusted, c.require_mfa, c.backchannel_logout_uri, c.post_logout_redirect_uris) == (
        "Wiki (staff)", False, False, None, ())
    assert "flags: -" in capsys.readouterr().out


@pytest.mark.asvs("V10.7.1")
@pytest.mark.parametrize("stricter, start", [("--no-trusted", {"trusted": True}),
                                             ("--require-mfa", {"trusted": True, "require_mfa": False})])
def test_making_a_client_stricter_revokes_its_tokens_and_unused_codes(app, svc, client, user, monkeypatch,
                                                                       tmp_path, capsys, caplog, stricter, start):
    """Tokens issued without the consent (or the second factor) the client now asks for do not
    outlive the change: its users sign in to it again, and go through the consent page (or the
    second step)."""
    caplog.set_level(logging.INFO, "authsvc.audit")
    cid, secret = add_client(svc, **start)
    body = signed_in_tokens(client, cid, secret)
    unused, unused_verifier = get_code(client, cid)
    assert update_client(monkeypatch, tmp_path, cid, stricter) == 0
    out = capsys.readouterr().out
    assert "the client is stricter now: revoked 1 token(s) and 1 unused code(s)" in out
    assert refresh(client, cid, secret, body["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert userinfo(client, body["access_token"]).status_code == 401
    assert exchange(client, cid, secret, unused, unused_verifier).get_json()["error"] == "invalid_grant"
    event = [json.loads(r.getMessage()) for r in caplog.records if "oidc_client_updated" in r.getMessage()][-1]
    assert (event["changed"], event["revoked"], event["codes_deleted"]) == (stricter, 1, 1)
    assert (event["trusted"], event["require_mfa"]) == ((False, False) if stricter == "--no-trusted" else (True, True))


@pytest.mark.parametrize("looser, start", [("--trusted", {}), ("--no-require-mfa", {"trusted": True, "require_mfa": True})])
def test_making_a_client_looser_ends_nothing(app, svc, client, user, clock, monkeypatch, tmp_path, capsys,
                                             looser, start):
    cid, secret = add_client(svc, **start)
    if start.get("require_mfa"):  # its tokens need a two-factor session
        totp = enroll(app, user, clock)
        assert sign_in(client, totp).status_code == 303
    else:
        login(client)
    code, verifier = (get_code(client, cid) if start.get("trusted") else get_code_with_consent(client, cid))
    body = exchange(client, cid, secret, code, verifier).get_json()
    assert update_client(monkeypatch, tmp_path, cid, looser) == 0
    assert "stricter" not in capsys.readouterr().out
    assert userinfo(client, body["access_token"]).status_code == 200
    assert refresh(client, cid, secret, body["refresh_token"]).status_code == 200


BAD_UPDATES = [
    ["--redirect-uri", "http://app.example.com/cb"], ["--redirect-uri", "https://app.example.com/cb#x"],
    ["--redirect-uri", "com.example.app:/cb"], ["--redirect-uri", ""],
    ["--redirect-uri", WEB, "--redirect-uri", "javascript:alert(1)"],
    ["--post-logout-redirect-uri", "https://user@app.example.com/bye"],
    ["--scopes", "profile"], ["--scopes", ""], ["--scopes", "openid admin"], ["--scopes", "openid  profile"],
    ["--scopes", "openid gr\u043eups"],
    ["--scopes", "openid", "--redirect-uri", "http://app.example.com/cb", "--rotate-secret"],  # one bad: none done
    [],                                                                                          # nothing to change
    ["--name", ""], ["--name", "   "], ["--name", "x" * 129], ["--name", "Wiki\x1b[31m"], ["--name", "Wiki\nadmin"],
    ["--name", "Wiki\u202eevil"], ["--name", "Wiki\u200b"],                                        # bidi override, zero width
    ["--backchannel-logout-uri", "http://app.example.com/bc"], ["--backchannel-logout-uri", "https://app.example.com/bc#x"],
    ["--backchannel-logout-uri", "https://user:pw@app.example.com/bc"], ["--backchannel-logout-uri", ""],
    ["--name", "Wiki 2", "--no-trusted", "--backchannel-logout-uri", "javascript:alert(1)"],    # one bad: none done
]


@pytest.mark.parametrize("argv", [
    ["--post-logout-redirect-uri", "https://app.example.com/bye", "--no-post-logout-redirect-uri"],
    ["--backchannel-logout-uri", "https://app.example.com/bc", "--no-backchannel-logout-uri"],
])
def test_client_update_refuses_to_set_and_clear_one_field_at_once(app, svc, monkeypatch, tmp_path, capsys, argv):
    cid, _ = add_client(svc, post_logout_redirect_uris=("https://app.example.com/bye",))
    before = svc.oidc.clients.get(cid)
    with pytest.raises(SystemExit) as exited:
        update_client(monkeypatch, tmp_path, cid, *argv)
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert svc.oidc.clients.get(cid) == before


@pytest.mark.asvs("V10.4.1", "V10.4.11")
@pytest.mark.parametrize("argv", BAD_UPDATES)
def test_client_update_refuses_what_add_refuses_and_changes_nothing(app, svc, client, user, monkeypatch, tmp_path,
                                                                    capsys, argv):
    cid, secret = add_client(svc, trusted=True)
    body = signed_in_tokens(client, cid, secret)
    before = svc.oidc.clients.get(cid)
    assert update_client(monkeypatch, tmp_path, cid, *argv) == 2
    captured = capsys.readouterr()
    assert "refused: " in captured.err and "client_secret" not in captured.out
    assert svc.oidc.clients.get(cid) == before
    assert userinfo(client, body["access_token"]).status_code == 200


def test_client_update_refuses_to_rotate_a_public_clients_secret(app, svc, monkeypatch, tmp_path, capsys):
    cid, _ = add_client(svc, "CLI", (NATIVE,), public=True)
    before = svc.oidc.clients.get(cid)
    assert update_client(monkeypatch, tmp_path, cid, "--rotate-secret") == 2
    assert "a public client has no secret" in capsys.readouterr().err
    assert update_client(monkeypatch, tmp_path, cid, "--trusted") == 2       # V10.7.1: it always asks
    assert "cannot prove who it is" in capsys.readouterr().err
    assert svc.oidc.clients.get(cid) == before
    # a public client's loopback and private-use URIs pass, as they do for add --public
    assert update_client(monkeypatch, tmp_path, cid, "--redirect-uri",
                   "com.example.app:/cb") == 0
    assert svc.oidc.clients.get(cid).secret_hash is None and before.secret_hash is None


def test_client_update_of_an_unknown_client_exits_1(app, svc, monkeypatch, tmp_path, capsys):
    add_client(svc)
    for cid in ("no-such-client", "-no-such-client", "", "x" * 100):
        assert update_client(monkeypatch, tmp_path, cid, "--rotate-secret") == 1
        assert "no client with id" in capsys.readouterr().err


def test_keys_rotate_adds_a_key_and_keeps_the_old_one_published(app, client, clock, monkeypatch, tmp_path, capsys):
    import time

    clock.now = time.time()  # the command reads the wall clock
    first = client.get("/oauth/jwks").get_json()["keys"]
    assert run_cli(monkeypatch, tmp_path, "oidc", "keys", "rotate") == 0
    assert "new signing key" in capsys.readouterr().out
    after = client.get("/oauth/jwks").get_json()["keys"]
    assert len(after) == 2 and first[0]["kid"] in [k["kid"] for k in after] and after[0]["kid"] != first[0]["kid"]


@pytest.mark.parametrize("text", [
    '[oidc]\nsigning_alg = "none"\n', '[oidc]\nsigning_alg = "HS256"\n', '[oidc]\nsigning_alg = "es256"\n',
])
def test_the_policy_never_signs_with_none_or_hmac(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(PolicyError, match="ES256"):
        load_policy(path)


@pytest.mark.asvs("V10.4.3")
@pytest.mark.parametrize("text, setting", [
    ("[oidc]\naccess_token_lifetime_seconds = 3601\n", "oidc.access_token_lifetime_seconds"),
    ("[oidc]\ncode_lifetime_seconds = 61\n", "oidc.code_lifetime_seconds"),
    ("[oidc]\nid_token_lifetime_seconds = 7200\n", "oidc.id_token_lifetime_seconds"),
])
def test_check_refuses_long_lived_codes_and_tokens(tmp_path, text, setting):
    path = tmp_path / "p.toml"
    path.write_text(text)
    settings = config.from_env(make_env(tmp_path, AUTHSVC_POLICY=str(path)), instance_path=str(tmp_path / "i"))
    assert setting in {p.setting for p in config.audit(settings) if p.severity == "error"}


def test_the_default_and_test_policies_pass():
    assert load_policy(TEST_POLICY).oidc.access_token_lifetime_seconds == 600


def test_rs256_is_the_other_choice(tmp_path, clock):
    from tests.conftest import build_app

    path = tmp_path / "p.toml"
    path.write_text(open(TEST_POLICY).read() + '\n[oidc]\nsigning_alg = "RS256"\n')
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=str(path))
    keys = app.test_client().get("/oauth/jwks", base_url="https://auth.example.test").get_json()["keys"]
    assert keys[0]["alg"] == "RS256" and keys[0]["kty"] == "RSA" and "d" not in keys[0]


# --- --require-mfa: the existing second step ------------------------------------------------------

@pytest.mark.asvs("V6.3.3")
def test_require_mfa_steps_a_one_factor_session_up_through_the_second_step(app, svc, client, user, clock):
    cid, secret = add_client(svc, "Admin", trusted=True, require_mfa=True)
    assert login(client).status_code == 303  # password only: no factor yet
    totp = enroll(app, user, clock)  # the account gets one later; this session is still one-factor
    verifier, challenge = pkce()
    params = authorize_params(cid, challenge=challenge)
    response = authorize(client, params)
    assert response.status_code == 303 and "reauth=1" in response.headers["Location"]
    form = client.get(response.headers["Location"])
    html = form.get_data(as_text=True)
    next_url = html.split('name="next" value="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    step = client.post("/login", data={"csrf_token": csrf_in(html), "username": "alice",
                                       "password": "correct horse battery staple 42", "next": next_url})
    assert step.status_code == 303 and step.headers["Location"].startswith("/login/mfa")
    done = second_step(client, totp.code(), next=next_url)
    assert done.status_code == 303
    final = client.get(next_url)
    assert final.status_code == 302 and "code=" in final.headers["Location"]
    code = final.headers["Location"].split("code=", 1)[1].split("&", 1)[0]
    body = exchange(client, cid, secret, code, verifier).get_json()
    assert body["access_token"]


def test_sessions_purge_removes_unusable_oidc_records_and_keeps_live_ones(app, svc, client, user, clock, monkeypatch,
                                                                           tmp_path, capsys):
    import time

    import sqlalchemy as sa

    from authsvc.core.models import oidc_codes, oidc_tokens
    clock.now = time.time()  # the command reads the wall clock
    cid, secret = add_client(svc, trusted=True)
    login(client)
    code, verifier = get_code(client, cid)
    exchange(client, cid, secret, code, verifier)
    stale_code, _ = get_code(client, cid)
    with svc.engine.begin() as conn:  # one code and one token from two days ago, long unusable
        conn.execute(oidc_codes.update().values(expires_at=clock.now - 2 * 86400))
        conn.execute(oidc_tokens.update().values(access_expires_at=clock.now - 2 * 86400, revoked_at=clock.now))
    code, verifier = get_code(client, cid)  # a live one
    exchange(client, cid, secret, code, verifier)
    assert run_cli(monkeypatch, tmp_path, "sessions", "purge") == 0
    with svc.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(oidc_tokens)).scalar() == 1
        left = conn.execute(sa.select(oidc_codes.c.expires_at)).scalars().all()
    assert all(expires > clock.now - 86400 for expires in left)


def test_an_access_token_ends_after_its_lifetime(svc, client, user, clock):
    cid, secret = add_client(svc, trusted=True)
    login(client)
    code, verifier = get_code(client, cid)
    token = exchange(client, cid, secret, code, verifier).get_json()["access_token"]
    clock.advance(svc.policy.oidc.access_token_lifetime_seconds - 1)
    assert client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    clock.advance(1)
    assert client.get("/oauth/userinfo", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def token_limit_of_three(tmp_path, clock):
    """An app whose token endpoint allows 3 requests a minute per client, two trusted clients in it:
    a ``post(body, ip, client_id=None, client_secret=None)`` to its token endpoint (HTTP Basic when
    ``client_id`` is given), (client_id, secret) of one and of the other, and the app's services."""
    import base64

    from tests.conftest import build_app

    path = tmp_path / "p.toml"
    path.write_text(open(TEST_POLICY).read() + '\n[oidc]\ntoken_requests_per_client = ["3 per minute"]\n')
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=str(path))
    svc = app.extensions["authsvc"]
    client = app.test_client()

    def post(body, ip, client_id=None, client_secret=None):
        headers = {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
                   } if client_id is not None else {}
        return client.post("/oauth/token", data=body, content_type="application/x-www-form-urlencoded",
                           headers=headers, base_url="https://auth.example.test", environ_base={"REMOTE_ADDR": ip})

    return post, add_client(svc, trusted=True), add_client(svc, "Other", trusted=True), svc


GUESS = "grant_type=authorization_code&code=x"


def test_the_token_endpoint_is_throttled_per_client_with_a_json_429(tmp_path, clock):
    post, (cid, secret), (other, other_secret), _ = token_limit_of_three(tmp_path, clock)
    assert [post(GUESS, f"198.51.100.{i}", cid, secret).status_code for i in range(3)] == [400, 400, 400]
    throttled = post(GUESS, "203.0.113.9", cid, secret)  # another address: the same client's budget
    assert throttled.status_code == 429 and throttled.get_json()["error"] == "throttled"
    assert post(GUESS, "203.0.113.9", other, other_secret).status_code == 400  # another client is not starved


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("presented", ["form-id-no-secret", "form-id-wrong-secret", "basic-wrong-secret",
                                       "basic-other-clients-secret", "basic-empty-secret", "basic-id-in-upper-case",
                                       "basic-id-with-trailing-space", "basic-id-with-a-zero-width-space"])
def test_naming_a_client_without_its_secret_spends_the_senders_budget_not_the_clients(tmp_path, clock, presented):
    """A client id is no secret (every authorization URL carries it). Requests that name a client
    without authenticating as it count by address: the sender is cut off after the limit, and the
    client still has its whole budget, from any address, the sender's too."""
    post, (cid, secret), (other, other_secret), _ = token_limit_of_three(tmp_path, clock)
    body, auth = {
        "form-id-no-secret": (f"{GUESS}&client_id={cid}", None),
        "form-id-wrong-secret": (f"{GUESS}&client_id={cid}&client_secret={secret[:-1]}x", None),
        "basic-wrong-secret": (GUESS, (cid, secret[:-1] + "x")),
        "basic-other-clients-secret": (GUESS, (cid, other_secret)),
        "basic-empty-secret": (GUESS, (cid, "")),
        "basic-id-in-upper-case": (GUESS, (cid.upper(), secret)),
        "basic-id-with-trailing-space": (GUESS, (cid + " ", secret)),
        "basic-id-with-a-zero-width-space": (GUESS, (cid + "\u200b", secret)),
    }[presented]
    named = (lambda ip: post(body, ip, *auth)) if auth else (lambda ip: post(body, ip))
    statuses = [named("203.0.113.80").status_code for _ in range(5)]
    assert statuses == [401] * 3 + [429] * 2, statuses
    assert [post(GUESS, ip, cid, secret).status_code for ip in ("198.51.100.80", "203.0.113.80", "198.51.100.81")
            ] == [400] * 3, "naming the client spent its budget"
    assert post(GUESS, "198.51.100.82", cid, secret).status_code == 429  # its own three spent it


def test_a_public_clients_token_requests_count_by_address(tmp_path, clock):
    """A public client has no secret, so anyone can name it: its requests (its users' devices) count
    by address, each address its own budget, and one address cannot spend another's."""
    post, _, _, svc = token_limit_of_three(tmp_path, clock)
    public = add_client(svc, "Native", public=True)[0]
    body = f"{GUESS}&client_id={public}&code_verifier={'v' * 43}&redirect_uri=https%3A%2F%2Fapp.example.test%2Fcb"
    assert [post(body, "203.0.113.90").status_code for _ in range(4)] == [400] * 3 + [429]
    assert [post(body, "198.51.100.90").status_code for _ in range(3)] == [400] * 3
    assert post(GUESS, "198.51.100.90", public, "any").status_code == 429  # Basic naming it: that address again


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("named", ["naming-no-client", "basic-wrong-secret", "basic-the-clients-secret"])
def test_token_requests_refused_as_too_large_count_toward_the_token_limit(tmp_path, clock, named):
    """A body over ``limits.max_content_length`` is refused (413) when Authlib reads the form, inside the
    view. The limit's key reads the form first and, refused, keys by the client HTTP Basic
    authenticates as, else by address: the 413s count, so one address cannot send them without end,
    each read up to the limit; a wrong secret spends the address's budget, not the client's. Other
    clients and addresses keep their budgets."""
    post, (cid, secret), (other, other_secret), _ = token_limit_of_three(tmp_path, clock)
    auth = {"naming-no-client": (), "basic-wrong-secret": (cid, "x"), "basic-the-clients-secret": (cid, secret)}[named]
    oversize = f"{GUESS}&client_id={cid}&pad={'a' * 65536}"
    statuses = [post(oversize, "203.0.113.70", *auth).status_code for _ in range(5)]
    assert statuses == [413] * 3 + [429] * 2, statuses
    throttled = post(oversize, "203.0.113.70", *auth)
    assert throttled.get_json()["error"] == "throttled"
    if named == "basic-the-clients-secret":  # the client's budget, from any address; another client's is untouched
        assert post(GUESS, "198.51.100.70", cid, secret).status_code == 429
        assert post(GUESS, "203.0.113.70", other, other_secret).status_code == 400
    else:  # the address's budget; the client named, from there or elsewhere, and other addresses are unaffected
        assert post(GUESS, "203.0.113.70", cid, secret).status_code == 400
        assert post(GUESS + f"&client_id={other}", "203.0.113.70").status_code == 429  # no secret: that address
        assert post(oversize, "198.51.100.71").status_code == 413


def test_a_bad_token_rate_limit_in_the_policy_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[oidc]\ntoken_requests_per_client = ["lots"]\n')
    with pytest.raises(PolicyError, match="token_requests_per_client"):
        load_policy(path)


def test_a_client_id_never_starts_with_a_dash_that_a_command_line_would_read_as_an_option(monkeypatch):
    """token_urlsafe starts with "-" once in 64 draws; `authsvc oidc client remove -x...` would then
    be an unknown option (a flaky admin script, and a flaky test before this)."""
    from authsvc.core.oidc import store

    draws = iter(["-leading-dash", "_ok-id"])
    monkeypatch.setattr(store.secrets, "token_urlsafe", lambda n: next(draws))
    assert store.new_client_id() == "_ok-id"
    monkeypatch.undo()
    assert not any(store.new_client_id().startswith("-") for _ in range(2000))
