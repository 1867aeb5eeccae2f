"""Per-account login throttle: exponential back-off that cannot be turned into a lock-out.

Decisions are pure functions of counts and times (:func:`decide`, :func:`window_full`,
:func:`block_after_failure`, :func:`backoff_seconds`); :class:`Throttle` keeps the counts in the
rate-limit storage (``limits``: memory, Redis, Sentinel, Cluster), so every instance sharing that
storage shares them. Storage expiry is used only to forget old keys; every time comparison uses
the injected clock, so tests can move time.

Buckets are keyed by a hash of the normalized username, whether or not the account exists, so the
throttle behaves identically for both and the storage never holds usernames. A known device of the
account (:mod:`authsvc.core.devices`: a valid device cookie whose id the server holds for the account)
gets its own bucket: an attacker exhausting the anonymous bucket does not lock the owner out.

The global window (``global_logins``, per process) counts every attempt :meth:`Throttle.attempt`
lets through, since each runs argon2 whatever its outcome: anonymous ones only while it has room,
known devices' always, though it never refuses them (:mod:`authsvc.web.limiter` bounds those).

The rules, all from ``[throttle]`` in the policy:

* once ``failures_before_backoff`` (F) failures of a bucket fall within ``failure_window_seconds``
  (a sliding window, so a burst across a window boundary counts too), every further failure blocks
  the bucket for ``backoff_initial_seconds * 2^(consecutive - F)``, at most ``backoff_max_seconds``;
  the back-off lasts until a success, or until no failure came for a whole window after the last
  block ended;
* at ``max_consecutive_failures`` consecutive failures the bucket refuses until a success (NIST
  SP 800-63B: at most 100);
* a success in a bucket forgets that bucket's failures. A success from a known device also resets
  the anonymous bucket's consecutive count (lifting the NIST hard limit for the owner's new
  browsers) but keeps its back-off and window, so the owner's logins never hand an attacker fresh
  attempts.

:meth:`Throttle.attempt` is how a password check uses all this::

    with throttle.attempt(username_key, device_id) as attempt:
        if not attempt.verdict.allowed:
            ...                                  # refuse, with attempt.verdict.retry_after
        elif password_is_wrong:
            verdict = attempt.record_failure()   # the bucket's verdict after this failure
        else:
            attempt.record_success()

While the block runs it holds a short per-bucket gate, so a burst of parallel requests cannot all
pass the check before the first failure is recorded (the classic "limit overrun" race); the gate
is let go when the block ends, also when it ends with an exception (``HashingBusy``, a database
error), and expires by itself if the process dies holding it.

If the storage fails, :class:`ThrottleUnavailable` is raised and the login is refused with 503
(fail closed), unless the policy chose ``storage_failure = "memory"``. Warehouse's limiter answers
"allowed" when Redis is down; for a login throttle that would mean unlimited guesses.

The second step of a sign-in (a code after the password) is throttled by a second instance with
its own key space (``prefix``) and ``guards_argon2=False``: the same buckets, back-off and lock-out
per account, counted apart from the password's (so a right password, which resets the password's
buckets, resets nothing of the codes'), without the global window and the success windows, which
bound argon2 and a code check runs none.
"""

from __future__ import annotations

import collections
import hashlib
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from limits import parse as parse_limit
from limits import parse_many
from limits.storage import MemoryStorage, Storage

from authsvc.core.policy import ThrottlePolicy

# Longest time a bucket's gate can stay held if its holder dies without releasing it (a worker
# killed mid-request). Far above any argon2 verification plus its queue wait.
GATE_SECONDS = 30


class ThrottleUnavailable(Exception):
    """The rate-limit storage could not be reached: refuse the attempt."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0
    reason: str = "ok"     # "ok", "backoff", "locked", "global", "busy", "successes" (never shown to the user)


def backoff_seconds(consecutive: int, rules: ThrottlePolicy) -> float:
    """How long a bucket waits after its ``consecutive``-th failure once its window is full."""
    over = max(0, consecutive - rules.failures_before_backoff)
    return float(min(rules.backoff_initial_seconds * 2 ** min(over, 32), rules.backoff_max_seconds))


def decide(consecutive: int, blocked_until: float, now: float, rules: ThrottlePolicy) -> Verdict:
    """May this bucket try a password now?"""
    if consecutive >= rules.max_consecutive_failures:
        return Verdict(False, rules.backoff_max_seconds, "locked")
    if now < blocked_until:
        return Verdict(False, max(1, math.ceil(blocked_until - now)), "backoff")
    return Verdict(True)


def window_full(recent_failures: Sequence[float], now: float, rules: ThrottlePolicy) -> bool:
    """Do at least ``failures_before_backoff`` of ``recent_failures`` (times) fall in the window?"""
    since = now - rules.failure_window_seconds
    return sum(1 for t in recent_failures if t > since) >= rules.failures_before_backoff


def block_after_failure(recent_failures: Sequence[float], consecutive: int, now: float,
                        previous_block_until: float, rules: ThrottlePolicy) -> float | None:
    """After a failure at ``now`` (included in ``recent_failures``): blocked until when, or None.

    A bucket backs off once its window is full, and stays backing off while failures keep coming
    within a window of its last block's end: otherwise a long block would age the window out and
    every block would be followed by a fresh burst of free attempts.
    """
    persisting = previous_block_until > 0 and now - previous_block_until < rules.failure_window_seconds
    if not (persisting or window_full(recent_failures, now, rules)):
        return None
    return now + backoff_seconds(consecutive, rules)


def window_index(now: float, period: int) -> int:
    """Which fixed window of ``period`` seconds ``now`` falls in."""
    return math.floor(now / period)


def success_verdict(windows: Sequence[tuple[int, int, int]], now: float) -> Verdict:
    """May an account with ``(successes so far, limit, period seconds)`` in each current fixed window
    try a password now? Refused while any window is full, until that window ends."""
    waits = [math.ceil((window_index(now, period) + 1) * period - now)
             for count, amount, period in windows if count >= amount]
    return Verdict(False, max(1, max(waits)), "successes") if waits else Verdict(True)


def account_hash(username_key: str) -> str:
    return hashlib.sha256(b"authsvc-throttle\0" + username_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class _GlobalWindow:
    """A moving window of attempt times kept in this process, on the injected clock."""

    def __init__(self, amount: int, period: int) -> None:
        self.amount = amount
        self.period = period
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()

    def _wait(self, now: float) -> int:
        self._expire(now)
        if len(self._times) < self.amount:
            return 0
        return max(1, math.ceil(self._times[0] + self.period - now))

    def retry_after(self, now: float) -> int:
        """0 if another attempt may be tried now, else seconds until one may."""
        with self._lock:
            return self._wait(now)

    def take(self, now: float) -> int:
        """Count an attempt if there is room (0), else the seconds until there is (nothing
        counted). One step, so parallel attempts cannot all see room for the last one."""
        with self._lock:
            wait = self._wait(now)
            if not wait:
                self._times.append(now)
            return wait

    def hit(self, now: float) -> None:
        """Count an attempt that may not be refused (a known device's)."""
        with self._lock:
            self._expire(now)
            self._times.append(now)
            while len(self._times) > self.amount:  # memory stays bounded whatever the flood
                self._times.popleft()


class Attempt:
    """One login attempt inside :meth:`Throttle.attempt`: its ``verdict``, and the two ways it ends
    when the verdict allowed a password check."""

    def __init__(self, throttle: Throttle, username_key: str, device_id: str | None) -> None:
        self.verdict = Verdict(False, 1, "busy")
        self._throttle = throttle
        self._username_key = username_key
        self._device_id = device_id
        self._gates: list[str] = []

    def record_failure(self) -> Verdict:
        """Count a wrong password; returns the bucket's verdict after it, so a caller learns that
        this failure locked the bucket without reading the storage again."""
        self._checked()
        return self._throttle.record_failure(self._username_key, self._device_id)

    def record_success(self) -> None:
        self._checked()
        self._throttle.record_success(self._username_key, self._device_id)

    def record_confirmation(self) -> None:
        """A right password that signs nobody in (a password change's current password, a
        step-up): counted in the account's success windows like a sign-in, the failures kept."""
        self._checked()
        self._throttle.record_confirmation(self._username_key)

    def _checked(self) -> None:
        if not self.verdict.allowed:  # a programming error: a refused attempt checked no password
            raise RuntimeError("a refused attempt has no outcome to record")

    def _release(self) -> None:
        """Let the gates go; idempotent, never raises (a gate also expires by itself)."""
        gates, self._gates = self._gates, []
        for gate in gates:
            try:
                self._throttle._run(lambda st, gate=gate: st.clear(gate))
            except ThrottleUnavailable:
                pass


class Throttle:
    def __init__(self, storage: Storage, rules: ThrottlePolicy, clock: Callable[[], float],
                 prefix: str = "authsvc", *, guards_argon2: bool = True) -> None:
        self.storage = storage
        self.rules = rules
        self.clock = clock
        self.prefix = prefix
        self.guards_argon2 = guards_argon2
        self._fallback = MemoryStorage() if rules.storage_failure == "memory" else None
        # The global limit is per process on purpose: it protects this instance's CPU.
        item = parse_limit(rules.global_logins)
        self._global = _GlobalWindow(item.amount, item.get_expiry())
        # The last F failure times live in F slots, each failure overwriting the oldest: enough to
        # decide whether F fall within the window, with no counter kept beside them (a counter
        # would outlive the slots by the consecutive count's memory, one more key per username
        # tried). At least one slot, so there is always one to write.
        self._slots = max(1, rules.failures_before_backoff)
        self._successes = tuple((item.amount, item.get_expiry()) for rate in rules.successes_per_account
                                for item in parse_many(rate)) if guards_argon2 else ()

    def _bucket(self, username_key: str, device_id: str | None) -> str:
        who = f"dev:{device_id}" if device_id else "anon"
        return f"{self.prefix}:acct:{account_hash(username_key)}:{who}"

    def _run(self, op: Callable[[Storage], object]) -> object:
        try:
            return op(self.storage)
        except Exception as exc:  # noqa: BLE001 - any storage client error: redis, timeouts, ...
            if self._fallback is None:
                raise ThrottleUnavailable(str(type(exc).__name__)) from None
            return op(self._fallback)

    def _state(self, bucket: str) -> Verdict:
        def read(st: Storage) -> tuple[int, int]:
            return st.get(f"{bucket}:c"), st.get(f"{bucket}:u")
        consecutive, blocked_until_ms = self._run(read)  # type: ignore[misc]
        return decide(consecutive, blocked_until_ms / 1000, self.clock(), self.rules)

    def check(self, username_key: str, device_id: str | None) -> Verdict:
        """May this bucket try a password now? Reads only; see :meth:`attempt` for logins."""
        if device_id is None and self.guards_argon2:
            wait = self._global.retry_after(self.clock())
            if wait:
                return Verdict(False, wait, "global")
        return self._state(self._bucket(username_key, device_id))

    @contextmanager
    def attempt(self, username_key: str, device_id: str | None) -> Iterator[Attempt]:
        """:meth:`check`, and when allowed also hold the bucket's gate (and a known device its
        account's, see :meth:`_gates`) until the ``with`` block ends, however it ends.

        The verdict is decided again after the gate is taken, so an attempt that waited behind a
        parallel one sees that one's failure. An allowed attempt (it will run argon2, whether it
        then succeeds or fails) is counted in the global window: an anonymous one only if there is
        room, a known device's always. A storage failure raises :class:`ThrottleUnavailable`.
        """
        attempt = Attempt(self, username_key, device_id)
        try:
            self._begin(attempt, username_key, device_id)
            yield attempt
        finally:
            attempt._release()

    def _begin(self, attempt: Attempt, username_key: str, device_id: str | None) -> None:
        attempt.verdict = self.check(username_key, device_id)  # cheap refusal without touching the gate
        if not attempt.verdict.allowed:
            return
        bucket = self._bucket(username_key, device_id)
        attempt.verdict = Verdict(False, 1, "busy")
        for gate in self._gates(username_key, bucket, device_id):
            if self._run(lambda st, gate=gate: st.incr(gate, GATE_SECONDS)) != 1:
                break  # held by a parallel attempt, which clears it: "busy"
            attempt._gates.append(gate)
        else:
            attempt.verdict = self._state(bucket)
        if attempt.verdict.allowed:
            attempt.verdict = self._success_room(username_key)
        if attempt.verdict.allowed:
            attempt.verdict = self._count(device_id)
        if not attempt.verdict.allowed:  # refused: let the gates go now, not at the block's end
            attempt._release()

    def _gates(self, username_key: str, bucket: str, device_id: str | None) -> list[str]:
        """The bucket's own gate, and for a known device also the account's known-device gate: one
        account's known devices run argon2 one at a time, so an account holder flooding with its
        many device cookies holds at most one of the known argon2 slots (or places in their queue)
        and every other account's known devices find one."""
        own = [f"{bucket}:g"]
        if device_id is None:
            return own
        return [*own, f"{self.prefix}:acct:{account_hash(username_key)}:known:g"]

    def _success_keys(self, username_key: str, now: float) -> list[tuple[str, int, int]]:
        """(key, amount, seconds) of the account's current success window for each limit."""
        account = f"{self.prefix}:acct:{account_hash(username_key)}:ok"
        return [(f"{account}:{amount}:{period}:{window_index(now, period)}", amount, period)
                for amount, period in self._successes]

    def _success_room(self, username_key: str) -> Verdict:
        """Room for one more success of this account in every window? (Checked before argon2.)"""
        now = self.clock()
        keys = self._success_keys(username_key, now)
        if not keys:
            return Verdict(True)
        counts = self._run(lambda st: [st.get(key) for key, _, _ in keys])
        return success_verdict([(count, amount, period) for count, (_, amount, period) in zip(counts, keys)], now)

    def _count(self, device_id: str | None) -> Verdict:
        if not self.guards_argon2:
            return Verdict(True)
        now = self.clock()
        if device_id is not None:
            self._global.hit(now)
            return Verdict(True)
        wait = self._global.take(now)
        return Verdict(False, wait, "global") if wait else Verdict(True)

    def record_failure(self, username_key: str, device_id: str | None) -> Verdict:
        """Count a failure; returns the bucket's verdict after it (the one :meth:`check` would now
        give, less the global window), decided from the counts this write already read."""
        r = self.rules
        now = self.clock()
        now_ms = int(now * 1000)
        bucket = self._bucket(username_key, device_id)
        memory = max(1, r.consecutive_failure_memory_seconds)

        def write(st: Storage) -> Verdict:
            consecutive = st.incr(f"{bucket}:c", memory)
            slots = [f"{bucket}:t:{i}" for i in range(self._slots)]
            stamps = [st.get(slot) for slot in slots]
            oldest = stamps.index(min(stamps))  # an empty slot reads 0, so it goes first
            st.clear(slots[oldest])
            st.incr(slots[oldest], r.failure_window_seconds + 60, now_ms)
            stamps[oldest] = now_ms
            recent = [stamp / 1000 for stamp in stamps]
            previous = st.get(f"{bucket}:u") / 1000
            until = block_after_failure([t for t in recent if t > 0], consecutive, now, previous, r)
            blocked_until = previous
            if until is not None:
                st.clear(f"{bucket}:u")
                # kept a window past its end: block_after_failure asks when the last block ended
                st.incr(f"{bucket}:u", math.ceil(until - now) + r.failure_window_seconds + 60,
                        math.ceil(until * 1000))
                blocked_until = math.ceil(until * 1000) / 1000  # as stored, so check() would agree
            return decide(consecutive, blocked_until, now, r)
        return self._run(write)  # type: ignore[return-value]

    def record_success(self, username_key: str, device_id: str | None) -> None:
        """A success forgets this bucket's failures (NIST SP 800-63B) and counts in the account's
        success windows. From a known device it also resets the anonymous bucket's consecutive
        count, but not its back-off or window."""
        self._forget_failures(username_key, device_id, self._success_keys(username_key, self.clock()))

    def record_confirmation(self, username_key: str) -> None:
        """Count a right password in the account's success windows only (:meth:`Attempt.record_confirmation`):
        each still costs argon2, so the success limit bounds them as it bounds sign-ins."""
        windows = self._success_keys(username_key, self.clock())

        def count(st: Storage) -> None:
            for key, _amount, period in windows:
                st.incr(key, period + 60)
        if windows:
            self._run(count)

    def unlock(self, username_key: str) -> None:
        """Admin override (``authsvc user unlock``): forget the anonymous bucket's failures."""
        self._forget_failures(username_key, None, [])

    def _forget_failures(self, username_key: str, device_id: str | None, windows: list) -> None:
        own = self._bucket(username_key, device_id)
        anon = self._bucket(username_key, None)

        def clear(st: Storage) -> None:
            for key, _amount, period in windows:
                st.incr(key, period + 60)
            for suffix in ("c", "u", *(f"t:{i}" for i in range(self._slots))):
                st.clear(f"{own}:{suffix}")
            if own != anon:
                st.clear(f"{anon}:c")
        self._run(clear)

    def healthy(self) -> bool:
        try:
            return bool(self.storage.check())
        except Exception:  # noqa: BLE001 - whatever the client raises, the storage is not ready
            return False
