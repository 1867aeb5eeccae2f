"""Forward auth: "who is this?" for a reverse proxy, once per request of every protected app.

Kept short on purpose: one signed-cookie read, one indexed lookup, no body. A remember-me cookie is
never used here (see :func:`authsvc.web.views.login.restore_from_remember`): an anonymous browser is
sent to /login, which restores the session and sends it back.

Answers: 200 with ``X-Auth-User``, ``X-Auth-User-Id``, ``X-Auth-Methods`` and ``X-Auth-Groups`` for a
live session the access rules let through; otherwise 401, or, when the proxy asks with ``?redirect=1``
(Traefik, Caddy), 302 to the login page. With ``?redirect=401`` (nginx, whose ``auth_request``
accepts only 2xx, 401 and 403) the 401 carries that login URL in ``Location`` for ``error_page 401
=302``. See docs/integration.md.

Access rules (``[access]``, :mod:`authsvc.rules.access`, parsed once with the policy): the request
the trusted proxy describes (host, path, method: its headers only, :mod:`authsvc.rules.forward_auth`)
decides, with the session's user, groups and methods. ``bypass``: 200 without identity, whoever
asks (the session is not even read; with ``?app_cookie=1`` the app's cookies, as for a session);
``deny`` or a user no rule lets in: 403; ``two_factor`` with a one-factor session: the login page
with ``step_up=1`` (sign in again, password and second step), or 403 when the account has no
second factor to step up with. Without rules nothing of the request is read: the answer is the one
before rules existed. Every method gets the answer ``GET`` gets
(:func:`the_same_for_every_method`): Envoy's ``ext_authz`` asks with the original request's method.

Two parts. Every request for ``/auth/verify`` reaches :class:`VerifyApp`, a small WSGI application
mounted in front of Flask (:func:`mount`). It answers a live session, the answer to nearly every
call, itself, with headers made at start-up; it hands everything else to the Flask view
:func:`verify`. The Flask view stays for those because what they need is what Flask already does for
every page: end a session whose binding moved (:mod:`authsvc.web.auth`, with its audit event), treat two
session cookies as none (:mod:`authsvc.web.crosssite`), put the request id and client on audit events,
answer a database failure with 503, and websocket requests. They are rare next to live sessions, so Flask's cost there does not matter.
Both parts make their decisions with the same functions: :func:`authsvc.web.auth.binding_identifier`,
``SessionStore.authenticate``, :func:`signed_in_headers`, and :mod:`authsvc.rules.forward_auth`.
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
from authsvc.rules.access import ALLOW, BYPASS, DENY, ONE_FACTOR, STEP_UP, AccessRules, decide, for_the_account
from authsvc.rules.forward_auth import (METHOD_OVERRIDE_HEADERS, login_location, original_request, request_parts,
                                         step_up_location)
from authsvc.rules.groups import format_groups
from authsvc.rules.redirects import loggable
from authsvc.web.headers import fixed_headers
from authsvc.core.sessions import LIVE, SessionRecord
from authsvc.rules.auth_methods import format_methods

PATH = "/auth/verify"
bp = Blueprint("verify", __name__)

REDIRECT_STATUS = {"1": 302, "401": 401}
# The framing of the Flask view's empty answer (a Response's defaults), so both parts send the same.
EMPTY_BODY = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0")]
NOTHING_ASKED: tuple[str | None, str | None, str] = (None, None, "")  # without rules, the request is not read
# Where the method the proxy's own request used is kept once it is answered as GET.
OWN_METHOD = "authsvc.verify.method"


def the_same_for_every_method(environ) -> None:
    """Answer any method as ``GET``: a proxy may ask with the original request's method (Envoy's
    ``ext_authz``), and no framework default (an automatic ``OPTIONS`` answer, a 405) may answer in
    the rules' place. The method the proxy used is kept for :func:`described` (a proxy that sends no
    method header means its own)."""
    environ[OWN_METHOD] = environ.get("REQUEST_METHOD", "")
    environ["REQUEST_METHOD"] = "GET"
    # A body is never read here; a proxy that forwards one must not make it look like a form.
    environ.pop("CONTENT_TYPE", None)


class ProxyHeaders:
    """The WSGI environ as the few headers :func:`original_request` reads (``get`` only): the
    environ keys are worked out once, not on every request as Werkzeug's ``EnvironHeaders`` does."""

    KEYS = {name: "HTTP_" + name.upper().replace("-", "_") for name in (
        "X-Original-URL", "X-Original-Method", "X-Forwarded-Host", "X-Forwarded-Uri", "X-Forwarded-Method",
        *METHOD_OVERRIDE_HEADERS)}
    __slots__ = ("environ",)

    def __init__(self, environ) -> None:
        self.environ = environ

    def get(self, name: str, default=None):
        return self.environ.get(self.KEYS[name], default)


def described(headers, scheme: str, trusted_proxies: int, own_method: str) -> tuple[str | None, str | None, str]:
    """Host, target and method of the request the trusted proxy asks about, for :func:`decide`."""
    original = original_request(headers, scheme, trusted_proxies, own_method)
    return (*request_parts(original), original.method)


def app_cookie(query_string: str, cookie_header: str | None) -> list[tuple[str, str]]:
    """With ``?app_cookie=1`` a 200 also answers ``Cookie``: the request's cookies without
    authsvc's, for a proxy that can only copy headers from the answer to the app's request
    (Traefik's authResponseHeaders, which removes the header when the answer has none)."""
    if "cookie" not in query_string and "%" not in query_string:  # nginx's "redirect=401" parses nothing
        return []  # (the key, however escaped, has "cookie" or a "%" in it)
    if parse_qs(query_string, keep_blank_values=True).get("app_cookie", [None])[0] != "1":
        return []
    kept = cookieheader.without(cookie_header)
    return [("Cookie", kept)] if kept else []


def signed_in_headers(record: SessionRecord, environ) -> list[tuple[str, str]]:
    """What a 200 says about the signed-in user: name, id, the RFC 8176 methods its sign-in used
    (``X-Auth-Methods``) and its groups (``X-Auth-Groups``), comma-separated (empty when none, so a
    proxy copying the header always overwrites a client's), both read with the session record,
    cached or not, and the app's cookies when asked."""
    return [("X-Auth-User", record.username), ("X-Auth-User-Id", str(record.user_id)),
            ("X-Auth-Methods", format_methods(record.methods)), ("X-Auth-Groups", format_groups(record.groups)),
            *app_cookie(environ.get("QUERY_STRING", ""), environ.get("HTTP_COOKIE"))]


def bypass_headers(environ) -> list[tuple[str, str]]:
    """What a 200 for a ``bypass`` rule says: no identity, only the app's cookies when asked (a
    proxy that takes the app's ``Cookie`` from this answer would otherwise send the app none)."""
    return app_cookie(environ.get("QUERY_STRING", ""), environ.get("HTTP_COOKIE"))


class VerifyApp:
    """WSGI application for ``/auth/verify``: ``GET``/``HEAD`` with a live session, answered 200
    without Flask's request machinery (request context, session object, Flask-Login, Talisman,
    CSRF and Flask-Limiter hooks), which costs several times the check itself.

    It reads the session cookie as Flask's session does (the same parser, the app's own serializer
    and ``max_age``), checks the strong-protection binding with the function Flask-Login's check
    uses, and asks ``SessionStore.authenticate`` (with the verify cache) for the verdict. It can only
    say yes: a missing, bad or second cookie, a moved binding (which must end the session), any
    verdict but live, a database error, another method, a scheme but http(s) or an ``Upgrade``
    header (Werkzeug routes websocket requests to websocket rules only: a 400 here) all go to
    ``slow``, Flask with the view :func:`verify`. It sits inside
    :class:`~authsvc.web.proxies.TrustedProxies`, so it sees the address and scheme Flask sees.

    ``headers``: by ``wsgi.url_scheme``, every header of the answer but the user's and the request
    id, made once (:func:`authsvc.web.headers.fixed_headers`)."""

    def __init__(self, sessions, serializer, cookie: str, max_age: int, headers: dict[str, list[tuple[str, str]]],
                 metrics, slow, access: AccessRules, trusted_proxies: int) -> None:
        self.sessions = sessions
        self.serializer = serializer
        self.cookie = cookie
        self.max_age = max_age
        self.headers = headers
        # The 200 latency histogram, its label looked up once (None without metrics).
        self.observe_200 = metrics.verify_seconds.labels("200").observe if metrics is not None else None
        self.slow = slow
        self.access = access
        self.trusted_proxies = trusted_proxies
        # No rules and a one_factor default (the behaviour before rules): any live session passes.
        self.any_session = not access.rules and access.default == ONE_FACTOR
        self.bypass = any(rule.policy == BYPASS for rule in access.rules)  # else no need to ask anonymously

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            the_same_for_every_method(environ)
        headers = self.headers.get(environ.get("wsgi.url_scheme"))
        if headers is not None and "HTTP_UPGRADE" not in environ:
            started = time.perf_counter()
            asked = NOTHING_ASKED
            if self.access.rules:  # without rules nothing of the request is read
                asked = described(ProxyHeaders(environ), environ["wsgi.url_scheme"], self.trusted_proxies,
                                  environ.get(OWN_METHOD, environ["REQUEST_METHOD"]))
                if self.bypass and decide(self.access, *asked, None).verdict == BYPASS:
                    return self.answer(environ, start_response, headers, bypass_headers(environ), started)
            record = self.live_session(environ)
            if record is not None and (self.any_session or decide(
                    self.access, *asked, record.username, record.groups, record.methods).verdict == ALLOW):
                return self.answer(environ, start_response, headers, signed_in_headers(record, environ), started)
        return self.slow(environ, start_response)

    def answer(self, environ, start_response, headers, identity, started: float):
        """200: the headers made at start-up, the identity (none for a bypass), the request id."""
        start_response("200 OK", [*headers, *identity,
                                  ("X-Request-ID", request_id(environ.get("HTTP_X_REQUEST_ID", "")))])
        if self.observe_200 is not None:
            self.observe_200(time.perf_counter() - started)
        return []

    def live_session(self, environ) -> SessionRecord | None:
        # What Flask reads: request.cookies, request.remote_addr, request.headers["User-Agent"].
        values = parse_cookie(environ.get("HTTP_COOKIE")).getlist(self.cookie)
        if len(values) != 1 or not values[0]:
            return None  # none, or a second one planted by a sibling site (authsvc.web.crosssite)
        try:
            data = self.serializer.loads(values[0], max_age=self.max_age)
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


class Mount:
    """``/auth/verify`` (exactly) to :class:`VerifyApp`, every other path to Flask. Not Werkzeug's
    ``DispatcherMiddleware``: it matches a prefix (``/auth/verify/x.css`` must stay Flask's 404) and
    moves the path into ``SCRIPT_NAME``."""

    def __init__(self, verify: VerifyApp, flask_wsgi) -> None:
        self.verify = verify
        self.flask_wsgi = flask_wsgi

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH:
            return self.verify(environ, start_response)
        return self.flask_wsgi(environ, start_response)


def mount(app: Flask, flask_wsgi) -> Mount:
    """:class:`VerifyApp` in front of ``flask_wsgi`` (the app's WSGI callable, every hook in place),
    built once from the app's settings and services."""
    svc = app.extensions["authsvc"]
    headers = {scheme: [*EMPTY_BODY, *fixed_headers(svc.settings, svc.redirect_rules, secure=scheme == "https")]
               for scheme in ("http", "https")}
    verify_app = VerifyApp(svc.sessions, app.session_interface.get_signing_serializer(app), svc.cookies.session,
                           int(app.permanent_session_lifetime.total_seconds()), headers, svc.metrics, flask_wsgi,
                           svc.policy.access, svc.login_redirect.trusted_proxies)
    return Mount(verify_app, flask_wsgi)


# --- the Flask view: everything VerifyApp does not answer ---------------------------------------

class ProxyAnswer(Response):
    """A response that cannot carry a cookie. nginx drops the Set-Cookie of an ``auth_request``
    answer and Traefik may copy it to the app's response: either way a cookie set here (an emptied
    session after a failed binding check, say) would be lost or land on the wrong site."""

    def set_cookie(self, *args, **kwargs) -> None:
        return None

    def delete_cookie(self, *args, **kwargs) -> None:
        return None


@bp.route(PATH, methods=["GET", "HEAD"], provide_automatic_options=False)
def verify():
    """Whatever :class:`VerifyApp` did not answer (see the module's docstring)."""
    svc = services()
    user = current_user if current_user.is_authenticated and not g.get("session_cookie_conflict") else None
    access = svc.policy.access
    asked = described(request.headers, request.scheme, svc.login_redirect.trusted_proxies,
                      request.environ.get(OWN_METHOD, request.method)) if access.rules else NOTHING_ASKED
    record = user.record if user is not None else None
    decision = decide(access, *asked, record.username if record else None, record.groups if record else (),
                      record.methods if record else ())
    if decision.verdict == BYPASS:
        return ProxyAnswer(status=200, headers=bypass_headers(request.environ))
    if decision.verdict == ALLOW:
        return ProxyAnswer(status=200, headers=signed_in_headers(record, request.environ))
    if decision.verdict == STEP_UP:
        decision = for_the_account(decision, can_step_up(svc, record.user_id))
    if decision.verdict == DENY:
        svc.audit.emit("access_denied", reason=decision.reason, rule=decision.rule, host=(asked[0] or "")[:100],
                       method=asked[2])
        return ProxyAnswer(status=403)
    status = REDIRECT_STATUS.get(request.args.get("redirect", ""))
    if status is None:
        return ProxyAnswer(status=401)
    redirect = svc.login_redirect
    original = original_request(request.headers, request.scheme, redirect.trusted_proxies,
                                request.environ.get(OWN_METHOD, request.method))
    if decision.verdict == STEP_UP:
        location, judged = step_up_location(redirect, original)
    else:
        location, judged = login_location(redirect, original)
    if judged is not None and not judged.accepted:
        svc.audit.emit("redirect_rejected", reason=judged.reason, value=loggable(original.url),
                       length=len(original.url), source="verify")
    return ProxyAnswer(status=status, headers={"Location": location})


def can_step_up(svc, user_id: int) -> bool:
    """Whether signing in again can give this account a multi-factor session: it has a second
    factor, or the policy makes every account set one up at sign-in."""
    return bool(svc.factors.kinds(user_id)) or svc.policy.mfa.required
