"""JSON API (``/api/v1``)."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import current_user

from authsvc.web.auth import services
from authsvc.web.errors import respond

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.get("/session")
def current_session():
    if not current_user.is_authenticated:
        return respond(401)
    rec = current_user.record
    idle = services().policy.sessions.idle_timeout_seconds
    return jsonify(user_id=rec.user_id, username=rec.username, session_id=rec.id, remembered=rec.remembered,
                   methods=list(rec.methods),
                   created_at=rec.created_at, expires_at=min(rec.expires_at, rec.last_seen_at + idle),
                   absolute_expires_at=rec.expires_at)
