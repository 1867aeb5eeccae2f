"""User accounts: lookup by normalized username, creation, password and status changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from authsvc.core.models import remember_tokens, sessions, users
from authsvc.rules.usernames import normalize_username


class UsernameTaken(Exception):
    pass


@dataclass(frozen=True)
class Account:
    id: int
    username: str          # the canonical name: lower-case printable ASCII, the same as username_key
    username_key: str
    password_hash: str
    disabled: bool
    created_at: float
    password_changed_at: float
    sign_out_generation: int  # a session or remember-me token stamped with another no longer counts


# An account's name is its canonical form, the key (authsvc.rules.usernames): what the CLI shows and, through
# the session, what /auth/verify and the API hand apps. The ``username`` column, as typed, is never read.
_COLUMNS = (users.c.id, users.c.username_key.label("username"), users.c.username_key, users.c.password_hash, users.c.disabled,
            users.c.created_at, users.c.password_changed_at, users.c.sign_out_generation)
# Built once: login looks an account up every time.
_BY_KEY = sa.select(*_COLUMNS).where(users.c.username_key == sa.bindparam("key"))
_BY_ID = sa.select(*_COLUMNS).where(users.c.id == sa.bindparam("id"))


class AccountStore:
    def __init__(self, engine: Engine, clock: Callable[[], float],
                 on_sessions_ended: Callable[[list[int]], None] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.on_sessions_ended = on_sessions_ended  # called when disabling ends the account's sessions

    def _one(self, statement, params: dict) -> Account | None:
        with self.engine.connect() as conn:
            row = conn.execute(statement, params).first()
        return Account(*row) if row else None

    def by_username(self, username: str) -> Account | None:
        return self._one(_BY_KEY, {"key": normalize_username(username)})

    def by_id(self, user_id: int) -> Account | None:
        return self._one(_BY_ID, {"id": user_id})

    def create(self, username: str, password_hash: str) -> Account:
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                conn.execute(users.insert().values(
                    username=username.strip(), username_key=normalize_username(username),
                    password_hash=password_hash, disabled=False, created_at=now, password_changed_at=now))
        except IntegrityError:
            raise UsernameTaken(username) from None
        account = self.by_username(username)
        assert account is not None  # nosec B101 - just inserted in a committed transaction
        return account

    def set_password_hash(self, user_id: int, password_hash: str, *, changed: bool = True) -> None:
        values = {"password_hash": password_hash}
        if changed:
            values["password_changed_at"] = self.clock()
        with self.engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == user_id).values(**values))

    def next_sign_out_generation(self, user_id: int, *, keep_session: int | None = None,
                                 keep_remember: bool = False) -> int:
        """The first step of signing the account out everywhere (:mod:`authsvc.core.sign_out`): from
        this commit on, no session or remember-me token stamped with an earlier generation counts,
        including one a sign-in or restore that read the old generation writes afterwards. The
        session the caller keeps (and, with ``keep_remember``, its remember-me token) moves to the
        new generation in the same transaction. Returns the new generation (0: no such account), the
        one a session made after this sign-out carries."""
        with self.engine.begin() as conn:
            generation = conn.execute(users.update().where(users.c.id == user_id).values(
                sign_out_generation=users.c.sign_out_generation + 1).returning(users.c.sign_out_generation)).scalar()
            if generation is None:
                return 0
            if keep_session is not None:
                conn.execute(sessions.update().where(sessions.c.id == keep_session, sessions.c.user_id == user_id)
                             .values(generation=generation))
                if keep_remember:
                    conn.execute(remember_tokens.update().where(remember_tokens.c.session_id == keep_session,
                                                                remember_tokens.c.user_id == user_id)
                                 .values(generation=generation))
        return generation

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        """Disabling ends the account's sessions at once (their checks read ``disabled``); the
        observer hears of every session not yet revoked. ``authsvc user disable`` then revokes them
        too, which reports them again: the back-channel sender drops repeats (authsvc.core.oidc.logout)."""
        with self.engine.begin() as conn:
            conn.execute(users.update().where(users.c.id == user_id).values(disabled=disabled))
            ended = conn.execute(sa.select(sessions.c.id).where(
                sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))).scalars().all() if disabled else []
        if disabled and self.on_sessions_ended is not None:
            self.on_sessions_ended(list(ended))  # after the commit (see VerifyCache.put)

    def all(self) -> list[Account]:
        with self.engine.connect() as conn:
            return [Account(*r) for r in conn.execute(sa.select(*_COLUMNS).order_by(users.c.username_key))]
