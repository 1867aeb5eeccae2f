"""Values a request may use once, wherever it lands.

A passkey ceremony's challenge lives in the browser's signed session cookie, so every copy of that
cookie carries it: taking it out of the cookie the answer sets does nothing to the copy the request
came with. A synced passkey counts nothing (its signature counter is always 0), so a captured
sign-in (its Cookie header and body, in a HAR file or a proxy's log) replayed within the
challenge's five minutes signed in again from anywhere (found by review, session 13). Spending a
value is therefore recorded here, by its SHA-256, in the rate-limit storage every instance shares,
for as long as the value could be used: the first request to spend it wins (one atomic increment),
every other copy is refused. A storage failure raises
:class:`authsvc.core.throttle.ThrottleUnavailable`: refused with 503, like the throttle (fail closed).
"""

from __future__ import annotations

import hashlib

from limits.storage import Storage

from authsvc.core.throttle import ThrottleUnavailable


class SpentOnce:
    def __init__(self, storage: Storage, prefix: str, lifetime_seconds: int) -> None:
        self.storage = storage
        self.prefix = prefix
        self.lifetime_seconds = max(1, lifetime_seconds)

    def spend(self, value: bytes) -> bool:
        """True for the first request to spend ``value`` within its lifetime, False for every later one."""
        key = f"{self.prefix}:{hashlib.sha256(value).hexdigest()}"
        try:
            return self.storage.incr(key, self.lifetime_seconds) == 1
        except Exception as exc:  # noqa: BLE001 - any storage client error: redis, timeouts, ...
            raise ThrottleUnavailable(type(exc).__name__) from None
