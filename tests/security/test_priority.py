"""CPU priority of argon2 (authsvc.core.hashing): a flood's argon2 runs below a known device's.

What is checked is where argon2 runs and at which nice value, read inside the argon2 call itself:
- an anonymous login's argon2 (no known-device cookie: every attacker) runs on the hasher's small
  executor, whose threads raised their own nice value by ``anonymous_nice`` once, when they
  started, and never again;
- a known device's verification, a password change's hash and the CLI's run on the caller's own
  thread at its unchanged nice value; no request is moved to another thread;
- under ``authsvc serve`` (``Hasher.start_base_threads``, then the request threads lowered by
  ``request_nice``: authsvc/server/wsgi.py) they run on threads started first, at the worker's
  priority, so a lowered request thread's known device still gets base priority;
- the queues stay bounded: beyond a class's slots and queue, HashingBusy at once, never a thread
  parked on the executor;
- what argon2 raises on the executor is raised in the caller, and the executor keeps serving.
The effect under load (a known device's login during a flood) is measured by scripts/bench-flood.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time

import pytest

from authsvc.core.hashing import Hasher, HashingBusy
from authsvc.core.policy import load_policy
from tests.conftest import (
    HTTPS,
    PASSWORD,
    TEST_POLICY,
    add_user,
    build_app,
    csrf,
    login,
    new_client,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def where() -> tuple[int, int]:
    """(native thread id, nice value) of the calling thread."""
    tid = threading.get_native_id()
    return tid, os.getpriority(os.PRIO_PROCESS, tid)


BASE = where()[1]
LOW = min(19, BASE + 10)


class Probe:
    """argon2 as the hasher calls it, recording where each call ran (and optionally failing or
    waiting for a signal first)."""

    def __init__(self, real, fail: BaseException | None = None, hold: threading.Event | None = None) -> None:
        self.real, self.fail, self.hold = real, fail, hold
        self.seen: list[tuple[str, tuple[int, int]]] = []
        self.entered = threading.Semaphore(0)

    def _record(self, kind: str) -> None:
        hold, fail = self.hold, self.fail
        self.seen.append((kind, where()))
        self.entered.release()
        if hold is not None:
            assert hold.wait(30)
        if fail is not None:
            raise fail

    def hash(self, password):
        self._record("hash")
        return self.real.hash(password)

    def verify(self, stored, password):
        self._record("verify")
        return self.real.verify(stored, password)

    def __getattr__(self, name):
        return getattr(self.real, name)


def hasher(**argon2) -> tuple[Hasher, Probe]:
    policy = dataclasses.replace(load_policy(TEST_POLICY).argon2, **argon2)
    made = Hasher(policy)
    probe = Probe(made._ph)
    made._ph = probe
    return made, probe


# --- where argon2 runs -------------------------------------------------------------------------------

def test_anonymous_argon2_runs_on_an_executor_thread_lowered_by_anonymous_nice():
    made, probe = hasher(anonymous_nice=10)
    stored = made.hash(PASSWORD)
    assert made.verify(stored, PASSWORD, anonymous=True).ok
    assert not made.verify(stored, "wrong", anonymous=True).ok
    assert not made.verify(None, PASSWORD, anonymous=True).ok  # unknown user: the dummy, same place
    me = where()
    places = [place for kind, place in probe.seen if kind == "verify"]
    assert len(places) == 3
    assert all(tid != me[0] and nice == LOW for tid, nice in places)
    assert where() == me  # the caller was never lowered (Linux gives no way back)


def test_known_device_verify_and_hash_run_on_the_callers_thread_at_its_nice_value():
    made, probe = hasher(anonymous_nice=10)
    made.verify(None, "x", anonymous=True)  # the executor has started and lowered its thread
    probe.seen.clear()
    stored = made.hash(PASSWORD)
    assert made.verify(stored, PASSWORD, anonymous=False).ok
    assert not made.verify(stored, "wrong", anonymous=False).ok
    me = where()
    assert probe.seen == [("hash", me), ("verify", me), ("verify", me)]
    assert me[1] == BASE


def serve_like(made: Hasher, request_nice: int, work):
    """What authsvc/server/wsgi.py does in a gunicorn worker, in a thread of its own (a lowered
    nice value cannot be raised again): base threads first, then this thread lowered, then a
    request thread started from it runs ``work``. Returns the request thread's (tid, nice)."""
    from authsvc.core.hashing import lower_thread_priority

    out: dict = {}

    def worker_main():
        made.start_base_threads()
        lower_thread_priority(request_nice)

        def request_thread():
            out["request"] = where()
            out["result"] = work()
        t = threading.Thread(target=request_thread)
        t.start()
        t.join(60)

    main = threading.Thread(target=worker_main)
    main.start()
    main.join(60)
    return out


def test_under_serve_a_known_device_keeps_base_priority_while_request_threads_run_lower():
    made, probe = hasher(anonymous_nice=10)
    stored = made.hash(PASSWORD)
    probe.seen.clear()
    out = serve_like(made, 5, lambda: (made.verify(stored, PASSWORD, anonymous=False).ok,
                                        made.hash(PASSWORD) != stored,
                                        made.verify(stored, PASSWORD, anonymous=True).ok))
    assert out["result"] == (True, True, True)
    request_tid, request_nice = out["request"]
    assert request_nice == min(19, BASE + 5)  # inherited from the lowered worker thread
    (_, known_verify), (_, known_hash), (_, anonymous) = probe.seen
    assert known_verify[1] == known_hash[1] == BASE and known_verify[0] != request_tid
    assert anonymous[1] == min(19, BASE + 5 + 10) and anonymous[0] != request_tid


def test_base_threads_are_all_started_at_once_at_the_starters_priority():
    made, _ = hasher(max_concurrent=3, anonymous_max_concurrent=1)
    # By identity, not name: an earlier test's pool threads (same names) may still be exiting.
    before = set(threading.enumerate())
    out = serve_like(made, 7, lambda: None)
    started = [t for t in threading.enumerate() if t not in before and t.name.startswith("authsvc-argon2-base")]
    assert len(started) == 2 and out["request"][1] == min(19, BASE + 7)
    assert {os.getpriority(os.PRIO_PROCESS, t.native_id) for t in started} == {BASE}


def test_the_executor_lowers_its_threads_once_not_per_verification():
    made, probe = hasher(anonymous_nice=10, anonymous_max_concurrent=1)
    for _ in range(20):
        made.verify(None, "x", anonymous=True)
    assert {place for _, place in probe.seen} == {probe.seen[0][1]}  # one thread, at LOW every time
    assert probe.seen[0][1][1] == LOW


def test_zero_anonymous_nice_lowers_nothing():
    made, probe = hasher(anonymous_nice=0)
    made.verify(None, "x", anonymous=True)
    assert probe.seen[0][1][1] == BASE


def test_many_callers_at_once_get_their_own_answers():
    """Anonymous and known verifications from many threads at once (queues wide enough for all):
    each caller gets its own result, anonymous ones always low and known ones on the caller."""
    made, probe = hasher(max_concurrent=3, anonymous_max_concurrent=2, anonymous_queue=16, known_queue=16,
                         queue_timeout_seconds=30)
    stored = made.hash(PASSWORD)
    start = threading.Barrier(12)
    results: dict[int, tuple[bool, bool, tuple[int, int]]] = {}

    def caller(n: int) -> None:
        start.wait(10)
        right = n % 3 == 0
        anonymous = n % 2 == 0
        results[n] = (right, made.verify(stored, PASSWORD if right else "wrong", anonymous=anonymous).ok, where())
    threads = [threading.Thread(target=caller, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 12
    assert all(right == ok for right, ok, _ in results.values())
    callers = {place[0] for _, _, place in results.values()}
    lowered = [place for kind, place in probe.seen if kind == "verify" and place[0] not in callers]
    assert len(lowered) == 6 and all(nice == LOW for _, nice in lowered)
    assert len({tid for tid, _ in lowered}) <= 2  # the executor has anonymous_max_concurrent threads


# --- bounded queues and failures --------------------------------------------------------------------

def _busy_at_once(call) -> None:
    began = time.monotonic()
    with pytest.raises(HashingBusy) as busy:
        call()
    assert time.monotonic() - began < 5  # refused at once, not after the 30 s queue timeout
    assert busy.value.retry_after == 30


@pytest.mark.asvs("V2.4.1")
def test_anonymous_verifications_beyond_slot_and_queue_get_hashing_busy_at_once():
    made, probe = hasher(anonymous_max_concurrent=1, anonymous_queue=1, queue_timeout_seconds=30)
    probe.hold = release = threading.Event()
    running = threading.Thread(target=made.verify, args=(None, "x"), kwargs={"anonymous": True})
    queued = threading.Thread(target=made.verify, args=(None, "y"), kwargs={"anonymous": True})
    running.start()
    try:
        assert probe.entered.acquire(timeout=10)  # the executor's one thread is busy
        queued.start()
        deadline = time.monotonic() + 10
        while made._anonymous._waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        _busy_at_once(lambda: made.verify(None, "z", anonymous=True))  # slot held, queue full
        probe.hold = None  # the known class is apart: it runs at once, on this thread
        assert made.verify(None, "k", anonymous=False).ok is False
        assert probe.seen[-1] == ("verify", where())
    finally:
        release.set()
        running.join(30)
        queued.join(30)
    assert [kind for kind, _ in probe.seen] == ["verify"] * 3  # the refused one ran no argon2


@pytest.mark.asvs("V2.4.1")
def test_known_verifications_beyond_slot_and_queue_get_hashing_busy_at_once():
    made, probe = hasher(max_concurrent=2, anonymous_max_concurrent=1, known_queue=0, queue_timeout_seconds=30)
    probe.hold = release = threading.Event()
    running = threading.Thread(target=made.hash, args=("x" * 20,))
    running.start()
    try:
        assert probe.entered.acquire(timeout=10)
        _busy_at_once(lambda: made.verify(None, "k", anonymous=False))
        _busy_at_once(lambda: made.hash("y" * 20))  # a password change is of the known class
    finally:
        release.set()
        running.join(30)


def test_a_failing_argon2_on_the_executor_raises_in_the_caller_and_frees_the_slot():
    made, probe = hasher(anonymous_max_concurrent=1, anonymous_queue=0, queue_timeout_seconds=30)
    probe.fail = MemoryError("argon2 could not allocate")
    with pytest.raises(MemoryError, match="could not allocate"):
        made.verify(None, "x", anonymous=True)
    assert probe.seen[0][1][0] != where()[0]  # it did fail on the executor
    probe.fail = None
    assert made.verify(None, "x", anonymous=True).ok is False  # slot and executor free again


# --- the application ---------------------------------------------------------------------------------

@pytest.mark.asvs("V2.4.1")
def test_the_app_handles_every_request_on_the_servers_own_thread_while_a_known_device_verifies(tmp_path):
    """No request is moved between threads (the low-priority lanes are gone): while a known
    device's argon2 runs, pages, logins, verify, health and metrics still run on the thread the
    server gave them, at its nice value; only anonymous argon2 itself runs low."""
    app = build_app(tmp_path)
    add_user(app)
    svc = app.extensions["authsvc"]
    release = threading.Event()
    probe = svc.hasher._ph = Probe(svc.hasher._ph, hold=release)
    seen: list[tuple[str, tuple[int, int]]] = []

    @app.before_request
    def record():
        from flask import request
        seen.append((request.path, where()))
    known = threading.Thread(target=svc.hasher.verify, args=(None, "x"), kwargs={"anonymous": False})
    known.start()
    try:
        assert probe.entered.acquire(timeout=10)  # a known device's argon2 is running
        probe.hold = None
        client = new_client(app)
        paths = ("/login", "/auth/verify", "/healthz", "/readyz", "/metrics", "/no-such-page")
        for path in paths:  # /auth/verify without a session: the Flask view, not VerifyApp
            client.get(path)
        assert login(client).status_code == 303  # anonymous: only its argon2 runs low
    finally:
        release.set()
        known.join(30)
    assert {path for path, _ in seen} == set(paths)
    assert {place for _, place in seen} == {where()}
    assert where()[1] == BASE
    assert probe.seen[-1][0] == "verify" and probe.seen[-1][1][1] == LOW


@pytest.mark.asvs("V2.4.1")
def test_a_password_change_hashes_at_base_priority(tmp_path):
    app = build_app(tmp_path)
    add_user(app)
    svc = app.extensions["authsvc"]
    probe = svc.hasher._ph = Probe(svc.hasher._ph)
    seen = probe.seen
    client = new_client(app)
    assert login(client).status_code == 303
    response = client.post("/account/password", data={
        "csrf_token": csrf(client, "/"), "current_password": PASSWORD,
        "new_password": "a brand new passphrase 77", "confirm_password": "a brand new passphrase 77"},
        base_url=HTTPS)
    assert response.status_code == 200, response.status_code  # the account page: password changed
    me = where()
    # the login without a device cookie: low; the password change (signed in): at base, here
    assert seen[0] == ("verify", seen[0][1]) and seen[0][1][1] == LOW
    assert [kind for kind, _ in seen[1:]] == ["verify", "hash"]
    assert all(place == me for _, place in seen[1:])
