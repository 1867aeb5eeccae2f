"""Forward auth: "who is this?" for a reverse proxy, once per request of every protected app.

Kept short on purpose: one signed-cookie read, one indexed lookup, no body. A remember-me cookie is
never used here (see :func:`authsvc.web.views.login.restore_from_remember`): an anonymous browser is
sent to /login, which restores the session and sends it back.

Answers: 200 with ``X-Auth-User`` and ``X-Auth-User-Id`` for a live session; otherwise 401, or, when
the proxy asks with ``?redirect=1`` (Traefik, Caddy), 302 to the login page. With ``?redirect=401``
(nginx, whose ``auth_request`` accepts only 2xx, 401 and 403) the 401 carries that login URL in
``Location`` for ``error_page 401 =302``. See docs/integration.md.

A live session, the answer to nearly every call, is given by :class:`FastPath` below Flask (see
docs/performance.md); everything else goes through the Flask view.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from flask import Blueprint, Flask, Response, g, request
from flask_login import current_user
from itsdangerous import BadData
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.sansio.http import parse_cookie

from authsvc.web import cookieheader
from authsvc.web.auth import binding_identifier, is_session_token, request_id, services
from authsvc.rules.forward_auth import (
    LoginRedirect,
    login_location,
    login_url,
    original_request,
)
from authsvc.core.sessions import LIVE

bp = Blueprint("verify", __name__)

REDIRECT_STATUS = {"1": 302, "401": 401}


def app_cookie(query_flag: str | None, cookie_header: str | None) -> list[tuple[str, str]]:
    """With ``?app_cookie=1`` a 200 also answers ``Cookie``: the request's cookies without
    authsvc's, for a proxy that can only copy headers from the answer to the app's request
    (Traefik's authResponseHeaders, which removes the header when the answer has none)."""
    if query_flag != "1":
        return []
    kept = cookieheader.without(cookie_header)
    return [("Cookie", kept)] if kept else []


class ProxyAnswer(Response):
    """A response that cannot carry a cookie. nginx drops the Set-Cookie of an ``auth_request``
    answer and Traefik may copy it to the app's response: either way a cookie set here (an emptied
    session after a failed binding check, say) would be lost or land on the wrong site."""

    def set_cookie(self, *args, **kwargs) -> None:
        return None

    def delete_cookie(self, *args, **kwargs) -> None:
        return None


@bp.record_once
def _build_login_redirect(state) -> None:
    svc = state.app.extensions["authsvc"]
    svc.extra["login_redirect"] = LoginRedirect(login_url(svc.settings.public_url), svc.redirect_rules,
                                                svc.settings.trusted_proxies)


@bp.route("/auth/verify", methods=["GET", "HEAD"])
def verify():
    user = current_user
    if user.is_authenticated and not g.get("session_cookie_conflict"):
        cookie = app_cookie(request.args.get("app_cookie"), request.environ.get("HTTP_COOKIE"))
        return ProxyAnswer(status=200, headers=[
            ("X-Auth-User", user.username), ("X-Auth-User-Id", str(user.user_id)), *cookie])
    status = REDIRECT_STATUS.get(request.args.get("redirect", ""))
    if status is None:
        return ProxyAnswer(status=401)
    svc = services()
    redirect = svc.extra["login_redirect"]
    original = original_request(request.headers, request.scheme, redirect.trusted_proxies)
    location, decision = login_location(redirect, original)
    if decision is not None and not decision.accepted:
        svc.audit.emit("redirect_rejected", reason=decision.reason, value=original.url[:200], source="verify")
    return ProxyAnswer(status=status, headers={"Location": location})


class FastPath:
    """WSGI middleware: ``GET``/``HEAD /auth/verify`` with a live session, answered without Flask's
    request machinery (session object, Flask-Login, Talisman, CSRF and Flask-Limiter hooks), which
    cost several times the check itself. It makes the same decisions with the same functions: the
    signed session cookie (the app's own serializer), the strong-protection binding, the session
    verdict (with :class:`~authsvc.core.verify_cache.VerifyCache`), and sends the headers the Flask
    view's answer gets, computed once. It can only say yes: a missing, bad or foreign cookie, a
    changed binding (which must end the session), any verdict but live, a database error, a request
    Flask might route elsewhere, all go to the Flask view, unchanged. Sits inside
    :class:`~authsvc.web.proxies.TrustedProxies`, so it sees the address and scheme Flask sees."""

    def __init__(self, app: Flask, flask_wsgi) -> None:
        self.flask_wsgi = flask_wsgi
        self.sessions = app.extensions["authsvc"].sessions
        self.metrics = app.extensions["authsvc"].metrics
        self.cookie = app.config["SESSION_COOKIE_NAME"]
        self.serializer = app.session_interface.get_signing_serializer(app)
        self.max_age = int(app.permanent_session_lifetime.total_seconds())
        self.headers = {secure: _answer_headers(app, "https" if secure else "http") for secure in (False, True)}
        # Routing that depends on the host would make "is this verify?" more than the path: off then.
        self.enabled = (app.config["SERVER_NAME"] is None and app.config["TRUSTED_HOSTS"] is None
                        and not app.url_map.host_matching and not app.subdomain_matching)

    def __call__(self, environ, start_response):
        if (self.enabled and environ.get("PATH_INFO") == "/auth/verify"
                and environ.get("REQUEST_METHOD") in ("GET", "HEAD") and _plain_http(environ)):
            started = time.perf_counter()
            record = self._live_session(environ)
            if record is not None:
                start_response("200 OK", [
                    *self.headers[environ["wsgi.url_scheme"] == "https"], ("X-Auth-User", record.username),
                    ("X-Auth-User-Id", str(record.user_id)),
                    ("X-Request-ID", request_id(environ.get("HTTP_X_REQUEST_ID", ""))),
                    *self._app_cookie(environ)])
                if self.metrics is not None:
                    self.metrics.verify_seconds.labels("200").observe(time.perf_counter() - started)
                return []
        return self.flask_wsgi(environ, start_response)

    @staticmethod
    def _app_cookie(environ) -> list[tuple[str, str]]:
        query = environ.get("QUERY_STRING", "")
        if "app_cookie" not in query:  # the common case (nginx) parses nothing
            return []
        flag = parse_qs(query).get("app_cookie", [None])[0]
        return app_cookie(flag, environ.get("HTTP_COOKIE"))

    def _live_session(self, environ):
        # What Flask reads: request.cookies, request.remote_addr, request.headers["User-Agent"].
        values = parse_cookie(environ.get("HTTP_COOKIE")).getlist(self.cookie)
        if len(values) != 1 or not values[0]:
            return None  # none, or a second one planted by a sibling site (authsvc.web.crosssite)
        value = values[0]
        try:
            data = self.serializer.loads(value, max_age=self.max_age)
        except BadData:
            return None
        if not isinstance(data, dict) or data.get("_id") != binding_identifier(
                environ.get("REMOTE_ADDR"), environ.get("HTTP_USER_AGENT", "")):
            return None  # moved (the Flask path ends the session), or no binding at all
        token = data.get("_user_id")
        if not is_session_token(token):
            return None
        try:
            record, verdict = self.sessions.authenticate(token, cached=True)
        except SQLAlchemyError:
            return None  # the Flask path fails closed with its 503
        return record if verdict == LIVE else None


def _plain_http(environ) -> bool:
    """Not a websocket request, with room to spare: Werkzeug routes ws/wss schemes and
    ``Upgrade: websocket`` to websocket rules only (a 400 at verify), so any scheme but http(s)
    and any Upgrade header are left to Flask."""
    return environ.get("wsgi.url_scheme") in ("http", "https") and "HTTP_UPGRADE" not in environ


def _answer_headers(app: Flask, scheme: str) -> list[tuple[str, str]]:
    """The headers the Flask view's 200 gets from the app's after-request hooks (Talisman,
    authsvc.web.headers, ...), made once by running those hooks on an empty answer. Only HSTS
    depends on the request (secure or not), hence two lists."""
    with app.test_request_context("/auth/verify", base_url=f"{scheme}://verify.invalid"):
        response = app.process_response(ProxyAnswer(status=200))
        _, _, headers = response.get_wsgi_response(request.environ)
    return [(name, value) for name, value in headers if name != "X-Request-ID"]
