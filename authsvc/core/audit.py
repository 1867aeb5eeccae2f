"""Security audit events: one JSON object per line.

Each event carries time (UTC, ISO 8601 with ``Z``), event name, outcome, request id, user id where
known, client IP and user agent (``null`` when unknown, so every line has one schema), plus event
fields. Values are truncated and JSON-escaped (no log injection, ASVS 16.4.1). Callers pass reason
codes and ids, never a password, token, cookie or secret; :data:`FORBIDDEN` names fields that are
dropped if a caller passes one anyway. Where the lines go is :mod:`authsvc.web.logging_setup`'s job.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("authsvc.audit")

FORBIDDEN = frozenset({"password", "new_password", "current_password", "token", "cookie", "secret",
                       "secret_key", "validator", "csrf_token", "session",
                       # second factors: a code, a recovery code, a TOTP secret, a passkey's credential id
                       "code", "codes", "otp", "recovery_code", "totp_secret", "credential_id",
                       # the OpenID Provider's credentials
                       "access_token", "refresh_token", "id_token", "client_secret", "code_verifier",
                       "authorization_code"})
MAX_VALUE = 256

# The event inventory (ASVS 16.1.1) and the outcome each records unless the caller names another.
# docs/operations.md lists the same events with their fields; a test keeps code and list in step.
EVENTS: dict[str, str] = {
    # authentication
    "login_success": "success",
    "login_failure": "failure",
    "login_throttled": "refused",
    "account_locked_out": "refused",
    "device_locked_out": "refused",
    "logout": "success",
    "password_rehashed": "success",
    # second factors
    "mfa_required": "success",
    "mfa_used": "success",
    "mfa_failed": "failure",
    "mfa_throttled": "refused",
    "mfa_locked_out": "refused",
    "mfa_flow_ended": "refused",
    "recovery_code_used": "success",
    "step_up_failed": "failure",
    "step_up_throttled": "refused",
    # sessions and remember-me
    "session_revoked": "success",
    "remember_rotated": "success",
    "remember_rejected": "refused",
    "remember_replay_detected": "revoked_all",
    "remember_successor_unused": "success",
    # account lifecycle
    "user_created": "success",
    "password_changed": "success",
    "password_change_failed": "failure",
    "password_change_throttled": "refused",
    "account_disabled": "success",
    "account_enabled": "success",
    "account_unlocked": "success",
    # groups and access rules (authsvc.core.groups, authsvc.rules.access)
    "group_created": "success",
    "group_removed": "success",
    "group_member_added": "success",
    "group_member_removed": "success",
    "access_denied": "refused",
    # passkeys (authsvc.core.passkeys): row ids and reason codes only, never a credential id,
    # public key, challenge or signature
    "passkey_added": "success",
    "passkey_renamed": "success",
    "passkey_removed": "success",
    "passkey_used": "success",
    "passkey_failed": "failure",
    "mfa_added": "success",
    "mfa_removed": "success",
    "recovery_codes_generated": "success",
    "recovery_codes_voided": "success",
    "mfa_reset": "success",
    "mfa_resealed": "success",
    # the OpenID Provider (authsvc.core.oidc): client ids, reason codes and counts, never a code,
    # token, secret or verifier
    "oidc_client_added": "success",
    "oidc_client_removed": "success",
    "oidc_client_updated": "success",
    "oidc_key_rotated": "success",
    "oidc_authorize_refused": "refused",
    "oidc_consent_given": "success",
    "oidc_code_issued": "success",
    "oidc_tokens_issued": "success",
    "oidc_token_refused": "refused",
    "oidc_code_replayed": "revoked",
    "oidc_refresh_replayed": "revoked",
    "oidc_tokens_revoked": "success",
    "oidc_logout": "success",
    "oidc_logout_refused": "refused",
    "oidc_backchannel_logout_sent": "success",
    "oidc_backchannel_logout_failed": "failure",
    "oidc_backchannel_logout_dropped": "failure",
    "oidc_consent_revoked": "success",
    # attempts to get around a control
    "redirect_rejected": "refused",
    "csrf_failed": "refused",
    "metrics_denied": "refused",
    "config_refused": "refused",
    # the service or a dependency failing: the request is refused (fail closed, 503)
    "hashing_saturated": "refused",
    "ratelimit_storage_unavailable": "refused",
    "dependency_failed": "refused",
    "unhandled_error": "error",
}

_UNKNOWN = {"request_id": None, "user_id": None, "client_ip": None, "user_agent": None}


def iso_utc(now: float) -> str:
    """``2027-01-15T08:00:00.123Z``: UTC with milliseconds (ASVS 16.2.2)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "...(truncated)"
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return _clean(str(value))


def format_event(event: str, fields: dict[str, Any], now: float) -> str:
    record = {"ts": iso_utc(now), "event": event}
    record.update({k: _clean(v) for k, v in fields.items() if k not in FORBIDDEN})
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class Audit:
    """Emits events; ``context`` supplies request id, client IP, user agent and user id.

    ``sink(event, outcome, fields)`` sees every event after it is logged (the metrics counter).
    """

    def __init__(self, context: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.time,
                 sink: Callable[[str, str, dict], None] | None = None) -> None:
        self.context = context
        self.clock = clock
        self.sink = sink

    def emit(self, event: str, **fields: Any) -> None:
        merged = {**_UNKNOWN, "outcome": EVENTS.get(event, ""), **self.context(), **fields}
        logger.info(format_event(event, merged, self.clock()))
        if self.sink is not None:
            self.sink(event, merged["outcome"], merged)
