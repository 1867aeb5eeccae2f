"""CPU priority (authsvc.priority): a flood's work runs below a known device's argon2 and verify.

What is checked is where work runs and at which nice value, read inside the work itself:
- while a known device's argon2 runs in any process on the host (``KnownLogins``, a mapped file
  in the instance folder), every request but the base paths (exactly ``/auth/verify``,
  ``/healthz``, ``/readyz``, ``/metrics``) is handled on a lane ``anonymous_nice`` below the
  request thread; any other spelling of a base path (case, slashes, encodings, look-alikes,
  control characters) is not a base path and runs low, the safe side; otherwise requests run on
  the request thread; a mark left by a process that died expires;
- what a lane hands back with ``run_at_base`` runs on the request thread it serves, at base
  priority, and on no other request's thread, with many requests at once;
- results and exceptions cross both ways; with ``anonymous_nice = 0`` nothing moves.
The effect under load (a known device's login during a flood) is measured by scripts/bench-flood.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsvc.priority import (
    BASE_PATHS,
    HOLD_SECONDS,
    SLOTS,
    KnownLogins,
    LowPriorityRequests,
    Priorities,
    runs_at_base,
)
from tests.conftest import HTTPS, PASSWORD, build_app, login, new_client

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def where() -> tuple[int, int]:
    """(native thread id, nice value) of the calling thread."""
    tid = threading.get_native_id()
    return tid, os.getpriority(os.PRIO_PROCESS, tid)


BASE = where()[1]
LOW = min(19, BASE + 10)


# --- the lanes and the way back -----------------------------------------------------------------------

def test_serve_low_runs_on_a_lane_and_hands_base_work_back_to_the_serving_thread():
    priorities = Priorities(10)
    me = where()

    def handler():
        lane = where()
        back = priorities.run_at_base(where)
        low = priorities.run_low(where)  # already low: runs right here
        return lane, back, low
    lane, back, low = priorities.serve_low(handler)
    assert lane[0] != me[0] and lane[1] == LOW
    assert back == me  # the serving thread itself, untouched
    assert low == lane
    assert where() == me


def test_run_low_from_a_base_thread_uses_a_lane_and_run_at_base_outside_a_lane_runs_here():
    priorities = Priorities(10)
    me = where()
    tid, nice = priorities.run_low(where)
    assert tid != me[0] and nice == LOW
    assert priorities.run_at_base(where) == me
    assert where() == me


def test_results_and_exceptions_cross_both_ways():
    priorities = Priorities(10)

    def handler():
        with pytest.raises(ZeroDivisionError):
            priorities.run_at_base(lambda: 1 / 0)  # raised in the base thread, seen by the lane
        assert priorities.run_at_base(lambda a, b: a + b, 2, 3) == 5
        raise KeyError("from the lane")
    with pytest.raises(KeyError, match="from the lane"):
        priorities.serve_low(handler)
    with pytest.raises(ValueError):
        priorities.run_low(int, "not a number")
    assert priorities.serve_low(lambda: "done") == "done"  # still serving after the failures


def test_a_base_job_that_stops_the_thread_stops_the_lane_too():
    priorities = Priorities(10)
    lane_saw = []
    stopped = threading.Event()

    def handler():
        try:
            priorities.run_at_base(sys.exit, 3)
        except SystemExit as exc:
            lane_saw.append(exc.code)
        try:  # the request thread has gone: more base work fails instead of waiting for ever
            priorities.run_at_base(where)
        except RuntimeError as exc:
            lane_saw.append(str(exc))
        stopped.set()
    with pytest.raises(SystemExit):  # the base thread leaves at once...
        priorities.serve_low(handler)
    assert stopped.wait(5)  # ...and the lane is not left waiting for it
    assert lane_saw == [3, "the request's server thread has stopped"]


def test_many_requests_at_once_each_get_their_own_base_thread_back():
    priorities = Priorities(10)
    start = threading.Barrier(16)

    def request(_):
        me = where()

        def handler():
            start.wait(timeout=10)  # all 16 lanes busy at once
            return where(), [priorities.run_at_base(where) for _ in range(20)]
        lane, backs = priorities.serve_low(handler)
        return me, lane, backs
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(request, range(16)))
    assert len({lane[0] for _, lane, _ in results}) == 16
    for me, lane, backs in results:
        assert lane[1] == LOW and lane[0] != me[0]
        assert backs == [me] * 20  # never another request's thread


def test_zero_increment_moves_nothing():
    priorities = Priorities(0)
    me = where()
    assert priorities.serve_low(lambda: (where(), priorities.run_at_base(where), priorities.run_low(where))) == (me, me, me)


def test_a_lane_keeps_its_priority_across_requests():
    """Lanes are reused: one that served a request is still exactly increment low for the next,
    and the serving threads are never lowered (they would stay so: Linux gives no way back)."""
    priorities = Priorities(10)
    for _ in range(30):
        assert priorities.serve_low(where)[1] == LOW
        assert where()[1] == BASE


# --- which requests run low ---------------------------------------------------------------------------

def middleware_thread(path: str, known_login_running: bool = True) -> tuple[int, int]:
    seen = []

    def app(environ, start_response):
        seen.append(where())
        return [b""]
    known = KnownLogins()
    middleware = LowPriorityRequests(app, Priorities(10, known))
    if known_login_running:
        with known.mark():
            middleware({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, None)
    else:
        middleware({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, None)
    return seen[0]


@pytest.mark.parametrize("path", ["/login", "/", "/nope", "/auth/verify"])
def test_without_a_known_login_running_every_request_stays_on_its_thread(path):
    assert middleware_thread(path, known_login_running=False) == where()


@pytest.mark.parametrize("path", sorted(BASE_PATHS))
def test_base_paths_are_handled_on_the_request_thread(path):
    assert middleware_thread(path) == where()


@pytest.mark.parametrize("path", [
    "/login", "/logout", "/", "/account/password", "/session", "/nope", "",
    "/auth/verify/", "//auth/verify", "/AUTH/VERIFY", "/Auth/Verify", "/auth//verify", "/auth/verify/.",
    "/auth/./verify", "/auth/verify%00", "/auth/verify\x00", "/auth/verify\n", " /auth/verify",
    "/auth/verify ", "/auth/verify;x", "/auth/verify?x", "/auth/verify#", "/auth%2Fverify",
    "/\u0430uth/verify",  # Cyrillic a
    "/auth/ver\u0456fy",  # Ukrainian i
    "/auth/verify\u200b", "\uff0fauth\uff0fverify", "/healthz/", "/HEALTHZ", "/metrics.txt",
    "/readyz\t", "/" + "a" * 100_000,
])
def test_everything_else_is_handled_low_while_a_known_login_runs(path):
    tid, nice = middleware_thread(path)
    assert tid != where()[0] and nice == LOW


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_only_the_exact_base_paths_stay_at_base(path):
    on_request_thread = middleware_thread(path)[0] == where()[0]
    assert on_request_thread == (path in BASE_PATHS) == runs_at_base(path)


@pytest.mark.parametrize("path", [None, b"/auth/verify", 0, ["/auth/verify"]])
def test_a_missing_or_non_text_path_is_not_a_base_path(path):
    assert not runs_at_base(path)


# --- known logins, across processes -------------------------------------------------------------------

def test_a_mark_in_one_process_is_seen_by_every_other_and_ends_with_the_argon2(tmp_path):
    path = str(tmp_path / "known-logins")
    workers = [KnownLogins.in_folder(str(tmp_path), slot=n) for n in range(3)]  # three processes' views of one file
    assert not any(w.running() for w in workers)
    with workers[1].mark():
        assert all(w.running() for w in workers)
        with workers[1].mark():  # two at once in one process: the first to end must not clear it
            pass
        assert all(w.running() for w in workers)
    assert not any(w.running() for w in workers)
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_mark_left_by_a_dead_worker_expires(tmp_path):
    now = [1000.0]
    dead = KnownLogins.in_folder(str(tmp_path), slot=5, clock=lambda: now[0])
    alive = KnownLogins.in_folder(str(tmp_path), slot=6, clock=lambda: now[0])
    held = dead.mark()
    held.__enter__()  # the worker dies mid-argon2: never cleared
    assert alive.running()
    now[0] += HOLD_SECONDS - 0.01
    assert alive.running()
    now[0] += 0.02
    assert not alive.running()


def test_slots_wrap_and_an_unusable_folder_falls_back_to_this_process(tmp_path):
    assert KnownLogins.in_folder(str(tmp_path), slot=SLOTS + 3)._slot == 3
    blocked = tmp_path / "file"
    blocked.write_text("")
    local = KnownLogins.in_folder(str(blocked / "sub"))  # a file where a folder should be
    other = KnownLogins.in_folder(str(blocked / "sub"))
    with local.mark():
        assert local.running() and not other.running()


def test_run_known_marks_while_it_runs_and_run_at_base_does_not():
    known = KnownLogins()
    priorities = Priorities(10, known)
    assert priorities.run_known(known.running) is True
    assert priorities.run_at_base(known.running) is False
    with pytest.raises(ZeroDivisionError):
        priorities.run_known(lambda: 1 / 0)
    assert not known.running()  # cleared on failure too


# --- the application ---------------------------------------------------------------------------------

@pytest.mark.asvs("V2.4.1")
def test_while_a_known_login_runs_the_app_handles_pages_low_and_verify_health_and_metrics_at_base(tmp_path):
    app = build_app(tmp_path)
    svc = app.extensions["authsvc"]
    seen: dict[str, tuple[int, int]] = {}

    @app.before_request
    def record():
        from flask import request
        seen[request.path] = where()
    me = where()
    client = new_client(app)
    paths = ("/login", "/auth/verify", "/healthz", "/readyz", "/metrics", "/no-such-page")
    for path in paths:  # /auth/verify without a session: the Flask view, not FastPath
        client.get(path)
    assert all(seen[path] == me for path in paths)  # no known login running: nothing moves
    # Another worker process (its own slot of the same file) is verifying a known device.
    other_worker = KnownLogins.in_folder(app.instance_path)
    other_worker._slot = (os.getpid() + 1) % SLOTS
    with other_worker.mark():
        seen.clear()
        for path in paths:
            client.get(path)
    assert seen["/auth/verify"] == me and seen["/healthz"] == me and seen["/readyz"] == me
    assert seen["/metrics"] == me
    for path in ("/login", "/no-such-page"):
        assert seen[path][0] != me[0] and seen[path][1] == LOW, path
    assert svc.policy.argon2.anonymous_nice == 10


@pytest.mark.asvs("V2.4.1")
def test_a_password_change_hashes_at_base_priority(tmp_path):
    from tests.conftest import add_user, csrf

    app = build_app(tmp_path)
    add_user(app)
    svc = app.extensions["authsvc"]
    seen = []
    real = svc.hasher._ph

    class Probe:
        def hash(self, password):
            seen.append(("hash", where()))
            return real.hash(password)

        def verify(self, stored, password):
            seen.append(("verify", where()))
            return real.verify(stored, password)

        def __getattr__(self, name):
            return getattr(real, name)
    svc.hasher._ph = Probe()
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
