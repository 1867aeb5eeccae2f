"""Control: recovery codes (lookup secrets), for when the authenticator app is lost.

Ten codes of 120 bits from the CSPRNG, shown once on the page that generates them (each in
``<code class="recovery-code">``), stored only as SHA-256 digests, each accepted once wherever an
authenticator-app code is (also at the same moment on two instances), all void when new ones are
generated, and counted on the account page. Generating them needs a recent authentication.
"""

from __future__ import annotations

import math
import re
import threading

import pytest
import sqlalchemy as sa

from authsvc.core.models import recovery_codes
from authsvc.core.recovery_codes import COUNT, RecoveryCodes, code_digest
from authsvc.rules.second_step import RECOVERY_ALPHABET, RECOVERY_LENGTH, recovery_code
from tests.conftest import add_user, browser, build_app, csrf, login, new_client, verify
from tests.security.factors import (
    app_from_set_up_page,
    enroll,
    only_this_session_is_left,
    post_with_csrf,
    second_step,
    sign_in,
)

SHOWN = re.compile(r'<code class="recovery-code">([^<]+)</code>')


@pytest.mark.asvs("V6.5.2", "V6.5.3", "V6.5.4")
def test_codes_are_120_random_bits_stored_only_as_digests(app, user):
    store = app.extensions["authsvc"].recovery_codes
    shown = store.generate(user.id)
    assert len(shown) == COUNT == 10 and len(set(shown)) == 10
    canonical = [recovery_code(code) for code in shown]
    assert all(c is not None and len(c) == RECOVERY_LENGTH for c in canonical)
    assert RECOVERY_LENGTH * math.log2(len(RECOVERY_ALPHABET)) >= 112
    with app.extensions["authsvc"].engine.connect() as conn:
        rows = conn.execute(sa.select(recovery_codes)).all()
    stored = b"".join(row.code_hash for row in rows)
    assert {row.code_hash for row in rows} == {code_digest(c) for c in canonical}
    assert not [c for c in canonical if c.encode() in stored]
    many = {recovery_code(code) for _ in range(20) for code in store.generate(user.id)}
    assert len(many) == 200  # no repeats across 200 codes


@pytest.mark.asvs("V6.5.1")
def test_a_code_is_spent_once_and_counted(app, user):
    store = app.extensions["authsvc"].recovery_codes
    canonical = [recovery_code(c) for c in store.generate(user.id)]
    assert store.use(user.id, canonical[0]) and not store.use(user.id, canonical[0])
    assert store.remaining(user.id) == 9


def test_a_code_of_another_account_is_not_this_accounts(app, user):
    bob = add_user(app, "bob")
    store = app.extensions["authsvc"].recovery_codes
    bobs = [recovery_code(c) for c in store.generate(bob.id)]
    store.generate(user.id)
    assert not store.use(user.id, bobs[0])
    assert store.use(bob.id, bobs[0])


@pytest.mark.asvs("V6.5.1")
def test_generating_new_codes_voids_every_old_one(app, user):
    store = app.extensions["authsvc"].recovery_codes
    old = [recovery_code(c) for c in store.generate(user.id)]
    store.generate(user.id)
    assert not any(store.use(user.id, c) for c in old)
    assert store.remaining(user.id) == 10


@pytest.mark.asvs("V6.5.1")
def test_the_same_code_at_the_same_moment_on_two_instances_is_accepted_once(tmp_path, clock):
    app = build_app(tmp_path, clock)
    alice = add_user(app)
    engine = app.extensions["authsvc"].engine
    code = recovery_code(app.extensions["authsvc"].recovery_codes.generate(alice.id)[0])
    stores = [RecoveryCodes(engine, clock) for _ in range(8)]
    start, results = threading.Barrier(len(stores)), []

    def present(store):
        start.wait()
        results.append(store.use(alice.id, code))
    threads = [threading.Thread(target=present, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * (len(stores) - 1) + [True]


def test_the_account_page_shows_new_codes_once_and_then_only_how_many_are_left(app, client, user, clock):
    phone = enroll(app, user, clock)
    sign_in(client, phone)
    page = client.get("/").get_data(as_text=True)
    assert 'id="recovery-status">Recovery codes left: <strong>0<' in page
    generated = post_with_csrf(client, "/account/recovery-codes", {})
    assert generated.status_code == 200
    assert generated.headers["Cache-Control"].startswith("no-store")
    shown = SHOWN.findall(generated.get_data(as_text=True))
    assert len(shown) == 10
    page = client.get("/").get_data(as_text=True)
    assert 'Recovery codes left: <strong>10<' in page and not [c for c in shown if c in page]
    other = new_client(app)
    login(other)
    assert second_step(other, shown[4]).status_code == 303
    assert 'Recovery codes left: <strong>9<' in client.get("/").get_data(as_text=True)


def test_an_account_without_a_second_factor_gets_no_recovery_codes(app, client, user, clock):
    """They stand in for a factor: made while there is none (by whoever holds a reused password),
    they passed the second step of the app the owner added later to lock them out (found by
    review, session 13). The page offers none, and a post gets 409 and makes none."""
    assert login(client).status_code == 303
    page = client.get("/").get_data(as_text=True)
    assert "/account/recovery-codes" not in page and "set up an authenticator app or a passkey first" in page
    refused = post_with_csrf(client, "/account/recovery-codes", {})
    assert refused.status_code == 409 and not SHOWN.findall(refused.get_data(as_text=True))
    assert app.extensions["authsvc"].recovery_codes.remaining(user.id) == 0
    enroll(app, user, clock)
    assert "/account/recovery-codes" in client.get("/").get_data(as_text=True)


@pytest.mark.asvs("V7.4.3")
def test_new_codes_end_every_other_session_and_keep_this_one(app, user, clock):
    """New codes are a change of factor: a session that may have read the old ones ends."""
    phone = enroll(app, user, clock)
    here, there = browser(app, ip="198.51.100.1"), browser(app, ip="198.51.100.2")
    assert sign_in(here, phone).status_code == 303
    clock.advance(30)  # a new code for the second browser
    assert sign_in(there, phone).status_code == 303
    generated = post_with_csrf(here, "/account/recovery-codes", {})
    assert generated.status_code == 200
    only_this_session_is_left(here, [there])
    assert "1 other session has been signed out." in generated.get_data(as_text=True)


@pytest.mark.parametrize("factor", ["app", "passkey"])
def test_a_session_signed_out_by_a_new_factor_gets_no_codes_for_it(app, user, clock, factor):
    """Someone holding the password of an account without a factor polls for recovery codes (409
    while there is none). The owner adds an app or a passkey; a poll landing just after the factor
    was stored and before the others were signed out got ten codes that passed the new factor's
    second step (found by a review of session 13's fixes). The others are now signed out before the
    factor is stored, and codes are made only for a session still the account's."""
    svc = app.extensions["authsvc"]
    attacker = browser(app, "203.0.113.9", "Attacker/1")
    assert login(attacker).status_code == 303
    token = csrf(attacker, "/")
    assert attacker.post("/account/recovery-codes", data={"csrf_token": token}).status_code == 409
    stolen: list[str] = []
    store = svc.totp if factor == "app" else svc.passkeys.store
    name = "enroll" if factor == "app" else "add"
    stored = getattr(store, name)

    def and_then_the_attackers_poll_lands(*args, **kwargs):
        result = stored(*args, **kwargs)
        if not stolen:  # its own thread: a request of its own, outside the owner's app context
            def poll():
                answer = attacker.post("/account/recovery-codes", data={"csrf_token": token})
                stolen.extend(SHOWN.findall(answer.get_data(as_text=True)) or [answer.status_code])
            attacker_request = threading.Thread(target=poll)
            attacker_request.start()
            attacker_request.join(10)
        return result

    setattr(store, name, and_then_the_attackers_poll_lands)
    try:
        owner = browser(app, "198.51.100.1", "Owner/1")
        assert login(owner).status_code == 303
        if factor == "app":
            phone = app_from_set_up_page(owner.get("/account/totp").get_data(as_text=True), clock)
            assert post_with_csrf(owner, "/account/totp", {"code": phone.code()}, "/account/totp").status_code == 200
        else:
            from tests.security.test_passkeys import SoftAuthenticator, register

            assert register(app, owner, csrf(owner, "/"), SoftAuthenticator()).status_code == 201
    finally:
        setattr(store, name, stored)
    assert stolen == [401] and verify(attacker) == 401  # signed out before the factor was stored
    assert svc.recovery_codes.remaining(user.id) == 0


def test_codes_are_made_only_for_a_session_still_the_accounts(app, user, clock):
    """The second half of the above: a request that passed its checks before the sign-out (its
    session live, the factor there) makes no codes once its session is no longer the account's."""
    svc = app.extensions["authsvc"]
    enroll(app, user, clock)
    _token, session_id = svc.sessions.create(user.id, "198.51.100.7", "UA", False)
    assert svc.recovery_codes.generate(user.id, session_id=session_id) is not None
    svc.accounts.next_sign_out_generation(user.id)  # signed out everywhere, the revocation not yet run
    assert svc.recovery_codes.generate(user.id, session_id=session_id) is None
    _token, other = svc.sessions.create(user.id, "198.51.100.7", "UA", False,
                                        generation=svc.accounts.by_id(user.id).sign_out_generation)
    svc.sessions.revoke(other, "logout")
    assert svc.recovery_codes.generate(user.id, session_id=other) is None
    assert svc.recovery_codes.remaining(user.id) == 10  # the first set, untouched by the refusals
