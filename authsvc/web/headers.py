"""Security headers: Flask-Talisman for HTTPS, HSTS and CSP, plus what Talisman does not set.

The CSP allows no script at all and styles only from the service's own stylesheet; ``form-action``
lists the service and every allowed redirect origin because browsers apply it to the redirect that
follows a form post. Every response is ``Cache-Control: no-store`` (each one carries or depends on a
session) except the static stylesheet. Endpoints that proxies call (verify, health, metrics) are
never redirected to HTTPS: a redirect there would break ``auth_request``.
"""

from __future__ import annotations

from flask import Flask, request
from flask_talisman import Talisman

from authsvc.rules.redirects import RedirectRules

NO_HTTPS_REDIRECT = ("verify.verify", "health.healthz", "health.readyz", "health.metrics")


def content_security_policy(rules: RedirectRules) -> dict[str, str]:
    origins = sorted({app.origin for app in rules.apps})
    return {
        "default-src": "'none'",
        "style-src": "'self'",
        "img-src": "'self'",
        "base-uri": "'none'",
        "object-src": "'none'",
        "form-action": " ".join(["'self'", *origins]),
        "frame-ancestors": "'none'",
    }


_EXTRA = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "interest-cohort=(), browsing-topics=()",
}


def _after(response):
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
        response.vary.add("Cookie")
    for name, value in _EXTRA.items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask, settings, rules: RedirectRules) -> None:
    policy = settings.policy.headers
    Talisman(
        app,
        force_https=settings.production,
        force_https_permanent=False,
        frame_options="DENY",
        strict_transport_security=True,
        strict_transport_security_max_age=policy.hsts_max_age_seconds,
        strict_transport_security_include_subdomains=True,
        strict_transport_security_preload=policy.hsts_preload,
        content_security_policy=content_security_policy(rules),
        # same-origin: no Referer ever leaves the service (the login URL carries next), and a form
        # post from its own pages carries its real Origin (under no-referrer browsers send
        # "Origin: null", which authsvc.rules.sameorigin must refuse when no Sec-Fetch-Site vouches).
        referrer_policy="same-origin",
        session_cookie_secure=settings.production,
        session_cookie_http_only=True,
        session_cookie_samesite="Lax",
        x_content_type_options=True,
    )
    for endpoint in NO_HTTPS_REDIRECT:
        view = app.view_functions.get(endpoint)
        if view is not None:
            view.talisman_view_options = {"force_https": False}
    app.after_request(_after)
