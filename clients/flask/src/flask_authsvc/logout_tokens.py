"""OpenID Connect Back-Channel Logout 1.0: is a (signature-checked) logout token's claim set one
this client may act on, and which sign-ins it ends. Pure functions of plain values."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Final, Protocol

EVENT: Final = "http://schemas.openid.net/event/backchannel-logout"
MAX_TOKEN_LENGTH: Final = 16_384
MAX_AGE: Final = 600          # a logout token older than this (by iat) is refused
LEEWAY: Final = 120           # clock skew allowed either way


def logout_token_problem(claims: Mapping[str, object], *, issuer: str, client_id: str, now: float,
                         leeway: float = LEEWAY, max_age: float = MAX_AGE) -> str | None:
    """None when the claims are a logout token for this client (section 2.4 of the specification:
    iss, aud, iat, the event, sid and/or sub, and no nonce), else a reason code."""
    if claims.get("iss") != issuer:
        return "wrong_issuer"
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if client_id not in audiences:
        return "wrong_audience"
    issued = claims.get("iat")
    if not _number(issued) or not now - max_age - leeway <= issued <= now + leeway:
        return "bad_iat"
    expires = claims.get("exp")
    if expires is not None and (not _number(expires) or expires < now - leeway):
        return "expired"
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(EVENT), dict):
        return "not_a_logout_token"
    if "nonce" in claims:   # an ID token must never pass as a logout token
        return "nonce_present"
    sid, sub = claims.get("sid"), claims.get("sub")
    if sid is None and sub is None:
        return "no_sid_or_sub"
    for value in (sid, sub):
        if value is not None and (not isinstance(value, str) or not value or len(value) > 255):
            return "bad_sid_or_sub"
    return None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class EndedSessions(Protocol):
    """Where ended sign-ins are kept until they could no longer be presented. Pass a shared one
    (``Authsvc(app, login, ended_sessions=...)``) when the app runs several processes. It must never
    forget an entry younger than :data:`MAX_SIGN_IN_SECONDS` to make room; one that can fill up
    should also have ``full() -> bool`` (optional), true while no sign-in may start."""

    def end(self, sid: str | None, sub: str | None, at: float) -> None: ...

    def is_ended(self, sid: str | None, sub: str, signed_in_at: float) -> bool: ...


# How long a sign-in in the app lasts: authsvc's absolute session lifetime by default (a day).
# Flask keeps its signed cookie for PERMANENT_SESSION_LIFETIME (31 days), and an authsvc session that
# simply expires sends no logout token: without an age of its own, a copy of the cookie would outlive
# both the session it came from and the record of its Logout. After it, the user goes through
# authsvc again (a round trip while authsvc's session lives).
MAX_SIGN_IN_SECONDS = 86_400


class MemoryEndedSessions:
    """This process's record of ended sign-ins: a ``sid`` is ended for good; a ``sub`` alone ends
    every sign-in of that subject made before the logout. Entries are kept ``keep_seconds``
    (default: a day, as long as a sign-in lasts, :data:`MAX_SIGN_IN_SECONDS`: a
    sign-in ended at ``t`` was made before ``t`` and is too old by ``t`` + a day, so no record is
    forgotten while the cookie it refuses could still sign anyone in).

    Bounded by refusing sign-ins, never by forgetting: with ``max_entries`` records younger than
    that, :meth:`full` is true and the extension starts no sign-in (503) until they age out. (Forgetting
    the oldest let one user flush another's Logout by signing in and out over and over, and a copy
    of the other's cookie, taken before the Logout, signed in again.) A logout is always recorded."""

    def __init__(self, keep_seconds: float = MAX_SIGN_IN_SECONDS, max_entries: int = 100_000, clock=time.time):
        if not keep_seconds >= MAX_SIGN_IN_SECONDS:
            raise ValueError(f"keep_seconds must be at least {MAX_SIGN_IN_SECONDS} (how long a sign-in lasts): "
                             "a record forgotten sooner lets a copy of a signed-out cookie in again")
        # Each dict in the order its entries were (last) written, so the oldest are at the front
        # and forgetting stops at the first entry young enough to keep.
        self._sids: dict[str, float] = {}
        self._subs: dict[str, float] = {}
        self._keep, self._max, self._clock = keep_seconds, max_entries, clock
        self._lock = threading.Lock()

    def end(self, sid: str | None, sub: str | None, at: float) -> None:
        with self._lock:
            self._forget_old()
            if sid is not None:
                self._sids.pop(sid, None)
                self._sids[sid] = at
            elif sub is not None:
                at = max(at, self._subs.pop(sub, 0.0))
                self._subs[sub] = at

    def is_ended(self, sid: str | None, sub: str, signed_in_at: float) -> bool:
        with self._lock:
            if sid is not None and sid in self._sids:
                return True
            ended_at = self._subs.get(sub)
            return ended_at is not None and signed_in_at <= ended_at

    def full(self) -> bool:
        """Are there ``max_entries`` records still needed? Then no sign-in may start."""
        with self._lock:
            self._forget_old()
            return len(self._sids) + len(self._subs) >= self._max

    def _forget_old(self) -> None:
        horizon = self._clock() - self._keep
        for table in (self._sids, self._subs):
            while table:
                oldest = next(iter(table))
                if not table[oldest] < horizon:
                    break
                del table[oldest]
