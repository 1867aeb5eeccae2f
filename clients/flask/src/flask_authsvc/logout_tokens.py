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
    should also have ``full() -> bool`` (optional), true while no sign-in may start. ``end`` gets the
    ``sub`` whenever it is known (also with a ``sid``): a record may bound each subject's share with
    it, as :class:`MemoryEndedSessions` does, so that one account cannot fill it."""

    def end(self, sid: str | None, sub: str | None, at: float) -> None: ...

    def is_ended(self, sid: str | None, sub: str, signed_in_at: float) -> bool: ...


# How long a sign-in in the app lasts: authsvc's absolute session lifetime by default (a day).
# Flask keeps its signed cookie for PERMANENT_SESSION_LIFETIME (31 days), and an authsvc session that
# simply expires sends no logout token: without an age of its own, a copy of the cookie would outlive
# both the session it came from and the record of its Logout. After it, the user goes through
# authsvc again (a round trip while authsvc's session lives).
MAX_SIGN_IN_SECONDS = 86_400

# At most this many ended sids are kept per subject; one more and they collapse into one entry,
# "every sign-in of this subject made before its latest". Any account can sign in and out as often
# as it likes (no password while its authsvc session lives), so without a per-subject bound one
# account's own Logouts could fill the record (and stop everybody's sign-in). Past it the subject's
# other sign-ins made before then end too (only that subject's: a phone signed in yesterday is
# signed out), so it is far above what a person signs out of one app in a day (20 was not: 21
# sign-outs at a kiosk signed the phone out; found by review, session 14), and small enough that a
# subject's share stays a few kilobytes.
PER_SUBJECT = 200


class MemoryEndedSessions:
    """This process's record of ended sign-ins: a ``sid`` is ended for good; a ``sub`` alone ends
    every sign-in of that subject made before the logout. Entries are kept ``keep_seconds``
    (default: a day, as long as a sign-in lasts, :data:`MAX_SIGN_IN_SECONDS`: a
    sign-in ended at ``t`` was made before ``t`` and is too old by ``t`` + a day, so no record is
    forgotten while the cookie it refuses could still sign anyone in).

    Each ended sid is kept with its subject, and a subject with more than :data:`PER_SUBJECT` of
    them has them collapsed into its subject-wide entry (at the latest of their times): at least as
    strict for that subject (a sign-in is made before it ends; one finishing after its back-channel
    logout arrived, a racing callback, passes as it would a logout token with only ``sub``), untouched
    for every other. So one account signing in and out over and over holds a couple of entries,
    however often it does it. Never bounded by forgetting (forgetting the oldest let one user flush
    another's Logout, and a copy of the other's cookie, taken before the Logout, signed in again):
    with ``max_entries`` distinct subjects with records younger than a day (a sid ended without a
    subject, which authsvc never sends, counts as one), :meth:`full` is true and the extension starts
    no sign-in (503) until they age out; that takes that many accounts, never one. A logout is always
    recorded."""

    def __init__(self, keep_seconds: float = MAX_SIGN_IN_SECONDS, max_entries: int = 100_000, clock=time.time,
                 per_subject: int = PER_SUBJECT):
        if not keep_seconds >= MAX_SIGN_IN_SECONDS:
            raise ValueError(f"keep_seconds must be at least {MAX_SIGN_IN_SECONDS} (how long a sign-in lasts): "
                             "a record forgotten sooner lets a copy of a signed-out cookie in again")
        # _sids and _subs each in the order their entries were (last) written, so the oldest are at
        # the front and forgetting stops at the first entry young enough to keep.
        self._sids: dict[str, tuple[float, str | None]] = {}     # sid -> (ended at, its subject)
        self._subs: dict[str, float] = {}                        # subject -> its sign-ins before this ended
        self._shares: dict[str, dict[str, None]] = {}            # subject -> its sids in _sids
        self._subjects = 0                                       # distinct keys of _shares and _subs
        self._loose = 0                                          # sids in _sids without a subject
        self._keep, self._max, self._clock = keep_seconds, max_entries, clock
        self._per_subject = per_subject
        self._lock = threading.Lock()

    def end(self, sid: str | None, sub: str | None, at: float) -> None:
        with self._lock:
            self._forget_old()
            if sid is not None:
                earlier = self._drop_sid(sid)
                self._sids[sid] = (max(at, earlier), sub)
                if sub is None:
                    self._loose += 1
                    return
                if sub not in self._shares and sub not in self._subs:
                    self._subjects += 1
                share = self._shares.setdefault(sub, {})
                share[sid] = None
                if len(share) > self._per_subject:
                    latest = max(self._drop_sid(mine) for mine in list(share))
                    self._end_subject(sub, latest)
            elif sub is not None:
                self._end_subject(sub, at)

    def is_ended(self, sid: str | None, sub: str, signed_in_at: float) -> bool:
        with self._lock:
            if sid is not None and sid in self._sids:
                return True
            ended_at = self._subs.get(sub)
            return ended_at is not None and signed_in_at <= ended_at

    def full(self) -> bool:
        """Are there ``max_entries`` subjects with records still needed? Then no sign-in may start."""
        with self._lock:
            self._forget_old()
            return self._subjects + self._loose >= self._max

    def _end_subject(self, sub: str, at: float) -> None:
        if sub not in self._subs and sub not in self._shares:
            self._subjects += 1
        self._subs[sub] = max(at, self._subs.pop(sub, 0.0))    # moved to the back, never moved back in time

    def _drop_sid(self, sid: str) -> float:
        """Take ``sid`` out of ``_sids`` and out of its subject's share; when it was ended (0 if not)."""
        entry = self._sids.pop(sid, None)
        if entry is None:
            return 0.0
        at, sub = entry
        if sub is None:
            self._loose -= 1
        else:
            share = self._shares[sub]
            del share[sid]
            if not share:
                del self._shares[sub]
                if sub not in self._subs:
                    self._subjects -= 1
        return at

    def _forget_old(self) -> None:
        horizon = self._clock() - self._keep
        while self._sids:
            oldest = next(iter(self._sids))
            if not self._sids[oldest][0] < horizon:
                break
            self._drop_sid(oldest)
        while self._subs:
            oldest = next(iter(self._subs))
            if not self._subs[oldest] < horizon:
                break
            del self._subs[oldest]
            if oldest not in self._shares:
                self._subjects -= 1
