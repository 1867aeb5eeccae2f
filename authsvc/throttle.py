"""Per-account login throttle: exponential back-off that cannot be turned into a lock-out.

Decisions are pure functions of counts and times (:func:`decide`, :func:`block_after_failure`);
:class:`Throttle` keeps the counts in the rate-limit storage (``limits``: memory, Redis, Sentinel,
Cluster), so every instance sharing that storage shares the counts. Storage expiry is used only to
forget old keys; every time comparison uses the injected clock, so tests can move time.

Buckets are keyed by a hash of the normalized username, whether or not the account exists, so the
throttle behaves identically for both and Redis never holds usernames. A browser with a valid
device cookie for the account (it logged in successfully before) gets its own bucket: an attacker
exhausting the anonymous bucket does not lock the owner out.

If the storage fails, :class:`ThrottleUnavailable` is raised and the login is refused with 503
(fail closed), unless the policy chose ``storage_failure = "memory"``.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable

from limits import parse as parse_limit
from limits.storage import MemoryStorage, Storage
from limits.strategies import MovingWindowRateLimiter

from authsvc.policy import ThrottlePolicy


class ThrottleUnavailable(Exception):
    """The rate-limit storage could not be reached: refuse the attempt."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0
    reason: str = "ok"     # "ok", "backoff", "locked", "global" (never shown to the user)


def backoff_seconds(consecutive: int, rules: ThrottlePolicy) -> float:
    """How long an account waits after its ``consecutive``-th failure in a full window."""
    over = max(0, consecutive - rules.failures_before_backoff)
    return float(min(rules.backoff_initial_seconds * 2 ** min(over, 32), rules.backoff_max_seconds))


def decide(consecutive: int, blocked_until: float, now: float, rules: ThrottlePolicy) -> Verdict:
    """May this bucket try a password now?"""
    if consecutive >= rules.max_consecutive_failures:
        return Verdict(False, rules.backoff_max_seconds, "locked")
    if now < blocked_until:
        return Verdict(False, max(1, math.ceil(blocked_until - now)), "backoff")
    return Verdict(True)


def block_after_failure(in_window: int, consecutive: int, now: float, rules: ThrottlePolicy) -> float | None:
    """After a failure: the time until which the bucket is blocked, or None if it is not."""
    if in_window < rules.failures_before_backoff:
        return None
    return now + backoff_seconds(consecutive, rules)


def account_hash(username_key: str) -> str:
    return hashlib.sha256(b"authsvc-throttle\0" + username_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class Throttle:
    def __init__(self, storage: Storage, rules: ThrottlePolicy, clock: Callable[[], float]) -> None:
        self.storage = storage
        self.rules = rules
        self.clock = clock
        self._fallback = MemoryStorage() if rules.storage_failure == "memory" else None
        # The global limit is per process on purpose: it protects this instance's CPU.
        self._global = MovingWindowRateLimiter(MemoryStorage())
        self._global_item = parse_limit(rules.global_failed_logins)

    def _bucket(self, username_key: str, device_id: str | None) -> str:
        who = f"dev:{device_id}" if device_id else "anon"
        return f"authsvc:acct:{account_hash(username_key)}:{who}"

    def _run(self, op: Callable[[Storage], object]) -> object:
        try:
            return op(self.storage)
        except Exception as exc:  # any storage client error (redis.ConnectionError, timeouts, ...)
            if self._fallback is None:
                raise ThrottleUnavailable(str(type(exc).__name__)) from None
            return op(self._fallback)

    def check(self, username_key: str, device_id: str | None) -> Verdict:
        if device_id is None and not self._global.test(self._global_item, "failed"):
            return Verdict(False, 60, "global")
        bucket = self._bucket(username_key, device_id)

        def read(st: Storage) -> tuple[int, int]:
            return st.get(f"{bucket}:c"), st.get(f"{bucket}:u")
        consecutive, blocked_until = self._run(read)  # type: ignore[misc]
        return decide(consecutive, blocked_until, self.clock(), self.rules)

    def record_failure(self, username_key: str, device_id: str | None) -> None:
        r = self.rules
        now = self.clock()
        bucket = self._bucket(username_key, device_id)
        window = f"{bucket}:w:{int(now // r.failure_window_seconds)}"
        if device_id is None:
            self._global.hit(self._global_item, "failed")

        def write(st: Storage) -> None:
            consecutive = st.incr(f"{bucket}:c", r.consecutive_failure_memory_seconds)
            in_window = st.incr(window, 2 * r.failure_window_seconds)
            until = block_after_failure(in_window, consecutive, now, r)
            if until is not None:
                st.clear(f"{bucket}:u")
                st.incr(f"{bucket}:u", int(until - now) + r.failure_window_seconds, math.ceil(until))
        self._run(write)

    def record_success(self, username_key: str, device_id: str | None) -> None:
        """A success forgets earlier failures (NIST SP 800-63B), for this bucket and the anonymous one."""
        buckets = {self._bucket(username_key, device_id), self._bucket(username_key, None)}

        def clear(st: Storage) -> None:
            for b in buckets:
                st.clear(f"{b}:c")
                st.clear(f"{b}:u")
        self._run(clear)

    def unlock(self, username_key: str) -> None:
        """Admin override (``authsvc user unlock``): forget the anonymous bucket's failures."""
        self.record_success(username_key, None)

    def healthy(self) -> bool:
        try:
            return bool(self.storage.check())
        except Exception:
            return False
