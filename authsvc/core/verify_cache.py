"""/auth/verify's per-process cache of live session records.

A browser loading one page of a protected app sends a burst of requests, each of which the proxy
checks with /auth/verify; without a cache each check is a database round trip. An entry here
answers for the same session token while both hold:

* it is younger than ``sessions.verify_cache_seconds`` (policy; ``authsvc check`` refuses more
  than 1 s). This is the one bound for everything this process is not told about: a revocation
  made by another worker process, another instance or an ``authsvc`` command (run from any
  directory), or a change made directly in the database;
* this process has not ended a session since the record was read: whatever ends sessions here
  calls :meth:`VerifyCache.invalidate` after its commit, so a logout, password change, disabled
  account or session cap is refused by this process from the next request on.

Nothing is shared between processes: no file, no instance folder. Only records that were live are
kept, and the caller still judges each one against the current time
(:func:`authsvc.core.sessions.session_verdict`): expiry and idle timeout stay exact. The cache is
bounded (``max_entries``; expired entries leave as new ones arrive), so memory does not grow with
the number of users.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from authsvc.core.sessions import SessionRecord


class VerifyCache:
    def __init__(self, ttl_seconds: float, *, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self.clock = clock  # monotonic: a wall-clock step must not stretch an entry's life
        # token digest -> (record, expiry); insertion order = expiry order
        self._entries: dict[bytes, tuple[SessionRecord, float]] = {}
        self._generation = 0  # moved by invalidate(): tells a read from before it from one after
        self._lock = threading.Lock()  # gthread workers: one writer at a time

    def generation(self) -> int:
        """Read before the database read whose record :meth:`put` will store: if sessions end in
        between, :meth:`invalidate` moves the generation past it and the record is not stored."""
        return self._generation

    def invalidate(self) -> None:
        """Call after a commit that ended sessions: nothing read before it answers again."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def get(self, digest: bytes) -> SessionRecord | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        record, expires = entry
        if self.clock() >= expires:
            return None
        return record

    def put(self, digest: bytes, record: SessionRecord, generation: int) -> None:
        """Keep ``record``, read after :meth:`generation` returned ``generation``, unless sessions
        were ended since (it may predate that change)."""
        with self._lock:
            if generation != self._generation:
                return
            entries = self._entries
            entries.pop(digest, None)
            now = self.clock()
            entries[digest] = (record, now + self.ttl)
            while entries:  # oldest first: drop what has expired, and what is over the bound
                oldest = next(iter(entries))
                if entries[oldest][1] > now and len(entries) <= self.max_entries:
                    break
                del entries[oldest]

    def __len__(self) -> int:
        return len(self._entries)
