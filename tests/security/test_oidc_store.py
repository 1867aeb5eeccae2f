"""The OpenID Provider's single-use writes on both backends (SQLite, PostgreSQL), with two
instances racing: a code or refresh token presented twice at the same moment is spent exactly
once; the other presentation is a replay, which revokes the family."""

from __future__ import annotations

import threading

import pytest

from authsvc.core import db
from authsvc.core.oidc.store import CodeStore, TokenStore
from authsvc.rules.oidc_requests import s256
from tests.conftest import build_app
from tests.security.test_postgres_store import backend, race, statements  # noqa: F401 - fixture

__all__ = ["backend"]

VERIFIER = "a-verifier-of-the-code-" + "v" * 30
CHALLENGE = s256(VERIFIER)
PROOF = {"redirect_uri": "https://a/cb", "verifier": VERIFIER}   # what the token endpoint is given


@pytest.fixture
def app(tmp_path, clock, backend):  # noqa: F811 - the backend fixture above
    app = build_app(tmp_path, clock, AUTHSVC_DATABASE_URL=backend)
    yield app
    app.extensions["authsvc"].engine.dispose()


@pytest.fixture
def other(backend, svc):  # noqa: F811
    """A second instance's stores on the same database (its own engine and pool)."""
    engine = db.make_engine(backend)
    oidc = svc.policy.oidc
    yield (CodeStore(engine, svc.clock, oidc.code_lifetime_seconds),
           TokenStore(engine, svc.clock, access_lifetime=oidc.access_token_lifetime_seconds,
                      refresh_lifetime=oidc.refresh_token_lifetime_seconds),
           engine)
    engine.dispose()


def _session(svc, user):
    _token, session_id = svc.sessions.create(user.id, "198.51.100.7", "UA", False)
    return session_id


def _family(svc, user, sid, code="a-code") -> int:
    """A spent code's row id: the family its tokens are saved into (its anchor)."""
    svc.oidc.codes.issue(code, client_id="c", user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                         scope="openid offline_access", nonce=None, challenge=CHALLENGE, method="S256",
                         auth_time=svc.clock(), methods="pwd")
    spent = svc.oidc.codes.spend(code, "c", **PROOF)
    assert spent.reason == "ok", spent
    return spent.code.id


def _save(tokens, user, sid, family, access="access", refresh="refresh"):
    return tokens.save(access_token=access, refresh_token=refresh, client_id="c", user_id=user.id, session_id=sid,
                       family_id=family, scope="openid offline_access")


@pytest.mark.asvs("V10.4.2")
def test_a_code_presented_twice_at_once_is_spent_exactly_once(svc, user, other):
    codes, _tokens, engine = other
    sid = _session(svc, user)
    svc.oidc.codes.issue("the-code", client_id="c", user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                         scope="openid", nonce=None, challenge=CHALLENGE, method="S256", auth_time=svc.clock(),
                         methods="pwd")
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE OIDC_CODES", gate.wait), statements(engine, "UPDATE OIDC_CODES", gate.wait):
        results = race(lambda: svc.oidc.codes.spend("the-code", "c", **PROOF),
                       lambda: codes.spend("the-code", "c", **PROOF))
    assert sorted(r.reason for r in results) == ["ok", "replayed"], results


@pytest.mark.asvs("V10.4.5")
def test_a_refresh_token_presented_twice_at_once_is_spent_exactly_once(svc, user, other):
    _codes, tokens, engine = other
    sid = _session(svc, user)
    assert _save(svc.oidc.tokens, user, sid, _family(svc, user, sid), "a", "the-refresh")
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE OIDC_TOKENS", gate.wait), statements(engine, "UPDATE OIDC_TOKENS", gate.wait):
        results = race(lambda: svc.oidc.tokens.spend_refresh_token("the-refresh", "c"),
                       lambda: tokens.spend_refresh_token("the-refresh", "c"))
    assert sorted(r[1] for r in results) == ["ok", "replayed"], results


@pytest.mark.asvs("V10.4.5")
@pytest.mark.parametrize("first", ["revocation", "save"])
def test_a_family_revoked_while_a_pair_is_saved_into_it_leaves_no_live_token(svc, user, other, first):
    """Keycloak CVE-2026-1035's class: two requests present one refresh token (or one code) at
    once; the loser sees a replay and revokes the family while the winner saves its new pair. On two
    instances (engines) at the same moment, in either order, the new pair must end up revoked: saved
    after the revocation it is born revoked and ``save`` says so (the request is refused); saved just
    before, the revocation ends it with the rest."""
    import sqlalchemy as sa

    from authsvc.core.models import oidc_tokens
    _codes, tokens, engine = other
    sid = _session(svc, user)
    family = _family(svc, user, sid)
    assert _save(svc.oidc.tokens, user, sid, family, "a0", "r0")
    if first == "revocation":  # the revocation has committed when the winner saves
        assert tokens.revoke_family(family, "refresh_replayed") == 1
        assert _save(svc.oidc.tokens, user, sid, family, "a1", "r1") is False
    else:  # the save has committed when the revocation runs
        assert _save(svc.oidc.tokens, user, sid, family, "a1", "r1") is True
        assert tokens.revoke_family(family, "refresh_replayed") == 2
    for access in ("a0", "a1"):
        found = svc.oidc.tokens.by_access_token(access)
        assert found is not None and found.revoked, (first, access)
    with svc.engine.connect() as conn:
        live = conn.execute(sa.select(sa.func.count()).select_from(oidc_tokens).where(
            oidc_tokens.c.family_id == family, oidc_tokens.c.revoked_at.is_(None))).scalar_one()
    assert live == 0


@pytest.mark.asvs("V10.4.5")
def test_a_revocation_and_a_save_at_the_same_moment_on_two_instances_leave_no_live_token(svc, user, other):
    """The same race with both statements released together (a barrier before each): whichever the
    database runs first, no token of the family is left live, and a save that lost is refused."""
    import sqlalchemy as sa

    from authsvc.core.models import oidc_tokens
    _codes, tokens, engine = other
    sid = _session(svc, user)
    family = _family(svc, user, sid)
    assert _save(svc.oidc.tokens, user, sid, family, "a0", "r0")
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "INSERT INTO OIDC_TOKENS", gate.wait), statements(engine, "UPDATE OIDC_CODES", gate.wait):
        saved, revoked = race(lambda: _save(svc.oidc.tokens, user, sid, family, "a1", "r1"),
                              lambda: tokens.revoke_family(family, "refresh_replayed"))
    if isinstance(saved, Exception):  # SQLite may refuse the loser's write outright: then nothing was saved
        assert "locked" in str(saved), saved
    assert not isinstance(revoked, Exception), revoked
    with svc.engine.connect() as conn:
        live = conn.execute(sa.select(sa.func.count()).select_from(oidc_tokens).where(
            oidc_tokens.c.family_id == family, oidc_tokens.c.revoked_at.is_(None))).scalar_one()
    assert live == 0, (saved, revoked)
    assert saved is False or revoked == 2, (saved, revoked)  # refused, or saved and then revoked


@pytest.mark.parametrize("ended_by", ["the-user", "client-made-stricter", "client-scopes-narrowed"])
def test_a_refresh_under_way_when_the_user_or_the_admin_ends_the_clients_tokens_saves_nothing_live(svc, user, ended_by):
    """The account page's "Revoke" and an admin making a client stricter end every token of the
    client (for the user) at once; a refresh that spent its token just before and saves its new
    pair just after must not bring the client back: the pair is saved revoked and refused."""
    from tests.security.oidc_helpers import add_client

    cid, _secret = add_client(svc, trusted=True)
    sid = _session(svc, user)
    svc.oidc.codes.issue("c1", client_id=cid, user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                         scope="openid offline_access", nonce=None, challenge=CHALLENGE, method="S256",
                         auth_time=svc.clock(), methods="pwd")
    family = svc.oidc.codes.spend("c1", cid, **PROOF).code.id
    save = dict(client_id=cid, user_id=user.id, session_id=sid, family_id=family, scope="openid offline_access")
    assert svc.oidc.tokens.save(access_token="a0", refresh_token="r0", **save)
    assert svc.oidc.tokens.spend_refresh_token("r0", cid)[1] == "ok"  # the refresh under way
    if ended_by == "the-user":
        assert svc.oidc.tokens.revoke_for_user(user.id, cid, "user_revoked") == 1
    elif ended_by == "client-made-stricter":
        assert svc.oidc.clients.update(cid, trusted=False).revoked == 1
    else:
        assert svc.oidc.clients.update(cid, scopes=("openid",)).revoked == 1
    assert svc.oidc.tokens.save(access_token="a1", refresh_token="r1", **save) is False
    assert svc.oidc.tokens.by_access_token("a1").revoked


@pytest.mark.asvs("V10.4.5")
@pytest.mark.parametrize("ended_by", ["the-user", "client-made-stricter", "client-scopes-narrowed"])
def test_a_code_exchange_under_way_when_the_clients_tokens_are_ended_saves_nothing_live(svc, user, ended_by):
    """As above, for a code: spent, its pair not saved yet, when the user revokes the app or the
    admin makes the client stricter. Its family had no token yet, so nothing marked it, and the pair
    came out live (found by review, session 13): every family of the client's codes is marked now."""
    from tests.security.oidc_helpers import add_client

    cid, _secret = add_client(svc, trusted=True)
    sid = _session(svc, user)
    issue = dict(client_id=cid, user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                 scope="openid groups offline_access", nonce=None, challenge=CHALLENGE, method="S256",
                 auth_time=svc.clock(), methods="pwd")
    svc.oidc.codes.issue("c0", **issue)  # an earlier sign-in: the app holds a pair (the page lists it)
    save = dict(client_id=cid, user_id=user.id, session_id=sid, scope="openid groups offline_access")
    assert svc.oidc.tokens.save(access_token="a0", refresh_token="r0",
                                family_id=svc.oidc.codes.spend("c0", cid, **PROOF).code.id,
                                **save)
    svc.oidc.codes.issue("c1", **issue)
    family = svc.oidc.codes.spend("c1", cid, **PROOF).code.id  # the exchange under way
    if ended_by == "the-user":
        svc.oidc.revoke_app(user.id, cid)
    elif ended_by == "client-made-stricter":
        svc.oidc.clients.update(cid, trusted=False)
    else:
        svc.oidc.clients.update(cid, scopes=("openid", "offline_access"))
    assert svc.oidc.tokens.save(access_token="a1", refresh_token="r1", family_id=family, **save) is False
    assert svc.oidc.tokens.by_access_token("a1").revoked


@pytest.mark.asvs("V10.4.5")
def test_a_refresh_token_presented_by_another_client_is_not_spent(svc, user):
    """The client is compared before the conditional write, as :meth:`CodeStore.spend` does: a
    thief naming another client (a public one needs no secret) spends nothing, so the owner's next
    refresh is no replay and its family lives."""
    sid = _session(svc, user)
    assert _save(svc.oidc.tokens, user, sid, _family(svc, user, sid), "a", "the-refresh")
    for _ in range(2):
        assert svc.oidc.tokens.spend_refresh_token("the-refresh", "another-client") == (None, "other_client")
    token, reason = svc.oidc.tokens.spend_refresh_token("the-refresh", "c")
    assert reason == "ok" and token.client_id == "c" and not token.revoked
    assert svc.oidc.tokens.spend_refresh_token("the-refresh", "another-client") == (None, "other_client")
    assert svc.oidc.tokens.spend_refresh_token("the-refresh", "c")[1] == "replayed"


def test_a_pair_for_a_family_whose_code_is_gone_is_not_saved(svc, user):
    sid = _session(svc, user)
    assert _save(svc.oidc.tokens, user, sid, 987654) is False
    assert svc.oidc.tokens.by_access_token("access") is None


def test_tokens_and_codes_are_stored_as_digests_only(svc, user):
    import sqlalchemy as sa

    from authsvc.core.models import oidc_codes, oidc_tokens
    sid = _session(svc, user)
    svc.oidc.codes.issue("code-value-1", client_id="c", user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                         scope="openid", nonce=None, challenge=CHALLENGE, method="S256", auth_time=1.0, methods="pwd")
    assert _save(svc.oidc.tokens, user, sid, _family(svc, user, sid, "code-value-2"), "access-value-1", "refresh-value-1")
    with svc.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(oidc_codes)).all()]
        rows += [tuple(r) for r in conn.execute(sa.select(oidc_tokens)).all()]
    dumped = repr(rows)
    for secret in ("code-value-1", "access-value-1", "refresh-value-1"):
        assert secret not in dumped


@pytest.mark.parametrize("field", ["client_id", "nonce", "state", "redirect_uri", "scope", "code_challenge",
                                   "prompt", "max_age", "login_hint", "id_token_hint"])
def test_a_nul_in_any_oidc_parameter_is_a_4xx_or_the_clients_error_never_a_503(app, svc, user, field, capsys):
    """PostgreSQL refuses a NUL in a text parameter (psycopg's DataError), which the app answered as
    the database being down: 503 and a `dependency_failed` alert, on demand and unauthenticated
    (found by review, session 13; the bad-input tests ran on SQLite only)."""
    from tests.conftest import browser, csrf, login
    from tests.security.oidc_helpers import add_client, authorize, authorize_params, pkce

    cid, secret = add_client(svc, trusted=True)
    client = browser(app)
    assert login(client).status_code == 303
    params = authorize_params(cid, challenge=pkce()[1])
    params[field] = "a\x00b"
    answers = [authorize(client, params).status_code,
               client.get("/oauth/logout", query_string={field: "\x00", "client_id": cid}).status_code,
               client.post("/oauth/logout/confirm", data={"csrf_token": csrf(client, "/"), "decision": "logout",
                                                          field: "\x00"}).status_code,
               client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x", field: "\x00"},
                           auth=(cid, secret)).status_code,
               client.post("/oauth/token", data={"grant_type": "authorization_code", "code": "x", "client_id": "\x00"}
                           ).status_code,
               client.post("/oauth/revoke", data={"token": "\x00", field: "\x00"}, auth=(cid, secret)).status_code]
    assert all(code in (200, 302, 303) or 400 <= code < 500 for code in answers), answers
    assert "dependency_failed" not in capsys.readouterr().out
