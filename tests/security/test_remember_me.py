"""Remember-me: threat list for authsvc.core.remember and its use in the login and account views.

The remember cookie is ``selector.validator``, signed under its own salt; the database keeps the
selector and the SHA-256 of the validator. It restores a session only on pages the browser loads
(GET /login, GET /), is rotated on each use with the original expiry, and a rotated cookie presented
again (after the few-second grace for racing tabs) is treated as theft: every session and remember
token of the user is revoked. Each test plays one attack against the real HTTP interface.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from http.cookies import SimpleCookie

import pytest
import sqlalchemy as sa

from authsvc.core.models import remember_tokens
from authsvc.core.models import sessions as sessions_table
from authsvc.core.remember import split_cookie
from tests.conftest import (
    PASSWORD,
    add_user,
    api,
    browser,
    build_app,
    cookie_value,
    csrf,
    login,
    run_cli,
    verify,
)

HOST = "auth.example.test"
DAY = 86400
APP_URL = "https://app.example.test/x"
NEW_PASSWORD = "a completely different passphrase 7"


# --- helpers --------------------------------------------------------------------------------------

def names(app):
    return app.extensions["authsvc"].cookies


def remember_value(client):
    return cookie_value(client, names(client.application).remember)


def only_remember(app, value: str, *, ip: str = "198.51.100.7", ua: str = "Mozilla/5.0 (X11) TestBrowser/1"):
    """A browser holding nothing but a remember cookie (its session ended or was never copied)."""
    c = browser(app, ip, ua)
    c.set_cookie(names(app).remember, value, domain=HOST)
    return c


def remembered(app, name: str = "alice", **kw):
    c = browser(app, **kw)
    r = login(c, name, remember=True)
    assert r.status_code == 303
    assert remember_value(c), "no remember cookie after opting in"
    return c


def restore(client, path: str = "/login"):
    """Load a page the way a browser would: this is where a remember cookie is used."""
    return client.get(path)


def restored(response) -> bool:
    return response.status_code == 303 and "/login" not in response.headers["Location"]


def set_cookies(response) -> dict[str, SimpleCookie]:
    out = {}
    for header in response.headers.getlist("Set-Cookie"):
        jar = SimpleCookie()
        jar.load(header)
        for key, morsel in jar.items():
            out[key] = morsel
    return out


def cleared(response, name: str) -> bool:
    morsel = set_cookies(response).get(name)
    return morsel is not None and (morsel.value == "" or morsel["max-age"] == "0")


def token_rows(svc, user_id: int | None = None):
    q = sa.select(remember_tokens).order_by(remember_tokens.c.id)
    if user_id is not None:
        q = q.where(remember_tokens.c.user_id == user_id)
    with svc.engine.connect() as conn:
        return conn.execute(q).all()


def session_rows(svc):
    with svc.engine.connect() as conn:
        return conn.execute(sa.select(sessions_table).order_by(sessions_table.c.id)).all()


def expire_session(clock, svc):
    clock.advance(svc.policy.sessions.idle_timeout_seconds + 1)


@pytest.fixture
def events(svc, monkeypatch):
    """Audit events emitted during the test, as (event, fields)."""
    seen: list[tuple[str, dict]] = []
    original = svc.audit.emit

    def spy(event, **fields):
        seen.append((event, fields))
        original(event, **fields)
    monkeypatch.setattr(svc.audit, "emit", spy)
    return seen


def event_names(events) -> list[str]:
    return [e for e, _ in events]


# --- the cookie and what the database keeps ---------------------------------------------------------

@pytest.mark.asvs("V3.3.1", "V3.3.2", "V3.3.3", "V3.3.4")
def test_remember_cookie_is_host_prefixed_secure_httponly_lax_and_lives_14_days(app, svc, user):
    c = browser(app)
    r = login(c, remember=True)
    cookie = set_cookies(r)[svc.cookies.remember]
    assert svc.cookies.remember == "__Host-authsvc_remember"
    assert cookie["secure"] and cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/" and not cookie["domain"]
    assert int(cookie["max-age"]) == 14 * DAY == svc.policy.sessions.remember_lifetime_days * DAY
    assert svc.policy.sessions.remember_lifetime_days <= 30  # NIST AAL1 overall reauthentication


def test_no_remember_cookie_without_the_opt_in(app, svc, user):
    r = login(browser(app))
    assert svc.cookies.remember not in set_cookies(r)
    assert token_rows(svc) == []


@pytest.mark.asvs("V7.2.3")
def test_db_leak_remember_validator_is_stored_only_as_sha256(app, svc, user):
    c = remembered(app)
    selector, validator = svc.remember.parse(remember_value(c))
    assert len(selector) >= 22 and len(validator) >= 43  # >= 128 and 256 random bits
    (row,) = token_rows(svc)
    assert row.selector == selector
    assert bytes(row.validator_hash) == hashlib.sha256(validator.encode()).digest()
    assert validator not in repr(tuple(row))


@pytest.mark.asvs("V7.2.1")
def test_db_leak_selector_with_forged_validator_is_refused_and_does_not_burn_the_token(app, svc, user):
    """An attacker who read the table (and even holds the signing key) knows the selector, not the validator."""
    c = remembered(app)
    selector, _ = svc.remember.parse(remember_value(c))
    forged = svc.remember.serializer.dumps(f"{selector}.{secrets.token_urlsafe(32)}")
    r = restore(only_remember(app, forged, ip="203.0.113.5"))
    assert not restored(r)
    assert token_rows(svc)[0].rotated_at is None and token_rows(svc)[0].revoked_at is None
    assert restored(restore(only_remember(app, remember_value(c))))  # the owner's cookie still works


# --- where restore happens --------------------------------------------------------------------------

@pytest.mark.asvs("V7.6.2")
def test_verify_and_api_never_restore_from_a_remember_cookie(app, svc, user):
    c = remembered(app)
    visitor = only_remember(app, remember_value(c))
    r = visitor.get("/auth/verify")
    assert r.status_code == 401
    assert r.headers.getlist("Set-Cookie") == []
    assert api(visitor) == 401
    assert token_rows(svc)[0].rotated_at is None, "verify used up the remember token"


def test_login_page_restores_and_redirects_straight_to_next_with_rotated_cookie(app, svc, clock, user):
    c = remembered(app)
    old_value = remember_value(c)
    old_session = cookie_value(c, svc.cookies.session)
    expire_session(clock, svc)
    assert verify(c) == 401
    r = c.get("/login", query_string={"next": APP_URL})
    assert r.status_code == 303
    assert r.headers["Location"] == APP_URL
    cookies = set_cookies(r)
    assert cookies[svc.cookies.remember].value not in ("", old_value)
    assert cookies[svc.cookies.session].value not in ("", old_session)
    assert verify(c) == 200
    first, second = token_rows(svc)
    assert first.rotated_at == clock() and second.rotated_at is None
    assert second.expires_at == first.expires_at


def test_account_page_restores_from_remember_cookie(app, svc, clock, user):
    c = remembered(app)
    expire_session(clock, svc)
    r = restore(c, "/")
    assert r.status_code == 303 and r.headers["Location"].endswith("/")
    assert c.get("/").status_code == 200
    assert verify(c) == 200


# --- replay after logout, password change, revocation -----------------------------------------------

@pytest.mark.asvs("V7.4.1")
def test_remember_cookie_replayed_after_logout_is_rejected(app, svc, user):
    c = remembered(app)
    saved = remember_value(c)
    r = c.post("/logout", data={"csrf_token": csrf(c, "/")})
    assert cleared(r, svc.cookies.remember)
    replay = only_remember(app, saved)
    assert not restored(restore(replay))
    assert not restored(restore(only_remember(app, saved), "/"))
    assert verify(replay) == 401
    assert all(row.revoked_at is not None for row in token_rows(svc))


@pytest.mark.asvs("V7.4.3")
def test_remember_cookies_replayed_after_password_change_are_rejected(app, svc, clock, user):
    here = remembered(app, ip="198.51.100.1")
    there = remembered(app, ip="198.51.100.2")
    saved_here, saved_there = remember_value(here), remember_value(there)
    r = here.post("/account/password", data={
        "csrf_token": csrf(here, "/"), "current_password": PASSWORD, "new_password": NEW_PASSWORD})
    assert r.status_code == 200
    assert cleared(r, svc.cookies.remember)
    assert verify(here) == 200  # the session the change was made from stays
    assert verify(there) == 401
    for ip, saved in (("198.51.100.2", saved_there), ("198.51.100.1", saved_here)):
        replay = only_remember(app, saved, ip=ip)
        assert not restored(restore(replay))
        assert verify(replay) == 401
    expire_session(clock, svc)
    assert not restored(restore(only_remember(app, saved_here, ip="198.51.100.1")))


@pytest.mark.asvs("V7.4.3", "V7.4.5")
@pytest.mark.parametrize("command", [
    ("user", "passwd", "alice", "--password-stdin"),
    ("user", "disable", "alice"),
    ("sessions", "revoke", "alice"),
], ids=["passwd", "disable", "sessions-revoke"])
def test_remember_cookie_replayed_after_cli_revocation_is_rejected(app, svc, user, tmp_path, monkeypatch,
                                                                   command):
    c = remembered(app)
    saved = remember_value(c)
    assert run_cli(monkeypatch, tmp_path, *command, stdin=NEW_PASSWORD + "\n") == 0
    assert verify(c) == 401
    replay = only_remember(app, saved)
    assert not restored(restore(replay))
    assert verify(replay) == 401
    assert all(row.revoked_at is not None for row in token_rows(svc))


@pytest.mark.asvs("V6.3.4", "V7.4.2")
def test_remember_cookie_for_disabled_user_is_rejected_even_without_revocation(app, svc, clock, user, events):
    c = remembered(app)
    expire_session(clock, svc)
    svc.accounts.set_disabled(user.id, True)  # a direct change: no token was revoked
    r = restore(c)
    assert not restored(r)
    assert cleared(r, svc.cookies.remember)
    assert verify(c) == 401
    assert ("remember_rejected", {"reason": "disabled"}) in events
    assert token_rows(svc)[0].rotated_at is None


@pytest.mark.asvs("V7.5.2")
def test_ending_a_remembered_session_from_the_account_page_also_ends_its_remember_cookie(app, svc, user):
    here = browser(app, ip="198.51.100.1")
    login(here)
    lost_laptop = remembered(app, ip="198.51.100.2")
    (sid,) = [s.id for s in svc.sessions.list_live(user.id) if s.client_ip == "198.51.100.2"]
    r = here.post(f"/account/sessions/{sid}/revoke", data={"csrf_token": csrf(here, "/")})
    assert r.status_code == 303
    assert verify(lost_laptop) == 401
    assert not restored(restore(lost_laptop)), "the ended session came straight back through its remember cookie"
    assert not restored(restore(lost_laptop, "/"))
    assert verify(lost_laptop) == 401
    assert verify(here) == 200


@pytest.mark.asvs("V7.5.2")
def test_ending_a_restored_session_also_ends_the_rotated_remember_cookie(app, svc, clock, user):
    laptop = remembered(app, ip="198.51.100.2")
    expire_session(clock, svc)
    assert restored(restore(laptop))  # rotated: the new token belongs to the restored session
    here = browser(app, ip="198.51.100.1")
    login(here)
    (laptop_sid,) = [s.id for s in svc.sessions.list_live(user.id) if s.client_ip == "198.51.100.2"]
    here.post(f"/account/sessions/{laptop_sid}/revoke", data={"csrf_token": csrf(here, "/")})
    assert not restored(restore(laptop))
    assert verify(laptop) == 401


@pytest.mark.asvs("V7.2.4")
def test_relogin_with_remember_revokes_the_browsers_previous_remember_token(app, svc, user):
    c = remembered(app)
    first = remember_value(c)
    r = c.post("/login", data={"csrf_token": csrf(c, "/"), "username": "alice", "password": PASSWORD,
                               "remember": "on"})
    assert r.status_code == 303
    assert remember_value(c) != first
    assert not restored(restore(only_remember(app, first, ip="203.0.113.5"))), "the replaced token still works"
    assert restored(restore(only_remember(app, remember_value(c))))


def test_login_without_remember_revokes_and_clears_an_existing_remember_cookie(app, svc, user):
    """Signing in again without the box ticked (a shared computer) must not leave the old token live."""
    c = remembered(app)
    old = remember_value(c)
    r = c.post("/login", data={"csrf_token": csrf(c, "/"), "username": "alice", "password": PASSWORD})
    assert r.status_code == 303
    assert cleared(r, svc.cookies.remember)
    assert not restored(restore(only_remember(app, old)))
    assert token_rows(svc)[0].revoked_at is not None


# --- rotation and replay (theft detection) ----------------------------------------------------------

@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("first", ["owner", "thief"])
def test_rotated_remember_cookie_replayed_revokes_every_session_of_the_user(app, svc, clock, user, events, first):
    """Whoever uses a copied cookie second gives the theft away; both end up signed out."""
    owner = remembered(app, ip="198.51.100.1")
    thief = only_remember(app, remember_value(owner), ip="203.0.113.66", ua="curl/8.0")
    expire_session(clock, svc)  # the owner's session idled out; the cookie will restore it
    other_device = browser(app, ip="198.51.100.2")
    login(other_device)
    add_user(app, "bob")
    bob = browser(app, ip="198.51.100.3")
    login(bob, "bob")
    early, late = (owner, thief) if first == "owner" else (thief, owner)
    assert restored(restore(early))
    assert verify(early) == 200
    rotated = remember_value(early)
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds + 1)
    r = restore(late)
    assert not restored(r)
    assert cleared(r, svc.cookies.remember)
    assert (verify(early), verify(late), verify(other_device)) == (401, 401, 401)
    assert not restored(restore(only_remember(app, rotated, ip=early.environ_base["REMOTE_ADDR"],
                                              ua=early.environ_base["HTTP_USER_AGENT"])))
    assert verify(bob) == 200, "another user's session was revoked"
    assert all(row.revoked_at is not None for row in token_rows(svc, user.id))
    assert svc.sessions.list_live(user.id) == []
    assert "remember_replay_detected" in event_names(events)
    (fields,) = [f for e, f in events if e == "remember_replay_detected"]
    assert fields["sessions_revoked"] >= 2


@pytest.mark.asvs("V7.4.1")
def test_rotated_remember_cookie_replayed_within_grace_is_refused_without_mass_revocation(app, svc, clock, user,
                                                                                          events):
    owner = remembered(app)
    copy = only_remember(app, remember_value(owner))
    expire_session(clock, svc)
    assert restored(restore(owner))
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds)
    r = restore(copy)
    assert not restored(r)
    assert svc.cookies.remember not in set_cookies(r), "a racing tab must not clear the rotated cookie"
    assert verify(copy) == 401
    assert verify(owner) == 200
    assert "remember_replay_detected" not in event_names(events)
    assert token_rows(svc)[-1].revoked_at is None


def race(engine, statements: tuple[str, ...], **calls) -> tuple[dict[str, object], threading.Barrier]:
    """Run ``calls`` (name -> function) in threads at once, each held at the first SQL statement
    starting with one of ``statements`` until the other gets there too (both read before either
    writes). Returns each call's result by name, and the barrier (broken: they never both got there)."""
    gate = threading.Barrier(2, timeout=10)

    def hold(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith(statements):
            gate.wait()
    sa.event.listen(engine, "before_cursor_execute", hold)
    results: dict[str, object] = {}
    threads = [threading.Thread(target=lambda n=name, f=fn: results.__setitem__(n, f())) for name, fn in calls.items()]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sa.event.remove(engine, "before_cursor_execute", hold)
    return results, gate


@pytest.mark.asvs("V7.4.1")
def test_concurrent_rotation_of_one_remember_cookie_has_exactly_one_winner(app, svc, clock, user, events):
    """Two tabs restore at the same instant: both read the unrotated token before either writes.
    The conditional UPDATE lets exactly one rotate; the other is a race, not a theft."""
    owner = remembered(app)
    value = remember_value(owner)
    expire_session(clock, svc)
    sessions_before = len(session_rows(svc))
    tabs = [only_remember(app, value) for _ in range(2)]
    results, gate = race(svc.engine, ("UPDATE REMEMBER_TOKENS SET ROTATED_AT",),
                         first=lambda: restore(tabs[0]), second=lambda: restore(tabs[1]))
    assert not gate.broken, "the two requests did not both reach the rotation"
    outcomes = sorted(restored(result) for result in results.values())
    assert outcomes == [False, True]
    assert len(session_rows(svc)) == sessions_before + 1
    assert sorted(verify(t) for t in tabs) == [200, 401]
    assert "remember_replay_detected" not in event_names(events)
    assert all(row.revoked_at is None for row in token_rows(svc))
    assert [row.rotated_at is None for row in token_rows(svc)] == [False, True]


# --- lifetimes --------------------------------------------------------------------------------------

@pytest.mark.asvs("V7.3.2")
def test_remembered_session_still_ends_at_its_absolute_lifetime(app, svc, clock, user):
    c = remembered(app)
    saved_session = cookie_value(c, svc.cookies.session)
    for _ in range(47):  # active every 30 minutes for 23.5 hours
        clock.advance(1800)
        assert verify(c) == 200
    clock.advance(1800)
    assert verify(c) == 401, "a remembered session outlived absolute_lifetime_seconds"
    assert api(c) == 401
    stale = browser(app)
    stale.set_cookie(svc.cookies.session, saved_session, domain=HOST)
    assert verify(stale) == 401
    # A new session needs a page load that rotates the remember cookie.
    assert restored(restore(c))
    assert verify(c) == 200


@pytest.mark.asvs("V7.3.2")
def test_remember_cookie_cannot_restore_after_its_14_day_lifetime_rotation_never_extends_it(app, svc, clock, user):
    c = remembered(app)
    lifetime = svc.policy.sessions.remember_lifetime_days * DAY
    deadline = clock() + lifetime
    max_ages = []
    for _ in range(13):  # a new session each day, always through rotation
        clock.advance(DAY)
        r = restore(c)
        assert restored(r)
        max_ages.append(int(set_cookies(r)[svc.cookies.remember]["max-age"]))
    assert max_ages == sorted(max_ages, reverse=True) and max_ages[-1] <= lifetime - 13 * DAY
    assert {row.expires_at for row in token_rows(svc)} == {deadline}
    clock.advance(DAY - 60)  # one minute before the remember deadline: still restores ...
    assert restored(restore(c))
    session_end = max(r.expires_at for r in session_rows(svc))
    assert session_end <= deadline, "a restored session outlives the remember-me lifetime"
    clock.advance(60)
    assert verify(c) == 401
    r = restore(c)
    assert not restored(r)
    assert cleared(r, svc.cookies.remember)
    assert verify(c) == 401


# --- tampered, truncated and foreign cookies --------------------------------------------------------

def _flip(s: str, i: int) -> str:
    return s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:]


TAMPERS = {
    "payload byte flipped": lambda v: _flip(v, 5),
    "signature byte flipped": lambda v: _flip(v, len(v) - 20),
    "truncated by 5": lambda v: v[:-5],
    "truncated to half": lambda v: v[: len(v) // 2],
    "signature stripped": lambda v: v.rsplit(".", 1)[0],
    "unsigned selector.validator": lambda v: "ABCDEFGHIJKLMNOPQRSTUV.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq",
    "garbage": lambda v: "x" * len(v),
    "oversized": lambda v: v + "A" * 600,
}


@pytest.mark.asvs("V9.1.1")
@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_tampered_or_truncated_remember_cookie_is_rejected(app, svc, clock, user, how):
    owner = remembered(app)
    value = remember_value(owner)
    expire_session(clock, svc)
    bad = TAMPERS[how](value)
    assert bad != value
    visitor = only_remember(app, bad)
    r = restore(visitor)
    assert not restored(r)
    assert cleared(r, svc.cookies.remember)
    assert verify(visitor) == 401
    (row,) = token_rows(svc)
    assert row.rotated_at is None and row.revoked_at is None
    assert restored(restore(owner))  # control: the untouched cookie restores


@pytest.mark.asvs("V9.2.2")
def test_session_cookie_presented_as_remember_cookie_is_rejected(app, svc, user):
    c = remembered(app)
    r = restore(only_remember(app, cookie_value(c, svc.cookies.session)))
    assert not restored(r)


@pytest.mark.asvs("V9.2.2")
def test_selector_validator_signed_for_another_purpose_is_rejected(app, svc, clock, user):
    owner = remembered(app)
    payload = svc.remember.serializer.loads(remember_value(owner))
    assert split_cookie(payload) is not None
    expire_session(clock, svc)
    from authsvc.core.signing import serializer
    for salt in ("authsvc.device", "authsvc.session", "cookie-session"):
        other = serializer(svc.settings.secret_key, (), salt).dumps(payload)
        assert not restored(restore(only_remember(app, other))), salt
    assert restored(restore(owner))


@pytest.mark.asvs("V9.1.1", "V9.1.3")
def test_remember_cookie_from_another_secret_key_is_rejected_both_ways(tmp_path, clock, app, svc, user):
    other = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=secrets.token_urlsafe(48))  # same database
    on_other = remembered(other, ip="198.51.100.9")
    ours = remembered(app)
    expire_session(clock, svc)
    assert not restored(restore(only_remember(app, remember_value(on_other), ip="198.51.100.9")))
    assert not restored(restore(only_remember(other, remember_value(ours))))
    assert all(row.rotated_at is None and row.revoked_at is None for row in token_rows(svc))
    assert restored(restore(ours))


# --- strong session protection with remember-me -----------------------------------------------------

@pytest.mark.parametrize("moved", ["ip", "ua"])
def test_changed_address_or_agent_ends_remembered_session_and_only_rotation_starts_a_new_one(
        app, svc, user, moved):
    c = remembered(app)
    old_remember = remember_value(c)
    old_session = cookie_value(c, svc.cookies.session)
    old_sid = session_rows(svc)[0].id
    if moved == "ip":
        c.environ_base["REMOTE_ADDR"] = "203.0.113.20"
    else:
        c.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (X11) TestBrowser/2"
    assert verify(c) == 401
    assert session_rows(svc)[0].revoked_at is not None
    assert session_rows(svc)[0].revoke_reason == "binding_changed"
    r = restore(c)
    assert restored(r)
    assert remember_value(c) != old_remember
    assert token_rows(svc)[0].rotated_at is not None
    assert verify(c) == 200
    new_sid = max(row.id for row in session_rows(svc))
    assert new_sid != old_sid
    # The old session cookie, even from the original address and agent, stays dead.
    back = browser(app)
    back.set_cookie(svc.cookies.session, old_session, domain=HOST)
    assert verify(back) == 401


# --- purge ------------------------------------------------------------------------------------------

def test_purge_removes_expired_and_revoked_tokens_but_keeps_rotated_ones_until_expiry(app, svc, clock, user):
    keep_after = svc.policy.sessions.purge_after_seconds
    remembered(app, ip="198.51.100.1")
    revoked = remembered(app, ip="198.51.100.2")
    revoked.post("/logout", data={"csrf_token": csrf(revoked, "/")})
    clock.advance(keep_after + 1)
    rotated = remembered(app, ip="198.51.100.3")
    expire_session(clock, svc)
    assert restored(restore(rotated))
    remembered(app, ip="198.51.100.4")
    assert svc.remember.purge(clock() - keep_after) == 1  # only the one revoked long ago
    assert len(token_rows(svc)) == 4
    clock.advance(14 * DAY)
    assert svc.remember.purge(clock() - keep_after) == 1  # the first, expired long ago
    assert len(token_rows(svc)) == 3  # the rotated one (replay evidence), its successor, the last
    clock.advance(keep_after + 1)
    assert svc.remember.purge(clock() - keep_after) == 3


# --- a rotated cookie presented again: theft wherever it comes back (review finding 4) ---------------

GRACE_INSIDE, GRACE_OUTSIDE = "inside the grace", "outside the grace"
PLACES = ["GET /login", "GET /", "POST /login", "POST /logout"]


def form_token(client) -> str:
    """A CSRF token for the browser's next form, fetched without its remember cookie: the page
    load must not be where the cookie is judged when the test is about the POST."""
    value = remember_value(client)
    if value:
        client.delete_cookie(names(client.application).remember, domain=HOST)
    token = csrf(client, "/" if client.get("/auth/verify").status_code == 200 else "/login")
    if value:
        client.set_cookie(names(client.application).remember, value, domain=HOST)
    return token


def present(client, where: str, username: str = "alice"):
    """The browser presents its cookies at ``where``."""
    if where == "GET /login":
        return client.get("/login")
    if where == "GET /":
        return client.get("/")
    if where == "POST /login":
        return client.post("/login", data={"csrf_token": form_token(client), "username": username,
                                           "password": PASSWORD})
    if where == "POST /logout":
        return client.post("/logout", data={"csrf_token": form_token(client)})
    raise AssertionError(where)


def wait_past(clock, svc, when: str) -> None:
    grace = svc.policy.sessions.remember_rotation_grace_seconds
    clock.advance(grace if when == GRACE_INSIDE else grace + 1)


def stolen_and_used_while_owner_signed_in(app, svc):
    """The owner is signed in with a remember cookie; a thief copies that cookie, restores a
    session from it (rotating it away from the owner) and uses that session at an app."""
    owner = remembered(app, ip="198.51.100.1")
    thief = only_remember(app, remember_value(owner), ip="203.0.113.66", ua="curl/8.0")
    assert restored(restore(thief))
    assert verify(thief) == 200
    return owner, thief


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", PLACES)
def test_thief_restoring_while_the_owner_is_signed_in_is_caught_wherever_the_owner_presents_the_cookie(
        app, svc, clock, user, events, where):
    """Finding 4: the owner, still signed in, later loads a page, signs in or signs out with the
    rotated-away cookie. That is the replay: the thief's session and chain end with every other."""
    owner, thief = stolen_and_used_while_owner_signed_in(app, svc)
    thief_chain = remember_value(thief)
    other_device = browser(app, ip="198.51.100.2")
    login(other_device)
    wait_past(clock, svc, GRACE_OUTSIDE)
    r = present(owner, where)
    assert "remember_replay_detected" in event_names(events), "the rotated-away cookie came back unnoticed"
    assert verify(thief) == 401, "the thief's session outlived the owner's presenting the stolen cookie"
    assert verify(other_device) == 401
    assert not restored(restore(only_remember(app, thief_chain, ip="203.0.113.66", ua="curl/8.0")))
    assert all(row.revoked_at is not None for row in token_rows(svc, user.id))
    if where == "POST /login":
        # The owner's new login starts after the thief is revoked, and is not revoked with him.
        assert r.status_code == 303 and verify(owner) == 200
        assert [s.client_ip for s in svc.sessions.list_live(user.id)] == ["198.51.100.1"]
    else:
        assert verify(owner) == 401 and svc.sessions.list_live(user.id) == []
        assert cleared(r, svc.cookies.remember)
    if where == "GET /login":
        assert r.status_code == 200 and b'name="password"' in r.data  # signed out: the form
    if where == "GET /":
        assert r.status_code == 303 and r.headers["Location"].endswith("/login")


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", PLACES)
def test_rotated_cookie_back_within_the_grace_is_a_tab_race_wherever_it_comes_back(app, svc, clock, user, events,
                                                                                   where):
    owner, thief = stolen_and_used_while_owner_signed_in(app, svc)
    wait_past(clock, svc, GRACE_INSIDE)
    present(owner, where)
    assert "remember_replay_detected" not in event_names(events)
    assert verify(thief) == 200
    if where in ("GET /login", "GET /"):
        assert verify(owner) == 200


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", PLACES)
def test_a_thief_who_signs_out_with_the_stolen_copy_within_the_grace_is_still_caught(app, svc, clock, user, events,
                                                                                      where):
    """The thief restores with a copy (the copy rotates, his browser gets the successor), then, within
    the race grace, posts the sign-out with only the copy: a race, so nothing ends, and the copy's
    being rotated must survive it. When the owner's browser comes back with it, that is a replay."""
    owner = remembered(app, ip="198.51.100.1")
    stolen = remember_value(owner)
    thief = only_remember(app, stolen, ip="203.0.113.66", ua="curl/8.0")
    assert restored(restore(thief))
    clock.advance(1)  # inside the grace
    cover = browser(app, "203.0.113.66", "curl/8.0")
    token = csrf(cover, "/login")
    cover.set_cookie(svc.cookies.remember, stolen, domain=HOST)
    assert cover.post("/logout", data={"csrf_token": token}).status_code == 303
    assert verify(thief) == 200
    clock.advance(60)
    present(owner, where)
    assert "remember_replay_detected" in event_names(events)
    assert verify(thief) == 401


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", PLACES)
def test_thief_who_used_only_the_rotated_token_is_caught_too(app, svc, clock, user, events, where):
    """The thief's session ended and he restored again from his (rotated) token: the successor was
    used even if the first session was not."""
    owner = remembered(app, ip="198.51.100.1")
    thief = only_remember(app, remember_value(owner), ip="203.0.113.66", ua="curl/8.0")
    assert restored(restore(thief))
    thief.delete_cookie(svc.cookies.session, domain=HOST)
    clock.advance(60)
    assert restored(restore(thief))  # the successor rotated
    clock.advance(60)
    present(owner, where)
    assert "remember_replay_detected" in event_names(events)
    assert verify(thief) == 401


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", PLACES)
def test_thief_who_has_not_used_his_session_yet_loses_it_when_the_owner_presents_the_cookie(
        app, svc, clock, user, events, where):
    """Nothing shows the successor reached anyone: it is ended with its session (and the owner
    stays signed in); the thief then giving it away by presenting it is replay."""
    owner = remembered(app, ip="198.51.100.1")
    thief = only_remember(app, remember_value(owner), ip="203.0.113.66", ua="curl/8.0")
    assert restored(restore(thief))
    clock.advance(60)
    present(owner, where)
    assert "remember_replay_detected" not in event_names(events)
    assert ("remember_successor_unused", {"restored": False, "sessions_revoked": 1}) in events
    assert verify(thief) == 401
    if where in ("GET /login", "GET /"):
        assert verify(owner) == 200
    clock.advance(60)
    assert not restored(restore(thief))
    assert "remember_replay_detected" in event_names(events)
    assert svc.sessions.list_live(user.id) == []


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", ["POST /login", "POST /logout"])
def test_login_and_logout_still_work_for_the_owner_without_any_theft(app, svc, clock, user, events, where):
    owner = remembered(app, ip="198.51.100.1")
    other_device = browser(app, ip="198.51.100.2")
    login(other_device)
    clock.advance(60)
    r = present(owner, where)
    assert r.status_code == 303
    assert verify(owner) == (200 if where == "POST /login" else 401)
    assert verify(other_device) == 200
    assert "remember_replay_detected" not in event_names(events)
    assert "remember_successor_unused" not in event_names(events)


@pytest.mark.asvs("V7.4.1", "V9.1.1")
@pytest.mark.parametrize("where", PLACES)
@pytest.mark.parametrize("how", ["forged validator", "tampered signature", "other purpose"])
def test_forged_or_tampered_copy_of_a_rotated_cookie_neither_alarms_nor_ends_the_chain(
        app, svc, clock, user, events, where, how):
    """An attacker who knows a rotated token's selector (a database leak) but not its validator,
    or holds a damaged copy, cannot set off the replay alarm (signing everyone out) or end the
    owner's successor, at any place a cookie is judged."""
    owner = remembered(app, ip="198.51.100.1")
    rotated_away = remember_value(owner)
    expire_session(clock, svc)
    assert restored(restore(owner))
    clock.advance(60)
    selector, _ = svc.remember.parse(rotated_away)
    if how == "forged validator":
        bad = svc.remember.serializer.dumps(f"{selector}.{secrets.token_urlsafe(32)}")
    elif how == "tampered signature":
        bad = _flip(rotated_away, len(rotated_away) - 20)
    else:
        from authsvc.core.signing import serializer
        bad = serializer(svc.settings.secret_key, (), "authsvc.device").dumps(svc.remember.serializer.loads(rotated_away))
    attacker = only_remember(app, bad, ip="203.0.113.5")
    if where == "POST /login":
        add_user(app, "mallory")
    present(attacker, where, username="mallory")
    assert not {"remember_replay_detected", "remember_successor_unused"} & set(event_names(events))
    assert verify(owner) == 200
    assert all(row.revoked_at is None for row in token_rows(svc, user.id))


# --- a rotated cookie presented again whose successor was never used: a lost response (finding 5) ----

def restore_but_lose_the_response(app, value: str, path: str = "/login", **where):
    """The browser loads a page with its remember cookie; the server rotates it, but the answer
    (new cookies) never arrives: the browser still holds ``value`` and no session."""
    lost = only_remember(app, value, **where)
    assert restored(restore(lost, path))


def session_row(svc, session_id: int):
    with svc.engine.connect() as conn:
        return conn.execute(sa.select(sessions_table).where(sessions_table.c.id == session_id)).one()


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("path", ["/login", "/"])
@pytest.mark.parametrize("later", [6, 3601, 3 * DAY], ids=["6s", "1h", "3d"])
def test_retry_after_a_lost_restore_response_restores_and_signs_no_one_out(app, svc, clock, user, events, path,
                                                                           later):
    """Finding 5: the retry of a page whose response was lost is not theft. The browser is
    restored; the successor it never received and that successor's session are ended; every other
    session and token of the user is left alone."""
    owner = remembered(app, ip="198.51.100.1")
    other_device = remembered(app, ip="198.51.100.2")
    expire_session(clock, svc)
    assert restored(restore(other_device))
    assert verify(other_device) == 200
    value = remember_value(owner)
    restore_but_lose_the_response(app, value, path)
    (lost_successor,) = [row for row in token_rows(svc, user.id) if row.rotated_at is None and
                         row.client_ip == "198.51.100.7"]
    clock.advance(later)
    r = restore(only_remember(app, value, ip="198.51.100.1"), path)
    assert restored(r), "the retry of a lost response was refused"
    assert "remember_replay_detected" not in event_names(events)
    assert ("remember_successor_unused", {"restored": True, "sessions_revoked": 1}) in events
    retried = only_remember(app, set_cookies(r)[svc.cookies.remember].value, ip="198.51.100.1")
    retried.set_cookie(svc.cookies.session, set_cookies(r)[svc.cookies.session].value, domain=HOST)
    assert verify(retried) == 200
    # The other device is untouched: its session ended only by the clock, its token still restores.
    assert [s.revoke_reason for s in session_rows(svc) if s.client_ip == "198.51.100.2"] == ["replaced", None]
    assert verify(other_device) == 200 or restored(restore(other_device)), "a lost response signed the user out"
    assert verify(other_device) == 200
    lost = next(row for row in token_rows(svc) if row.id == lost_successor.id)
    assert lost.revoked_at is not None and lost.revoke_reason == "unused_successor"
    assert session_row(svc, lost.session_id).revoke_reason == "remember_unused"
    # The new successor's expiry is still the first login's.
    assert {row.expires_at for row in token_rows(svc, user.id) if row.client_ip in ("198.51.100.1", "198.51.100.7")} \
        == {token_rows(svc, user.id)[0].expires_at}


@pytest.mark.asvs("V7.4.1")
def test_retry_of_a_lost_response_within_the_grace_is_refused_as_a_race_and_restores_later(app, svc, clock, user,
                                                                                           events):
    owner = remembered(app, ip="198.51.100.1")
    expire_session(clock, svc)
    value = remember_value(owner)
    restore_but_lose_the_response(app, value, ip="198.51.100.1")
    clock.advance(svc.policy.sessions.remember_rotation_grace_seconds)
    r = restore(owner)
    assert not restored(r) and svc.cookies.remember not in set_cookies(r)
    clock.advance(1)
    assert restored(restore(owner))
    assert verify(owner) == 200
    assert "remember_replay_detected" not in event_names(events)


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("where", ["POST /login", "POST /logout"])
def test_lost_restore_response_then_login_or_logout_signs_no_one_else_out(app, svc, clock, user, events, where):
    owner = remembered(app, ip="198.51.100.1")
    expire_session(clock, svc)
    other_device = browser(app, ip="198.51.100.2")
    login(other_device)
    restore_but_lose_the_response(app, remember_value(owner), ip="198.51.100.1")
    clock.advance(60)
    r = present(owner, where)
    assert r.status_code == 303
    assert "remember_replay_detected" not in event_names(events)
    assert ("remember_successor_unused", {"restored": False, "sessions_revoked": 1}) in events
    assert verify(other_device) == 200
    assert verify(owner) == (200 if where == "POST /login" else 401)
    live = {s.client_ip for s in svc.sessions.list_live(user.id)}
    assert live == ({"198.51.100.1", "198.51.100.2"} if where == "POST /login" else {"198.51.100.2"})


@pytest.mark.asvs("V7.4.1")
def test_responses_lost_again_and_again_still_restore_and_never_extend_the_lifetime(app, svc, clock, user, events):
    owner = remembered(app, ip="198.51.100.1")
    deadline = token_rows(svc)[0].expires_at
    value = remember_value(owner)
    for _ in range(3):
        clock.advance(DAY)
        restore_but_lose_the_response(app, value, ip="198.51.100.1")
    clock.advance(DAY)
    assert restored(restore(owner))
    assert verify(owner) == 200
    assert "remember_replay_detected" not in event_names(events)
    assert {row.expires_at for row in token_rows(svc)} == {deadline}
    assert len(svc.sessions.list_live(user.id)) == 1


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("use", ["session", "token"])
def test_thief_replaying_after_the_owner_used_the_successor_is_still_theft(app, svc, clock, user, events, use):
    """The grey zone of finding 5 stays black: once the owner's browser used what the rotation gave
    it (the session, at an app; or the token, restoring again), the old cookie is theft."""
    owner = remembered(app, ip="198.51.100.1")
    stolen = remember_value(owner)
    expire_session(clock, svc)
    assert restored(restore(owner))
    if use == "session":
        assert verify(owner) == 200
    else:
        owner.delete_cookie(svc.cookies.session, domain=HOST)
        clock.advance(10)
        assert restored(restore(owner))
    clock.advance(60)
    assert not restored(restore(only_remember(app, stolen, ip="203.0.113.66", ua="curl/8.0")))
    assert "remember_replay_detected" in event_names(events)
    assert verify(owner) == 401


@pytest.mark.asvs("V7.4.1")
def test_thief_taking_a_restore_for_lost_is_caught_when_the_owner_uses_the_ended_successor(app, svc, clock, user,
                                                                                           events):
    """The owner restored and has not used anything yet when the thief replays the old cookie: it
    looks like a lost response and the thief is restored. The owner's next step presents the
    successor that was ended as unused: that proves it was delivered, so the replay was theft."""
    owner = remembered(app, ip="198.51.100.1")
    stolen = remember_value(owner)
    expire_session(clock, svc)
    assert restored(restore(owner))
    clock.advance(60)
    thief = only_remember(app, stolen, ip="203.0.113.66", ua="curl/8.0")
    assert restored(restore(thief))
    assert verify(thief) == 200
    assert verify(owner) == 401  # its unused session was ended with the successor
    clock.advance(60)
    assert not restored(restore(owner))
    assert "remember_replay_detected" in event_names(events)
    assert verify(thief) == 401
    assert svc.sessions.list_live(user.id) == []


@pytest.mark.asvs("V7.4.1")
def test_successor_ended_with_its_session_from_the_account_page_is_not_taken_for_lost(app, svc, clock, user,
                                                                                      events):
    """The owner ends the unknown session a thief restored (and never used): the thief presenting
    the old cookie again must not be restored as a lost response."""
    owner = remembered(app, ip="198.51.100.1")
    thief = only_remember(app, remember_value(owner), ip="203.0.113.66", ua="curl/8.0")
    assert restored(restore(thief))
    (sid,) = [s.id for s in svc.sessions.list_live(user.id) if s.client_ip == "203.0.113.66"]
    assert owner.post(f"/account/sessions/{sid}/revoke", data={"csrf_token": csrf(owner, "/")}).status_code == 303
    clock.advance(60)
    stolen_again = only_remember(app, remember_value(owner), ip="203.0.113.66", ua="curl/8.0")
    assert not restored(restore(stolen_again))
    assert "remember_successor_unused" not in event_names(events)


@pytest.mark.asvs("V7.4.1")
def test_two_retries_of_a_lost_response_at_once_restore_exactly_one(app, svc, clock, user, events):
    """Two tabs retry the lost response at the same instant, outside the grace: both read the
    unused successor before either ends it. One is restored; the other is a race, not a theft."""
    owner = remembered(app, ip="198.51.100.1")
    expire_session(clock, svc)
    other_device = browser(app, ip="198.51.100.2")
    login(other_device)
    value = remember_value(owner)
    restore_but_lose_the_response(app, value, ip="198.51.100.1")
    clock.advance(60)
    tokens_before = len(token_rows(svc))
    tabs = [only_remember(app, value, ip="198.51.100.1") for _ in range(2)]
    results, gate = race(svc.engine, ("UPDATE REMEMBER_TOKENS SET ROTATED_AT",),
                         first=lambda: restore(tabs[0]), second=lambda: restore(tabs[1]))
    assert not gate.broken, "the two retries did not both reach the claim"
    assert sorted(restored(result) for result in results.values()) == [False, True]
    assert sorted(verify(t) for t in tabs) == [200, 401]
    assert verify(other_device) == 200
    assert "remember_replay_detected" not in event_names(events)
    assert len(token_rows(svc)) == tokens_before + 1, "more than one new successor"


@pytest.mark.asvs("V7.4.1")
def test_lost_response_retry_racing_the_successors_first_use_is_either_theft_or_lost_never_both(
        app, svc, clock, user, events):
    """The thief retries the rotated cookie at the very moment the owner's browser first uses the
    session the rotation gave it. Whichever write lands first decides: the use (then the retry is
    theft), or the retry (then the session is ended and the use refused). Never a restored thief
    beside a working owner."""
    owner = remembered(app, ip="198.51.100.1")
    stolen = remember_value(owner)
    expire_session(clock, svc)
    assert restored(restore(owner))
    clock.advance(60)
    thief = only_remember(app, stolen, ip="203.0.113.66", ua="curl/8.0")
    results, gate = race(svc.engine, ("UPDATE REMEMBER_TOKENS SET ROTATED_AT", "UPDATE SESSIONS SET LAST_SEEN_AT"),
                         use=lambda: verify(owner), retry=lambda: restore(thief))
    assert not gate.broken
    if results["use"] == 200:
        assert not restored(results["retry"])
        assert "remember_replay_detected" in event_names(events)
        assert (verify(owner), verify(thief)) == (401, 401)
    else:
        assert restored(results["retry"])
        assert "remember_replay_detected" not in event_names(events)
        assert (verify(owner), verify(thief)) == (401, 200)


@pytest.mark.asvs("V7.5.2")
def test_ending_a_session_while_its_device_restores_leaves_it_signed_out_with_no_chain(app, svc, clock, user):
    """"End" on the account page revokes the session, then (a second commit) its remember-me token.
    The ended device (a thief's copy of the laptop's cookies, loading pages) restored between the two:
    the token rotated first, the second commit found nothing to end, and the device stayed signed in
    with a live chain (found by review, session 13). A token whose session its owner ended restores
    nothing."""

    laptop = remembered(app, ip="198.51.100.2")
    here = browser(app, ip="198.51.100.1")
    login(here)
    (sid,) = [s.id for s in svc.sessions.list_live(user.id) if s.client_ip == "198.51.100.2"]
    token = csrf(here, "/")
    session_ended, page_loaded = threading.Event(), threading.Event()
    revoke_for_session = svc.remember.revoke_for_session

    def between(session_id):
        session_ended.set()  # the session's revocation has committed
        assert page_loaded.wait(10)
        return revoke_for_session(session_id)

    svc.remember.revoke_for_session = between
    try:
        ended = {}
        owner = threading.Thread(target=lambda: ended.setdefault(
            "answer", here.post(f"/account/sessions/{sid}/revoke", data={"csrf_token": token})))
        owner.start()
        assert session_ended.wait(10)
        answer = restore(laptop, "/")  # the ended device's next page load
        page_loaded.set()
        owner.join(10)
    finally:
        svc.remember.revoke_for_session = revoke_for_session
    assert ended["answer"].status_code == 303
    assert not restored(answer) and verify(laptop) == 401
    assert [t for t in token_rows(svc, user.id) if t.revoked_at is None and t.rotated_at is None] == []
