"""Recovery codes: ten single-use codes for when the authenticator app is lost.

Each is 120 bits from the CSPRNG in Crockford's base32 (:mod:`authsvc.rules.second_step` says the
format), shown once when generated and stored as its SHA-256 digest: at 120 bits a plain hash is
enough (ASVS 5.0 V6.5.2 asks a salted password hash only below 112), and checking one costs a hash
and an indexed query, never argon2. Using a code is one conditional write (``used_at IS NULL``),
so a code is accepted once even when two requests present it at the same moment on two instances.
Generating new codes deletes the old ones in the same transaction, one generation per account at a
time; an account without a second factor gets none (they stand in for one).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from authsvc.core.models import recovery_codes, sessions, users
from authsvc.rules.second_step import RECOVERY_ALPHABET, RECOVERY_LENGTH, format_recovery_code

COUNT = 10


def new_code() -> str:
    """A canonical code (no separators): :data:`RECOVERY_LENGTH` characters from the CSPRNG."""
    return "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))


def code_digest(canonical: str) -> bytes:
    return hashlib.sha256(b"authsvc-recovery-code\0" + canonical.encode("ascii")).digest()


class RecoveryCodes:
    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def generate(self, user_id: int, *, session_id: int | None = None) -> list[str] | None:
        """Ten new codes for the account, as shown to its owner (grouped); the old ones are void.
        None, and nothing changed, when ``session_id`` (the session asking) is no longer the
        account's: revoked, or signed out everywhere since (its sign-out generation passed). A
        factor is stored only after every other session was signed out (the factor-adding paths'
        ``before_enroll``/``before_add``), so a session that saw the new factor and is still the
        account's is the one that added it, or one that signed in since: a review of session 13's
        fixes found a session about to be signed out getting codes for the factor just added.
        ``session_id`` None: not on behalf of a session (an administrator's tool, a test)."""
        codes = [new_code() for _ in range(COUNT)]
        now = self.clock()
        with self.engine.begin() as conn:
            # One generation per account at a time (PostgreSQL: the account's row locked; SQLite
            # writes one at a time anyway). Under READ COMMITTED a second generation's DELETE did
            # not see the first's new rows, and both sets stayed live (found by review, session 13).
            conn.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())
            if session_id is not None and conn.execute(sa.select(sessions.c.id).select_from(
                    sessions.join(users, users.c.id == sessions.c.user_id)).where(
                    sessions.c.id == session_id, sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None),
                    sessions.c.generation == users.c.sign_out_generation)).first() is None:
                return None
            conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
            conn.execute(recovery_codes.insert(), [
                {"user_id": user_id, "code_hash": code_digest(code), "created_at": now} for code in codes])
        return [format_recovery_code(code) for code in codes]

    def use(self, user_id: int, canonical: str) -> bool:
        """Spend the account's code ``canonical`` (:func:`authsvc.rules.second_step.recovery_code`):
        True once, False for a code that is not one of its unused ones."""
        with self.engine.begin() as conn:
            return conn.execute(recovery_codes.update().where(
                recovery_codes.c.user_id == user_id, recovery_codes.c.code_hash == code_digest(canonical),
                recovery_codes.c.used_at.is_(None),
            ).values(used_at=self.clock())).rowcount == 1

    def remaining(self, user_id: int) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(recovery_codes).where(
                recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))).scalar_one())

    def void(self, user_id: int) -> int:
        """Delete every code of the account (its last factor went, or an administrator reset them)."""
        with self.engine.begin() as conn:
            return conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id)).rowcount
