"""Forward auth: "who is this?" for a reverse proxy, once per request of every protected app.

Kept short on purpose: one signed-cookie read, one indexed lookup, no body. A remember-me cookie is
never used here (see :func:`authsvc.views.login.restore_from_remember`).
"""

from __future__ import annotations

from flask import Blueprint, Response
from flask_login import current_user

bp = Blueprint("verify", __name__)


@bp.route("/auth/verify", methods=["GET", "HEAD"])
def verify():
    user = current_user
    if not user.is_authenticated:
        return Response(status=401)
    return Response(status=200, headers={"X-Auth-User": user.username, "X-Auth-User-Id": str(user.user_id)})
