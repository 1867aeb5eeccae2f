"""The OpenID Provider's single-use writes on both backends (SQLite, PostgreSQL), with two
instances racing: a code or refresh token presented twice at the same moment is spent exactly
once; the other presentation is a replay, which revokes the family."""

from __future__ import annotations

import threading

import pytest

from authsvc.core import db
from authsvc.core.oidc.store import CodeStore, TokenStore
from tests.conftest import build_app
from tests.security.test_postgres_store import backend, race, statements  # noqa: F401 - fixture

__all__ = ["backend"]


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


@pytest.mark.asvs("V10.4.2")
def test_a_code_presented_twice_at_once_is_spent_exactly_once(svc, user, other):
    codes, _tokens, engine = other
    sid = _session(svc, user)
    svc.oidc.codes.issue("the-code", client_id="c", user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                         scope="openid", nonce=None, challenge="x" * 43, method="S256", auth_time=svc.clock(),
                         methods="pwd")
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE OIDC_CODES", gate.wait), statements(engine, "UPDATE OIDC_CODES", gate.wait):
        results = race(lambda: svc.oidc.codes.spend("the-code", "c"), lambda: codes.spend("the-code", "c"))
    assert sorted(r.reason for r in results) == ["ok", "replayed"], results


@pytest.mark.asvs("V10.4.5")
def test_a_refresh_token_presented_twice_at_once_is_spent_exactly_once(svc, user, other):
    _codes, tokens, engine = other
    sid = _session(svc, user)
    svc.oidc.tokens.save(access_token="a", refresh_token="the-refresh", client_id="c", user_id=user.id,
                         session_id=sid, family_id=7, scope="openid offline_access")
    gate = threading.Barrier(2, timeout=30)
    with statements(svc.engine, "UPDATE OIDC_TOKENS", gate.wait), statements(engine, "UPDATE OIDC_TOKENS", gate.wait):
        results = race(lambda: svc.oidc.tokens.spend_refresh_token("the-refresh"),
                       lambda: tokens.spend_refresh_token("the-refresh"))
    assert sorted(r[1] for r in results) == ["ok", "replayed"], results


def test_tokens_and_codes_are_stored_as_digests_only(svc, user):
    import sqlalchemy as sa

    from authsvc.core.models import oidc_codes, oidc_tokens
    sid = _session(svc, user)
    svc.oidc.codes.issue("code-value-1", client_id="c", user_id=user.id, session_id=sid, redirect_uri="https://a/cb",
                         scope="openid", nonce=None, challenge="x" * 43, method="S256", auth_time=1.0, methods="pwd")
    svc.oidc.tokens.save(access_token="access-value-1", refresh_token="refresh-value-1", client_id="c",
                         user_id=user.id, session_id=sid, family_id=1, scope="openid")
    with svc.engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(oidc_codes)).all()]
        rows += [tuple(r) for r in conn.execute(sa.select(oidc_tokens)).all()]
    dumped = repr(rows)
    for secret in ("code-value-1", "access-value-1", "refresh-value-1"):
        assert secret not in dumped
