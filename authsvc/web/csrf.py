"""CSRF tokens for authsvc's forms (ASVS 3.5.1): HMAC-SHA-256, bound to the session.

Each session holds a random value under ``csrf_token``; a form carries that value signed by
:func:`authsvc.core.signing.timed_serializer` (HMAC-SHA-256, canonical signatures, the current key plus
``AUTHSVC_SECRET_KEY_FALLBACKS``, a salt of its own) with the time it was signed. A state-changing
request (POST, PUT, PATCH, DELETE) to a route is refused with 400 unless its one ``csrf_token``
field verifies, is younger than the time limit, and holds this session's value (compared in constant
time). Scripts of the service's own pages (the passkey ceremonies, which post JSON) send the
same token in the ``X-CSRF-Token`` header instead; a request carrying both counts as two tokens
(``repeated``). Flask-WTF did the same with HMAC-SHA1 and only the current key, and offers no way to change
either; this module replaces it, keeping its session key, form field, template global and message.

:func:`verdict` decides, as a pure function of plain values; the Flask glue below only feeds it.

Reason codes (``CSRFError.reason``, the ``csrf_failed`` audit event's ``reason``):

==================== ==========================================================================
``missing``          no ``csrf_token`` field (nor ``X-CSRF-Token`` header)
``repeated``         more than one ``csrf_token`` field or header, or one of each
``no_session_token`` the session holds no value (expired cookie, or none was ever issued)
``invalid``          not a token signed with this service's key for this purpose: tampered,
                     truncated, another digest (SHA-1), another salt, a dropped fallback key
``expired``          signed longer ago than the time limit, or in the future
``mismatch``         a genuine token of another session
==================== ==========================================================================
"""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, current_app, g, request, session
from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.exceptions import BadRequest

SESSION_KEY = "csrf_token"
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"  # for JSON posts from the service's own scripts (another site cannot set it)
SALT = "authsvc.csrf"
PROTECTED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TIME_LIMIT_SECONDS = 3600  # a form left open longer is reloaded (Flask-WTF's limit, kept)
MESSAGE = "The form expired or was not sent by this site. Reload the page and try again."
REASONS = ("missing", "repeated", "no_session_token", "invalid", "expired", "mismatch")


class CSRFError(BadRequest):
    description = MESSAGE

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def new_session_value() -> str:
    """The per-session secret a token carries: 256 bits from the OS CSPRNG. Base64url, because the
    serializer compresses a payload when that makes it shorter, which 64 hex digits sometimes allow:
    the token's length, and every form page's, would then vary from one session to the next."""
    return secrets.token_urlsafe(32)


def verdict(submitted: list[str], session_value: object, serializer: URLSafeTimedSerializer,
            now: float, max_age: int) -> str:
    """``"ok"`` when ``submitted`` (every ``csrf_token`` field of the request) is one token signed by
    ``serializer`` at most ``max_age`` seconds before ``now`` for ``session_value``; else the reason."""
    if not submitted:
        return "missing"
    if len(submitted) > 1:
        return "repeated"
    if not isinstance(session_value, str) or not session_value:
        return "no_session_token"
    try:
        value, signed_at = serializer.loads(submitted[0], return_timestamp=True)
    except BadData:
        return "invalid"
    if not isinstance(value, str):
        return "invalid"
    age = now - signed_at.timestamp()
    if not 0 <= age <= max_age:
        return "expired"
    if not hmac.compare_digest(value.encode("utf-8", "surrogatepass"), session_value.encode("utf-8", "surrogatepass")):
        return "mismatch"
    return "ok"


# --- Flask glue ----------------------------------------------------------------------------------

def csrf_token() -> str:
    """The template global: this session's value, signed now (once per request)."""
    if "csrf_signed" not in g:
        if not isinstance(session.get(SESSION_KEY), str):
            session[SESSION_KEY] = new_session_value()
        g.csrf_signed = current_app.extensions["authsvc.csrf"].dumps(session[SESSION_KEY])
    return g.csrf_signed


def init_app(app: Flask, serializer: URLSafeTimedSerializer, max_age: int) -> None:
    """Check every state-changing request to a route; a failure raises :class:`CSRFError`."""
    app.extensions["authsvc.csrf"] = serializer
    app.jinja_env.globals["csrf_token"] = csrf_token
    signer = serializer.make_signer(serializer.salt)  # its clock is the one tokens are signed by

    @app.before_request
    def _protect() -> None:
        # A path or method with no route gets its 404 or 405, as before.
        if request.method not in PROTECTED_METHODS or request.endpoint is None:
            return
        # Endpoints clients call with their own credentials, never a cookie (OIDC token, revoke).
        if request.endpoint in app.extensions.get("authsvc.csrf_exempt", ()):
            return
        submitted = request.form.getlist(FIELD) + request.headers.getlist(HEADER)
        reason = verdict(submitted, session.get(SESSION_KEY), serializer, signer.get_timestamp(),
                         max_age)
        if reason != "ok":
            raise CSRFError(reason)
