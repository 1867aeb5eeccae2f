"""Thread priorities under the real server (``authsvc serve``, gunicorn gthread workers, Linux).

authsvc/server/wsgi.py starts the argon2 threads of known devices and password changes first, at
the worker's priority, then lowers the thread gunicorn starts its request threads from by
``argon2.request_nice``; anonymous argon2 lowers itself ``anonymous_nice`` further. So a flood's
refusals (whole requests) run below a returning user's argon2 (docs/throttle.md). Read here from
/proc: every thread of a worker that has served pages and an anonymous login, by nice value.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from authsvc.core.policy import load_policy
from tests.conftest import TEST_POLICY
from tests.integration.conftest import form_login, require_module, served_env, serving, wait_until, workers

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def thread_nice_values(pid: int) -> list[int]:
    values = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        stat = (task / "stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        values.append(int(fields[16]))  # field 19 of stat: nice
    return values


def test_known_device_argon2_threads_keep_the_workers_priority_and_request_threads_run_lower(tmp_path):
    require_module("requests")
    import requests

    argon2 = load_policy(TEST_POLICY).argon2
    base = os.getpriority(os.PRIO_PROCESS, 0)
    with serving(tmp_path, served_env(tmp_path), workers=1) as server:
        wait_until(lambda: len(workers(server.log)) >= 1, "a worker", server.log)
        (pid,) = workers(server.log)
        for n in range(3):  # pages and anonymous logins: request threads and the anonymous argon2 thread
            assert form_login(requests, server.base, "nobody", "not the password at all", f"203.0.113.{n + 1}") == 401
        nice = sorted(thread_nice_values(pid))
    known = max(1, argon2.max_concurrent - argon2.anonymous_max_concurrent)
    request = min(19, base + argon2.request_nice)
    anonymous = min(19, request + argon2.anonymous_nice)
    assert argon2.request_nice > 0 and nice.count(base) == known, nice  # only the base argon2 threads
    assert set(nice) <= {base, request, anonymous}, nice
    assert nice.count(request) >= 2, nice  # gunicorn's main thread and at least one request thread
    assert anonymous in nice, nice
