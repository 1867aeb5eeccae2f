"""/auth/verify's per-process cache of live session records.

A browser loading one page of a protected app sends a burst of requests, each of which the proxy
checks with /auth/verify; without a cache each check is a database round trip. An entry here
answers for the same session token while both hold:

* it is younger than ``sessions.verify_cache_seconds`` (policy; ``authsvc check`` refuses more
  than 1 s): how late another instance's revocation, or a change made directly in the database,
  can be noticed;
* the instance's :class:`~authsvc.revocation.RevocationEpoch` has not moved since the record was
  read: a revocation on this instance, in any worker process, is noticed at once.

Only records that were live are kept, and the caller still judges each one against the current
time (:func:`authsvc.core.sessions.session_verdict`): expiry and idle timeout stay exact. The cache is
bounded (``max_entries``; expired entries leave as new ones arrive), so memory does not grow with
the number of users.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from authsvc.revocation import RevocationEpoch
from authsvc.core.sessions import SessionRecord


class VerifyCache:
    def __init__(self, ttl_seconds: float, epoch: RevocationEpoch, *, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.epoch = epoch
        self.max_entries = max_entries
        self.clock = clock  # monotonic: a wall-clock step must not stretch an entry's life
        # token digest -> (record, epoch when read, expiry); insertion order = expiry order
        self._entries: dict[bytes, tuple[SessionRecord, int, float]] = {}
        self._lock = threading.Lock()  # gthread workers: one writer at a time

    def mark(self) -> int:
        """Read before the database: a revocation committed after this moves the epoch past it."""
        return self.epoch.current()

    def get(self, digest: bytes) -> SessionRecord | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        record, epoch, expires = entry
        if self.clock() >= expires or epoch != self.epoch.current():
            return None
        return record

    def put(self, digest: bytes, record: SessionRecord, mark: int) -> None:
        with self._lock:
            entries = self._entries
            entries.pop(digest, None)
            now = self.clock()
            entries[digest] = (record, mark, now + self.ttl)
            while True:  # oldest first: drop what has expired, and what is over the bound
                oldest = next(iter(entries))
                if entries[oldest][2] > now and len(entries) <= self.max_entries:
                    break
                del entries[oldest]

    def __len__(self) -> int:
        return len(self._entries)
