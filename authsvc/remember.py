"""Remember-me tokens: selector + validator, rotated on every use, reuse detected as theft.

Cookie value: ``selector.validator`` (both random, base64url), signed with the secret key under its
own salt, so a session cookie can never pass as a remember cookie or the reverse (ASVS 9.2.2) and
garbage is refused without a database read. The database keeps the selector and the SHA-256 of the
validator. Using a token marks it rotated (an UPDATE only one racer can win) and issues a new one
with the *same* expiry: remembering never extends past ``remember_lifetime_days``.

A rotated token presented again means two browsers hold it: one of them stole it. :meth:`consume`
reports ``"replay"`` and the caller revokes every session and token of the user; a second use
within ``remember_rotation_grace_seconds`` is taken for two tabs racing and only refused.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.engine import Engine

from authsvc.models import remember_tokens, users
from authsvc.policy import SessionPolicy

_PART = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")


@dataclass(frozen=True)
class Consumed:
    outcome: str          # "ok", "invalid", "expired", "revoked", "disabled", "race", "replay"
    user_id: int | None = None
    expires_at: float | None = None


def _digest(validator: str) -> bytes:
    return hashlib.sha256(validator.encode()).digest()


def split_cookie(payload: object) -> tuple[str, str] | None:
    """The (selector, validator) pair from a verified cookie payload, or None if malformed."""
    if not isinstance(payload, str) or payload.count(".") != 1:
        return None
    selector, validator = payload.split(".")
    if not (_PART.match(selector) and _PART.match(validator)):
        return None
    return selector, validator


class RememberStore:
    def __init__(self, engine: Engine, policy: SessionPolicy, clock: Callable[[], float],
                 serializer: URLSafeSerializer) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.serializer = serializer

    def issue(self, user_id: int, client_ip: str, user_agent: str, expires_at: float | None = None,
              conn=None, *, session_id: int | None = None) -> tuple[str, float]:
        """A new token; returns the signed cookie value and its expiry (epoch seconds).
        ``session_id`` is the session it started: ending that session ends the token too."""
        now = self.clock()
        expires = expires_at or now + self.policy.remember_lifetime_days * 86400
        selector, validator = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        values = dict(selector=selector, validator_hash=_digest(validator), user_id=user_id, created_at=now,
                      expires_at=expires, client_ip=client_ip[:64], user_agent=user_agent[:256],
                      session_id=session_id)
        if conn is None:
            with self.engine.begin() as c:
                c.execute(remember_tokens.insert().values(**values))
        else:
            conn.execute(remember_tokens.insert().values(**values))
        return self.serializer.dumps(f"{selector}.{validator}"), expires

    def parse(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie or len(cookie) > 512:
            return None
        try:
            return split_cookie(self.serializer.loads(cookie))
        except (BadSignature, ValueError, UnicodeError):
            return None

    def consume(self, cookie: str | None, client_ip: str, user_agent: str) -> tuple[Consumed, str | None]:
        """Use a remember cookie once. On ``"ok"`` also returns the replacement cookie value."""
        parts = self.parse(cookie)
        if parts is None:
            return Consumed("invalid"), None
        selector, validator = parts
        now = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(
                remember_tokens.c.id, remember_tokens.c.validator_hash, remember_tokens.c.user_id,
                remember_tokens.c.expires_at, remember_tokens.c.rotated_at, remember_tokens.c.revoked_at,
                users.c.disabled,
            ).select_from(remember_tokens.join(users, users.c.id == remember_tokens.c.user_id))
             .where(remember_tokens.c.selector == selector)).first()
            if row is None or not hmac.compare_digest(row.validator_hash, _digest(validator)):
                return Consumed("invalid"), None
            if row.revoked_at is not None:
                return Consumed("revoked", row.user_id), None
            if row.rotated_at is not None:
                race = now - row.rotated_at <= self.policy.remember_rotation_grace_seconds
                return Consumed("race" if race else "replay", row.user_id), None
            if row.disabled:
                return Consumed("disabled", row.user_id), None
            if now >= row.expires_at:
                return Consumed("expired", row.user_id), None
            won = conn.execute(remember_tokens.update().where(
                remember_tokens.c.id == row.id, remember_tokens.c.rotated_at.is_(None),
                remember_tokens.c.revoked_at.is_(None)).values(rotated_at=now)).rowcount
            if won != 1:  # another instance rotated it between our read and write
                return Consumed("race", row.user_id), None
            new_cookie, _ = self.issue(row.user_id, client_ip, user_agent, row.expires_at, conn=conn)
        return Consumed("ok", row.user_id, row.expires_at), new_cookie

    def attach(self, cookie: str, session_id: int) -> None:
        """Record which session a freshly rotated token started (it is issued before the session)."""
        parts = self.parse(cookie)
        if parts is None:
            return
        with self.engine.begin() as conn:
            conn.execute(remember_tokens.update().where(remember_tokens.c.selector == parts[0])
                         .values(session_id=session_id))

    def revoke_for_session(self, session_id: int) -> int:
        """End the unused token that would restore ``session_id``'s browser (a rotated one stays
        rotated, so presenting it again is still detected as replay)."""
        with self.engine.begin() as conn:
            return conn.execute(remember_tokens.update().where(
                remember_tokens.c.session_id == session_id, remember_tokens.c.rotated_at.is_(None),
                remember_tokens.c.revoked_at.is_(None),
            ).values(revoked_at=self.clock())).rowcount

    def revoke_cookie(self, cookie: str | None) -> None:
        parts = self.parse(cookie)
        if parts is None:
            return
        with self.engine.begin() as conn:
            conn.execute(remember_tokens.update().where(
                remember_tokens.c.selector == parts[0], remember_tokens.c.revoked_at.is_(None),
            ).values(revoked_at=self.clock()))

    def revoke_all(self, user_id: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(remember_tokens.update().where(
                remember_tokens.c.user_id == user_id, remember_tokens.c.revoked_at.is_(None),
            ).values(revoked_at=self.clock())).rowcount

    def purge(self, before: float) -> int:
        """Delete tokens that expired or were revoked before ``before``. Rotated tokens stay until
        they expire: until then, presenting one again must still be recognised as replay."""
        with self.engine.begin() as conn:
            return conn.execute(remember_tokens.delete().where(sa.or_(
                remember_tokens.c.expires_at < before,
                sa.and_(remember_tokens.c.revoked_at.is_not(None), remember_tokens.c.revoked_at < before),
            ))).rowcount
