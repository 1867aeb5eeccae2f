"""Security headers: Flask-Talisman for HTTPS, HSTS and CSP, plus what Talisman does not set.

The CSP allows scripts and styles only from the service's own static files (``passkeys.js``,
the stylesheet), never inline, and ``fetch`` only to the service itself; ``form-action``
lists the service and every allowed redirect origin because browsers apply it to the redirect that
follows a form post. Every response is ``Cache-Control: no-store`` (each one carries or depends on a
session) except the static stylesheet. Endpoints that proxies call (verify, health, metrics) are
never redirected to HTTPS: a redirect there would break ``auth_request``.

The values are named here once. Talisman and :func:`_after` put them on Flask's responses;
:func:`fixed_headers` lists the same for answers made without Flask (``/auth/verify``'s live
sessions, :class:`authsvc.web.views.verify.VerifyApp`).
"""

from __future__ import annotations

from flask import Flask, request
from flask_talisman import Talisman

from authsvc.rules.redirects import RedirectRules

NO_HTTPS_REDIRECT = ("verify.verify", "health.healthz", "health.readyz", "health.metrics")


FRAME_OPTIONS = "DENY"
# same-origin: no Referer ever leaves the service (the login URL carries next), and a form post from
# its own pages carries its real Origin (under no-referrer browsers send "Origin: null", which
# authsvc.rules.sameorigin must refuse when no Sec-Fetch-Site vouches).
REFERRER_POLICY = "same-origin"
PERMISSIONS_POLICY = "browsing-topics=()"
# What Talisman does not set.
_EXTRA = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Every response but the stylesheet carries or depends on a session.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def content_security_policy(rules: RedirectRules) -> str:
    origins = sorted({app.origin for app in rules.apps})
    return "; ".join([
        "default-src 'none'",
        # The passkey ceremonies' one static script and its JSON posts; never inline script.
        "script-src 'self'",
        "connect-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "object-src 'none'",
        " ".join(["form-action", "'self'", *origins]),
        "frame-ancestors 'none'",
    ])


def strict_transport_security(max_age_seconds: int, preload: bool) -> str:
    """The HSTS value, as Talisman writes it from the same settings."""
    return f"max-age={max_age_seconds}; includeSubDomains" + ("; preload" if preload else "")


def fixed_headers(settings, rules: RedirectRules, *, secure: bool) -> list[tuple[str, str]]:
    """The headers Talisman and :func:`_after` give every response outside ``/static``, as one list
    made at start-up for answers made without Flask. HSTS only over https (``secure``), as Talisman
    sends it. tests/security/test_verify_cache.py compares them with a Flask answer's."""
    policy = settings.policy.headers
    headers = [
        ("Content-Security-Policy", content_security_policy(rules)),
        ("X-Frame-Options", FRAME_OPTIONS),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", REFERRER_POLICY),
        ("Permissions-Policy", PERMISSIONS_POLICY),
        *_EXTRA.items(),
        *_NO_STORE.items(),
        ("Vary", "Cookie"),
    ]
    if secure:
        headers.append(("Strict-Transport-Security",
                        strict_transport_security(policy.hsts_max_age_seconds, policy.hsts_preload)))
    return headers


def _after(response):
    if request.endpoint != "static":
        response.headers.update(_NO_STORE)
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
        frame_options=FRAME_OPTIONS,
        strict_transport_security=True,
        strict_transport_security_max_age=policy.hsts_max_age_seconds,
        strict_transport_security_include_subdomains=True,
        strict_transport_security_preload=policy.hsts_preload,
        content_security_policy=content_security_policy(rules),
        referrer_policy=REFERRER_POLICY,
        permissions_policy=PERMISSIONS_POLICY,
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
