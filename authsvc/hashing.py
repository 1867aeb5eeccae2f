"""Argon2id password hashing with a bound on concurrent work.

One :class:`Hasher` per process. ``verify`` always does one full argon2 verification, also when
there is no stored hash (unknown user): it then checks against a dummy hash made at start-up with
the same parameters, so the two cases cost the same. At most ``max_concurrent`` argon2 operations
run at once; a caller that cannot get a slot within ``queue_timeout_seconds`` gets
:class:`HashingBusy` (the view answers 503 with Retry-After), which bounds both CPU queueing and
memory (each operation holds ``memory_cost_kib``).
"""

from __future__ import annotations

import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authsvc.policy import Argon2Policy


class HashingBusy(Exception):
    """No argon2 slot became free in time."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("password hashing is saturated")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Verified:
    ok: bool
    needs_rehash: bool = False


class Hasher:
    def __init__(self, policy: Argon2Policy, observe: Callable[[float], None] | None = None) -> None:
        self._ph = PasswordHasher(time_cost=policy.time_cost, memory_cost=policy.memory_cost_kib,
                                  parallelism=policy.parallelism, hash_len=policy.hash_len,
                                  salt_len=policy.salt_len, type=Type.ID)
        self._slots = threading.BoundedSemaphore(policy.max_concurrent)
        self._timeout = policy.queue_timeout_seconds
        self._observe = observe or (lambda seconds: None)
        self.in_progress = 0
        self._dummy = self._ph.hash(secrets.token_urlsafe(32))

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._timeout):
            raise HashingBusy(retry_after=max(1, int(self._timeout)))
        self.in_progress += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self._observe(time.perf_counter() - started)
            self.in_progress -= 1
            self._slots.release()

    def hash(self, password: str) -> str:
        with self._slot():
            return self._ph.hash(password)

    def verify(self, stored: str | None, password: str) -> Verified:
        """Check ``password`` against ``stored`` (None: against the dummy, always False)."""
        with self._slot():
            try:
                self._ph.verify(stored or self._dummy, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return Verified(False)
        if stored is None:  # pragma: no cover - the dummy's password is never known
            return Verified(False)
        return Verified(True, self._ph.check_needs_rehash(stored))
