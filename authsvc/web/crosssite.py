"""Flask glue for the two cookie-tossing defences: a state-changing request must come from the
service's own pages (:mod:`authsvc.rules.sameorigin`), and a request must not carry two session cookies
(:mod:`authsvc.web.cookieheader`).

``/auth/verify`` is exempt from the origin check (proxies call it, with the browser's headers of
some other request). With two session cookies it answers as for an anonymous visitor: a proxy
turns any other status into an error page. The hook runs for every route, unknown ones included:
``/metrics`` and ``/api/v1`` have only GET routes today, and a state-changing route added there
later is checked without further wiring (a script sends neither header and passes; a page on
another origin does not). A sign-in post refused here counts toward its per-client limit
(:func:`authsvc.web.limiter.count_refusal`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, after_this_request, current_app, g, request

from authsvc.web import cookieheader

from authsvc.rules import sameorigin
from authsvc.web.errors import respond
from authsvc.web.limiter import count_refusal

VERIFY = "verify.verify"

ORIGIN_REFUSED = "This form was not sent from this site's own page. Reload the page and try again."
TWO_SESSIONS = ("Your browser sent two sign-in cookies; another site under this domain set one of them. "
                "It has been removed: reload the page.")


def init_app(app: Flask) -> None:
    svc = app.extensions["authsvc"]
    own_origin = svc.redirect_rules.own_origin
    name = svc.cookies.session
    domain, secure = svc.cookies.domain, svc.cookies.secure

    @app.before_request
    def refuse_cross_site():
        if cookieheader.count(request.environ.get("HTTP_COOKIE"), name) > 1:
            svc.audit.emit("csrf_failed", reason="two_session_cookies")
            if request.endpoint == VERIFY:
                g.session_cookie_conflict = True  # the verify view answers "not signed in"
                return None
            @after_this_request
            def expire_strays(response):  # on the 400, and on the 429 or 503 that may replace it
                for stray_domain, path in cookieheader.stray_locations(request.host, request.path, domain):
                    response.delete_cookie(name, path=path, domain=stray_domain, secure=secure, httponly=True,
                                           samesite="Lax")
                return response
            # A refused sign-in counts toward the per-client limit (the view's own limit never runs):
            # over it, the RateLimitExceeded raised here becomes the 429, a storage failure a 503.
            count_refusal()
            return respond(400, TWO_SESSIONS)
        if request.endpoint == VERIFY or request.endpoint in app.extensions.get("authsvc.csrf_exempt", ()):
            return None  # verify: proxies call it; OIDC token/revoke/userinfo: clients, with credentials
        decision = sameorigin.check(request.method, request.headers.get("Origin"),
                                    request.headers.get("Sec-Fetch-Site"), own_origin)
        if not decision.allowed:
            svc.audit.emit("csrf_failed", reason=decision.reason)
            count_refusal()
            return respond(403, ORIGIN_REFUSED)
        return None


def expire_planted_copies(response, target: str) -> None:
    """On the redirect of a signed-in browser back to an app (``target``, an accepted next): delete
    session cookies under the cookie domain on every path of ``target`` but ``/``. Verify answers
    "signed out" when a sibling planted a copy on the app's path, the login page sends the browser
    back, and without this the two would bounce it until it gives up."""
    cookies = current_app.extensions["authsvc"].cookies
    if not cookies.domain:
        return
    parts = urlsplit(target)
    shared = cookies.domain.lstrip(".")
    if not parts.hostname or not (parts.hostname == shared or parts.hostname.endswith("." + shared)):
        return
    for path in cookieheader.path_prefixes(parts.path)[1:]:
        response.delete_cookie(cookies.session, path=path, domain=cookies.domain, secure=cookies.secure,
                               httponly=True, samesite="Lax")
