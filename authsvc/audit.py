"""Security audit events: one JSON object per line.

Each event carries time (UTC), event name, request id, user id where known, client IP and user
agent, plus event fields. Values are truncated and JSON-escaped (no log injection, ASVS 16.4.1).
Callers pass reason codes and ids, never a password, token, cookie or secret; :data:`FORBIDDEN`
names fields that are dropped if a caller passes one anyway.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

logger = logging.getLogger("authsvc.audit")

FORBIDDEN = frozenset({"password", "new_password", "current_password", "token", "cookie", "secret",
                       "secret_key", "validator", "csrf_token", "session"})
MAX_VALUE = 256


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "...(truncated)"
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return _clean(str(value))


def format_event(event: str, fields: dict[str, Any], now: float) -> str:
    record = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z",
              "event": event}
    record.update({k: _clean(v) for k, v in fields.items() if k not in FORBIDDEN})
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class Audit:
    """Emits events; ``context`` supplies request id, client IP, user agent and user id."""

    def __init__(self, context: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.time,
                 sink: Callable[[str, str, dict], None] | None = None) -> None:
        self.context = context
        self.clock = clock
        self.sink = sink

    def emit(self, event: str, **fields: Any) -> None:
        merged = {**self.context(), **fields}
        logger.info(format_event(event, merged, self.clock()))
        if self.sink is not None:
            self.sink(event, merged.get("outcome", ""), merged)
