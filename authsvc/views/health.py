"""Liveness and readiness. Neither looks at request headers: no User-Agent or path trick can make
an ordinary request pass as a health check, and neither grants anything."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, jsonify

from authsvc.auth import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    svc = services()
    checks = {"database": "ok", "ratelimit_storage": "ok"}
    try:
        with svc.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:
        checks["database"] = "unavailable"
    if not svc.throttle.healthy():
        checks["ratelimit_storage"] = "unavailable"
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
