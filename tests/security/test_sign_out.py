"""authsvc.core.sign_out: what signing an account out everywhere ends and what each caller keeps.
The events that use it (password change, disable, admin revoke, remember theft, MFA reset, a
second-factor change) are tested end to end in their own modules; this pins the three options."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from authsvc.core.models import remember_tokens
from authsvc.core.sessions import LIVE
from authsvc.core.sign_out import SignedOut

IP, UA = "198.51.100.7", "Mozilla/5.0 (X11) SignOutTest/1"


def signed_in_twice(svc, user):
    """Two browsers of the account, each with a session and the remember-me token it started,
    and a known device; plus a token attached to no session."""
    browsers = []
    for _ in range(2):
        token, session_id = svc.sessions.create(user.id, IP, UA, remembered=True)
        svc.remember.issue(user.id, IP, UA, session_id=session_id)
        browsers.append((token, session_id))
    svc.remember.issue(user.id, IP, UA)
    device = svc.known_devices.remember(user.id, None)
    return browsers, device


def live_tokens(svc, user_id):
    with svc.engine.connect() as conn:
        return sorted(conn.execute(sa.select(remember_tokens.c.session_id).where(
            remember_tokens.c.user_id == user_id, remember_tokens.c.revoked_at.is_(None))).scalars(),
            key=lambda s: (s is None, s))


def test_everywhere_ends_every_session_token_and_device(svc, user):
    browsers, device = signed_in_twice(svc, user)
    assert svc.sign_out.everywhere(user.id, "admin_revoked") == SignedOut(sessions=2, remembered=3)
    assert [svc.sessions.authenticate(t)[1] for t, _ in browsers] == ["revoked", "revoked"]
    assert live_tokens(svc, user.id) == [] and not svc.known_devices.is_known(user.username_key, device)


@pytest.mark.parametrize("keep_remember", [False, True])
def test_keep_session_keeps_that_session_and_only_its_own_token_when_asked(svc, user, keep_remember):
    (gone, _), (kept, kept_id) = signed_in_twice(svc, user)[0]
    ended = svc.sign_out.everywhere(user.id, "factor_changed", keep_session=kept_id, keep_remember=keep_remember)
    assert ended == SignedOut(sessions=1, remembered=2 if keep_remember else 3)
    assert svc.sessions.authenticate(gone)[1] == "revoked" and svc.sessions.authenticate(kept)[1] == LIVE
    assert live_tokens(svc, user.id) == ([kept_id] if keep_remember else [])


def test_forget_devices_false_keeps_known_devices(svc, user):
    _, device = signed_in_twice(svc, user)
    svc.sign_out.everywhere(user.id, "mfa_reset", forget_devices=False)
    assert svc.known_devices.is_known(user.username_key, device)


def test_another_accounts_sessions_tokens_and_devices_are_untouched(app, svc, user):
    from tests.conftest import add_user

    other = add_user(app, "bob")
    (theirs, _), _ = signed_in_twice(svc, other)[0]
    signed_in_twice(svc, user)
    svc.sign_out.everywhere(user.id, "admin_revoked")
    assert svc.sessions.authenticate(theirs)[1] == LIVE and len(live_tokens(svc, other.id)) == 3
