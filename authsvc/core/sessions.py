"""Server-side session records: every login is a row the service can end, and that ends by itself.

The browser holds only an opaque 256-bit token (inside the signed Flask session cookie, as
Flask-Login's user id: the alternative-token pattern). The database holds its SHA-256 digest, so a
leaked table gives no usable session. Whether a record still authenticates is decided by the pure
function :func:`session_verdict`; :class:`SessionStore` does the I/O around it.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from authsvc.core.models import group_members, groups, remember_tokens, sessions, users
from authsvc.core.policy import SessionPolicy
from authsvc.rules.auth_methods import PASSWORD_ONLY, format_methods, parse_methods

if TYPE_CHECKING:
    from authsvc.core.verify_cache import VerifyCache

LIVE = "live"
# The revoke_reason of a session its owner ended on the account page: its remember-me token
# restores nothing after it (authsvc.core.remember.presented_verdict).
ENDED_BY_OWNER = "user_revoked"


@dataclass(frozen=True)
class SessionRecord:
    id: int
    user_id: int
    username: str
    user_disabled: bool
    created_at: float
    last_seen_at: float
    expires_at: float
    remembered: bool
    client_ip: str
    user_agent: str
    revoked_at: float | None
    used_at: float | None = None  # first request with the session after the one that started it
    methods: tuple[str, ...] = PASSWORD_ONLY  # RFC 8176 values the sign-in used (authsvc.rules.auth_methods)
    authenticated_at: float | None = None  # last factor proved in this session; None when restored
    groups: tuple[str, ...] = ()  # the user's groups (authsvc.core.groups), sorted, read with the record
    # Stamped with another sign-out generation than the account's: signed out everywhere since
    # its sign-in read the credential (authsvc.core.sign_out), whether or not a revocation found it.
    signed_out: bool = False


def session_verdict(rec: SessionRecord | None, now: float, policy: SessionPolicy) -> str:
    """``"live"`` when ``rec`` authenticates at ``now``, else why not:
    ``"unknown"``, ``"revoked"``, ``"disabled"``, ``"expired"`` (absolute lifetime) or ``"idle"``."""
    if rec is None:
        return "unknown"
    if rec.revoked_at is not None or rec.signed_out:
        return "revoked"
    if rec.user_disabled:
        return "disabled"
    if now >= rec.expires_at:
        return "expired"
    if now - rec.last_seen_at >= policy.idle_timeout_seconds:
        return "idle"
    return LIVE


def needs_touch(rec: SessionRecord, now: float, policy: SessionPolicy) -> bool:
    """last_seen is written at most every ``touch_interval_seconds``: verify stays read-only."""
    return now - rec.last_seen_at >= policy.touch_interval_seconds


def first_use(rec: SessionRecord) -> bool:
    """Whether this request is the first to use the session (one write per session records it)."""
    return rec.used_at is None


def end_if_unused(conn, session_id: int, now: float, reason: str) -> bool:
    """End ``session_id`` inside the caller's transaction, but only if no request has used it yet;
    True if so. Its first use (:meth:`SessionStore.authenticate`) is a write that waits for, and
    then loses to, this one: a session is never both ended as unused and used. The caller reports
    the ended session (``on_sessions_ended``) after its commit."""
    return conn.execute(sessions.update().where(sessions.c.id == session_id, sessions.c.used_at.is_(None)).values(
        revoked_at=sa.func.coalesce(sessions.c.revoked_at, now),
        revoke_reason=sa.func.coalesce(sessions.c.revoke_reason, reason))).rowcount == 1


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


# The user's groups, comma-separated, in the same query (group_concat / string_agg by dialect):
# verify's one indexed lookup stays one. The separator is written into the SQL (a plain ","
# becomes a parameter rendered anew on every execution, and :class:`DigestLookup` compiles once).
_GROUPS = sa.select(sa.func.aggregate_strings(groups.c.name, sa.literal_column("','"))).select_from(
    group_members.join(groups, groups.c.id == group_members.c.group_id)
).where(group_members.c.user_id == sessions.c.user_id).scalar_subquery()
# The user's canonical name (authsvc.rules.usernames), never the column as typed: verify sends it in a header.
_SELECT = sa.select(
    sessions.c.id, sessions.c.user_id, users.c.username_key.label("username"), users.c.disabled, sessions.c.created_at,
    sessions.c.last_seen_at, sessions.c.expires_at, sessions.c.remembered, sessions.c.client_ip,
    sessions.c.user_agent, sessions.c.revoked_at, sessions.c.used_at, sessions.c.methods, sessions.c.authenticated_at,
    _GROUPS.label("groups"), (sessions.c.generation != users.c.sign_out_generation).label("signed_out"),
).select_from(sessions.join(users, users.c.id == sessions.c.user_id))
_BY_DIGEST = _SELECT.where(sessions.c.token_hash == sa.bindparam("digest"))


def _record(row) -> SessionRecord:
    """A row of :data:`_SELECT` (a SQLAlchemy row or the driver's tuple) as a record; the stored
    methods and the groups parsed once here, so the verify cache holds them ready for
    ``X-Auth-Methods``, ``X-Auth-Groups`` and the access rules. The booleans are made ``bool`` here
    because SQLite's driver returns them as 0 and 1."""
    (session_id, user_id, username, disabled, created_at, last_seen_at, expires_at, remembered, client_ip,
     user_agent, revoked_at, used_at, methods, authenticated_at, group_names, signed_out) = row
    return SessionRecord(session_id, user_id, username, bool(disabled), created_at, last_seen_at, expires_at,
                         bool(remembered), client_ip, user_agent, revoked_at, used_at,
                         methods=parse_methods(methods), authenticated_at=authenticated_at,
                         groups=tuple(sorted(group_names.split(","))) if group_names else (),
                         signed_out=bool(signed_out))


class DigestLookup:
    """:data:`_BY_DIGEST` compiled once for ``engine``'s dialect and run on a pooled driver
    connection: the read behind every verify cache miss. Run through SQLAlchemy's ``execute``, the
    same read costs about twice the CPU (a cache key built for the statement on every execution, the
    result machinery; measured in docs/performance.md, "The cache-miss path"), the difference
    between the two cache-miss floors of issue 16. What SQLAlchemy's execute would add here is kept:
    the pool (its pre-ping on PostgreSQL, the connection reset on return), and a driver error
    becomes SQLAlchemy's ``DBAPIError`` (the 503 path), its connection discarded rather than pooled."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        compiled = _BY_DIGEST.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional  # SQLite's "?" or psycopg's "%(digest)s"
        self.driver_error = engine.dialect.loaded_dbapi.Error

    def __call__(self, digest: bytes):
        try:
            return self._fetch((digest,) if self.positional else {"digest": digest})
        except self.driver_error as exc:  # a connection refused, a lost server, a locked file ...
            raise sa.exc.DBAPIError.instance(self.sql, None, exc, self.driver_error, hide_parameters=True) from exc

    def _fetch(self, params):
        conn = self.engine.raw_connection()
        try:
            with contextlib.closing(conn.cursor()) as cursor:
                cursor.execute(self.sql, params)
                return cursor.fetchone()
        except self.driver_error:
            conn.invalidate()  # not back into the pool: it may be the broken one
            raise
        finally:
            conn.close()


# Built once (login runs them every time): SQLAlchemy then only looks up its compiled form.
_INSERT = sessions.insert().returning(sessions.c.id)
_LIVE_IDS_NEWEST_FIRST = sa.select(sessions.c.id).where(
    sessions.c.user_id == sa.bindparam("user_id"), sessions.c.revoked_at.is_(None),
    sessions.c.expires_at > sa.bindparam("now"),
).order_by(sessions.c.created_at.desc(), sessions.c.id.desc())
_REVOKE_IDS = sessions.update().where(sessions.c.id.in_(sa.bindparam("ids", expanding=True))).values(
    revoked_at=sa.bindparam("now"), revoke_reason=sa.bindparam("reason"))


class SessionStore:
    """``cache`` serves :meth:`authenticate` when asked. ``on_sessions_ended(session_ids)`` is called
    after every commit that ended sessions, with their ids (the app hands in an observer that
    invalidates the verify cache, so this process stops answering for them at once, other
    processes' caches letting go within their lifetime, and queues the OpenID back-channel logout
    of those sessions: authsvc.core.oidc.logout)."""

    def __init__(self, engine: Engine, policy: SessionPolicy, clock: Callable[[], float], *,
                 cache: VerifyCache | None = None, on_sessions_ended: Callable[[list[int]], None] | None = None) -> None:
        self.engine = engine
        self.policy = policy
        self.clock = clock
        self.cache = cache
        self.on_sessions_ended = on_sessions_ended
        self._by_digest = DigestLookup(engine)

    def _ended(self, session_ids: list[int]) -> None:
        if session_ids and self.on_sessions_ended is not None:
            self.on_sessions_ended(list(session_ids))

    def create(self, user_id: int, client_ip: str, user_agent: str, remembered: bool,
               not_after: float | None = None, *, generation: int = 0, methods: tuple[str, ...] = PASSWORD_ONLY,
               authenticated: bool = True) -> tuple[str, int]:
        """A new record and its token (shown once, to be put in the cookie). ``not_after`` caps the
        absolute lifetime: a session restored from a remember cookie ends when that cookie does.
        ``generation``: the account's sign-out generation when the sign-in read the credential
        (:class:`authsvc.core.accounts.Account`), or the remember-me token's for a restore; 0 for an
        account never signed out everywhere.
        ``methods``: what the sign-in used (RFC 8176); ``authenticated``: the user proved them just
        now (a sign-in), not a remember-me cookie (a restore), which never counts for step-up."""
        now = self.clock()
        token = new_token()
        expires = now + self.policy.absolute_lifetime_seconds
        if not_after is not None:
            expires = min(expires, not_after)
        with self.engine.begin() as conn:
            row = conn.execute(_INSERT, {
                "token_hash": token_digest(token), "user_id": user_id, "created_at": now, "last_seen_at": now,
                "expires_at": expires, "remembered": remembered,
                "client_ip": client_ip[:64], "user_agent": user_agent[:256],
                "methods": format_methods(methods), "authenticated_at": now if authenticated else None,
                "generation": generation,
            }).one()
            capped = self._enforce_cap(conn, user_id, now)
        self._ended(capped)  # after the commit (see VerifyCache.put)
        return token, row.id

    def _enforce_cap(self, conn, user_id: int, now: float) -> list[int]:
        """The ids of the oldest live sessions over the cap, ended in the caller's transaction."""
        cap = self.policy.max_sessions_per_user
        if not cap:
            return []
        live = conn.execute(_LIVE_IDS_NEWEST_FIRST, {"user_id": user_id, "now": now}).scalars().all()
        if len(live) > cap:
            conn.execute(_REVOKE_IDS, {"ids": live[cap:], "now": now, "reason": "session_cap"})
            return list(live[cap:])
        return []

    def load(self, token: str) -> SessionRecord | None:
        return self._load(token_digest(token))

    def _load(self, digest: bytes) -> SessionRecord | None:
        row = self._by_digest(digest)
        return _record(row) if row else None

    def authenticate(self, token: str, *, cached: bool = False) -> tuple[SessionRecord | None, str]:
        """Load, judge and (rarely) touch: the whole per-request check.

        With ``cached`` (/auth/verify) a record from :attr:`cache` may answer, but only "live, and
        nothing to write": every other outcome is decided on a fresh read."""
        digest = token_digest(token)
        cache = self.cache if cached else None
        if cache is not None:
            rec = cache.get(digest)
            if rec is not None:
                now = self.clock()
                if session_verdict(rec, now, self.policy) == LIVE and not needs_touch(rec, now, self.policy):
                    return rec, LIVE
            generation = cache.generation()  # before the read
        rec = self._load(digest)
        now = self.clock()
        verdict = session_verdict(rec, now, self.policy)
        if verdict == LIVE:
            first = first_use(rec)
            touched = first or needs_touch(rec, now, self.policy)
            if first:
                # Conditional: a session ended as unused meanwhile (authsvc.core.remember) stays unused.
                with self.engine.begin() as conn:
                    won = conn.execute(sessions.update().where(
                        sessions.c.id == rec.id, sessions.c.used_at.is_(None), sessions.c.revoked_at.is_(None),
                    ).values(last_seen_at=now, used_at=now)).rowcount
                if not won:  # ended, or first used by another request, since our read: judge afresh
                    rec = self._load(digest)
                    verdict = session_verdict(rec, now, self.policy)
                    if verdict != LIVE:
                        return rec, verdict
                    touched = False
            elif touched:
                with self.engine.begin() as conn:
                    conn.execute(sessions.update().where(sessions.c.id == rec.id).values(last_seen_at=now))
            if cache is not None:
                cache.put(digest, replace(rec, last_seen_at=now, used_at=rec.used_at or now) if touched else rec,
                          generation)
        return rec, verdict

    def reauthenticated(self, session_id: int, *, proved: bool = True) -> str | None:
        """The session gets a new token, returned, after the user proved a factor again in it
        (step-up: ``proved``, and sensitive changes need no password for another
        ``mfa.step_up_seconds``) or changed the password or a factor in it (``proved`` False: the
        step-up's window stays as it was). ASVS V7.2.4 and V7.4.3: a copy of the old cookie, which
        the change was not made with, gets nothing of it, and stops working. The same session
        otherwise: its id, expiry, methods, remember-me token and OpenID ``sid`` (``sid_hash`` keeps
        the first token's digest). None if it ended."""
        token = new_token()
        values = {"sid_hash": sa.func.coalesce(sessions.c.sid_hash, sessions.c.token_hash),
                  "token_hash": token_digest(token)}
        if proved:
            values["authenticated_at"] = self.clock()
        with self.engine.begin() as conn:
            done = conn.execute(sessions.update().where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
                                .values(**values)).rowcount
        if self.cache is not None:
            self.cache.invalidate()  # the old token's entry; other processes' expire within the bound
        return token if done else None

    def revoke(self, session_id: int, reason: str, user_id: int | None = None, *, presented: bool = False) -> bool:
        """End one session (of ``user_id``, when given). True if it was live. ``presented``: the
        request ending it carried its cookie, which counts as a use (see :func:`first_use`)."""
        cond = [sessions.c.id == session_id, sessions.c.revoked_at.is_(None)]
        if user_id is not None:
            cond.append(sessions.c.user_id == user_id)
        now = self.clock()
        values = {"revoked_at": now, "revoke_reason": reason}
        if presented:
            values["used_at"] = sa.func.coalesce(sessions.c.used_at, now)
        with self.engine.begin() as conn:
            done = conn.execute(sessions.update().where(*cond).values(**values)).rowcount
        self._ended([session_id] if done else [])
        return bool(done)

    def revoke_all(self, user_id: int, reason: str, except_id: int | None = None) -> int:
        cond = [sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)]
        if except_id is not None:
            cond.append(sessions.c.id != except_id)
        with self.engine.begin() as conn:
            # RETURNING (PostgreSQL, SQLite >= 3.35): the ids ended by this very write, no race.
            ended = conn.execute(sessions.update().where(*cond).values(
                revoked_at=self.clock(), revoke_reason=reason).returning(sessions.c.id)).scalars().all()
        self._ended(list(ended))
        return len(ended)

    def list_live(self, user_id: int) -> list[SessionRecord]:
        now = self.clock()
        with self.engine.connect() as conn:
            rows = conn.execute(_SELECT.where(
                sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None),
            ).order_by(sessions.c.last_seen_at.desc())).all()
        recs = [_record(r) for r in rows]
        return [r for r in recs if session_verdict(r, now, self.policy) == LIVE]

    def purge(self) -> int:
        """Delete records that ended more than ``purge_after_seconds`` ago, except one an unused,
        unexpired remember token started: whether that session was ever used is what tells a lost
        response from theft when the token's predecessor comes back (authsvc.core.remember)."""
        now = self.clock()
        cutoff = now - self.policy.purge_after_seconds
        evidence = sa.exists().where(
            remember_tokens.c.session_id == sessions.c.id, remember_tokens.c.rotated_at.is_(None),
            remember_tokens.c.revoked_at.is_(None), remember_tokens.c.expires_at > now)
        with self.engine.begin() as conn:
            return conn.execute(sessions.delete().where(sa.or_(
                sessions.c.expires_at < cutoff,
                sa.and_(sessions.c.revoked_at.is_not(None), sessions.c.revoked_at < cutoff),
                sessions.c.last_seen_at < cutoff - self.policy.idle_timeout_seconds,
            ), ~evidence)).rowcount
