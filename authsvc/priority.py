"""CPU priority: a known device's argon2 before everything a flood can make the service do.

Under a login flood the CPU goes to refusing attempts (each a Flask request) and to the attackers'
argon2 guesses. A returning user's login is mostly one argon2 verification, and on a machine whose
cores the refusals keep busy that verification gets only a share of them. Nice values on Linux
are per thread and cannot be raised again without privilege, so priorities are given by *where*
work runs:

- **Low lanes**: threads ``increment`` nice levels below the worker. Anonymous argon2 always runs
  on one. While a known device's argon2 runs anywhere on the host (:class:`KnownLogins`, a small
  file every worker maps), every request except the base paths (``/auth/verify``, health,
  metrics: what proxies and monitors call) is handled on one too, by :class:`LowPriorityRequests`,
  so the flood's refusals run low exactly when they would take the CPU from a returning user.
  Otherwise requests run where gunicorn put them: handing a request to a lane and back costs
  context switches (a refused request's CPU grew by a third when every request took a lane).
- **Base**: the server's own request thread, which stays at the worker's priority. While a lane
  handles its request, that thread waits for it and runs what the lane hands back with
  :meth:`Priorities.run_at_base`: a known device's argon2, a password change's.

So under load the kernel gives a known device's argon2 (nice 0, weight 1024 per argon2 thread)
most of the CPU against refusals and anonymous argon2 (nice 10: weight 110), across every worker
process, and ``/auth/verify`` keeps its share. With ``increment`` 0, or off Linux (where a nice
value is the whole process's), nothing moves: every call runs where it is made.
"""

from __future__ import annotations

import contextvars
import logging
import mmap
import os
import queue
import struct
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from authsvc.sharedmap import in_folder, map_shared

log = logging.getLogger(__name__)
T = TypeVar("T")

# What a reverse proxy and monitors call: never behind a flood's refusals.
BASE_PATHS = frozenset({"/auth/verify", "/healthz", "/readyz", "/metrics"})
# A lane per request in progress; gunicorn's threads per worker are the real bound (8 by default).
MAX_LANES = 64


KNOWN_LOGINS_FILE = "known-logins"
SLOTS = 64  # one per worker process (by pid); two sharing a slot only end each other's mark early
# A mark outlives a worker that dies mid-argon2 by at most this; a verification that takes longer
# (a policy far above the default cost) runs its remainder without the lanes' help.
HOLD_SECONDS = 2.0
_SLOTS = struct.Struct(f"{SLOTS}d")


class KnownLogins:
    """Whether a known device's argon2 is running in any worker process on this host.

    Each process marks its slot of a small memory-mapped file in the instance folder with the
    time (``time.monotonic``, one clock for the whole host) until which it counts as running one,
    and clears it when done; reading every slot costs no system call. Without a folder it is this
    process's own count only."""

    def __init__(self, shared: mmap.mmap | None = None, slot: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slot = (os.getpid() if slot is None else slot) % SLOTS
        self._running = 0
        self._lock = threading.Lock()
        self._map: mmap.mmap | bytearray = shared if shared is not None else bytearray(_SLOTS.size)

    @classmethod
    def in_folder(cls, folder: str | None, slot: int | None = None,
                  clock: Callable[[], float] = time.monotonic) -> KnownLogins:
        """The host's marks kept in ``folder`` (:mod:`authsvc.sharedmap`), or, without a usable
        folder, this process's own (and a warning)."""
        shared = None
        if folder:
            try:
                shared = map_shared(in_folder(folder, KNOWN_LOGINS_FILE), _SLOTS.size)
            except OSError as exc:
                log.warning("known-login priority is per process: cannot keep %s in %s (%s)",
                            KNOWN_LOGINS_FILE, folder, exc.strerror)
        return cls(shared, slot, clock)

    def running(self) -> bool:
        return max(_SLOTS.unpack_from(self._map)) > self._clock()

    @contextmanager
    def mark(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
            self._write(self._clock() + HOLD_SECONDS)
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self._write(0.0)

    def _write(self, until: float) -> None:
        struct.pack_into("d", self._map, self._slot * 8, until)


def runs_at_base(path: object, base_paths: frozenset[str] = BASE_PATHS) -> bool:
    """Whether a request for ``path`` (WSGI ``PATH_INFO``) stays on the server's thread: only the
    exact base paths; any other spelling of one is an ordinary request and runs low."""
    return isinstance(path, str) and path in base_paths


def lower_thread_priority(increment: int) -> None:
    """Raise the calling thread's nice value by ``increment`` (at most 19); threads it starts (argon2's)
    inherit it. Linux's nice value is per thread; elsewhere setting it would renice the whole
    process, so nothing is done there."""
    if increment and sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
        except OSError as exc:  # lowering one's own priority needs no privilege; say so if it fails anyway
            log.warning("could not lower a low-priority thread's priority: %s", exc)


class _Job:
    def __init__(self, fn: Callable[..., object], args: tuple) -> None:
        self.fn, self.args, self.done = fn, args, Future()

    def run(self) -> None:
        try:
            self.done.set_result(self.fn(*self.args))
        except BaseException as exc:  # handed to the lane, which raises it
            self.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # the worker is stopping: this thread stops too


class _Back:
    """A request thread's end of its lane: the jobs it runs at base priority while it waits."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._open = True
        self._lock = threading.Lock()

    def run(self, fn: Callable[..., T], args: tuple) -> T:
        job = _Job(fn, args)
        with self._lock:
            if not self._open:
                raise RuntimeError("the request's server thread has stopped")
            self.jobs.put(job)
        return job.done.result()  # type: ignore[return-value]

    def serve(self) -> None:
        """Run jobs until the lane is done; if this thread stops early, no job is left waiting."""
        try:
            while (job := self.jobs.get()) is not None:
                job.run()
        finally:
            with self._lock:
                self._open = False
            while True:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.done.set_exception(RuntimeError("the request's server thread has stopped"))


class Priorities:
    """Low lanes and the way back to base priority; one per application."""

    def __init__(self, increment: int, known_logins: KnownLogins | None = None) -> None:
        self.enabled = bool(increment) and sys.platform.startswith("linux")
        self.known_logins = known_logins or KnownLogins()
        self._local = threading.local()  # on a lane: low = True, back = the request thread it serves
        # Threads start lazily, from the thread that submits: a request thread or the caller of
        # run_low, both at base priority (lanes never submit), so every lane is exactly increment low.
        self._lanes = ThreadPoolExecutor(MAX_LANES, "authsvc-low", self._become_lane, (increment,))

    def _become_lane(self, increment: int) -> None:
        lower_thread_priority(increment)
        self._local.low = True

    def run_low(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` at low priority: here if this thread is a lane, else on one."""
        if not self.enabled or getattr(self._local, "low", False):
            return fn(*args)
        return self._lanes.submit(contextvars.copy_context().run, fn, *args).result()

    def run_at_base(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` at base priority: on the request thread this lane serves, else here."""
        back = getattr(self._local, "back", None)
        return fn(*args) if back is None else back.run(fn, args)

    def run_known(self, fn: Callable[..., T], *args: object) -> T:
        """A known device's argon2: at base priority, and while it runs every worker on the host
        hands its other requests to low lanes."""
        with self.known_logins.mark():
            return self.run_at_base(fn, *args)

    def serve_low(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a lane while this (base) thread runs what it hands back."""
        if not self.enabled or getattr(self._local, "low", False):
            return fn(*args)
        back = _Back()
        result = self._lanes.submit(contextvars.copy_context().run, self._serve, back, fn, *args)
        result.add_done_callback(lambda _: back.jobs.put(None))
        back.serve()
        return result.result()

    def _serve(self, back: _Back, fn: Callable[..., T], *args: object) -> T:
        self._local.back = back
        try:
            return fn(*args)
        finally:
            self._local.back = None


class LowPriorityRequests:
    """WSGI middleware: while a known device's argon2 runs on the host, every request but
    ``base_paths`` is handled on a low lane."""

    def __init__(self, app, priorities: Priorities, base_paths: Iterable[str] = BASE_PATHS) -> None:
        self.app = app
        self.priorities = priorities
        self.base_paths = frozenset(base_paths)

    def __call__(self, environ, start_response):
        if (not self.priorities.enabled or runs_at_base(environ.get("PATH_INFO"), self.base_paths)
                or not self.priorities.known_logins.running()):
            return self.app(environ, start_response)
        return self.priorities.serve_low(self.app, environ, start_response)
