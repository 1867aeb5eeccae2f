"""Forward auth: "who is this?" for a reverse proxy, once per request of every protected app.

Kept short on purpose: one signed-cookie read, one indexed lookup, no body. A remember-me cookie is
never used here (see :func:`authsvc.views.login.restore_from_remember`): an anonymous browser is
sent to /login, which restores the session and sends it back.

Answers: 200 with ``X-Auth-User`` and ``X-Auth-User-Id`` for a live session; otherwise 401, or, when
the proxy asks with ``?redirect=1`` (Traefik, Caddy), 302 to the login page. With ``?redirect=401``
(nginx, whose ``auth_request`` accepts only 2xx, 401 and 403) the 401 carries that login URL in
``Location`` for ``error_page 401 =302``. See docs/integration.md.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask_login import current_user

from authsvc.auth import services
from authsvc.forward_auth import LoginRedirect, login_location, login_url, original_request

bp = Blueprint("verify", __name__)

REDIRECT_STATUS = {"1": 302, "401": 401}


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
    if user.is_authenticated:
        return ProxyAnswer(status=200, headers={"X-Auth-User": user.username, "X-Auth-User-Id": str(user.user_id)})
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
