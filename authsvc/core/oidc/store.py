"""The OpenID Provider's records: clients, authorization codes, tokens, consents, subjects.

Every credential (client secret, code, access token, refresh token) is 256 random bits shown once
and stored as its SHA-256 digest, like session tokens. Why not argon2 for client secrets: argon2
slows the guessing of secrets people chose; a 256-bit random secret cannot be guessed at any speed,
and argon2 on every token request would hand anyone who can reach the token endpoint a way to burn
the server's CPU. The digest is compared in constant time.

Codes and refresh tokens are spent by one conditional write (``UPDATE ... WHERE used_at IS NULL``),
so two instances racing with the same value cannot both win; the loser is treated as a replay.
Tokens stay usable only while the sign-in session that authorised them is not ended (the queries
join ``sessions``): logout, a password change, disabling the account, ``authsvc sessions revoke``
and the session cap end them at once, on every instance.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from sqlalchemy.engine import Engine

from authsvc.core.models import (
    oidc_clients,
    oidc_codes,
    oidc_consents,
    oidc_subjects,
    oidc_tokens,
    sessions,
    users,
)
from authsvc.rules.auth_methods import parse_methods
from authsvc.rules.oidc_redirects import redirect_uri_verdict
from authsvc.rules.oidc_requests import DEFAULT_CLIENT_SCOPES, SUPPORTED_SCOPES, pkce_matches

GRANT_TYPES = ("authorization_code", "refresh_token")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    """About 144 random bits, URL-safe, never starting with "-": a client id is typed on command lines
    (`authsvc oidc client remove ID`), where a leading dash reads as an option."""
    while True:
        client_id = secrets.token_urlsafe(18)
        if not client_id.startswith("-"):
            return client_id


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line for line in text.split("\n") if line)


# --- clients --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Client(ClientMixin):
    """A registered relying party, as Authlib's grants ask about it."""

    id: int
    client_id: str
    secret_hash: bytes | None
    name: str
    redirect_uris: tuple[str, ...]
    public: bool
    trusted: bool
    require_mfa: bool
    post_logout_redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str | None
    created_at: float
    scopes: tuple[str, ...]  # what it may ask for (ASVS V10.4.11), in SUPPORTED_SCOPES order

    @property
    def allows_refresh(self) -> bool:
        return "offline_access" in self.scopes

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # OpenID Connect: redirect_uri is required, never assumed

    def get_allowed_scope(self, scope) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri) -> bool:
        return redirect_uri_verdict(redirect_uri, self.redirect_uris, public=self.public) == "ok"

    def check_client_secret(self, client_secret) -> bool:
        if self.secret_hash is None or not isinstance(client_secret, str) or len(client_secret) > 256:
            return False
        return hmac.compare_digest(digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method, endpoint) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type) -> bool:
        # refresh_token only for a client given offline_access: no other gets a refresh token to use
        return grant_type in GRANT_TYPES and (grant_type != "refresh_token" or self.allows_refresh)


def _client(row) -> Client:
    return Client(row.id, row.client_id, row.secret_hash, row.name, _lines(row.redirect_uris), row.public,
                  row.trusted, row.require_mfa, _lines(row.post_logout_redirect_uris), row.backchannel_logout_uri,
                  row.created_at, _scopes(row.scopes))


def _scopes(text: str) -> tuple[str, ...]:
    """The stored list in its one form; anything not offered (a hand-edited row) is not kept."""
    named = set(text.split())
    return tuple(s for s in SUPPORTED_SCOPES if s in named)


@dataclass(frozen=True)
class NewClient:
    client: Client
    client_secret: str | None  # shown once; None for a public client


@dataclass(frozen=True)
class UpdatedClient:
    """What :meth:`ClientStore.update` did. When scopes were taken off the client's list
    (``scopes_removed``), everything issued under the wider list was ended with them; when the
    client was made stricter (trusted taken away, a second factor required), its tokens and unused
    codes were."""

    client: Client
    client_secret: str | None            # the new secret, shown once, when it was rotated
    scopes_removed: tuple[str, ...] = ()
    revoked: int = 0                     # access/refresh pairs still live, now revoked
    codes_deleted: int = 0               # authorization codes not yet exchanged
    consents_revoked: int = 0            # users' grants: they are asked again


SCOPES_NARROWED = "client_scopes_narrowed"  # oidc_tokens.revoke_reason
FAMILY_REVOKED = "family_revoked"  # oidc_tokens.revoke_reason: saved into a family revoked before
CLIENT_STRICTER = "client_made_stricter"     # the same, for trusted taken away or require_mfa set


class Keep:
    """The type of :data:`KEEP`: "leave this field as it is", where None would mean "clear it"."""


KEEP = Keep()


class ClientStore:
    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def add(self, name: str, redirect_uris: tuple[str, ...], *, public: bool, trusted: bool = False,
            require_mfa: bool = False, post_logout_redirect_uris: tuple[str, ...] = (),
            backchannel_logout_uri: str | None = None,
            scopes: tuple[str, ...] = DEFAULT_CLIENT_SCOPES) -> NewClient:
        """Register a client. ``scopes`` (checked by the caller: ``openid`` and offered ones only) is
        all it may ask for."""
        if "openid" not in scopes or any(s not in SUPPORTED_SCOPES for s in scopes):
            raise ValueError(f"scopes must include openid and name only {' '.join(SUPPORTED_SCOPES)}")
        client_id = new_client_id()
        secret = None if public else new_secret()
        with self.engine.begin() as conn:
            conn.execute(oidc_clients.insert().values(
                client_id=client_id, secret_hash=None if secret is None else digest(secret), name=name,
                redirect_uris="\n".join(redirect_uris), public=public, trusted=trusted, require_mfa=require_mfa,
                post_logout_redirect_uris="\n".join(post_logout_redirect_uris),
                backchannel_logout_uri=backchannel_logout_uri, created_at=self.clock(),
                scopes=" ".join(s for s in SUPPORTED_SCOPES if s in scopes)))
        client = self.get(client_id)
        if client is None:  # pragma: no cover - just inserted in a committed transaction
            raise RuntimeError("the new client was not found after its insert")
        return NewClient(client, secret)

    def get(self, client_id: object) -> Client | None:
        """The client, or None (for a value no client id can be, without asking the database:
        PostgreSQL refuses a NUL in a text value, and its DataError read as the database being
        down, a 503 and a ``dependency_failed`` alert on demand; found by review, session 13)."""
        if not isinstance(client_id, str) or not client_id or len(client_id) > 64 or "\x00" in client_id:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(oidc_clients.select().where(oidc_clients.c.client_id == client_id)).first()
        return _client(row) if row else None

    def all(self) -> list[Client]:
        with self.engine.connect() as conn:
            rows = conn.execute(oidc_clients.select().order_by(oidc_clients.c.id)).all()
        return [_client(r) for r in rows]

    def update(self, client_id: str, *, name: str | None = None, redirect_uris: tuple[str, ...] | None = None,
               post_logout_redirect_uris: tuple[str, ...] | None = None, scopes: tuple[str, ...] | None = None,
               trusted: bool | None = None, require_mfa: bool | None = None,
               backchannel_logout_uri: str | None | Keep = KEEP,
               rotate_secret: bool = False) -> UpdatedClient | None:
        """Change what is given (each list replaces the old one; the values are checked by the
        caller, as for :meth:`add`; ``backchannel_logout_uri=None`` clears it); None for an unknown
        client. ``rotate_secret``: a new secret, the old digest replaced at once (a confidential
        client only).

        Scopes taken off the list end what was issued under the wider list, in the same transaction:
        every live token of the client (access and refresh: a refresh token would otherwise keep a
        user's sign-in to the client going, and a live access token keeps the removed scope until it
        expires), its codes not yet exchanged (a code carries its scope into the tokens) and the
        users' consents (a scope put back later is asked for again). Its users sign in again.

        A client made stricter the other ways (no longer trusted, so its users must consent; or a
        second factor now required) ends its live tokens and unused codes the same way: they were
        issued without the consent or the factor the client now asks for. New redirect URIs delete
        the unused codes sent to a URI no longer registered (the token endpoint compares the URI
        with the code's, not with the list)."""
        if scopes is not None and ("openid" not in scopes or any(s not in SUPPORTED_SCOPES for s in scopes)):
            raise ValueError(f"scopes must include openid and name only {' '.join(SUPPORTED_SCOPES)}")
        with self.engine.begin() as conn:
            row = conn.execute(oidc_clients.select().where(oidc_clients.c.client_id == client_id)
                               .with_for_update()).first()
            if row is None:
                return None
            before = _client(row)
            if rotate_secret and before.public:
                raise ValueError("a public client has no secret to rotate")
            if trusted and before.public:
                raise ValueError("a public client cannot be trusted: its users always consent")
            values: dict[str, object] = {}
            if name is not None:
                values["name"] = name
            if trusted is not None:
                values["trusted"] = trusted
            if require_mfa is not None:
                values["require_mfa"] = require_mfa
            if not isinstance(backchannel_logout_uri, Keep):
                values["backchannel_logout_uri"] = backchannel_logout_uri
            if redirect_uris is not None:
                values["redirect_uris"] = "\n".join(redirect_uris)
            if post_logout_redirect_uris is not None:
                values["post_logout_redirect_uris"] = "\n".join(post_logout_redirect_uris)
            removed: tuple[str, ...] = ()
            if scopes is not None:
                values["scopes"] = " ".join(s for s in SUPPORTED_SCOPES if s in scopes)
                removed = tuple(s for s in before.scopes if s not in scopes)
            secret = new_secret() if rotate_secret else None
            if secret is not None:
                values["secret_hash"] = digest(secret)
            if values:
                conn.execute(oidc_clients.update().where(oidc_clients.c.id == row.id).values(**values))
            tokens = codes = consents = 0
            stricter = (trusted is False and before.trusted) or (require_mfa is True and not before.require_mfa)
            if removed or stricter:
                now = self.clock()
                # Every family of the client's codes, not only those with tokens yet: a pair that a
                # code exchange under way saves afterwards is saved revoked.
                _end_families(conn, now, oidc_codes.c.client_id == client_id)
                tokens = conn.execute(oidc_tokens.update().where(
                    oidc_tokens.c.client_id == client_id, oidc_tokens.c.revoked_at.is_(None)).values(
                    revoked_at=now,
                    revoke_reason=SCOPES_NARROWED if removed else CLIENT_STRICTER)).rowcount
                codes = conn.execute(oidc_codes.delete().where(
                    oidc_codes.c.client_id == client_id, oidc_codes.c.used_at.is_(None))).rowcount
            elif redirect_uris is not None:  # a code is exchanged at the URI it was sent to: only registered ones
                codes = conn.execute(oidc_codes.delete().where(
                    oidc_codes.c.client_id == client_id, oidc_codes.c.used_at.is_(None),
                    oidc_codes.c.redirect_uri.not_in(redirect_uris))).rowcount
            if removed:
                consents = conn.execute(oidc_consents.delete().where(
                    oidc_consents.c.client_id == client_id)).rowcount
        client = self.get(client_id)
        if client is None:  # pragma: no cover - removed between the commit and this read
            raise RuntimeError("the client was removed while it was being updated")
        return UpdatedClient(client, secret, removed, tokens, codes, consents)

    def remove(self, client_id: str) -> bool:
        """Delete the client and end everything it holds (codes, tokens, consents)."""
        with self.engine.begin() as conn:
            gone = conn.execute(oidc_clients.delete().where(oidc_clients.c.client_id == client_id)).rowcount
            if gone:
                conn.execute(oidc_codes.delete().where(oidc_codes.c.client_id == client_id))
                conn.execute(oidc_tokens.delete().where(oidc_tokens.c.client_id == client_id))
                conn.execute(oidc_consents.delete().where(oidc_consents.c.client_id == client_id))
        return bool(gone)


# --- authorization codes --------------------------------------------------------------------------

@dataclass(frozen=True)
class Code(AuthorizationCodeMixin):
    id: int
    client_id: str
    user_id: int
    session_id: int
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: float
    methods: tuple[str, ...]
    acr: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time)

    def get_acr(self) -> str:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.methods)


def acr_for(methods: tuple[str, ...]) -> str:
    """The acr claim: "mfa" or "pwd"-level, named as RFC 8176 methods are (documented in docs/oidc.md)."""
    return "mfa" if "mfa" in methods else "1fa"


@dataclass(frozen=True)
class Spent:
    """What :meth:`CodeStore.spend` found: the code (None when it cannot be used) and why."""

    code: Code | None
    reason: str  # ok | unknown | expired | replayed | other_client | wrong_redirect_uri | pkce_failed


class CodeStore:
    def __init__(self, engine: Engine, clock: Callable[[], float], lifetime: int) -> None:
        self.engine = engine
        self.clock = clock
        self.lifetime = lifetime

    def issue(self, code: str, *, client_id: str, user_id: int, session_id: int, redirect_uri: str, scope: str,
              nonce: str | None, challenge: str, method: str, auth_time: float, methods: str) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(oidc_codes.insert().values(
                code_hash=digest(code), client_id=client_id, user_id=user_id, session_id=session_id,
                redirect_uri=redirect_uri, scope=scope, nonce=nonce, code_challenge=challenge,
                code_challenge_method=method, auth_time=auth_time, methods=methods, created_at=now,
                expires_at=now + self.lifetime))

    def spend(self, code: str, client_id: str, *, redirect_uri: str | None, verifier: object) -> Spent:
        """Use ``code`` for ``client_id``, once, presented with the ``redirect_uri`` of its
        authorization request and the PKCE ``verifier`` of its challenge. A code seen again (or
        lost in a race) is a replay: the caller revokes what it issued
        (:meth:`TokenStore.revoke_family`). The client, the redirect URI and the verifier are
        compared before the write, so a post that fails them spends nothing and revokes nothing:
        anyone may name a public client, and a leaked code posted without its verifier used to be
        spent, the user's sign-in lost (found by review, session 14)."""
        if not isinstance(code, str) or not code or len(code) > 128:
            return Spent(None, "unknown")
        now = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(oidc_codes.select().where(oidc_codes.c.code_hash == digest(code))).first()
            if row is None:
                return Spent(None, "unknown")
            if row.client_id != client_id:
                return Spent(None, "other_client")
            if row.redirect_uri and redirect_uri != row.redirect_uri:
                return Spent(None, "wrong_redirect_uri")
            if not pkce_matches(verifier, row.code_challenge, row.code_challenge_method):
                return Spent(None, "pkce_failed")
            won = conn.execute(oidc_codes.update().where(
                oidc_codes.c.id == row.id, oidc_codes.c.used_at.is_(None)).values(used_at=now)).rowcount
        methods = parse_methods(row.methods)
        found = Code(row.id, row.client_id, row.user_id, row.session_id, row.redirect_uri, row.scope, row.nonce,
                     row.code_challenge, row.code_challenge_method, row.auth_time, methods, acr_for(methods))
        if not won:
            return Spent(found, "replayed")
        if now >= row.expires_at:
            return Spent(None, "expired")
        return Spent(found, "ok")

    def nonce_seen(self, client_id: str, nonce: str) -> bool:
        if "\x00" in client_id or "\x00" in nonce:
            return False  # never stored (the request is refused: Provider.authorization_request); see ClientStore.get
        with self.engine.connect() as conn:
            return conn.execute(sa.select(oidc_codes.c.id).where(
                oidc_codes.c.client_id == client_id, oidc_codes.c.nonce == nonce).limit(1)).first() is not None

    def purge(self) -> int:
        with self.engine.begin() as conn:
            used = sa.select(oidc_tokens.c.family_id)
            return conn.execute(oidc_codes.delete().where(
                oidc_codes.c.expires_at < self.clock() - 86400, oidc_codes.c.id.not_in(used))).rowcount


# --- tokens ---------------------------------------------------------------------------------------

def _end_families(conn, now: float, codes) -> None:
    """Mark revoked the families whose code rows ``codes`` selects (the first mark stays), before
    their tokens are revoked (the caller's next statement): a pair that a request under way saves
    into one of them afterwards is saved revoked (:meth:`TokenStore.save`)."""
    conn.execute(oidc_codes.update().where(codes).values(
        family_revoked_at=sa.func.coalesce(oidc_codes.c.family_revoked_at, now)))


@dataclass(frozen=True)
class Token(TokenMixin):
    """An access/refresh token pair as the resource protector and the refresh grant see it.
    ``live`` folds in the session and the account: False once either has ended."""

    id: int
    client_id: str
    user_id: int
    username: str
    session_id: int
    family_id: int
    scope: str
    issued_at: float
    access_expires_at: float
    refresh_expires_at: float | None
    revoked: bool
    now: float

    def check_client(self, client) -> bool:
        return hmac.compare_digest(self.client_id, client.get_client_id())

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.access_expires_at - self.issued_at)

    def is_expired(self) -> bool:
        return self.now >= self.access_expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self):
        return self.user_id

    def get_client(self):  # pragma: no cover - Authlib asks only for introspection, not offered
        return self.client_id


_TOKEN_SELECT = sa.select(
    oidc_tokens.c.id, oidc_tokens.c.client_id, oidc_tokens.c.user_id, users.c.username_key,
    oidc_tokens.c.session_id, oidc_tokens.c.family_id, oidc_tokens.c.scope, oidc_tokens.c.issued_at,
    oidc_tokens.c.access_expires_at, oidc_tokens.c.refresh_expires_at, oidc_tokens.c.revoked_at,
    oidc_tokens.c.rotated_at, sessions.c.revoked_at.label("session_revoked_at"), users.c.disabled,
    # The session signed out everywhere (its sign-out generation passed: authsvc.core.sign_out),
    # whether or not the revocation that follows has run (or failed between the two).
    (sessions.c.generation != users.c.sign_out_generation).label("session_signed_out"),
).select_from(oidc_tokens.join(users, users.c.id == oidc_tokens.c.user_id)
              .join(sessions, sessions.c.id == oidc_tokens.c.session_id))


class TokenStore:
    def __init__(self, engine: Engine, clock: Callable[[], float], *, access_lifetime: int,
                 refresh_lifetime: int) -> None:
        self.engine = engine
        self.clock = clock
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime

    def save(self, *, access_token: str, refresh_token: str | None, client_id: str, user_id: int, session_id: int,
             family_id: int, scope: str, refresh_not_after: float | None = None) -> bool:
        """Store the digests of a new pair in family ``family_id``. False when the family was revoked
        before (its code or one of its refresh tokens used twice, a token revoked by the client) or its
        code is gone: the pair is then stored revoked, or not at all, and the caller refuses the request.

        One statement reads the family's code row (its anchor, locked on PostgreSQL) and inserts the
        pair: a :meth:`revoke_family` running at the same moment either finishes first, and the pair
        is born revoked, or waits for this insert and revokes it with the rest."""
        now = self.clock()
        refresh_expires = None
        if refresh_token is not None:
            refresh_expires = now + self.refresh_lifetime
            if refresh_not_after is not None:  # rotation never extends the family's first lifetime
                refresh_expires = min(refresh_expires, refresh_not_after)
        values = {"client_id": client_id, "user_id": user_id, "session_id": session_id, "family_id": family_id,
                  "access_hash": digest(access_token),
                  "refresh_hash": None if refresh_token is None else digest(refresh_token),
                  "scope": scope, "issued_at": now, "access_expires_at": now + self.access_lifetime,
                  "refresh_expires_at": refresh_expires}
        revoked = oidc_codes.c.family_revoked_at.is_not(None)
        row = sa.select(
            *(sa.literal(value, oidc_tokens.c[name].type).label(name) for name, value in values.items()),
            sa.case((revoked, sa.literal(now)), else_=sa.null()).label("revoked_at"),
            sa.case((revoked, sa.literal(FAMILY_REVOKED)), else_=sa.null()).label("revoke_reason"),
        ).where(oidc_codes.c.id == family_id).with_for_update(of=oidc_codes)
        with self.engine.begin() as conn:
            saved = conn.execute(oidc_tokens.insert().from_select([*values, "revoked_at", "revoke_reason"], row)
                                 .returning(oidc_tokens.c.revoked_at)).first()
        return saved is not None and saved.revoked_at is None

    def _token(self, row, now: float) -> Token:
        revoked = (row.revoked_at is not None or row.session_revoked_at is not None or bool(row.session_signed_out)
                   or row.disabled)
        return Token(row.id, row.client_id, row.user_id, row.username_key, row.session_id, row.family_id, row.scope,
                     row.issued_at, row.access_expires_at, row.refresh_expires_at, revoked, now)

    def by_access_token(self, value: object) -> Token | None:
        if not isinstance(value, str) or not value or len(value) > 128:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(_TOKEN_SELECT.where(oidc_tokens.c.access_hash == digest(value))).first()
        return self._token(row, self.clock()) if row else None

    def by_refresh_token(self, value: object) -> Token | None:
        if not isinstance(value, str) or not value or len(value) > 128:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(_TOKEN_SELECT.where(oidc_tokens.c.refresh_hash == digest(value))).first()
        return self._token(row, self.clock()) if row else None

    def spend_refresh_token(self, value: object, client_id: str) -> tuple[Token | None, str]:
        """Use a refresh token for ``client_id``, once: ``(token, "ok")``; ``(token, "replayed")``
        when it was used before (the caller revokes its family); ``(None, reason)`` when it cannot be
        used. Another client's token (``other_client``) is compared before the write, as
        :meth:`CodeStore.spend` does, and spends nothing: a thief holding a confidential client's
        token but not its secret names a public client, and until the review of session 13's OIDC
        flow that spent the token, so the owner's next refresh was a replay that ended its family."""
        if not isinstance(value, str) or not value or len(value) > 128:
            return None, "unknown"
        now = self.clock()
        with self.engine.begin() as conn:
            row = conn.execute(_TOKEN_SELECT.where(oidc_tokens.c.refresh_hash == digest(value))).first()
            if row is None:
                return None, "unknown"
            if not hmac.compare_digest(row.client_id, client_id):
                return None, "other_client"
            token = self._token(row, now)
            won = conn.execute(oidc_tokens.update().where(
                oidc_tokens.c.id == row.id, oidc_tokens.c.rotated_at.is_(None)).values(rotated_at=now)).rowcount
        if not won:
            return token, "replayed"
        if token.revoked:
            return None, "revoked"
        if row.refresh_expires_at is None or now >= row.refresh_expires_at:
            return None, "expired"
        return token, "ok"

    def revoke_family(self, family_id: int, reason: str) -> int:
        """End every token of the family, and every token saved into it later (:meth:`save`): the
        mark on its code row comes first, in its own statement, so a save that held that row finished
        before the tokens are revoked. How many live tokens it ended."""
        now = self.clock()
        with self.engine.begin() as conn:
            _end_families(conn, now, oidc_codes.c.id == family_id)  # marked even before it has a token
            return conn.execute(oidc_tokens.update().where(
                oidc_tokens.c.family_id == family_id, oidc_tokens.c.revoked_at.is_(None)).values(
                revoked_at=now, revoke_reason=reason)).rowcount

    def revoke(self, token_id: int, reason: str) -> int:
        with self.engine.begin() as conn:
            return conn.execute(oidc_tokens.update().where(
                oidc_tokens.c.id == token_id, oidc_tokens.c.revoked_at.is_(None)).values(
                revoked_at=self.clock(), revoke_reason=reason)).rowcount

    def revoke_for_user(self, user_id: int, client_id: str, reason: str) -> int:
        """End every token ``client_id`` holds for ``user_id`` (the account page's "Revoke"), every
        pair a refresh or code exchange under way saves into those families afterwards
        (:func:`_end_families`), and the codes not yet exchanged."""
        now = self.clock()
        mine = sa.and_(oidc_codes.c.user_id == user_id, oidc_codes.c.client_id == client_id)
        with self.engine.begin() as conn:
            # Every family of the user's codes for the client (a pair a code exchange under way
            # saves afterwards is saved revoked), and the codes not yet exchanged: until session 13
            # a code issued just before "Revoke" was exchanged for live tokens after it.
            _end_families(conn, now, mine)
            conn.execute(oidc_codes.delete().where(mine, oidc_codes.c.used_at.is_(None)))
            return conn.execute(oidc_tokens.update().where(
                oidc_tokens.c.user_id == user_id, oidc_tokens.c.client_id == client_id,
                oidc_tokens.c.revoked_at.is_(None)).values(revoked_at=now, revoke_reason=reason)).rowcount

    def clients_of(self, user_id: int) -> dict[str, float]:
        """``client_id -> last issued_at`` of every client that got tokens for ``user_id``."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(oidc_tokens.c.client_id, sa.func.max(oidc_tokens.c.issued_at).label("last"))
                                .where(oidc_tokens.c.user_id == user_id).group_by(oidc_tokens.c.client_id)).all()
        return {r.client_id: r.last for r in rows}

    def clients_to_notify(self, session_ids: list[int]) -> list[tuple[str, int]]:
        """Back-channel logout (authsvc.core.oidc.logout sends the tokens): ``(client_id,
        session_id)`` of every client with a ``backchannel_logout_uri`` that got tokens in one of
        ``session_ids``: the clients to send a logout token when those sessions end."""
        if not session_ids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(oidc_tokens.c.client_id, oidc_tokens.c.session_id).distinct().select_from(
                oidc_tokens.join(oidc_clients, oidc_clients.c.client_id == oidc_tokens.c.client_id)).where(
                oidc_tokens.c.session_id.in_(session_ids), oidc_clients.c.backchannel_logout_uri.is_not(None),
            ).order_by(oidc_tokens.c.client_id, oidc_tokens.c.session_id)).all()
        return [(r.client_id, r.session_id) for r in rows]

    def purge(self) -> int:
        """Delete tokens that can no longer be used by anyone (kept a day for the audit trail)."""
        cutoff = self.clock() - 86400
        with self.engine.begin() as conn:
            return conn.execute(oidc_tokens.delete().where(
                oidc_tokens.c.access_expires_at < cutoff,
                sa.or_(oidc_tokens.c.refresh_expires_at.is_(None), oidc_tokens.c.refresh_expires_at < cutoff,
                       oidc_tokens.c.revoked_at.is_not(None)))).rowcount


# --- consents and subjects ------------------------------------------------------------------------

class ConsentStore:
    def __init__(self, engine: Engine, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.clock = clock

    def granted(self, user_id: int, client_id: str) -> frozenset[str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(oidc_consents.c.scopes).where(
                oidc_consents.c.user_id == user_id, oidc_consents.c.client_id == client_id)).first()
        return frozenset(row.scopes.split()) if row else None

    def grant(self, user_id: int, client_id: str, scopes: tuple[str, ...]) -> None:
        """Remember ``scopes`` (with any allowed before) for this user and client."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(oidc_consents.c.id, oidc_consents.c.scopes).where(
                oidc_consents.c.user_id == user_id, oidc_consents.c.client_id == client_id)).first()
            if row is None:
                conn.execute(oidc_consents.insert().values(user_id=user_id, client_id=client_id,
                                                           scopes=" ".join(scopes), created_at=self.clock()))
            else:
                merged = sorted(set(row.scopes.split()) | set(scopes))
                conn.execute(oidc_consents.update().where(oidc_consents.c.id == row.id).values(scopes=" ".join(merged)))

    def revoke(self, user_id: int, client_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(oidc_consents.delete().where(
                oidc_consents.c.user_id == user_id, oidc_consents.c.client_id == client_id)).rowcount)

    def of(self, user_id: int) -> dict[str, frozenset[str]]:
        """``client_id -> scopes`` the user allowed."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(oidc_consents.c.client_id, oidc_consents.c.scopes).where(
                oidc_consents.c.user_id == user_id)).all()
        return {r.client_id: frozenset(r.scopes.split()) for r in rows}


class Subjects:
    """Each account's ``sub``: random, stable, never the username or the row id."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def of(self, user_id: int) -> str:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(oidc_subjects.c.subject).where(oidc_subjects.c.user_id == user_id)).first()
        if row:
            return row.subject
        try:
            with self.engine.begin() as conn:
                conn.execute(oidc_subjects.insert().values(user_id=user_id, subject=secrets.token_urlsafe(32)))
        except sa.exc.IntegrityError:  # another request made it first: use theirs
            pass
        with self.engine.connect() as conn:
            return conn.execute(sa.select(oidc_subjects.c.subject).where(
                oidc_subjects.c.user_id == user_id)).scalar_one()
