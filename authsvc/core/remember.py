"""Remember-me tokens: selector + validator, rotated on every use, reuse judged as theft or lost response.

Cookie value: ``selector.validator`` (both random, base64url), signed with the secret key under its
own salt, so a session cookie can never pass as a remember cookie or the reverse (ASVS 9.2.2) and
garbage is refused without a database read. The database keeps the selector and the SHA-256 of the
validator. Using a token marks it rotated (an UPDATE only one racer can win) and issues a successor
with the *same* expiry (remembering never extends past ``remember_lifetime_days``), linked from the
rotated token.

A rotated token presented again, wherever (a page that restores, a signed-in page, login, logout),
is judged by :func:`reuse_verdict`: within ``remember_rotation_grace_seconds`` two tabs raced
(``"race"``: refused, nothing else); later, if its successor or the session made with it was ever
used, two browsers hold the token and one stole it (``"replay"``: the caller revokes every session
and token of the user); if neither was ever used, the response that carried the successor never
reached the browser (``"lost"``): the unused successor and its session are ended, and a page that
restores gives this browser a new successor. A successor ended that way and presented after all
reveals a copy of its predecessor: replay. :func:`presented_verdict` is the whole decision, as a
function of plain values; :class:`RememberStore` does the I/O around it.
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

from authsvc.core.models import remember_tokens, sessions, users
from authsvc.core.policy import SessionPolicy
from authsvc.core.sessions import ENDED_BY_OWNER, end_if_unused
from authsvc.rules.auth_methods import PASSWORD_ONLY, format_methods, parse_methods

_PART = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")


# revoke_reason of a successor ended because it never reached its browser.
UNUSED_SUCCESSOR = "unused_successor"
# revoke_reason of a session made from such a successor.
SESSION_UNUSED = "remember_unused"


@dataclass(frozen=True)
class Consumed:
    outcome: str          # "ok", "invalid", "expired", "revoked", "disabled", "race", "lost", "replay"
    user_id: int | None = None
    expires_at: float | None = None
    ended_session_id: int | None = None  # "lost": the unused session ended with the successor
    discarded: bool = False               # "lost": this call ended the unused successor
    methods: tuple[str, ...] = PASSWORD_ONLY  # "ok", "lost": the sign-in's methods, for the restored session
    generation: int = 0   # "ok", "lost": the chain's sign-out generation, for the restored session


@dataclass(frozen=True)
class TokenFacts:
    """What the database says about a presented token whose validator matched, as plain values.
    ``successor_used`` and ``successor_session_used`` are None when not known (no successor or no
    session recorded: a token rotated before they were, or an interrupted restore)."""

    expires_at: float
    rotated_at: float | None
    revoked_at: float | None
    revoke_reason: str | None
    user_disabled: bool
    successor_used: bool | None = None
    successor_session_used: bool | None = None
    signed_out: bool = False  # stamped with another sign-out generation than the account's
    session_ended_by_owner: bool = False  # the session it started was ended on the account page


def reuse_verdict(seconds_since_rotation: float, grace_seconds: float, successor_used: bool | None,
                  successor_session_used: bool | None) -> str:
    """What presenting a rotated token again means: ``"race"`` (another tab of the same browser
    rotated it a moment ago), ``"lost"`` (its successor never reached the browser: neither the new
    token nor the session made with it was ever used) or ``"replay"`` (someone uses the successor:
    this is a copy). Unknown counts as used: it must never let a copy through."""
    if seconds_since_rotation <= grace_seconds:  # NaN compares false: not a race
        return "race"
    if successor_used is False and successor_session_used is False:
        return "lost"
    return "replay"


def presented_verdict(facts: TokenFacts, now: float, grace_seconds: float) -> str:
    """The outcome of presenting a token: ``"ok"`` (usable: rotate it), ``"revoked"``, ``"race"``,
    ``"lost"``, ``"replay"``, ``"disabled"`` or ``"expired"``. A lost response restores like
    ``"ok"`` only while the account and the token are still good."""
    if facts.revoked_at is not None:
        if facts.revoke_reason == UNUSED_SUCCESSOR:
            # Ended because it seemed never delivered, yet here it is: its predecessor came back
            # from someone else. Within the grace it is two tabs answering each other.
            return "race" if now - facts.revoked_at <= grace_seconds else "replay"
        return "revoked"
    if facts.signed_out:  # the account was signed out everywhere since the chain's credential was read
        return "revoked"
    if facts.session_ended_by_owner and facts.rotated_at is None:
        # Its owner ended that session ("End" on the account page), which then revokes this token in
        # a second commit: a restore between the two rotated it first and kept the device signed in
        # with a live chain (found by review, session 13). A rotated token goes on to the replay
        # judgement below: ending a session must not turn a thief's replay into a quiet refusal.
        return "revoked"
    if facts.rotated_at is not None:
        verdict = reuse_verdict(now - facts.rotated_at, grace_seconds, facts.successor_used,
                                facts.successor_session_used)
        if verdict != "lost":
            return verdict
    if facts.user_disabled:
        return "disabled"
    if now >= facts.expires_at:
        return "expired"
    return "ok" if facts.rotated_at is None else "lost"


_successor = remember_tokens.alias("successor")
_own_session = sessions.alias("own_session")
# One read judges any presented token: the token, its user, its successor and that one's session.
_PRESENTED = sa.select(
    remember_tokens.c.id, remember_tokens.c.validator_hash, remember_tokens.c.user_id,
    remember_tokens.c.expires_at, remember_tokens.c.rotated_at, remember_tokens.c.revoked_at,
    remember_tokens.c.revoke_reason, remember_tokens.c.successor_id, remember_tokens.c.methods,
    remember_tokens.c.signed_in_at, users.c.disabled, remember_tokens.c.generation,
    (remember_tokens.c.generation != users.c.sign_out_generation).label("signed_out"),
    _successor.c.id.label("s_id"), _successor.c.rotated_at.label("s_rotated_at"),
    _successor.c.revoked_at.label("s_revoked_at"), _successor.c.revoke_reason.label("s_revoke_reason"),
    _successor.c.session_id.label("s_session_id"),
    sessions.c.id.label("ss_id"), sessions.c.used_at.label("ss_used_at"),
    _own_session.c.revoke_reason.label("own_revoke_reason"),
).select_from(
    remember_tokens.join(users, users.c.id == remember_tokens.c.user_id)
    .outerjoin(_successor, _successor.c.id == remember_tokens.c.successor_id)
    .outerjoin(sessions, sessions.c.id == _successor.c.session_id)
    .outerjoin(_own_session, _own_session.c.id == remember_tokens.c.session_id)
).where(remember_tokens.c.selector == sa.bindparam("selector"))


def _facts(row) -> TokenFacts:
    successor_used = session_used = None
    if row.s_id is not None:
        successor_used = row.s_rotated_at is not None or (
            row.s_revoked_at is not None and row.s_revoke_reason != UNUSED_SUCCESSOR)
        if row.ss_id is not None:
            session_used = row.ss_used_at is not None
    return TokenFacts(row.expires_at, row.rotated_at, row.revoked_at, row.revoke_reason, bool(row.disabled),
                      successor_used, session_used, bool(row.signed_out),
                      row.own_revoke_reason == ENDED_BY_OWNER)


class _Abandon(Exception):
    """Roll the transaction back and answer ``outcome`` instead."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


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
    """``on_sessions_ended`` is called after a transaction that ended a session (an unused successor's)."""

    def __init__(self, engine: Engine, policy: SessionPolicy, clock: Callable[[], float],
                 serializer: URLSafeSerializer, *, on_sessions_ended: Callable[[list[int]], None] | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.serializer = serializer
        self.on_sessions_ended = on_sessions_ended

    def issue(self, user_id: int, client_ip: str, user_agent: str, expires_at: float | None = None,
              conn=None, *, session_id: int | None = None, methods: tuple[str, ...] = PASSWORD_ONLY,
              generation: int = 0) -> tuple[str, float]:
        """A new token; returns the signed cookie value and its expiry (epoch seconds).
        ``session_id`` is the session it started: ending that session ends the token too.
        ``generation``: the account's sign-out generation when the sign-in read the password (the
        chain keeps it: :mod:`authsvc.core.sign_out`); 0 for an account never signed out everywhere.
        ``methods``: the sign-in's (RFC 8176); every successor keeps them, and each session the
        chain restores carries them, as it keeps the time of the sign-in (now: a token is issued
        by a sign-in), a restored session's ``auth_time`` (:meth:`signed_in_at`)."""
        now = self.clock()
        expires = expires_at or now + self.policy.remember_lifetime_days * 86400
        stored = format_methods(methods)
        if conn is None:
            with self.engine.begin() as c:
                value, _ = self._insert(c, user_id, client_ip, user_agent, expires, session_id, stored, now, generation)
        else:
            value, _ = self._insert(conn, user_id, client_ip, user_agent, expires, session_id, stored, now, generation)
        return value, expires

    def _insert(self, conn, user_id: int, client_ip: str, user_agent: str, expires: float,
                session_id: int | None, methods: str, signed_in_at: float | None, generation: int) -> tuple[str, int]:
        selector, validator = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        new_id = conn.execute(remember_tokens.insert().returning(remember_tokens.c.id).values(
            selector=selector, validator_hash=_digest(validator), user_id=user_id, created_at=self.clock(),
            expires_at=expires, client_ip=client_ip[:64], user_agent=user_agent[:256], session_id=session_id,
            methods=methods, signed_in_at=signed_in_at, generation=generation,
        )).scalar_one()
        return self.serializer.dumps(f"{selector}.{validator}"), new_id

    def parse(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie or len(cookie) > 512:
            return None
        try:
            return split_cookie(self.serializer.loads(cookie))
        except (BadSignature, ValueError, UnicodeError):
            return None

    def _read(self, conn, parts: tuple[str, str]):
        row = conn.execute(_PRESENTED, {"selector": parts[0]}).first()
        if row is None or not hmac.compare_digest(row.validator_hash, _digest(parts[1])):
            return None
        return row

    def consume(self, cookie: str | None, client_ip: str, user_agent: str) -> tuple[Consumed, str | None]:
        """Use a remember cookie to restore a session. On ``"ok"`` and ``"lost"`` also returns the
        successor's cookie value (the caller starts the session and :meth:`attach`-es it)."""
        parts = self.parse(cookie)
        if parts is None:
            return Consumed("invalid"), None
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                row = self._read(conn, parts)
                if row is None:
                    return Consumed("invalid"), None
                verdict = presented_verdict(_facts(row), now, self.policy.remember_rotation_grace_seconds)
                if verdict not in ("ok", "lost"):
                    return Consumed(verdict, row.user_id), None
                # Only the rotation still as we read it is ours to replace: one racer wins.
                claim = [remember_tokens.c.id == row.id, remember_tokens.c.revoked_at.is_(None)]
                if verdict == "ok":
                    claim.append(remember_tokens.c.rotated_at.is_(None))
                    ended = None
                else:
                    claim += [remember_tokens.c.rotated_at == row.rotated_at,
                              remember_tokens.c.successor_id == row.successor_id]
                if conn.execute(remember_tokens.update().where(*claim).values(rotated_at=now)).rowcount != 1:
                    raise _Abandon("race")  # another request (any instance) got there between read and write
                if verdict == "lost":
                    ended = self._end_unused_successor(conn, row, now)
                new_cookie, new_id = self._insert(conn, row.user_id, client_ip, user_agent, row.expires_at, None,
                                                  row.methods, row.signed_in_at, row.generation)
                conn.execute(remember_tokens.update().where(remember_tokens.c.id == row.id)
                             .values(successor_id=new_id))
        except _Abandon as abandoned:
            return Consumed(abandoned.outcome, row.user_id), None
        if verdict == "lost":
            self._sessions_ended(ended)
            return Consumed("lost", row.user_id, row.expires_at, ended_session_id=ended,
                            discarded=row.s_revoked_at is None, methods=parse_methods(row.methods),
                            generation=row.generation), new_cookie
        return Consumed("ok", row.user_id, row.expires_at, methods=parse_methods(row.methods),
                        generation=row.generation), new_cookie

    def examine(self, cookie: str | None) -> Consumed:
        """Judge a remember cookie presented where it restores nothing (a signed-in page, login,
        logout). Never rotates; on ``"lost"`` ends the unused successor and its session (the
        cookie's own token stays as it is, and restores later like any lost response)."""
        parts = self.parse(cookie)
        if parts is None:
            return Consumed("invalid")
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                row = self._read(conn, parts)
                if row is None:
                    return Consumed("invalid")
                verdict = presented_verdict(_facts(row), now, self.policy.remember_rotation_grace_seconds)
                if verdict != "lost" or row.s_revoked_at is not None:  # already ended: nothing to do
                    return Consumed(verdict, row.user_id)
                ended = self._end_unused_successor(conn, row, now)
        except _Abandon as abandoned:
            return Consumed(abandoned.outcome, row.user_id)
        self._sessions_ended(ended)
        return Consumed("lost", row.user_id, row.expires_at, ended_session_id=ended, discarded=True)

    def _end_unused_successor(self, conn, row, now: float) -> int | None:
        """End the successor and its session, each only if still unused (else the transaction is
        abandoned as replay: it was used after our read). Returns the ended session's id."""
        if row.s_revoked_at is not None:  # ended as unused before, with its session
            return None
        # Still unused, or ended as unused by a request that got there first (no use either).
        if conn.execute(remember_tokens.update().where(
                remember_tokens.c.id == row.s_id, remember_tokens.c.rotated_at.is_(None),
                sa.or_(remember_tokens.c.revoked_at.is_(None), remember_tokens.c.revoke_reason == UNUSED_SUCCESSOR),
        ).values(revoked_at=sa.func.coalesce(remember_tokens.c.revoked_at, now),
                 revoke_reason=UNUSED_SUCCESSOR)).rowcount != 1:
            raise _Abandon("replay")
        if not end_if_unused(conn, row.s_session_id, now, SESSION_UNUSED):
            raise _Abandon("replay")
        return row.s_session_id

    def _sessions_ended(self, session_id: int | None) -> None:
        if session_id is not None and self.on_sessions_ended is not None:
            self.on_sessions_ended([session_id])  # after the commit (see VerifyCache.put)

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
            ).values(revoked_at=self.clock(), revoke_reason="session_ended")).rowcount

    def revoke_cookie(self, cookie: str | None, reason: str = "presented") -> None:
        """End the token of a cookie the browser presented, if its validator matches (a selector
        alone, from a leaked table, must not end someone's token or its replay evidence). A token
        already rotated stays as it is: it restores nothing any more, and its being rotated is the
        evidence that tells a replay (a thief who restored with a copy and then signed out with
        that copy, within the race grace, would otherwise erase it before the owner comes back)."""
        parts = self.parse(cookie)
        if parts is None:
            return
        with self.engine.begin() as conn:
            row = self._read(conn, parts)
            if row is not None:
                conn.execute(remember_tokens.update().where(
                    remember_tokens.c.id == row.id, remember_tokens.c.revoked_at.is_(None),
                    remember_tokens.c.rotated_at.is_(None),
                ).values(revoked_at=self.clock(), revoke_reason=reason))

    def revoke_all(self, user_id: int, reason: str = "all", *, except_session_id: int | None = None) -> int:
        """End every token of the user; returns how many. ``except_session_id``: keep the one token
        that would restore that session's browser (unrotated, attached to it), so the browser that
        made a change stays remembered while every other one loses its way back in."""
        cond = [remember_tokens.c.user_id == user_id, remember_tokens.c.revoked_at.is_(None)]
        if except_session_id is not None:
            # NULL-safe: a token attached to no session (yet) is not this browser's and ends too.
            cond.append(sa.not_(sa.and_(remember_tokens.c.session_id.is_not(None),
                                        remember_tokens.c.session_id == except_session_id,
                                        remember_tokens.c.rotated_at.is_(None))))
        with self.engine.begin() as conn:
            return conn.execute(remember_tokens.update().where(*cond).values(
                revoked_at=self.clock(), revoke_reason=reason)).rowcount

    def purge(self, before: float) -> int:
        """Delete tokens that expired or were revoked before ``before``. Rotated tokens stay until
        they expire: until then, presenting one again must still be recognised as replay."""
        with self.engine.begin() as conn:
            return conn.execute(remember_tokens.delete().where(sa.or_(
                remember_tokens.c.expires_at < before,
                sa.and_(remember_tokens.c.revoked_at.is_not(None), remember_tokens.c.revoked_at < before),
            ))).rowcount
