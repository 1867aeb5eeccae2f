"""Control: authenticator-app codes (TOTP, RFC 6238), their secret at rest and their set-up.

* The secret is sealed in the database (AES-256-GCM, the account id bound in): the table alone
  gives nothing, and a sealed secret moved to another account's row opens for nobody.
* It survives a secret-key rotation: with the old key among the fallbacks it still opens, and is
  sealed again under the new key (at first use, or all at once by ``authsvc mfa reseal``).
* A code is accepted once per account across instances sharing the database, also when two
  requests present it at the same moment.
* Set-up on the account page shows a QR code (inline SVG, no script, no style attribute), the
  ``otpauth://`` URI and the secret, keeps the new secret sealed in the session until a first code
  confirms it, and asks for the password when the sign-in is no longer recent.

The sign-in flow around the codes is attacked in test_mfa_flow.py.
"""

from __future__ import annotations

import json
import os
import re
import threading

import pyotp
import pytest
import sqlalchemy as sa

from authsvc.core.models import totp_factors
from authsvc.core.sealing import Sealer
from authsvc.core.totp import ACCEPTED_CODE, REUSED_CODE, SEALING_INFO, UNREADABLE, WRONG, TotpStore, new_secret
from authsvc.server import cli
from tests.conftest import (
    PASSWORD,
    STRONG_KEY,
    add_user,
    api,
    browser,
    build_app,
    cookie_value,
    login,
    make_env,
    new_client,
    run_cli,
    verify,
)
from tests.security.factors import (
    app_from_set_up_page,
    enroll,
    only_this_session_is_left,
    post_with_csrf,
    second_step,
    sign_in,
)

NEW_KEY = "k3Y-rotated-for-tests-0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"
OTHER_KEY = "k3Y-some-other-deployment-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def stored_secret(app, user_id: int) -> bytes:
    with app.extensions["authsvc"].engine.connect() as conn:
        return conn.execute(sa.select(totp_factors.c.secret).where(totp_factors.c.user_id == user_id)).scalar_one()


# --- the secret at rest -------------------------------------------------------------------------------

@pytest.mark.asvs("V6.5.3")
def test_secrets_are_160_random_bits_and_stored_sealed(app, user, clock):
    secrets_made = {new_secret() for _ in range(50)}
    assert len(secrets_made) == 50 and all(len(s) == 32 and s.isupper() for s in secrets_made)
    phone = enroll(app, user, clock)
    sealed = stored_secret(app, user.id)
    assert phone.totp.secret.encode() not in sealed and phone.totp.byte_secret() not in sealed
    assert sealed[:1] == b"\x01" and len(sealed) == 1 + 12 + 32 + 16


def test_a_sealed_secret_moved_to_another_account_opens_for_nobody(app, user, clock):
    bob = add_user(app, "bob")
    enroll(app, user, clock)
    svc = app.extensions["authsvc"]
    with svc.engine.begin() as conn:  # someone with write access to the table copies alice's row to bob
        conn.execute(totp_factors.insert().values(user_id=bob.id, secret=stored_secret(app, user.id),
                                                  created_at=clock(), last_step=0))
    assert svc.totp.check(bob.id, "123456") == UNREADABLE


@pytest.mark.asvs("V11.3.2", "V11.3.3")
def test_a_sealed_value_with_any_byte_changed_does_not_open():
    sealer = Sealer(STRONG_KEY, (), SEALING_INFO)
    sealed = sealer.seal(b"JBSWY3DPEHPK3PXP", b"totp-factor:1")
    assert sealer.open(sealed, b"totp-factor:1").plaintext == b"JBSWY3DPEHPK3PXP"
    for i in range(len(sealed)):
        changed = sealed[:i] + bytes([sealed[i] ^ 0x01]) + sealed[i + 1:]
        assert sealer.open(changed, b"totp-factor:1") is None, i
    assert sealer.open(sealed[:-1], b"totp-factor:1") is None
    assert sealer.open(b"", b"totp-factor:1") is None
    assert sealer.open("not bytes", b"totp-factor:1") is None  # type: ignore[arg-type]
    assert Sealer(OTHER_KEY, (), SEALING_INFO).open(sealed, b"totp-factor:1") is None
    assert Sealer(STRONG_KEY, (), b"another purpose").open(sealed, b"totp-factor:1") is None


@pytest.mark.asvs("V11.1.1")
def test_the_secret_survives_a_secret_key_rotation_and_is_resealed_at_first_use(tmp_path, clock):
    before = build_app(tmp_path, clock)
    alice = add_user(before)
    phone = enroll(before, alice, clock)
    old_sealed = stored_secret(before, alice.id)
    after = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=NEW_KEY, AUTHSVC_SECRET_KEY_FALLBACKS=STRONG_KEY)
    client = new_client(after)
    assert sign_in(client, phone).status_code == 303
    resealed = stored_secret(after, alice.id)
    assert resealed != old_sealed
    assert Sealer(NEW_KEY, (), SEALING_INFO).open(resealed, b"totp-factor:%d" % alice.id) is not None
    # The old key can go now: the secret no longer needs it.
    without_old = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=NEW_KEY)
    clock.advance(30)
    assert sign_in(new_client(without_old), phone).status_code == 303


def test_authsvc_mfa_reseal_seals_every_secret_under_the_current_key(tmp_path, clock, monkeypatch, capsys):
    before = build_app(tmp_path, clock)
    users = [add_user(before, name) for name in ("alice", "bob")]
    phones = [enroll(before, u, clock) for u in users]
    assert run_cli_keeping(monkeypatch, tmp_path, "mfa", "reseal") == 0
    assert "resealed 2 " in capsys.readouterr().out
    after = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=NEW_KEY)
    for user, phone in zip(users, phones):
        assert after.extensions["authsvc"].totp.check(user.id, phone.code()) == ACCEPTED_CODE


def run_cli_keeping(monkeypatch, tmp_path, *argv) -> int:
    """``authsvc ...`` like run_cli, after a key rotation: the new key, the old one a fallback."""
    for name in [k for k in os.environ if k.startswith("AUTHSVC_")]:
        monkeypatch.delenv(name)
    for name, value in make_env(tmp_path, AUTHSVC_SECRET_KEY=NEW_KEY, AUTHSVC_SECRET_KEY_FALLBACKS=STRONG_KEY).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTHSVC_INSTANCE_PATH", str(tmp_path / "instance"))
    return cli.main(list(argv))


def test_a_secret_no_configured_key_opens_is_reported_not_accepted(tmp_path, clock, capsys, monkeypatch):
    before = build_app(tmp_path, clock)
    alice = add_user(before)
    phone = enroll(before, alice, clock)
    after = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=NEW_KEY)  # the old key dropped too early
    assert after.extensions["authsvc"].totp.check(alice.id, phone.code()) == UNREADABLE
    client = new_client(after)
    login(client)
    assert second_step(client, phone.code()).status_code == 401


# --- once per account, across instances ---------------------------------------------------------------

@pytest.mark.asvs("V6.5.1")
def test_two_instances_on_one_database_accept_a_code_once(tmp_path, clock):
    one = build_app(tmp_path, clock)
    two = build_app(tmp_path, clock)
    alice = add_user(one)
    phone = enroll(one, alice, clock)
    a, b = new_client(one), new_client(two)
    assert login(a).status_code == 303 and login(b).status_code == 303
    code = phone.code()
    assert second_step(a, code).status_code == 303
    assert second_step(b, code).status_code == 401
    assert verify(a) == 200 and verify(b) == 401


@pytest.mark.asvs("V6.5.1")
def test_the_same_code_presented_at_the_same_moment_is_accepted_once(tmp_path, clock):
    app = build_app(tmp_path, clock)
    alice = add_user(app)
    phone = enroll(app, alice, clock)
    engine = app.extensions["authsvc"].engine
    stores = [TotpStore(engine, Sealer(STRONG_KEY, (), SEALING_INFO), clock) for _ in range(8)]
    code, start, results = phone.code(), threading.Barrier(len(stores)), []

    def present(store):
        start.wait()
        results.append(store.check(alice.id, code))
    threads = [threading.Thread(target=present, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [ACCEPTED_CODE] + [REUSED_CODE] * (len(stores) - 1)


def test_a_wrong_code_is_wrong_and_leaves_the_last_step_alone(app, user, clock):
    phone = enroll(app, user, clock)
    svc = app.extensions["authsvc"]
    before = stored_last_step(app, user.id)
    assert svc.totp.check(user.id, phone.wrong_codes(1)[0]) == WRONG
    assert stored_last_step(app, user.id) == before


def stored_last_step(app, user_id: int) -> int:
    with app.extensions["authsvc"].engine.connect() as conn:
        return conn.execute(sa.select(totp_factors.c.last_step).where(totp_factors.c.user_id == user_id)).scalar_one()


# --- set-up on the account page --------------------------------------------------------------------------

@pytest.mark.asvs("V6.5.3", "V3.4.3")
def test_set_up_shows_a_qr_code_the_uri_and_the_secret_without_script_or_inline_style(client, user, clock):
    login(client)
    page = client.get("/account/totp")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "<script" not in html and "style=" not in svg and "javascript:" not in html
    uri = re.search(r'id="otpauth-uri">([^<]+)<', html).group(1).replace("&amp;", "&")
    parsed = pyotp.parse_uri(uri)
    assert uri.startswith("otpauth://totp/") and parsed.digits == 6 and parsed.interval == 30
    assert f'id="totp-secret">{parsed.secret}<' in html
    # Until a code confirms it, the new secret is in the signed session, sealed: not readable there.
    app = client.application
    session = app.session_interface.get_signing_serializer(app).loads(
        cookie_value(client, app.extensions["authsvc"].cookies.session))
    assert "totp_set_up" in session and parsed.secret not in json.dumps(session)


@pytest.mark.asvs("V6.5.1")
def test_set_up_is_confirmed_by_a_first_code_which_cannot_sign_in_again(app, client, user, clock):
    login(client)
    phone = app_from_set_up_page(client.get("/account/totp").get_data(as_text=True), clock)
    wrong = post_with_csrf(client, "/account/totp", {"code": phone.wrong_codes(1)[0]}, "/account/totp")
    assert wrong.status_code == 400
    assert app.extensions["authsvc"].totp.count(user.id) == 0
    added = post_with_csrf(client, "/account/totp", {"code": phone.code()}, "/account/totp")
    assert added.status_code == 200 and "Authenticator app added" in added.get_data(as_text=True)
    assert app.extensions["authsvc"].totp.count(user.id) == 1
    assert 'id="totp-status">Authenticator app: <strong>set up' in client.get("/").get_data(as_text=True)
    other = new_client(app)
    login(other)
    assert second_step(other, phone.code()).status_code == 401   # the confirming code was used
    clock.advance(30)
    assert second_step(other, phone.code()).status_code == 303


def test_set_up_after_the_step_up_window_needs_the_password(app, client, user, clock):
    login(client)
    phone = app_from_set_up_page(client.get("/account/totp").get_data(as_text=True), clock)
    clock.advance(app.extensions["authsvc"].policy.mfa.step_up_seconds + 1)
    page = client.get("/account/totp")
    assert 'name="password"' in page.get_data(as_text=True)
    assert post_with_csrf(client, "/account/totp", {"code": phone.code()}, "/account/totp").status_code == 401
    assert app.extensions["authsvc"].totp.count(user.id) == 0
    done = post_with_csrf(client, "/account/totp", {"code": phone.code(), "password": PASSWORD}, "/account/totp")
    assert done.status_code == 200 and app.extensions["authsvc"].totp.count(user.id) == 1


def test_a_set_up_code_without_a_set_up_page_is_not_accepted(app, client, user, clock):
    login(client)
    answer = post_with_csrf(client, "/account/totp", {"code": "123456"})
    assert answer.status_code == 303 and answer.headers["Location"] == "/account/totp"
    assert app.extensions["authsvc"].totp.count(user.id) == 0


def test_an_account_with_an_app_is_not_offered_a_second_set_up(app, client, user, clock):
    phone = enroll(app, user, clock)
    sign_in(client, phone)
    answer = client.get("/account/totp")
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_anonymous_set_up_is_refused(client, user):
    assert client.get("/account/totp").status_code == 303
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    for path in ("/account/totp", "/account/totp/remove", "/account/recovery-codes"):
        assert client.post(path, data={"csrf_token": token, "code": "123456"}).status_code == 401


@pytest.mark.asvs("V6.5.6")
def test_removing_the_app_voids_the_recovery_codes_and_signs_in_with_the_password_alone(app, client, user, clock):
    phone = enroll(app, user, clock)
    svc = app.extensions["authsvc"]
    svc.recovery_codes.generate(user.id)
    sign_in(client, phone)
    assert post_with_csrf(client, "/account/totp/remove", {}).status_code == 200
    assert svc.totp.count(user.id) == 0 and svc.recovery_codes.remaining(user.id) == 0
    again = new_client(app)
    assert login(again).headers["Location"] == "/"
    assert again.get("/auth/verify").headers["X-Auth-Methods"] == "pwd"


@pytest.mark.asvs("V7.4.3")
def test_adding_the_app_ends_every_other_session_and_remember_cookie_but_this_browsers(app, user, clock):
    """Whoever holds another session or a remember-me cookie may be why the owner adds a factor:
    both end. The browser that added the app stays signed in and keeps its own remember cookie."""
    svc = app.extensions["authsvc"]
    here, there, third = (browser(app, ip=f"198.51.100.{i}") for i in (1, 2, 3))
    for c in (here, there, third):
        assert login(c, remember=True).status_code == 303
    kept_there = cookie_value(there, svc.cookies.remember)
    phone = app_from_set_up_page(here.get("/account/totp").get_data(as_text=True), clock)
    added = post_with_csrf(here, "/account/totp", {"code": phone.code()}, "/account/totp")
    assert added.status_code == 200
    only_this_session_is_left(here, [there, third])
    assert "2 other sessions have been signed out." in added.get_data(as_text=True)
    thief = browser(app, ip="198.51.100.2")
    thief.set_cookie(svc.cookies.remember, kept_there, domain="auth.example.test")
    assert thief.get("/login").status_code == 200 and verify(thief) == 401   # no way back in
    assert third.get("/").headers["Location"].startswith("/login") and verify(third) == 401
    clock.advance(svc.policy.sessions.idle_timeout_seconds + 1)
    restored = here.get("/login")
    assert restored.status_code == 303 and verify(here) == 200   # this browser is still remembered


@pytest.mark.asvs("V7.4.3")
def test_a_copy_of_this_browsers_remember_cookie_from_before_a_factor_change_restores_nothing(app, user, clock):
    """The browser that adds the app keeps its session (under a new token) and its remember-me
    chain (under a new cookie): a copy of both cookies made before (a shared machine) comes back in
    through neither. Before, the remember-me cookie was kept as it was, and the copy's restored a
    session (found by a review of session 13's fixes)."""
    svc = app.extensions["authsvc"]
    here = browser(app, ip="198.51.100.1")
    assert login(here, remember=True).status_code == 303
    old_remember = cookie_value(here, svc.cookies.remember)
    phone = app_from_set_up_page(here.get("/account/totp").get_data(as_text=True), clock)
    assert post_with_csrf(here, "/account/totp", {"code": phone.code()}, "/account/totp").status_code == 200
    assert cookie_value(here, svc.cookies.remember) != old_remember
    copy = browser(app, ip="198.51.100.1")
    copy.set_cookie(svc.cookies.remember, old_remember, domain="auth.example.test")
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds + 1)
    assert copy.get("/login").status_code == 200 and verify(copy) == 401
    assert verify(here) == 401  # the old cookie back after its rotation is theft: every session ends


@pytest.mark.asvs("V7.4.3")
def test_removing_the_app_ends_every_other_session_and_keeps_this_one(app, user, clock):
    phone = enroll(app, user, clock)
    here, there = browser(app, ip="198.51.100.1"), browser(app, ip="198.51.100.2")
    assert sign_in(here, phone).status_code == 303
    clock.advance(30)  # a new code for the second browser
    assert sign_in(there, phone).status_code == 303
    removed = post_with_csrf(here, "/account/totp/remove", {})
    assert removed.status_code == 200
    only_this_session_is_left(here, [there])
    assert "1 other session has been signed out." in removed.get_data(as_text=True)


@pytest.mark.asvs("V7.4.3")
def test_a_refused_set_up_or_removal_ends_no_session(app, user, clock):
    here, there = browser(app, ip="198.51.100.1"), browser(app, ip="198.51.100.2")
    login(here), login(there)
    phone = app_from_set_up_page(here.get("/account/totp").get_data(as_text=True), clock)
    assert post_with_csrf(here, "/account/totp", {"code": phone.wrong_codes(1)[0]}, "/account/totp").status_code == 400
    assert post_with_csrf(here, "/account/totp/remove", {}).status_code == 404   # no app to remove
    assert (verify(here), verify(there)) == (200, 200)


# --- administration ---------------------------------------------------------------------------------------

@pytest.mark.asvs("V6.5.6")
def test_the_cli_lists_an_accounts_factors_and_resets_them_ending_its_sessions(app, user, clock, monkeypatch,
                                                                             tmp_path, capsys):
    phone = enroll(app, user, clock)
    app.extensions["authsvc"].recovery_codes.generate(user.id)
    client = new_client(app)
    sign_in(client, phone)
    capsys.readouterr()
    assert run_cli(monkeypatch, tmp_path, "user", "mfa", "alice") == 0
    listed = capsys.readouterr().out
    assert "totp\t1" in listed and "recovery codes left\t10" in listed
    assert phone.totp.secret not in listed
    assert run_cli(monkeypatch, tmp_path, "user", "mfa-reset", "alice") == 0
    assert "removed 1 second factor(s) and 10 recovery code(s)" in capsys.readouterr().out
    assert api(client) == 401
    svc = app.extensions["authsvc"]
    assert svc.totp.count(user.id) == 0 and svc.recovery_codes.remaining(user.id) == 0
    with pytest.raises(SystemExit) as refused:
        run_cli(monkeypatch, tmp_path, "user", "mfa", "nobody")
    assert refused.value.code == 1 and "no user named 'nobody'" in capsys.readouterr().err


def test_the_issuer_is_the_relying_party_id(app, client, user):
    login(client)
    html = client.get("/account/totp").get_data(as_text=True)
    assert "issuer=auth.example.test" in html

