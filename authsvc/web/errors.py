"""Error responses: a clear 4xx for bad input, a generic 5xx, never a stack trace.

HTML for browsers, JSON for ``/api/``, an empty body for ``/auth/`` (proxies read only the
status). A throttled request gets the same 429 page whichever limit fired. A failing dependency
(database, rate-limit storage, hashing capacity) is a 503 with Retry-After: fail closed.
"""

from __future__ import annotations

import functools
import logging

from flask import Flask, Response, current_app, jsonify, request
from flask.globals import request_ctx
from flask_limiter.errors import RateLimitExceeded
from jinja2 import Environment
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import BadHost, HTTPException, RequestEntityTooLarge

from authsvc.web.csrf import MESSAGE as CSRF_MESSAGE
from authsvc.web.csrf import CSRFError
from authsvc.web.forms import FieldRefused
from authsvc.core.hashing import HashingBusy
from authsvc.core.throttle import ThrottleUnavailable

log = logging.getLogger("authsvc")

MESSAGES = {
    400: "The request was not valid.",
    401: "Sign-in required.",
    403: "Not allowed.",
    404: "Not found.",
    405: "Method not allowed.",
    413: "The request is too large.",
    429: "Too many attempts. Please wait and try again.",
    431: "Request headers are too large.",
    500: "Something went wrong. Please try again.",
    503: "The service is busy or unavailable. Please try again shortly.",
}


# The OpenID Provider's client endpoints: clients parse JSON errors.
JSON_PATHS = frozenset({"/oauth/token", "/oauth/revoke", "/oauth/userinfo"})


def respond(status: int, message: str | None = None, retry_after: int | None = None) -> Response:
    message = message or MESSAGES.get(status, "Error.")
    path = request.path
    if path.startswith("/api/") or path in JSON_PATHS:
        resp = jsonify(error=_code(status), message=message)
    elif path.startswith("/auth/") or request.method == "HEAD" or request_ctx.url_adapter is None:
        # (No URL adapter: the Host header made none, and the page's links could not be built.)
        resp = Response(b"", mimetype="text/plain")
    else:
        # Straight from the template, without Flask's context processors: Flask-Login's loads the
        # user, which needs the database, and the error may be that the database is down (a
        # second failure inside the error handler would become gunicorn's bare 500).
        resp = Response(_page(current_app.jinja_env, request.script_root, status, message), mimetype="text/html")
    resp.status_code = status
    if retry_after is not None:
        resp.headers["Retry-After"] = str(int(retry_after))
    return resp


@functools.lru_cache(maxsize=64)
def _page(env: Environment, script_root: str, status: int, message: str) -> str:
    """The error page. It depends only on these (its links on the script root), and the messages
    are a fixed set, so each is rendered once: a flood of refusals renders no template."""
    return env.get_template("error.html").render(status=status, message=message)


def unusable_host() -> Response | None:
    """The first before-request hook: a Host header Werkzeug makes no host of (a port that is not a
    number, an empty or over-long DNS label, an unclosed bracket) is a 400 before anything needs the
    request's URL (Authlib's https check, a page's links, a redirect)."""
    if not request.host or isinstance(request.routing_exception, BadHost):
        return respond(400)
    return None


def _code(status: int) -> str:
    return {400: "bad_request", 401: "unauthenticated", 404: "not_found", 405: "method_not_allowed",
            413: "too_large", 429: "throttled", 503: "unavailable"}.get(status, "error")


def _storage_error(exc: BaseException) -> bool:
    try:
        import redis
        if isinstance(exc, redis.RedisError):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, (ConnectionError, TimeoutError)) or "limits" in type(exc).__module__


def init_app(app: Flask) -> None:
    from authsvc.web.limiter import breached, count_refusal, retry_after_seconds

    def counted(refusal: Response) -> Response:
        """A refusal raised before the view (its hooks) counts toward a sign-in endpoint's per-client
        limit (:func:`authsvc.web.limiter.count_refusal`): ``refusal``, or 429 once over the limit, or
        503 when the rate-limit storage fails (closed, as a sign-in would). A handler cannot let the
        limit's exception propagate: Flask handles no exception raised inside an error handler."""
        try:
            count_refusal()
        except RateLimitExceeded as limited:
            return rate_limited(limited)
        except Exception as failed:
            return unexpected(failed)
        return refusal

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        _audit("csrf_failed", reason=exc.reason)
        return counted(respond(400, CSRF_MESSAGE))

    @app.errorhandler(FieldRefused)
    def field_refused(exc):
        return respond(400, exc.description)

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(exc):
        _audit("login_throttled", reason=breached(exc))
        return respond(429, retry_after=retry_after_seconds())

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        # Raised where the form is first read: the cross-site and CSRF hooks, before the view.
        return counted(http_error(exc))

    @app.errorhandler(HashingBusy)
    def hashing_busy(exc):
        _audit("hashing_saturated", outcome="refused")
        return respond(503, retry_after=exc.retry_after)

    @app.errorhandler(ThrottleUnavailable)
    def throttle_down(exc):
        _audit("ratelimit_storage_unavailable", outcome="refused")
        return respond(503, retry_after=5)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if exc.code is None or exc.code >= 500:
            return respond(exc.code or 500)
        response = respond(exc.code, MESSAGES.get(exc.code, exc.name))
        allowed = getattr(exc, "valid_methods", None)
        if exc.code == 405 and allowed:  # RFC 9110 15.5.6: a 405 names the methods that are allowed
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc):
        if isinstance(exc, (OperationalError, DBAPIError)):
            log.error("database unavailable: %s", type(exc).__name__)
            _audit("dependency_failed", dependency="database")
            return respond(503, retry_after=5)
        if _storage_error(exc):
            log.error("rate-limit storage unavailable: %s", type(exc).__name__)
            _audit("ratelimit_storage_unavailable", outcome="refused")
            return respond(503, retry_after=5)
        log.error("unhandled error: %s", type(exc).__name__, exc_info=exc)
        _audit("unhandled_error", error=type(exc).__name__)
        return respond(500)


def _audit(event: str, **fields) -> None:
    from flask import current_app

    svc = current_app.extensions.get("authsvc")
    if svc is not None:
        svc.audit.emit(event, **fields)
