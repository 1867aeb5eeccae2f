"""Authlib's OAuth 2 / OIDC server parts, filled in with authsvc's stores and rules (no Flask here:
the Flask AuthorizationServer that runs them is built in authsvc.web.views.oidc).

Each class overrides only the hooks Authlib documents for subclasses (``save_authorization_code``,
``query_authorization_code``, ``authenticate_refresh_token``, ``exists_nonce``, ...). The decisions
those hooks make are authsvc's own: codes and refresh tokens are spent by one conditional write and
a second use revokes their family (:mod:`authsvc.core.oidc.store`), PKCE is S256 for every client
(:mod:`authsvc.rules.oidc_requests`), the signing key is the provider's current one, read once per
ID token (``IdToken.encode_id_token``, Authlib's public method, wrapped to hold that one key).

The grants reach the provider through ``self.server.provider`` (the web layer's server carries it).
"""

from __future__ import annotations

from contextvars import ContextVar

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import ECKey, RSAKey

from authsvc.core.oidc.keys import SigningKey
from authsvc.rules.auth_methods import is_multi_factor
from authsvc.rules.oidc_requests import (
    OK,
    challenge_verdict,
    code_verdict,
    parse_scope,
    refresh_scope,
    verifier_verdict,
)

# Public clients authenticate with "none" (their PKCE verifier is the proof); confidential ones
# with their secret, in the Authorization header or the form. Store.Client.check_endpoint_auth_method
# lets each kind use only its own.
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

ACCESS_HINT = ("access_token",)  # RFC 7009's token_type_hint naming an access token (a name, not a secret)

_CHALLENGE_ERRORS = {
    "missing": "PKCE is required: send code_challenge and code_challenge_method=S256.",
    "plain_refused": "code_challenge_method=plain is refused: use S256.",
    "method_missing": "code_challenge_method is required and must be S256.",
    "unsupported_method": "code_challenge_method must be S256.",
    "malformed": "code_challenge is not a base64url SHA-256 digest.",
}


# The key of the ID token being made (IdToken.encode_id_token): one IdToken serves every request,
# so the key is held per request (thread, task), never on the instance.
_signing_key: ContextVar[SigningKey | None] = ContextVar("authsvc_oidc_signing_key", default=None)


def _provider(grant_or_server):
    server = getattr(grant_or_server, "server", grant_or_server)
    return server.provider


class PkceS256(CodeChallenge):
    """RFC 7636 with S256 only, required of every client, confidential ones too (RFC 9700 2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        for name in ("code_challenge", "code_challenge_method"):
            if len(grant.request.payload.datalist.get(name, [])) > 1:
                raise InvalidRequestError(f"Multiple '{name}' in request.")
        verdict = challenge_verdict(data.get("code_challenge"), data.get("code_challenge_method"))
        if verdict != OK:
            raise InvalidRequestError(_CHALLENGE_ERRORS[verdict])

    def validate_code_verifier(self, grant, result):
        """Nothing left to check: the verifier was compared with the code's challenge before the code
        was spent (:meth:`CodeGrant.query_authorization_code`, :meth:`CodeStore.spend`), so a post
        without it spends nothing; Authlib calls this only after that."""


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def save_authorization_code(self, code, request):
        user = request.user
        data = request.payload.data
        # The scope in its one form (each once, in SUPPORTED_SCOPES order): what the code, its tokens
        # and their claims carry. The authorization request was judged by the same rule already.
        scope = parse_scope(request.scope, allowed=request.client.scopes)
        if not scope.accepted:
            raise InvalidScopeError()
        _provider(self).codes.issue(
            code, client_id=request.client.client_id, user_id=user.user_id, session_id=user.session_id,
            redirect_uri=request.payload.redirect_uri, scope=scope.text(), nonce=data.get("nonce"),
            challenge=data["code_challenge"], method=data["code_challenge_method"], auth_time=user.auth_time,
            methods=",".join(user.methods))

    def query_authorization_code(self, code, client):
        provider = _provider(self)
        # Every code carries openid, so its exchange signs an ID token: a key that does not open
        # (SigningKeyUnavailable, a 503) must stop the request before the code is spent, else the
        # user's sign-in is lost and a pair nobody received is saved.
        provider.keys.current()
        verifier = self.request.form.get("code_verifier")
        spent = provider.codes.spend(code, client.client_id, redirect_uri=self.request.payload.redirect_uri,
                                     verifier=verifier)
        if spent.reason == "replayed":
            # RFC 6749 4.1.2 / ASVS V10.4.2: a code used twice revokes what was issued from it.
            revoked = provider.tokens.revoke_family(spent.code.id, "code_replayed")
            provider.audit.emit("oidc_code_replayed", client_id=client.client_id, revoked=revoked,
                                user_id=spent.code.user_id)
            return None
        if spent.reason == "pkce_failed":
            verdict = verifier_verdict(verifier)
            if verdict != OK:
                raise InvalidRequestError("Missing 'code_verifier'." if verdict == "missing" else "Invalid 'code_verifier'.")
            provider.audit.emit("oidc_token_refused", reason="pkce_failed", client_id=client.client_id)
            raise InvalidGrantError("Code challenge failed.")
        if spent.reason == "wrong_redirect_uri":
            provider.audit.emit("oidc_token_refused", reason="code_wrong_redirect_uri", client_id=client.client_id)
            raise InvalidGrantError("Invalid 'redirect_uri' in request.")
        if spent.reason != OK:
            provider.audit.emit("oidc_token_refused", reason=f"code_{spent.reason}", client_id=client.client_id)
            return None
        code = spent.code
        fits = code_verdict(scope=code.scope, multi_factor=is_multi_factor(code.methods), client_scopes=client.scopes,
                            trusted=client.trusted, public=client.public, require_mfa=client.require_mfa,
                            granted=None if client.trusted or client.public
                            else provider.consents.granted(code.user_id, client.client_id))
        if fits != OK:
            provider.audit.emit("oidc_token_refused", reason=f"code_{fits}", client_id=client.client_id,
                                user_id=code.user_id)
            return None
        return code

    def delete_authorization_code(self, authorization_code):
        """Nothing to do: :meth:`query_authorization_code` spent it (one conditional write)."""

    def authenticate_user(self, authorization_code):
        return _provider(self).end_user(authorization_code.user_id, authorization_code.session_id)


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every use gives a new one and ends the old

    def authenticate_refresh_token(self, refresh_token):
        """Spend the token for the client that authenticated (Authlib set ``request.client`` first):
        Authlib compares the client only after this returns, too late for a token spent here."""
        provider = _provider(self)
        client_id = self.request.client.get_client_id()
        token, reason = provider.tokens.spend_refresh_token(refresh_token, client_id)
        if reason == "replayed":
            revoked = provider.tokens.revoke_family(token.family_id, "refresh_replayed")
            provider.audit.emit("oidc_refresh_replayed", client_id=token.client_id, revoked=revoked,
                                user_id=token.user_id)
            return None
        if reason != OK:
            provider.audit.emit("oidc_token_refused", reason=f"refresh_{reason}", client_id=client_id)
            return None
        return token

    def authenticate_user(self, refresh_token):
        return _provider(self).end_user(refresh_token.user_id, refresh_token.session_id)

    def issue_token(self, user, refresh_token):
        """The new pair's scope by :func:`authsvc.rules.oidc_requests.refresh_scope`: never wider
        than the refresh token's, nor than the client's list (ASVS V10.4.11). Authlib has already
        refused a scope wider than the token's; this also refuses any other spelling parse_scope
        refuses, and drops what the client may no longer have."""
        decided = refresh_scope(self.request.payload.scope, refresh_token.get_scope(), self.request.client.scopes)
        if not decided.accepted:
            _provider(self).audit.emit("oidc_token_refused", reason=f"refresh_scope_{decided.reason}",
                                       client_id=self.request.client.client_id)
            raise InvalidScopeError()
        return self.generate_token(user=user, scope=decided.text(), include_refresh_token=self.INCLUDE_NEW_REFRESH_TOKEN)

    def revoke_old_credential(self, refresh_token):
        _provider(self).tokens.revoke(refresh_token.id, "rotated")  # its access token ends too


class IdToken(OpenIDCode):
    """The ID token of the code grant: signed with the provider's current key (ES256 or RS256,
    ``kid`` in the header), ``iss``/``aud``/``exp`` from the provider, the claims of
    :meth:`authsvc.core.oidc.provider.Provider.claims`; ``nonce``, ``auth_time``, ``acr`` and ``amr``
    from the code."""

    def __init__(self, provider) -> None:
        super().__init__(require_nonce=False)
        self.provider = provider

    def exists_nonce(self, nonce, request):
        return self.provider.codes.nonce_seen(request.payload.client_id, nonce)

    def encode_id_token(self, token, request):
        """The current key is read once per ID token, here: Authlib asks for the algorithm, the
        header and the private key separately, and when each read the current key a rotation
        between two reads (``authsvc oidc keys rotate``, on any instance) gave a ``kid`` naming one
        key over another's signature, which no relying party can verify (found by review of
        session 13's OIDC flow). The three hooks below take that one key."""
        held = _signing_key.set(self.provider.keys.current())
        try:
            return super().encode_id_token(token, request)
        finally:
            _signing_key.reset(held)

    def _key(self) -> SigningKey:
        key = _signing_key.get()
        if key is None:  # pragma: no cover - Authlib calls the hooks only from encode_id_token
            raise RuntimeError("the ID token's signing key is read in IdToken.encode_id_token")
        return key

    def resolve_client_private_key(self, client):
        key = self._key()
        return (ECKey if key.alg == "ES256" else RSAKey).import_key(key.private_key)

    def get_client_algorithm(self, client):
        return self._key().alg

    def get_encode_header(self, client):
        key = self._key()
        return {"alg": key.alg, "kid": key.kid, "typ": "JWT"}

    def get_client_claims(self, client):
        now = int(self.provider.clock())
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()], "iat": now,
                "exp": now + self.provider.policy.id_token_lifetime_seconds}

    def generate_user_info(self, user, scope):
        return self.provider.claims(user, scope, id_token=True)


class Revocation(RevocationEndpoint):
    """RFC 7009. A refresh token's revocation ends its whole family; an access token's, its pair."""

    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string, token_type_hint):
        tokens = _provider(self).tokens
        if token_type_hint in ACCESS_HINT:
            return tokens.by_access_token(token_string) or tokens.by_refresh_token(token_string)
        found = tokens.by_refresh_token(token_string)
        if found is not None:
            return ("refresh", found)
        found = tokens.by_access_token(token_string)
        return None if found is None else ("access", found)

    def authenticate_token(self, request, client):
        self.check_params(request, client)
        found = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        if found is None:
            return None
        kind, token = found if isinstance(found, tuple) else ("access", found)
        if not token.check_client(client):
            return None  # RFC 7009 2.2: another client's token is not revoked, and nothing is said
        return kind, token

    def revoke_token(self, token, request):
        kind, found = token
        provider = _provider(self)
        if kind == "refresh":
            count = provider.tokens.revoke_family(found.family_id, "revoked_by_client")
        else:
            count = provider.tokens.revoke(found.id, "revoked_by_client")
        provider.audit.emit("oidc_tokens_revoked", client_id=found.client_id, reason="client", revoked=count,
                            user_id=found.user_id)


class AccessTokens(BearerTokenValidator):
    """The userinfo endpoint's bearer tokens: live while unexpired, unrevoked, and their session and
    account stand."""

    def __init__(self, provider) -> None:
        super().__init__()
        self.provider = provider

    def authenticate_token(self, token_string):
        return self.provider.tokens.by_access_token(token_string)
