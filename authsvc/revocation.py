"""The revocation epoch: one number every process of an instance shares, moved by every revocation.

/auth/verify may answer from a short-lived per-process cache (:mod:`authsvc.core.verify_cache`). A
revocation must still take effect at once on the instance that made it, in every worker process,
not only in the one that served the logout. So whatever makes a session stop being live (a
revocation, the session cap, disabling an account) calls :meth:`RevocationEpoch.bump` after its
transaction commits, and a cache entry counts only while the epoch is what it was when the entry
was read from the database.

The number lives in an 8-byte file in the instance folder, memory-mapped by each process: reading
it costs no system call, so verify can check it on every request. Processes on other hosts (or
with another instance folder) do not see it; for them the cache's lifetime
(``sessions.verify_cache_seconds``, at most 1 second) is the bound.
"""

from __future__ import annotations

import fcntl
import logging

from authsvc.sharedmap import in_folder, map_shared

log = logging.getLogger("authsvc")

FILENAME = "revocation-epoch"
_SIZE = 8


class RevocationEpoch:
    def __init__(self, path: str) -> None:
        self.path = path
        self._map = map_shared(path, _SIZE)

    @classmethod
    def in_folder(cls, folder: str) -> RevocationEpoch | None:
        """The epoch of the instance at ``folder``, or None (and a warning) if it cannot be kept
        there: then nothing may be cached, as a revocation could not reach the other workers."""
        try:
            return cls(in_folder(folder, FILENAME))
        except OSError as exc:
            log.warning("verify cache off: cannot keep %s in %s (%s)", FILENAME, folder, exc.strerror)
            return None

    def current(self) -> int:
        return int.from_bytes(self._map[:_SIZE], "little")

    def bump(self) -> None:
        """Call after the revocation has committed. Readers read the epoch before the database: an
        entry tagged with the old value may predate the change and is dropped; one tagged with the
        new value was read after the commit."""
        try:
            with open(self.path, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # two processes must not both write the same "new" value
                self._increment()
        except OSError:  # the file was removed under us: this mapping is still the one the workers share
            self._increment()

    def _increment(self) -> None:
        self._map[:_SIZE] = ((self.current() + 1) % 2**64).to_bytes(_SIZE, "little")
