"""Liveness, readiness and metrics. None looks at request headers other than /metrics' bearer
token: no User-Agent or path trick can make an ordinary request pass as a health check, and none
grants anything.

``/healthz`` touches no dependency (a database outage must not get every worker restarted);
``/readyz`` checks the database and the rate-limit storage at once, each bounded by
:data:`CHECK_TIMEOUT_SECONDS`, and names the one that failed.
"""

from __future__ import annotations

import hmac
import time
from concurrent.futures import Future, ThreadPoolExecutor

import sqlalchemy as sa
from flask import Blueprint, Response, abort, jsonify, request

from authsvc.web.auth import services
from authsvc.web.errors import respond

bp = Blueprint("health", __name__)

CHECK_TIMEOUT_SECONDS = 1.0
# Two threads per process: a hung dependency holds at most these, and later probes time out
# waiting instead of piling up threads.
_checks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="authsvc-readyz")


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _database_ok(engine) -> bool:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return True


def _result(future: Future, deadline: float) -> str:
    try:
        return "ok" if future.result(timeout=max(0.0, deadline - time.monotonic())) else "unavailable"
    except TimeoutError:
        future.cancel()
        return "timeout"
    except Exception:
        return "unavailable"


@bp.get("/readyz")
def readyz():
    svc = services()
    deadline = time.monotonic() + CHECK_TIMEOUT_SECONDS
    pending = {"database": _checks.submit(_database_ok, svc.engine),
               "ratelimit_storage": _checks.submit(svc.throttle.healthy)}
    checks = {name: _result(future, deadline) for name, future in pending.items()}
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503


@bp.get("/metrics")
def metrics():
    svc = services()
    expected = svc.settings.metrics_token
    if not expected:
        abort(404)  # metrics are off: the route does not exist
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            supplied.strip().encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")):
        svc.audit.emit("metrics_denied", reason="bad_token" if supplied else "no_token")
        response = respond(401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="authsvc-metrics"'
        return response
    body, content_type = svc.metrics.render()
    return Response(body, content_type=content_type)
