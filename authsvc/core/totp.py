"""Authenticator-app codes (TOTP, RFC 6238): the account's secret, sealed at rest, and the one-time
acceptance of each code.

The secret is 160 bits from the CSPRNG (RFC 4226's recommended length), shown once at set-up as a
QR code, an ``otpauth://`` URI and base32 text, and stored sealed (:mod:`authsvc.core.sealing`,
the account id bound in). While it is being set up it lives sealed in the browser's signed session
(:meth:`TotpStore.seal_pending`), never in the database, until a first code confirms it.

A code is accepted once per account, across every instance sharing the database: the step it
matched must be later than ``last_step`` (:func:`authsvc.rules.second_step.step_verdict`), and the
write that records it is conditional (``UPDATE ... WHERE last_step < :step``): of two requests
presenting the same code, on one instance or two, exactly one sees its row change. Codes are
compared in constant time, against the server's own clock.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Callable

import pyotp
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from authsvc.core.models import totp_factors
from authsvc.core.sealing import Sealer
from authsvc.rules.second_step import (
    ACCEPTED,
    REUSED,
    TOTP_DIGITS,
    TOTP_PERIOD_SECONDS,
    candidate_steps,
    step_verdict,
)

SEALING_INFO = b"authsvc.totp-secret.v1"
SECRET_BYTES = 20  # 160 bits: 32 base32 characters, no padding

# :meth:`TotpStore.check`'s answers.
ACCEPTED_CODE = ACCEPTED
REUSED_CODE = REUSED
WRONG = "wrong"
NOT_SET_UP = "not_set_up"
UNREADABLE = "unreadable"   # no key opens the stored secret (the key it was sealed with is gone)


def new_secret() -> str:
    """A new secret in base32, as authenticator apps take it."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD_SECONDS)  # SHA-1: what every app supports


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from the QR code."""
    return _totp(secret).provisioning_uri(name=account_name, issuer_name=issuer)


def matching_steps(secret: str, code: str, now: float) -> list[int]:
    """The candidate steps at ``now`` whose code is ``code`` (each compared in constant time)."""
    totp = _totp(secret)
    return [step for step in candidate_steps(now) if hmac.compare_digest(totp.generate_otp(step), code)]


def first_step(secret: str, code: str, now: float) -> int | None:
    """The step a set-up's confirming code matched (the latest, so no code of that set-up is ever
    accepted again), or None."""
    steps = matching_steps(secret, code, now)
    return max(steps) if steps else None


def _context(user_id: int) -> bytes:
    return b"totp-factor:%d" % user_id


def _pending_context(user_id: int) -> bytes:
    return b"totp-pending:%d" % user_id


class TotpStore:
    """The ``totp_factors`` table. ``sealer`` seals with :data:`SEALING_INFO`'s key."""

    def __init__(self, engine: Engine, sealer: Sealer, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.sealer = sealer
        self.clock = clock

    # --- set-up: a pending secret in the browser's session, sealed --------------------------------

    def seal_pending(self, user_id: int, secret: str) -> str:
        """``secret`` sealed for the signed session while its set-up is confirmed (the session
        cookie may travel to sibling apps under a shared cookie domain: they see nothing usable)."""
        return base64.urlsafe_b64encode(self.sealer.seal(secret.encode("ascii"), _pending_context(user_id))).decode()

    def open_pending(self, user_id: int, sealed: object) -> str | None:
        if not isinstance(sealed, str) or len(sealed) > 256:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
        except (ValueError, UnicodeError):
            return None
        opened = self.sealer.open(raw, _pending_context(user_id))
        return opened.plaintext.decode("ascii") if opened is not None else None

    def enroll(self, user_id: int, secret: str, step: int) -> bool:
        """Store ``secret`` for the account, the confirming code's ``step`` as the last accepted
        one. False if the account already has one (another tab confirmed first)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(totp_factors.insert().values(
                    user_id=user_id, secret=self.sealer.seal(secret.encode("ascii"), _context(user_id)),
                    created_at=self.clock(), last_step=step))
        except IntegrityError:
            return False
        return True

    # --- use ------------------------------------------------------------------------------------------

    def check(self, user_id: int, code: str) -> str:
        """Accept ``code`` (six ASCII digits: :func:`authsvc.rules.second_step.totp_code`) once:
        :data:`ACCEPTED`, :data:`REUSED` (right code, but its step or a later one was accepted
        already, here or on another instance), :data:`WRONG`, :data:`NOT_SET_UP` or :data:`UNREADABLE`."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(totp_factors.c.secret, totp_factors.c.last_step)
                               .where(totp_factors.c.user_id == user_id)).first()
        if row is None:
            return NOT_SET_UP
        secret = self._open(user_id, row.secret)
        if secret is None:
            return UNREADABLE
        now = self.clock()
        verdict = WRONG
        for step in matching_steps(secret, code, now):
            judged = step_verdict(step, row.last_step, now)
            if judged == ACCEPTED and self._claim(user_id, step):
                return ACCEPTED
            if judged in (ACCEPTED, REUSED):  # an accepted step lost to a parallel request is reused too
                verdict = REUSED
        return verdict

    def _claim(self, user_id: int, step: int) -> bool:
        """Record ``step`` as accepted unless this or a later step already was: one winner."""
        with self.engine.begin() as conn:
            return conn.execute(totp_factors.update().where(
                totp_factors.c.user_id == user_id, totp_factors.c.last_step < step,
            ).values(last_step=step)).rowcount == 1

    def _open(self, user_id: int, sealed: bytes) -> str | None:
        opened = self.sealer.open(sealed, _context(user_id))
        if opened is None:
            return None
        if opened.stale:  # sealed under a key now in the fallbacks: seal it under the current one
            self._reseal(user_id, sealed, opened.plaintext)
        return opened.plaintext.decode("ascii")

    def _reseal(self, user_id: int, old: bytes, plaintext: bytes) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(totp_factors.update().where(
                totp_factors.c.user_id == user_id, totp_factors.c.secret == old,
            ).values(secret=self.sealer.seal(plaintext, _context(user_id)))).rowcount == 1

    # --- the account's factor (SecondFactors source) and administration --------------------------------

    def count(self, user_id: int) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(totp_factors)
                                    .where(totp_factors.c.user_id == user_id)).scalar_one())

    def remove_all(self, user_id: int) -> int:
        with self.engine.begin() as conn:
            return conn.execute(totp_factors.delete().where(totp_factors.c.user_id == user_id)).rowcount

    def reseal_all(self) -> tuple[int, int]:
        """Seal every secret a fallback key opens under the current key (``authsvc mfa reseal``):
        ``(resealed, unreadable)``. Run it before removing the old key from the fallbacks."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(totp_factors.c.user_id, totp_factors.c.secret)).all()
        resealed = unreadable = 0
        for row in rows:
            opened = self.sealer.open(row.secret, _context(row.user_id))
            if opened is None:
                unreadable += 1
            elif opened.stale and self._reseal(row.user_id, row.secret, opened.plaintext):
                resealed += 1
        return resealed, unreadable
