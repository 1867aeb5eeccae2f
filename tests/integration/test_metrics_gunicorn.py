"""Metrics under the real server: ``authsvc serve --workers 2`` (gunicorn, production settings).

Each gunicorn worker is its own process with its own memory. Without prometheus-client's
multiprocess mode a scrape reports whichever worker answered it: roughly half the truth, and a
different half each time. Here N requests and failed logins are spread over both workers, then
several scrapes (answered by either worker) must each report exactly N, also after a worker is
killed and replaced, and the server must remove its metrics directory when it stops.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.conftest import form_login, require_module, served_env, serving, tail, wait_until, workers

TOKEN = "mtk-Zq7Lw2Xc9Vb4Nm1Kj6Hg3Fd8Sa5Pt0Ry-metrics"
N_VERIFY = 40
N_FAILED_LOGINS = 6


def serve_env(folder: Path) -> dict[str, str]:
    (folder / "tmp").mkdir()
    # TMPDIR: where `authsvc serve` makes its metrics directory
    return served_env(folder, AUTHSVC_METRICS_TOKEN=TOKEN, TMPDIR=str(folder / "tmp"))


def failed_login(requests, base: str, n: int) -> int:
    return form_login(requests, base, f"nobody{n}", "not the password at all", f"203.0.113.{n + 1}")


def scrape(requests, base: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    resp = requests.get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert resp.status_code == 200, resp.status_code
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def assert_whole(requests, base: str, scrapes: int = 6) -> None:
    """Every scrape, whichever worker answers it, reports every request exactly once."""
    expected = {
        ("authsvc_verify_seconds_count", (("status", "401"),)): N_VERIFY,
        ("authsvc_login_seconds_count", (("status", "401"),)): N_FAILED_LOGINS,
        ("authsvc_events_total", (("event", "login_failure"), ("outcome", "failure"), ("reason", "bad_credentials"))):
            N_FAILED_LOGINS,
        ("authsvc_events_total", (("event", "metrics_denied"), ("outcome", "refused"), ("reason", "bad_token"))): 1,
        ("authsvc_argon2_seconds_count", ()): N_FAILED_LOGINS,
        ("authsvc_hashing_in_progress", ()): 0,
        ("authsvc_live_sessions", ()): 0,
    }
    for _ in range(scrapes):
        samples = scrape(requests, base)
        seen = {key: samples.get((key[0], frozenset(key[1])), 0.0) for key in expected}
        assert seen == expected


@pytest.mark.integration
@pytest.mark.asvs("V16.3.1", "V16.3.2")
def test_counts_are_whole_across_gunicorn_workers_and_worker_restarts(tmp_path):
    require_module("requests")
    import requests

    with serving(tmp_path, serve_env(tmp_path), workers=2, user=None, timeout=30) as server:
        proc, log, base = server.proc, server.log, server.base
        wait_until(lambda: len(workers(log)) >= 2, "two workers", log)
        (metrics_dir,) = (tmp_path / "tmp").glob("authsvc-metrics-*")
        wait_until(lambda: {f"histogram_{pid}.db" for pid in workers(log)} <= set(os.listdir(metrics_dir)),
                   "both workers in multiprocess mode", log)

        with ThreadPoolExecutor(max_workers=8) as pool:  # concurrent: both workers must take some
            statuses = list(pool.map(lambda _: requests.get(f"{base}/auth/verify", timeout=10).status_code,
                                     range(N_VERIFY)))
        assert statuses == [401] * N_VERIFY
        with ThreadPoolExecutor(max_workers=3) as pool:
            logins = list(pool.map(lambda n: failed_login(requests, base, n), range(N_FAILED_LOGINS)))
        assert logins == [401] * N_FAILED_LOGINS
        wrong = requests.get(f"{base}/metrics", headers={"Authorization": "Bearer wrong-token"}, timeout=10)
        assert wrong.status_code == 401 and "authsvc_" not in wrong.text

        assert_whole(requests, base)

        victim = workers(log)[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(workers(log)) >= 3, "a replacement worker", log)
        wait_until(lambda: f"gauge_livesum_{victim}.db" not in os.listdir(metrics_dir),
                   "child_exit to drop the dead worker's live gauge", log)
        assert f"histogram_{victim}.db" in os.listdir(metrics_dir)
        assert_whole(requests, base)  # the dead worker's counts are kept

        audit = [line for line in log.read_text(errors="replace").splitlines() if '"event":"login_failure"' in line]
        assert len(audit) == N_FAILED_LOGINS
    assert proc.returncode == 0, tail(log)
    assert not metrics_dir.exists(), "on_exit leaves no metrics directory behind"
