"""Argon2id password hashing with a bound on concurrent work.

One :class:`Hasher` per process. ``verify`` always does one full argon2 verification, also when
there is no stored hash (unknown user): it then checks against a dummy hash made at start-up with
the same parameters, so the two cases cost the same. At most ``max_concurrent`` argon2 operations
run at once; a caller that cannot get a slot within ``queue_timeout_seconds`` gets
:class:`HashingBusy` (the view answers 503 with Retry-After), which bounds both CPU queueing and
memory (each operation holds ``memory_cost_kib``).

Verifications for logins without a known-device cookie ("anonymous": every attacker, and an owner
on a new browser) get ``anonymous_max_concurrent`` of those slots and everything else the rest, at
most ``anonymous_queue`` anonymous ones wait and at most ``known_queue`` others (the rest get
:class:`HashingBusy` at once, so a flood of either kind cannot tie up every server thread).

Anonymous argon2 runs on a small executor of ``anonymous_max_concurrent`` threads, each of which
raises its own nice value by ``anonymous_nice`` once when it starts; everything else (known
devices, password changes, the CLI) runs on the calling thread at its own priority. So under a
flood the kernel gives a known device's argon2 most of the CPU against the attackers', across all
worker processes, and nothing moves a request between threads.

:func:`with_hugepages` is the glibc setting ``authsvc serve`` gives its workers so that argon2's
memory comes in 2 MiB pages rather than 4 KiB ones (see there).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authsvc.core.policy import Argon2Policy

log = logging.getLogger(__name__)


T = TypeVar("T")

class HashingBusy(Exception):
    """No argon2 slot became free in time."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("password hashing is saturated")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Verified:
    ok: bool
    needs_rehash: bool = False


class Slots:
    """At most ``size`` holders and at most ``queue`` waiters; a waiter gives up after ``timeout``."""

    def __init__(self, size: int, queue: int, timeout: float) -> None:
        self._free = threading.BoundedSemaphore(size)
        self._queue = queue
        self._timeout = timeout
        self._waiting = 0
        self._lock = threading.Lock()

    @contextmanager
    def held(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self._queue:
                    raise HashingBusy(retry_after=max(1, int(self._timeout)))
                self._waiting += 1
            try:
                acquired = self._free.acquire(timeout=self._timeout)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise HashingBusy(retry_after=max(1, int(self._timeout)))
        try:
            yield
        finally:
            self._free.release()


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment`` (at most 19); the threads it starts
    (argon2's own) inherit it. Linux's nice value is per thread; elsewhere setting it would renice
    the whole process, so nothing is done there. An unprivileged thread can never lower it again,
    so only threads that never need it back call this: anonymous argon2's, and the request threads
    of ``authsvc serve`` (:mod:`authsvc.server.wsgi`) once known devices' threads are started."""
    if increment and sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except OSError as exc:  # lowering one's own priority needs no privilege; say so if it fails anyway
            log.warning("could not lower a thread's priority: %s", exc)


HUGEPAGES_TUNABLE = "glibc.malloc.hugetlb"


def with_hugepages(tunables: str | None) -> str:
    """The ``GLIBC_TUNABLES`` value for a process that runs argon2: ``tunables`` with
    ``glibc.malloc.hugetlb=1`` added, unless it already names that tunable (``=0`` turns it off, and
    the operator's choice stands).

    argon2 mallocs its whole ``memory_cost`` for every operation and frees it after; glibc serves
    a block that size with a fresh mmap, which the kernel then faults in and zeroes 4 KiB at a time:
    16,384 faults at 64 MiB, a large share of a verify's CPU time, work that no attacker's cracking rig
    does. With ``hugetlb=1`` glibc asks for transparent huge pages on such mappings (madvise), so
    the same memory arrives in 32 faults of 2 MiB. The hash, its parameters and its cost to an
    attacker are unchanged. Where the kernel's transparent huge pages are off ("never") nothing
    changes; ``docs/performance.md`` has the figures."""
    entries = [entry for entry in (tunables or "").split(":") if entry]
    if any(entry.split("=", 1)[0].strip() == HUGEPAGES_TUNABLE for entry in entries):
        return tunables or ""
    return ":".join([*entries, f"{HUGEPAGES_TUNABLE}=1"])


@functools.lru_cache(maxsize=8)
def _dummy_hash(time_cost: int, memory_cost_kib: int, parallelism: int, hash_len: int, salt_len: int) -> str:
    """The hash an unknown user's password is checked against: of a random secret, with exactly
    these parameters, so that check costs what a real one does. One per parameter set and
    process: ``authsvc serve`` builds one app per worker either way, and a process that builds
    many (the tests) needs no fresh argon2 run for each."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism,
                          hash_len=hash_len, salt_len=salt_len, type=Type.ID).hash(secrets.token_urlsafe(32))


class Hasher:
    def __init__(self, policy: Argon2Policy, observe: Callable[[float], None] | None = None,
                 in_progress: Callable[[], AbstractContextManager] | None = None) -> None:
        """``observe(seconds)`` sees each operation's argon2 time; ``in_progress()`` is entered
        for each operation from the moment it asks for a slot (queue included) to its end."""
        self._ph = PasswordHasher(time_cost=policy.time_cost, memory_cost=policy.memory_cost_kib,
                                  parallelism=policy.parallelism, hash_len=policy.hash_len,
                                  salt_len=policy.salt_len, type=Type.ID)
        timeout = policy.queue_timeout_seconds
        # Every operation holds one of max_concurrent slots (the memory bound). Within them the
        # classes are partitioned: anonymous logins get anonymous_max_concurrent, everything else
        # (known devices, password changes, the CLI) the rest, so neither class can take the
        # other's, and with the defaults a process runs at most one argon2 per class: argon2s
        # beyond the machine's cores only make each one costlier.
        # Every queue is bounded, so a flood of either kind gets 503 at once instead of holding
        # server threads (a known device's queue was unbounded until the review of December 2026):
        # known_queue for known devices and password changes, anonymous_queue for the rest, and the
        # shared slots are only ever asked for by holders of a class slot, so at most that many wait.
        known = max(1, policy.max_concurrent - policy.anonymous_max_concurrent)
        self._known_size = known
        self._base: ThreadPoolExecutor | None = None  # start_base_threads
        self._anonymous = Slots(policy.anonymous_max_concurrent, policy.anonymous_queue, timeout)
        self._known = Slots(known, policy.known_queue, timeout)
        self._slots = Slots(policy.max_concurrent, policy.anonymous_max_concurrent + known, timeout)
        # Only holders of an anonymous slot submit here, so its own queue never holds a waiting job:
        # the slots are the bound. Threads start on first use, from a request thread at base priority.
        self._low = ThreadPoolExecutor(max(1, policy.anonymous_max_concurrent), "authsvc-argon2-anonymous",
                                       initializer=lower_thread_priority, initargs=(policy.anonymous_nice,))
        self._observe = observe or (lambda seconds: None)
        self._in_progress = in_progress or nullcontext
        self._dummy = _dummy_hash(policy.time_cost, policy.memory_cost_kib, policy.parallelism,
                                  policy.hash_len, policy.salt_len)

    def start_base_threads(self) -> None:
        """From now on run known devices', password changes' and the CLI's argon2 on threads
        started here, at the calling thread's priority. ``authsvc serve`` calls this in each worker
        before it lowers the priority of the thread its request threads come from
        (``argon2.request_nice``), so that argon2 keeps the worker's own priority while a flood's
        refusals run below it. Without it (tests, the CLI) that argon2 runs on the caller's thread."""
        pool = ThreadPoolExecutor(self._known_size, "authsvc-argon2-base")
        started = threading.Barrier(self._known_size + 1)
        for _ in range(self._known_size):  # each job waits, so each submit starts a thread now
            pool.submit(started.wait)
        started.wait()
        self._base = pool

    def _at_base(self, fn: Callable[..., T], *args: object) -> T:
        return fn(*args) if self._base is None else self._base.submit(fn, *args).result()

    @contextmanager
    def _slot(self, anonymous: bool = False) -> Iterator[None]:
        with (self._anonymous if anonymous else self._known).held(), self._slots.held():
            started = time.perf_counter()
            try:
                yield
            finally:
                self._observe(time.perf_counter() - started)

    def hash(self, password: str) -> str:
        """A new hash of ``password`` at base priority (password changes and the CLI: never anonymous)."""
        with self._in_progress(), self._slot():
            return self._at_base(self._ph.hash, password)

    def verify(self, stored: str | None, password: str, *, anonymous: bool) -> Verified:
        """Check ``password`` against ``stored`` (None: against the dummy, always False).

        Every caller says which kind it is: ``anonymous=True`` (a login without a known-device
        cookie) takes an anonymous slot and runs argon2 on a low-priority thread, everything else
        at base priority (:meth:`start_base_threads`). Raises :class:`HashingBusy` when no slot is free in time."""
        with self._in_progress(), self._slot(anonymous):
            if anonymous:
                ok = self._low.submit(self._check, stored, password).result()
            else:
                ok = self._at_base(self._check, stored, password)
        if not ok or stored is None:
            return Verified(False)
        return Verified(True, self._ph.check_needs_rehash(stored))

    def _check(self, stored: str | None, password: str) -> bool:
        try:
            return self._ph.verify(stored or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
