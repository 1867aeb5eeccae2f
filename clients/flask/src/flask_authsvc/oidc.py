"""The OIDC mode: authsvc as an OpenID Connect provider, Authlib's Flask client as the relying party.

Authorization code with PKCE (S256) and a nonce, from authsvc's discovery document
(``AUTHSVC_URL/.well-known/openid-configuration``, whose ``issuer`` must be ``AUTHSVC_URL``).
Authlib checks the state, the ID token's signature (the provider's JWKS, its advertised
algorithms), issuer, expiry and nonce; :func:`id_token_audience_problem` its audience;
:func:`flask_authsvc.identity.identity_from_claims` then reads the identity, which is kept in Flask's signed session (so ``SECRET_KEY`` is required).
Routes, under ``/authsvc``: ``login`` (starts the flow), ``callback``, ``logout`` (ends the local
sign-in on a POST from this app's own pages, :mod:`flask_authsvc.crosssite`; a GET shows a page
with the Sign out button) and ``backchannel-logout`` (OpenID Connect Back-Channel Logout 1.0: the
provider's signed logout token ends the sign-ins of a ``sid``, or of a ``sub``).

Checked here besides Authlib's checks: the authorization response's ``iss`` (RFC 9207, a mix-up
defence Authlib's client leaves to the app) when the provider advertises it, as authsvc does; and a
local sign-out is recorded (each sign-in has a random id), so a copy of the session cookie saved
before the Logout signs nobody in after it (Flask's session is a cookie the server keeps no copy of).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    Flask,
    abort,
    after_this_request,
    current_app,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)

from flask_authsvc.cookies import HOST_PREFIX, SUGGESTED_NAME, session_cookie_problem, stray_locations
from flask_authsvc.crosssite import cross_site_problem, own_origin
from flask_authsvc.identity import Identity, Malformed, identity_from_claims
from flask_authsvc.logout_tokens import (
    MAX_SIGN_IN_SECONDS,
    MAX_TOKEN_LENGTH,
    EndedSessions,
    logout_token_problem,
)
from flask_authsvc.logsafe import escape
from flask_authsvc.redirects import authorization_response_iss_problem, local_next
from flask_authsvc.settings import Settings

log = logging.getLogger("flask_authsvc")

SIGNED_IN = "_authsvc"           # session: the identity and its sid and time
NEXT = "_authsvc_next"           # session: where the flow under way returns to
LOCAL = "local:"                 # EndedSessions key prefix of a sign-in ended by this app's Logout
PENDING = "_state_authsvc_"     # session: Authlib's key prefix for a sign-in under way (its state, PKCE
                                #   verifier, nonce; about 180 bytes each), "_state_<client name>_<state>"
# Sign-ins under way kept per browser: a few tabs' worth. Authlib keeps each for an hour, so
# abandoned starts (or another site making the browser GET /authsvc/login over and over) grew the
# cookie past the 4 KB a browser keeps, and sign-in failed until they expired.
MAX_PENDING_SIGN_INS = 5
# The back-channel endpoint takes anonymous POSTs, and a kid not in the cached JWKS makes the app
# fetch the provider's JWKS again (a key rotated in): at most once in this many seconds per process,
# so nobody can make the app hammer authsvc. Short enough that authsvc's retries of a logout token
# signed with a key rotated in meanwhile (after 1, 2 and 4 seconds) get through.
JWKS_REFRESH_SECONDS = 5.0
# Every request to the provider (discovery, JWKS, token): a provider or route that stalls holds a
# worker this long at most, not as long as it stalls.
HTTP_TIMEOUT = 10.0


def sign_in_expired(signed_in_at: float, now: float, max_seconds: float = MAX_SIGN_IN_SECONDS) -> bool:
    """Is a sign-in made at ``signed_in_at`` too old to stand at ``now``? (NaN: too old.)"""
    return not now - signed_in_at <= max_seconds


def jwks_refresh_due(last: float | None, now: float, every: float = JWKS_REFRESH_SECONDS) -> bool:
    """May the JWKS be fetched again at ``now`` (a monotonic clock), last fetched again at ``last``?"""
    return last is None or now - last >= every


WRONG_AUDIENCE = "wrong_audience"
WRONG_AZP = "wrong_azp"


def id_token_audience_problem(claims: dict[str, Any], client_id: str) -> str | None:
    """None when the ID token was issued to this client (OpenID Connect Core 3.1.3.7, steps 3 to
    5): its ``aud`` (a string or a list) names ``client_id``; with more than one audience, or any
    ``azp``, the ``azp`` is ``client_id``. Authlib checks ``aud`` only through ``azp``: an ID token
    for another client whose ``azp`` named this one, or with no audience at all, passed it."""
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if client_id not in audiences:
        return WRONG_AUDIENCE
    if (len(audiences) > 1 or "azp" in claims) and claims.get("azp") != client_id:
        return WRONG_AZP
    return None


def stale_pending_sign_ins(session: Mapping[str, object], keep: int = MAX_PENDING_SIGN_INS) -> list[str]:
    """The session keys of the sign-ins under way to drop before one more starts, so that at most
    ``keep`` remain with it: the oldest (by Authlib's expiry, which is the start plus an hour; one
    without a usable expiry first)."""
    def expiry(key: str) -> float:
        value = session[key]
        exp = value.get("exp") if isinstance(value, dict) else None
        return exp if isinstance(exp, (int, float)) and math.isfinite(exp) else -math.inf

    pending = sorted((key for key in session if isinstance(key, str) and key.startswith(PENDING)), key=expiry)
    return pending[:max(0, len(pending) - (keep - 1))]


TLS_HINT = ("; authsvc's certificate is not trusted by this process: name its CA bundle in REQUESTS_CA_BUNDLE "
            "(requests, which Authlib uses, reads that, not SSL_CERT_FILE)")


def _tls_hint(error: BaseException) -> str:
    """The fix for the commonest cause, when the failure was TLS: a private CA not trusted. requests
    wraps urllib3's error, which wraps ssl's; each is a class named ``SSLError`` (matched by name:
    the extension imports no HTTP library of its own)."""
    import ssl

    seen: object = error
    for _ in range(8):
        if not isinstance(seen, BaseException):
            break
        if isinstance(seen, ssl.SSLError) or any(cls.__name__ == "SSLError" for cls in type(seen).__mro__):
            return TLS_HINT
        first = seen.args[0] if seen.args else None
        seen = (seen.__cause__ or seen.__context__ or getattr(seen, "reason", None)
                or (first if isinstance(first, BaseException) else None))
    return ""


class OidcMode:
    def __init__(self, app: Flask, settings: Settings, ended: EndedSessions):
        from authlib.integrations.flask_client import OAuth

        self.settings = settings
        self.ended = ended
        self.clock = time.monotonic
        self._jwks_refreshed_at: float | None = None
        self._jwks_lock = threading.Lock()
        oauth = OAuth(app)
        self.client = oauth.register(
            "authsvc", client_id=settings.client_id, client_secret=settings.client_secret,  # the name: PENDING
            server_metadata_url=settings.url + "/.well-known/openid-configuration",
            client_kwargs={"scope": " ".join(settings.scopes), "code_challenge_method": "S256",
                           "token_endpoint_auth_method": "client_secret_basic" if settings.client_secret else "none",
                           "default_timeout": HTTP_TIMEOUT})
        bp = Blueprint("authsvc", __name__, url_prefix="/authsvc")
        bp.add_url_rule("/login", "login", self.login, methods=["GET"])
        bp.add_url_rule("/callback", "callback", self.callback, methods=["GET"])
        bp.add_url_rule("/logout", "logout", self.logout, methods=["GET", "POST"])
        bp.add_url_rule("/backchannel-logout", "backchannel_logout", self.backchannel_logout, methods=["POST"])
        app.register_blueprint(bp)

    # --- the provider ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The discovery document, fetched once; its issuer must be AUTHSVC_URL (a document naming
        another issuer is a mix-up, refused). A provider that cannot be reached is a 503."""
        try:
            metadata = self.client.load_server_metadata()
        except (OSError, ValueError) as error:  # requests' errors are OSErrors; a body that is not JSON
            log.warning("authsvc: OIDC discovery at %s failed: %s%s", escape(self.settings.url),
                        escape(type(error).__name__), _tls_hint(error))
            abort(503)
        if metadata.get("issuer") != self.settings.url:
            log.error("authsvc: the discovery document names issuer %s, not AUTHSVC_URL %s",
                      escape(metadata.get("issuer")), escape(self.settings.url))
            abort(503)
        return metadata

    # --- views ----------------------------------------------------------------------------------

    def login(self):
        self.metadata()
        self._refuse_when_the_record_is_full()
        # The sign-in will live in Flask's session cookie. Over https it must be Secure (else a
        # browser pushed to http://this-app/, no HSTS yet, sends it in the clear) and __Host- (else
        # a sibling subdomain plants its own). An app on plain http (loopback development) needs neither.
        app, interface = current_app._get_current_object(), current_app.session_interface
        problem = session_cookie_problem(https=request.is_secure, name=interface.get_cookie_name(app),
                                         secure=interface.get_cookie_secure(app),
                                         domain=interface.get_cookie_domain(app), path=interface.get_cookie_path(app))
        if problem is not None:
            log.error("authsvc: sign-in refused: %s", problem)
            abort(503)
        for key in stale_pending_sign_ins(session):
            session.pop(key, None)
        session[NEXT] = local_next(request.args.get("next"))
        extra = {"prompt": "login"} if request.args.get("step_up") == "1" else {}
        return self.client.authorize_redirect(url_for("authsvc.callback", _external=True), **extra)

    def callback(self):
        from authlib.common.errors import AuthlibBaseError
        from joserfc.errors import JoseError

        metadata = self.metadata()
        problem = authorization_response_iss_problem(
            request.args.getlist("iss"), issuer=metadata["issuer"],
            required=metadata.get("authorization_response_iss_parameter_supported") is True)
        if problem is not None:
            log.warning("authsvc: OIDC callback refused: %s (RFC 9207 iss)", problem)
            abort(401)
        try:
            token = self.client.authorize_access_token()
        # Authlib's (state, error answers, claims), joserfc's (signature), requests' (OSError) and
        # what a token answer without the expected fields raises.
        except (AuthlibBaseError, JoseError, OSError, ValueError, KeyError, TypeError) as error:
            log.warning("authsvc: OIDC callback refused: %s %s", escape(type(error).__name__),
                        escape(getattr(error, "error", "") or ""))
            abort(401)
        claims = token.get("userinfo") if isinstance(token, dict) else None
        if not claims:
            log.warning("authsvc: OIDC callback refused: no ID token")
            abort(401)
        problem = id_token_audience_problem(claims, self.settings.client_id)
        if problem is not None:
            log.warning("authsvc: OIDC ID token refused: %s (aud %s, azp %s)", problem, escape(claims.get("aud")),
                        escape(claims.get("azp")))
            abort(401)
        identity = identity_from_claims(claims)
        if isinstance(identity, Malformed):
            log.warning("authsvc: OIDC ID token refused: %s in %s", identity.reason, identity.header)
            abort(401)
        self._refuse_when_the_record_is_full()
        target = local_next(session.get(NEXT))
        session.clear()   # nothing of the anonymous session carries over into the signed-in one
        sid = claims.get("sid")
        session[SIGNED_IN] = {"u": identity.username, "i": identity.user_id, "g": list(identity.groups),
                              "m": list(identity.methods), "sid": sid if isinstance(sid, str) else None,
                              "t": time.time(), "n": secrets.token_urlsafe(16)}
        return redirect(target, 303)

    def logout(self):
        """POST from this app's own pages: ends the local sign-in. GET signs nobody out (any site
        can make a browser GET a URL, with an <img>): a page with the Sign out button instead, for
        a bookmark or an app still linking here, never framed (a framed button could be clicked by
        a user who cannot see it)."""
        if request.method != "POST":
            return self._logout_page()
        here = own_origin(request.scheme, request.host)
        origin = request.headers.get("Origin")
        problem = cross_site_problem(origin, request.headers.get("Sec-Fetch-Site"), here)
        if problem is not None:
            # An https Origin against an http app: the app behind a TLS proxy without ProxyFix.
            hint = ("; behind a TLS-terminating proxy? wrap the app in werkzeug's ProxyFix(x_proto=1)"
                    if origin is not None and origin.strip() == "https" + here.removeprefix("http") else "")
            log.warning("authsvc: sign-out refused: %s (Origin %s, this app %s)%s", problem, escape(origin),
                        escape(here), hint)
            page = ("<!doctype html><title>Not signed out</title><h1>Not signed out</h1>"
                    "<p>This sign-out was not sent from this site's own page. Use its Sign out button.</p>")
            return page, 403, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}
        data = session.pop(SIGNED_IN, None)
        if isinstance(data, dict) and isinstance(data.get("n"), str):
            # With its subject: the record keeps a bounded share per subject, so one account's
            # sign-outs cannot fill it (logout_tokens.PER_SUBJECT).
            sub = data.get("i")
            self.ended.end(LOCAL + data["n"], sub if isinstance(sub, str) else None, time.time())
        return redirect(self.settings.url + "/", 303)

    def _logout_page(self):
        form = current_app.extensions["authsvc"].extension.logout_form()
        page = f"<!doctype html><title>Sign out</title><h1>Sign out</h1>{form}"
        return page, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                           "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
                           "X-Frame-Options": "DENY"}

    def backchannel_logout(self):
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError
        from joserfc.jwk import KeySet
        from joserfc.jws import JWSRegistry

        def refuse(reason: str):
            log.warning("authsvc: back-channel logout refused: %s", reason)
            response = jsonify(error="invalid_request", error_description=reason)
            response.status_code = 400
            response.headers["Cache-Control"] = "no-store"
            return response

        raw = request.form.get("logout_token", "")
        if not raw or len(raw) > MAX_TOKEN_LENGTH or not raw.isascii():
            return refuse("no_token")
        metadata = self.metadata()
        algorithms = [a for a in metadata.get("id_token_signing_alg_values_supported", ["RS256"]) if a != "none"]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                token = jwt.decode(raw, KeySet.import_key_set(self.client.fetch_jwk_set()), registry=registry)
            except InvalidKeyIdError:
                # A kid not in the cached JWKS: the provider may have rotated its key since (authsvc
                # signs with the new key at once). Fetch the JWKS again, once, unless it was fetched
                # again moments ago (anyone can post a token with a made-up kid): then ask for a retry.
                if not self._may_refresh_jwks():
                    log.warning("authsvc: back-channel logout: a kid not in the JWKS, fetched again under %ss "
                                "ago: 503, retry", JWKS_REFRESH_SECONDS)
                    response = jsonify(error="temporarily_unavailable", error_description="jwks_refresh_throttled")
                    response.status_code = 503
                    response.headers["Cache-Control"] = "no-store"
                    response.headers["Retry-After"] = str(math.ceil(JWKS_REFRESH_SECONDS))
                    return response
                token = jwt.decode(raw, KeySet.import_key_set(self.client.fetch_jwk_set(force=True)),
                                   registry=registry)
        except (JoseError, ValueError, TypeError, KeyError):
            return refuse("bad_signature")
        except OSError as error:   # the provider's JWKS cannot be fetched: not the token's fault, ask again later
            log.warning("authsvc: back-channel logout: the provider's JWKS could not be fetched: %s%s",
                        escape(type(error).__name__), _tls_hint(error))
            abort(503)
        problem = logout_token_problem(token.claims, issuer=metadata["issuer"], client_id=self.settings.client_id,
                                       now=time.time())
        if problem is not None:
            return refuse(problem)
        self.ended.end(token.claims.get("sid"), token.claims.get("sub"), time.time())
        log.info("authsvc: back-channel logout for sid %s sub %s", escape(token.claims.get("sid")),
                 escape(token.claims.get("sub")))
        response = jsonify()
        response.headers["Cache-Control"] = "no-store"
        return response

    def _refuse_when_the_record_is_full(self) -> None:
        """No new sign-in while the record of ended sign-ins is full of records still needed: a
        record that made room by forgetting would let a signed-out cookie in again. (``full`` is
        optional for a record the app passes.)"""
        full = getattr(self.ended, "full", None)
        if callable(full) and full():
            log.error("authsvc: sign-in refused: the record of ended sign-ins is full (every entry still "
                      "refuses a sign-in less than a day old); pass a larger or shared one: "
                      "Authsvc(app, login, ended_sessions=...)")
            abort(503)

    def _may_refresh_jwks(self) -> bool:
        with self._jwks_lock:
            now = self.clock()
            if not jwks_refresh_due(self._jwks_refreshed_at, now):
                return False
            self._jwks_refreshed_at = now
            return True

    # --- the current request --------------------------------------------------------------------

    def two_session_cookies(self) -> bool:
        """Does the request carry two cookies of the session cookie's name (one planted by a
        sibling subdomain, which Flask may have read)? Then nothing of the session is kept (Flask
        expires this app's copy, writing back nothing of either), and the answer deletes every
        other copy the browser may hold here."""
        app = current_app._get_current_object()
        name = app.session_interface.get_cookie_name(app)
        if len(request.cookies.getlist(name)) < 2:
            return False
        log.warning("authsvc: request refused: two session cookies named %s (one planted by a sibling "
                    "subdomain?); every copy expired%s", escape(name),
                    "" if name.startswith(HOST_PREFIX) else f"; name it {SUGGESTED_NAME} (SESSION_COOKIE_NAME)")
        session.clear()
        secure = request.is_secure

        @after_this_request
        def expire_copies(response):
            for domain, path in stray_locations(request.host, request.path):
                response.delete_cookie(name, path=path, domain=domain, secure=secure, httponly=True)
            return response
        return True

    def identity(self) -> Identity | None:
        data = session.get(SIGNED_IN)
        if not isinstance(data, dict):
            return None
        identity = identity_from_claims({"preferred_username": data.get("u"), "sub": data.get("i"),
                                         "groups": data.get("g"), "amr": data.get("m")})
        signed_in_at, local_id = data.get("t"), data.get("n")
        if (isinstance(identity, Malformed) or not isinstance(signed_in_at, (int, float))
                or not isinstance(local_id, str) or sign_in_expired(signed_in_at, time.time())):
            session.pop(SIGNED_IN, None)
            return None
        if (self.ended.is_ended(data.get("sid"), identity.user_id, signed_in_at)
                or self.ended.is_ended(LOCAL + local_id, identity.user_id, signed_in_at)):
            session.pop(SIGNED_IN, None)
            return None
        return identity

    def login_url(self, next_path: str | None = None, *, step_up: bool = False) -> str:
        args = {"next": next_path} if next_path else {}
        if step_up:
            args["step_up"] = "1"
        return url_for("authsvc.login", **args)
