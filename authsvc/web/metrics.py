"""Prometheus metrics, one :class:`Metrics` per app (each with its own registry, so tests that build
many apps in one process never share counts).

- ``authsvc_events_total{event,outcome,reason}``: every audit event (fed by :class:`~authsvc.core.audit.Audit`'s sink).
- ``authsvc_login_seconds{status}``, ``authsvc_verify_seconds{status}``: whole-request latency of
  ``POST /login`` and ``/auth/verify``, by HTTP status.
- ``authsvc_argon2_seconds``: each argon2 operation (the :class:`~authsvc.core.hashing.Hasher` ``observe`` hook).
- ``authsvc_hashing_in_progress``: argon2 operations running or waiting for a slot.
- ``authsvc_live_sessions``: computed on scrape with one COUNT query.
- ``authsvc_oidc_token_requests_total{grant,result}``: every ``POST /oauth/token`` by grant type
  (``authorization_code``, ``refresh_token``, ``other``, ``missing``) and result (``issued``,
  ``throttled``, the OAuth error code of RFC 6749 5.2, or ``other``): see :func:`token_outcome`.

Under gunicorn every worker is its own process, so ``authsvc serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
to a fresh directory: values live in files there, and a scrape answered by any worker sums them all
(:mod:`authsvc.server.gunicorn_conf` removes a dead worker's live gauges).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask, g, request
from werkzeug.exceptions import HTTPException
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from authsvc.core.models import sessions

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_NOT_LABEL = re.compile(r"[^a-z0-9]+")


# Events whose reason the audit log keeps and a dashboard must not: whether a failed login named an
# unknown user, a wrong password or (with the right password) a disabled account tells whoever reads
# /metrics which usernames exist. Every reason of such an event gets one label, so a reason code added
# later cannot reopen the oracle; the audit log, read only by operators, keeps the precise code.
MERGED_REASONS = {"login_failure": "bad_credentials"}


def reason_label(value: object, event: str = "") -> str:
    """A bounded label value: reason codes pass through; free text becomes a short slug; the reasons
    of an event in :data:`MERGED_REASONS` become its one label."""
    if value is None or value == "":
        return ""
    if event in MERGED_REASONS:
        return MERGED_REASONS[event]
    return _NOT_LABEL.sub("_", str(value).lower()).strip("_")[:40]


TOKEN_GRANTS = frozenset({"authorization_code", "refresh_token"})
# RFC 6749 5.2's error codes: the only results besides issued/throttled, so a client cannot mint labels.
TOKEN_ERRORS = frozenset({"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client",
                          "unsupported_grant_type", "invalid_scope"})


def token_outcome(grant_type: object, status: int, error: object) -> tuple[str, str]:
    """The ``(grant, result)`` labels of one token endpoint answer, from a bounded set whatever the
    request said: a grant type authsvc does not offer is ``other`` (none at all: ``missing``);
    ``issued`` for 200, ``throttled`` for 429, else the answer's OAuth error code (``other`` for
    anything else: a 413, a storage failure). A replayed code or refresh token is ``invalid_grant``
    here; the audit events (``oidc_code_replayed``, ``oidc_refresh_replayed``) tell them apart."""
    if grant_type is None or grant_type == "":
        grant = "missing"
    else:
        grant = grant_type if isinstance(grant_type, str) and grant_type in TOKEN_GRANTS else "other"
    if status == 200:
        return grant, "issued"
    if status == 429:
        return grant, "throttled"
    return grant, error if isinstance(error, str) and error in TOKEN_ERRORS else "other"


def live_session_count(engine, now: float, idle_timeout_seconds: int) -> int:
    """Sessions neither revoked, expired nor idle at ``now`` (indexed by ``expires_at``)."""
    query = sa.select(sa.func.count()).select_from(sessions).where(
        sessions.c.revoked_at.is_(None), sessions.c.expires_at > now,
        sessions.c.last_seen_at > now - idle_timeout_seconds)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


class _LiveSessions:
    """Custom collector: asks the database on scrape, not on every login and logout."""

    def __init__(self, count: Callable[[], int]) -> None:
        self.count = count

    def describe(self):  # lets the registry know the name without querying at start-up
        return [GaugeMetricFamily("authsvc_live_sessions", "Server-side sessions currently live.")]

    def collect(self):
        try:
            value = self.count()
        except Exception:  # database down: leave the gauge out rather than fail the scrape
            return []
        return [GaugeMetricFamily("authsvc_live_sessions", "Server-side sessions currently live.", value=value)]


class Metrics:
    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        reg = self.registry = CollectorRegistry()
        self.events = Counter("authsvc_events", "Audit events by event, outcome and reason code.",
                              ("event", "outcome", "reason"), registry=reg)
        self.login_seconds = Histogram(
            "authsvc_login_seconds", "POST /login latency (whole request) by HTTP status.", ("status",),
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=reg)
        self.verify_seconds = Histogram(
            "authsvc_verify_seconds", "/auth/verify latency (whole request) by HTTP status.", ("status",),
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=reg)
        self.argon2_seconds = Histogram(
            "authsvc_argon2_seconds", "Time of each argon2 hash or verification.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=reg)
        self.hashing_in_progress = Gauge(
            "authsvc_hashing_in_progress", "argon2 operations running or waiting for a slot (all workers).",
            multiprocess_mode="livesum", registry=reg)
        self.oidc_token_requests = Counter(
            "authsvc_oidc_token_requests", "POST /oauth/token answers by grant type and result.", ("grant", "result"),
            registry=reg)
        self._timed = {"login.login_post": self.login_seconds, "verify.verify": self.verify_seconds}
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposed)
        else:
            self._exposed = reg

    # --- feeding ---------------------------------------------------------------------------------

    def count_event(self, event: str, outcome: str, fields: dict) -> None:
        """The :class:`~authsvc.core.audit.Audit` sink."""
        self.events.labels(event, outcome or "", reason_label(fields.get("reason"), event)).inc()

    def init_app(self, app: Flask, services) -> None:
        """Time the two hot endpoints and count live sessions. Call before other ``before_request``
        hooks are registered, so the time covers them."""
        idle = services.policy.sessions.idle_timeout_seconds
        self._exposed.register(_LiveSessions(lambda: live_session_count(services.engine, services.clock(), idle)))
        app.before_request(_start_timer)
        app.after_request(self._observe)

    def _observe(self, response):
        histogram = self._timed.get(request.endpoint)
        started = g.get("metrics_started")
        if histogram is not None and started is not None:
            histogram.labels(str(response.status_code)).observe(time.perf_counter() - started)
        if request.endpoint == GRANT_ENDPOINT and request.method == "POST":
            self.oidc_token_requests.labels(*token_outcome(_form_value("grant_type"), response.status_code,
                                                            _json_error(response))).inc()
        return response

    # --- exposition ------------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition (all workers summed in multiprocess mode) and its content type."""
        return generate_latest(self._exposed), CONTENT_TYPE_LATEST


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


GRANT_ENDPOINT = "oidc.token"  # the view that answers POST /oauth/token


def _form_value(name: str) -> str | None:
    """A form field of the request being answered, or None when its body was refused (too large,
    undecodable): that answer is counted with the grant ``missing``."""
    try:
        return request.form.get(name)
    except HTTPException:
        return None


def _json_error(response) -> object:
    if response.mimetype != "application/json" or response.direct_passthrough:
        return None
    body = response.get_json(silent=True)
    return body.get("error") if isinstance(body, dict) else None
