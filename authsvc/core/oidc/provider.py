"""The OpenID Provider as a service (no Flask): reading an authorization request, deciding what the
browser's session does with it, the claims, the tokens Authlib asks for, the discovery document.

The views in authsvc.web.views.oidc only render the outcomes. The request is checked in the order
RFC 6749 4.1.2.1 demands: client and redirect_uri first, and until both are known good the only
answer is an error page (:class:`ErrorPage`), never a redirect; after that errors go back to the
client (:class:`ErrorRedirect`, with ``state`` and ``iss``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import InvalidGrantError
from sqlalchemy.engine import Engine

from authsvc.core.audit import Audit
from authsvc.core.groups import GroupStore
from authsvc.core.models import remember_tokens, sessions, users
from authsvc.core.oidc.keys import SigningKeys
from authsvc.core.oidc.logout import Hint, read_hint, session_sid, sid_source
from authsvc.core.oidc.store import (
    Client,
    ClientStore,
    CodeStore,
    ConsentStore,
    Subjects,
    TokenStore,
    new_secret,
)
from authsvc.core.policy import OidcPolicy
from authsvc.rules.auth_methods import is_multi_factor, parse_methods
from authsvc.rules import oidc_logout
from authsvc.rules.oidc_redirects import redirect_uri_verdict
from authsvc.rules.oidc_requests import (
    OK,
    SUPPORTED_SCOPES,
    auth_time,
    challenge_verdict,
    consent_decision,
    parse_max_age,
    parse_prompt,
    parse_scope,
    session_decision,
)

# Parameters that may appear once only (RFC 6749 3.1; a second copy is how parsers are played off).
SINGLE = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "prompt", "max_age",
          "code_challenge", "code_challenge_method", "response_mode")
MAX_STATE = 1024
# RP-initiated logout's parameters (each at most once); ui_locales and logout_hint are ignored.
LOGOUT_PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")
MAX_NONCE = 512


@dataclass(frozen=True)
class ErrorPage:
    """Shown to the user; nothing is sent to the client (unknown client, bad redirect_uri)."""

    reason: str


@dataclass(frozen=True)
class ErrorRedirect:
    client: Client
    redirect_uri: str
    error: str
    description: str
    state: str | None


@dataclass(frozen=True)
class AuthRequest:
    client: Client
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    prompt: frozenset[str]
    max_age: int | None


@dataclass(frozen=True)
class LogoutRequest:
    """An RP-initiated logout request that passed every check: the client (named, or the hint's),
    the post_logout_redirect_uri (registered by that client, exactly) and ``state``, the hint."""

    client: Client | None
    redirect_uri: str | None
    state: str | None
    hint: Hint | None


@dataclass(frozen=True)
class App:
    """A client on the user's account page: what the user allowed, when it last got tokens."""

    client: Client
    scopes: tuple[str, ...]
    last_used: float | None


@dataclass(frozen=True)
class EndUser:
    """The signed-in user as the grants and the claims see them: one account, in one session."""

    user_id: int
    username: str
    session_id: int
    sid: str
    methods: tuple[str, ...]
    auth_time: float


class Provider:
    def __init__(self, *, issuer: str, policy: OidcPolicy, engine: Engine, clock: Callable[[], float], audit: Audit,
                 keys: SigningKeys) -> None:
        self.issuer = issuer
        self.policy = policy
        self.engine = engine
        self.clock = clock
        self.audit = audit
        self.keys = keys
        self.clients = ClientStore(engine, clock)
        self.codes = CodeStore(engine, clock, policy.code_lifetime_seconds)
        self.tokens = TokenStore(engine, clock, access_lifetime=policy.access_token_lifetime_seconds,
                                 refresh_lifetime=policy.refresh_token_lifetime_seconds)
        self.consents = ConsentStore(engine, clock)
        self.subjects = Subjects(engine)
        self.groups = GroupStore(engine, clock)  # read only here: the ``groups`` claim

    # --- the authorization request ---------------------------------------------------------------

    def read_request(self, get: Callable[[str], str | None], count: Callable[[str], int]) -> \
            ErrorPage | ErrorRedirect | AuthRequest:
        """Check an authorization request's parameters (``get(name)``: the value or None,
        ``count(name)``: how many times it appears)."""
        if count("client_id") != 1 or count("redirect_uri") > 1:
            return ErrorPage("client_id_or_redirect_uri_repeated" if count("client_id") else "client_id_missing")
        client = self.clients.get(get("client_id"))
        if client is None:
            return ErrorPage("unknown_client")
        redirect_uri = get("redirect_uri")
        verdict = redirect_uri_verdict(redirect_uri, client.redirect_uris, public=client.public)
        if verdict != OK or redirect_uri is None:  # (None is "missing": for the type checker)
            return ErrorPage(f"redirect_uri_{verdict}")
        state = get("state")

        def refuse(error: str, description: str) -> ErrorRedirect:
            return ErrorRedirect(client, redirect_uri, error, description,
                                 state if state and len(state) <= MAX_STATE else None)

        if state is not None and len(state) > MAX_STATE:
            return refuse("invalid_request", "state is too long.")
        repeated = [name for name in SINGLE if count(name) > 1]
        if repeated:
            return refuse("invalid_request", f"'{repeated[0]}' appears more than once.")
        if get("request") is not None or get("request_uri") is not None:
            return refuse("request_not_supported", "Request objects are not supported.")
        if get("response_type") != "code":
            return refuse("unsupported_response_type", "Only response_type=code is supported.")
        if get("response_mode") not in (None, "query"):  # exactly: no case folding, no trimming (V10.4.12)
            return refuse("invalid_request", "Only response_mode=query is supported.")
        scope = parse_scope(get("scope"), allowed=client.scopes)
        if scope.reason == "not_allowed":  # RFC 6749 3.3: refused, not narrowed (ASVS V10.4.11)
            return refuse("invalid_scope", f"scope: not allowed for this client; it may ask for: "
                                           f"{' '.join(client.scopes)}.")
        if not scope.accepted:
            return refuse("invalid_scope", f"scope: {scope.reason}; offered: {' '.join(SUPPORTED_SCOPES)}.")
        pkce = challenge_verdict(get("code_challenge"), get("code_challenge_method"))
        if pkce != OK:
            return refuse("invalid_request", "PKCE with code_challenge_method=S256 is required "
                                             f"({pkce.replace('_', ' ')}).")
        prompt_ok, prompt = parse_prompt(get("prompt"))
        if prompt_ok != OK:
            return refuse("invalid_request", "prompt is not valid.")
        age_ok, max_age = parse_max_age(get("max_age"))
        if age_ok != OK:
            return refuse("invalid_request", "max_age is not valid.")
        nonce = get("nonce")
        if nonce is not None and (not nonce or len(nonce) > MAX_NONCE or "\x00" in nonce):
            return refuse("invalid_request", "nonce is not valid.")
        return AuthRequest(client, redirect_uri, scope.scopes, state, nonce, prompt, max_age)

    def session_step(self, req: AuthRequest, session, *, has_second_factor: bool) -> str:
        """What the browser's session (a SessionRecord or None) does with ``req``: a
        :func:`authsvc.rules.oidc_requests.session_decision` verdict."""
        asked = None
        if session is not None:
            with self.engine.connect() as conn:
                asked = conn.execute(sa.select(sessions.c.reauth_asked_at).where(sessions.c.id == session.id)).scalar()
        return session_decision(
            signed_in=session is not None, prompt=req.prompt, max_age=req.max_age,
            authenticated_at=None if session is None else session.authenticated_at, now=self.clock(),
            multi_factor=session is not None and is_multi_factor(session.methods),
            require_mfa=req.client.require_mfa, has_second_factor=has_second_factor, reauth_asked_at=asked)

    def consent_step(self, req: AuthRequest, user_id: int) -> str:
        return consent_decision(trusted=req.client.trusted, public=req.client.public, prompt=req.prompt,
                                granted=self.consents.granted(user_id, req.client.client_id), requested=req.scopes)

    # --- RP-initiated logout ----------------------------------------------------------------------

    def read_logout(self, get: Callable[[str], str | None], count: Callable[[str], int], *,
                    max_hint_age: float) -> ErrorPage | LogoutRequest:
        """Check an end_session request (OpenID RP-Initiated Logout 1.0). Anything wrong is an
        :class:`ErrorPage` (no redirect, no logout): a repeated parameter, an unknown client, a hint
        not signed by us (or too old, or for another client), a post_logout_redirect_uri the client
        did not register byte for byte."""
        repeated = [name for name in LOGOUT_PARAMS if count(name) > 1]
        if repeated:
            return ErrorPage("logout_parameter_repeated")
        client_id = get("client_id")
        client = None
        if client_id is not None:
            client = self.clients.get(client_id)
            if client is None:
                return ErrorPage("unknown_client")
        hint = None
        raw = get("id_token_hint")
        if raw is not None:
            verdict, hint = read_hint(raw, keys_jwks=self.keys.jwks(), issuer=self.issuer, client_id=client_id,
                                      now=self.clock(), max_age=max_hint_age)
            if verdict != OK or hint is None:
                return ErrorPage(f"id_token_hint_{verdict}")
            if client is None and hint.client_id is not None:
                client = self.clients.get(hint.client_id)  # None once removed: then no redirect
        state = get("state")
        if oidc_logout.state_verdict(state) != OK:
            return ErrorPage("logout_state_invalid")
        uri = get("post_logout_redirect_uri")
        if uri is not None:
            verdict = oidc_logout.post_logout_redirect_verdict(
                uri, client.post_logout_redirect_uris if client is not None else None)
            if verdict != OK:
                return ErrorPage(f"post_logout_redirect_uri_{verdict}")
        return LogoutRequest(client, uri, state, hint)

    def logout_step(self, req: LogoutRequest, user_id: int | None, session_id: int | None) -> str:
        """:func:`authsvc.rules.oidc_logout.logout_step` for the browser's session (None: signed out)."""
        me = None if user_id is None or session_id is None else self.end_user(user_id, session_id)
        return oidc_logout.logout_step(
            signed_in=me is not None, hint_sid=req.hint.sid if req.hint else None,
            hint_sub=req.hint.sub if req.hint else None, session_sid=me.sid if me else None,
            session_sub=self.subjects.of(me.user_id) if me else None)

    # --- the account page's apps ------------------------------------------------------------------

    def apps_of(self, user_id: int) -> list[App]:
        """The clients the user signed in to (got tokens) or allowed (consent), by name."""
        consents = self.consents.of(user_id)
        used = self.tokens.clients_of(user_id)
        apps = []
        for client_id in set(consents) | set(used):
            client = self.clients.get(client_id)
            if client is not None:
                apps.append(App(client, tuple(sorted(consents.get(client_id, ()))), used.get(client_id)))
        return sorted(apps, key=lambda a: (a.client.name.casefold(), a.client.client_id))

    def revoke_app(self, user_id: int, client_id: str) -> tuple[bool, int] | None:
        """End the user's consent for ``client_id`` and every token it holds for the user:
        ``(consent_ended, tokens_ended)``, or None when the user has nothing with that client."""
        if not any(a.client.client_id == client_id for a in self.apps_of(user_id)):
            return None
        return self.consents.revoke(user_id, client_id), self.tokens.revoke_for_user(user_id, client_id, "user_revoked")

    # --- users and claims ------------------------------------------------------------------------

    def end_user(self, user_id: int, session_id: int) -> EndUser | None:
        """The user of ``session_id``, or None once that session has ended (revoked, or signed out
        everywhere by its sign-out generation) or the account is disabled."""
        chain = (sa.select(sa.func.min(remember_tokens.c.signed_in_at))
                 .where(remember_tokens.c.session_id == sessions.c.id).scalar_subquery())
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(
                users.c.id, users.c.username_key, users.c.disabled, sessions.c.id.label("sid"), sid_source(),
                sessions.c.revoked_at, sessions.c.methods, sessions.c.authenticated_at, sessions.c.created_at,
                chain.label("chain_signed_in_at"),
                (sessions.c.generation != users.c.sign_out_generation).label("signed_out"),
            ).select_from(sessions.join(users, users.c.id == sessions.c.user_id)).where(
                sessions.c.id == session_id, sessions.c.user_id == user_id)).first()
        if row is None or row.disabled or row.revoked_at is not None or row.signed_out:
            return None
        return EndUser(row.id, row.username_key, row.sid, session_sid(row.sid_source), parse_methods(row.methods),
                       auth_time(row.authenticated_at, row.chain_signed_in_at, row.created_at))

    def ask_reauthentication(self, session_id: int) -> None:
        """This session's browser is sent to sign in again (``prompt=login``, ``max_age``): until it
        has, :meth:`session_step` answers every request of this session as that one."""
        with self.engine.begin() as conn:
            conn.execute(sessions.update().where(sessions.c.id == session_id).values(reauth_asked_at=self.clock()))

    def claims(self, user: EndUser, scope: str, *, id_token: bool = False) -> dict:
        """``sub`` always (random per account, never the username); ``sid`` in ID tokens;
        ``preferred_username`` with ``profile``; ``groups`` with ``groups``: the names of the user's
        groups as they are now (read at each token and userinfo answer, so a user taken out of a group
        loses it at the next refresh), sorted, an empty list for none (the claim is there, so a
        client can tell "in no group" from "did not ask").

        ``scope`` is what the code or token was granted (already parsed by
        :func:`authsvc.rules.oidc_requests.parse_scope` at the authorization request)."""
        scopes = scope.split() if scope else []
        out: dict = {"sub": self.subjects.of(user.user_id)}
        if id_token:
            out["sid"] = user.sid
        if "profile" in scopes:
            out["preferred_username"] = user.username
        if "groups" in scopes:
            out["groups"] = list(self.groups.of_user(user.user_id))
        return out

    # --- tokens (called by Authlib) --------------------------------------------------------------

    def generate_token(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        """Authlib's token generator: an opaque access token (256 random bits) and, only with
        ``offline_access``, a refresh token."""
        token = {"token_type": "Bearer", "access_token": new_secret(),
                 "expires_in": self.policy.access_token_lifetime_seconds, "scope": scope or ""}
        if include_refresh_token and "offline_access" in (scope or "").split():
            token["refresh_token"] = new_secret()
        return token

    def save_token(self, token: dict, request) -> None:
        """Authlib's ``save_token``: digests only; the family is the code's (code grant) or the old
        refresh token's (refresh grant), whose lifetime the new one never outlives."""
        user: EndUser = request.user
        old = getattr(request, "refresh_token", None)
        if old is not None:
            family, not_after = old.family_id, old.refresh_expires_at
        else:
            family, not_after = request.authorization_code.id, None
        saved = self.tokens.save(access_token=token["access_token"], refresh_token=token.get("refresh_token"),
                                 client_id=request.client.client_id, user_id=user.user_id,
                                 session_id=user.session_id, family_id=family, scope=token.get("scope", ""),
                                 refresh_not_after=not_after)
        if not saved:  # the family was revoked while this request ran (a parallel replay): nothing is issued
            self.audit.emit("oidc_token_refused", reason="family_revoked", client_id=request.client.client_id)
            raise InvalidGrantError("The grant was revoked.")
        rotating = "refresh_token" in token
        self.audit.emit("oidc_tokens_issued", client_id=request.client.client_id, user_id=user.user_id,
                        grant=request.payload.grant_type, refresh=rotating)

    # --- published metadata ----------------------------------------------------------------------

    def discovery(self) -> dict:
        base = self.issuer
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/oauth/authorize",
            "token_endpoint": f"{base}/oauth/token",
            "userinfo_endpoint": f"{base}/oauth/userinfo",
            "revocation_endpoint": f"{base}/oauth/revoke",
            "end_session_endpoint": f"{base}/oauth/logout",
            "jwks_uri": f"{base}/oauth/jwks",
            "scopes_supported": list(SUPPORTED_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.policy.signing_alg],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
                                 "at_hash", "preferred_username", "groups"],
            "prompt_values_supported": ["none", "login", "consent"],
            "authorization_response_iss_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "claims_parameter_supported": False,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
            "frontchannel_logout_supported": False,
        }

    def sessions_ended(self, session_ids: list[int]) -> list[tuple[str, int]]:
        """Back-channel logout: which clients to notify, with the session each got tokens in (the
        sender, authsvc.core.oidc.logout.BackChannel, calls it off the request). Tokens need no
        action here: they end with their session."""
        return self.tokens.clients_to_notify(session_ids)
