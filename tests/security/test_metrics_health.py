"""Control: metrics and health endpoints (ASVS 5.0 V13.4.5, V11.2.4, V11.2.3, V16.3, V16.5.2, V8.3.1).

Attacks and failures tried here:

- reading ``/metrics`` (who logs in, how often, which reasons) without the bearer token, with a
  wrong, truncated or extended one, another scheme, or when metrics were never enabled;
- learning the token byte by byte from response times (the comparison must be constant-time);
- shipping a guessable metrics token, or the secret key reused as one;
- making an unauthenticated request pass ``/auth/verify`` by looking like a health probe
  (kube-probe or GoogleHC user agents, health paths glued to the verify path);
- a readiness probe that hangs with its dependency, or says "ready" when one is down, or a
  liveness probe that fails with the database (restarting every worker during an outage);
- counts that drift from what happened (the counters are checked against exact request counts);
- enumerating accounts from a dashboard: a failed login's label must not say whether the user exists
  (unknown user, wrong password and disabled account share one label; the audit log keeps the reason).
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import threading
import time
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from authsvc.server import cli, gunicorn_conf

from authsvc.core import config
from authsvc.web.app import StartupRefused, create_app
from authsvc.web.metrics import reason_label
from authsvc.web.views import health
from tests.conftest import (
    PASSWORD,
    STRONG_KEY,
    add_user,
    build_app,
    csrf,
    login,
    make_env,
    new_client,
)

TOKEN = "mtk-Zq7Lw2Xc9Vb4Nm1Kj6Hg3Fd8Sa5Pt0Ry-metrics"
WRONG = "not the password at all 1234"


@pytest.fixture
def mapp(tmp_path, clock):
    return build_app(tmp_path, clock, AUTHSVC_METRICS_TOKEN=TOKEN)


def scrape(app) -> dict:
    resp = new_client(app).get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.status_code
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.get_data(as_text=True)) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- who may read /metrics ---------------------------------------------------------------------------

@pytest.mark.asvs("V13.4.5")
@pytest.mark.parametrize("authorization", [None, f"Bearer {TOKEN}", "Bearer anything"])
def test_metrics_do_not_exist_unless_a_token_is_configured(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    resp = client.get("/metrics", headers=headers)
    assert resp.status_code == 404
    assert b"authsvc_" not in resp.data


@pytest.mark.asvs("V13.4.5", "V16.3.3")
@pytest.mark.parametrize("authorization", [
    None,
    "",
    "Bearer",
    "Bearer ",
    TOKEN,
    f"Bearer {TOKEN[:-1]}",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN.upper()}",
    f"Token {TOKEN}",
    "Basic " + base64.b64encode(f"metrics:{TOKEN}".encode()).decode(),
    f"Bearer {STRONG_KEY}",
], ids=["none", "empty", "scheme-only", "scheme-space", "no-scheme", "truncated", "extended", "case-changed",
        "other-scheme", "basic", "secret-key"])
def test_metrics_refuse_anything_but_the_exact_bearer_token(mapp, capsys, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    capsys.readouterr()
    resp = new_client(mapp).get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert b"authsvc_events_total" not in resp.data
    out = capsys.readouterr().out
    assert '"event":"metrics_denied"' in out and TOKEN not in out


@pytest.mark.asvs("V13.4.5")
def test_metrics_answer_the_exact_token_under_either_scheme_case(mapp):
    for scheme in ("Bearer", "bearer"):
        resp = new_client(mapp).get("/metrics", headers={"Authorization": f"{scheme} {TOKEN}"})
        assert resp.status_code == 200 and b"authsvc_events_total" in resp.data
        assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.asvs("V11.2.4")
def test_metrics_token_is_compared_in_constant_time(mapp, monkeypatch):
    calls, real = [], hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(health.hmac, "compare_digest", spy)
    client = new_client(mapp)
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN[:-1]}z"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert calls == [((TOKEN[:-1] + "z").encode(), TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


@pytest.mark.asvs("V11.2.3")
@pytest.mark.parametrize("token", ["x" * 31, "metrics-" * 5, "abcdefghijklmnopqrstuvwxyz0123456789", STRONG_KEY],
                         ids=["short", "repeated", "sequence", "same-as-secret-key"])
def test_weak_metrics_token_refuses_start_up_and_fails_check(tmp_path, token, capsys, monkeypatch):
    env = make_env(tmp_path, AUTHSVC_METRICS_TOKEN=token)
    settings = config.from_env(env, instance_path=str(tmp_path / "instance"))
    problems = [p for p in config.audit(settings) if p.setting == "AUTHSVC_METRICS_TOKEN"]
    assert problems and all(p.severity == "error" for p in problems)
    assert all(token not in p.message for p in problems)
    with pytest.raises(StartupRefused, match="AUTHSVC_METRICS_TOKEN"):
        create_app(settings)
    for name, val in env.items():
        monkeypatch.setenv(name, val)
    capsys.readouterr()
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "error: AUTHSVC_METRICS_TOKEN" in out and token not in out


@pytest.mark.asvs("V11.2.3")
def test_strong_metrics_token_raises_no_problem(tmp_path):
    settings = config.from_env(make_env(tmp_path, AUTHSVC_METRICS_TOKEN=TOKEN), instance_path=str(tmp_path))
    assert not [p for p in config.audit(settings) if p.setting == "AUTHSVC_METRICS_TOKEN"]


# --- the counts are exact ------------------------------------------------------------------------------

@pytest.mark.asvs("V16.3.1")
def test_every_audit_event_is_counted_by_event_outcome_and_reason(mapp):
    add_user(mapp)
    for _ in range(3):
        assert login(new_client(mapp), "alice", WRONG).status_code == 401
    assert login(new_client(mapp), "mallory", WRONG).status_code == 401
    assert login(new_client(mapp), "alice", PASSWORD, next="//evil.example").status_code == 303
    samples = scrape(mapp)
    count = "authsvc_events_total"
    assert value(samples, count, event="login_failure", outcome="failure", reason="bad_credentials") == 4
    assert value(samples, count, event="login_success", outcome="success", reason="") == 1
    assert value(samples, count, event="redirect_rejected", outcome="refused", reason="scheme_relative") == 1
    assert sum(v for (name, _), v in samples.items() if name == count) == 6


@pytest.mark.asvs("V16.3.2")
def test_login_and_verify_latency_is_observed_once_per_request_by_status(mapp):
    add_user(mapp)
    anonymous, browser = new_client(mapp), new_client(mapp)
    for _ in range(5):
        assert anonymous.get("/auth/verify").status_code == 401
    assert anonymous.head("/auth/verify").status_code == 401
    assert login(browser, "alice", WRONG).status_code == 401
    assert login(browser, "alice", PASSWORD).status_code == 303
    for _ in range(2):
        assert browser.get("/auth/verify").status_code == 200
    samples = scrape(mapp)
    assert value(samples, "authsvc_verify_seconds_count", status="401") == 6
    assert value(samples, "authsvc_verify_seconds_count", status="200") == 2
    assert value(samples, "authsvc_login_seconds_count", status="401") == 1
    assert value(samples, "authsvc_login_seconds_count", status="303") == 1
    assert 0 < value(samples, "authsvc_login_seconds_sum", status="303") < 30
    assert value(samples, "authsvc_verify_seconds_bucket", status="200", le="+Inf") == 2


def test_argon2_time_is_observed_once_per_hash_or_verification(mapp):
    add_user(mapp)                                         # one hash
    login(new_client(mapp), "alice", PASSWORD)             # one verification
    login(new_client(mapp), "nobody", WRONG)               # one (dummy) verification
    samples = scrape(mapp)
    assert value(samples, "authsvc_argon2_seconds_count") == 3
    assert value(samples, "authsvc_argon2_seconds_sum") > 0


def test_live_sessions_gauge_counts_only_live_sessions(mapp, clock):
    add_user(mapp)
    first, second = new_client(mapp), new_client(mapp)
    assert value(scrape(mapp), "authsvc_live_sessions") == 0
    login(first, "alice", PASSWORD)
    login(second, "alice", PASSWORD)
    assert value(scrape(mapp), "authsvc_live_sessions") == 2
    second.post("/logout", data={"csrf_token": csrf(second, "/")})
    assert value(scrape(mapp), "authsvc_live_sessions") == 1
    clock.advance(mapp.extensions["authsvc"].policy.sessions.idle_timeout_seconds + 1)
    assert value(scrape(mapp), "authsvc_live_sessions") == 0


def test_hashing_in_progress_gauge_shows_work_under_way(mapp, monkeypatch):
    svc = mapp.extensions["authsvc"]
    started, release = threading.Event(), threading.Event()
    real = svc.hasher._ph

    class Slow:
        def hash(self, password):
            started.set()
            release.wait(10)
            return real.hash(password)
    monkeypatch.setattr(svc.hasher, "_ph", Slow())
    worker = threading.Thread(target=svc.hasher.hash, args=("x" * 20,))
    worker.start()
    try:
        assert started.wait(5)
        assert value(scrape(mapp), "authsvc_hashing_in_progress") == 1
    finally:
        release.set()
        worker.join(10)
    assert value(scrape(mapp), "authsvc_hashing_in_progress") == 0


@pytest.mark.asvs("V6.3.8")
def test_metrics_do_not_tell_unknown_users_from_wrong_passwords_or_disabled_accounts(mapp, capsys):
    """Enumeration through a dashboard: one failed login per kind must leave identical label sets."""
    add_user(mapp)
    add_user(mapp, "carol")
    mapp.extensions["authsvc"].accounts.set_disabled(
        mapp.extensions["authsvc"].accounts.by_username("carol").id, True)
    assert login(new_client(mapp), "alice", WRONG).status_code == 401
    assert login(new_client(mapp), "mallory", WRONG).status_code == 401
    assert login(new_client(mapp), "carol", PASSWORD).status_code == 401
    failures = {labels: v for (name, labels), v in scrape(mapp).items()
                if name == "authsvc_events_total" and ("event", "login_failure") in labels}
    assert failures == {frozenset({("event", "login_failure"), ("outcome", "failure"),
                                   ("reason", "bad_credentials")}): 3}
    audit = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert sorted(e["reason"] for e in audit if e.get("event") == "login_failure") == [
        "bad_password", "disabled", "unknown_user"]


@pytest.mark.parametrize("event, raw", [
    ("login_failure", "unknown_user"), ("login_failure", "bad_password"), ("login_failure", "disabled"),
    ("login_failure", "a_reason_added_later"), ("login_failure", "Unknown User"),
])
def test_every_login_failure_reason_gets_the_one_metric_label(event, raw):
    assert reason_label(raw, event) == "bad_credentials"


@pytest.mark.parametrize("raw, label", [
    ("bad_password", "bad_password"),
    (None, ""),
    ("The CSRF token is missing.", "the_csrf_token_is_missing"),
    ("x" * 500, "x" * 40),
    ("../../etc\r\n\"}", "etc"),
])
def test_reason_labels_stay_short_and_plain(raw, label):
    assert reason_label(raw) == label


# --- gunicorn multiprocess plumbing ------------------------------------------------------------------------

def test_serve_gives_gunicorn_a_fresh_private_metrics_dir_and_the_hooks(tmp_path, monkeypatch):
    from authsvc.core import db
    env = make_env(tmp_path, AUTHSVC_METRICS_TOKEN=TOKEN)
    for name, val in env.items():
        monkeypatch.setenv(name, val)
    stale = tmp_path / "stale-metrics"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"old counts")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(stale))
    db.upgrade(db.make_engine(env["AUTHSVC_DATABASE_URL"]))
    runs = []

    def fake_execve(path, argv, env):
        runs.append((list(argv), env["PROMETHEUS_MULTIPROC_DIR"]))
    monkeypatch.setattr(cli.os, "execve", fake_execve)
    for _ in range(2):
        cli.main(["serve", "--bind", "127.0.0.1:0", "--workers", "2"])
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(stale)  # serve's own process is left as it was
    (argv1, dir1), (_, dir2) = runs
    assert argv1[argv1.index("-c") + 1] == "python:authsvc.server.gunicorn_conf"
    assert dir1 != dir2 and str(stale) not in (dir1, dir2)
    for folder in (dir1, dir2):
        assert os.path.basename(folder).startswith("authsvc-metrics-") and os.listdir(folder) == []
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        os.rmdir(folder)


def test_dead_worker_loses_its_live_gauges_but_keeps_its_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ("gauge_livesum_4242.db", "counter_4242.db", "histogram_4242.db", "gauge_livesum_4343.db"):
        (tmp_path / name).write_bytes(b"")
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=4242))
    assert sorted(os.listdir(tmp_path)) == ["counter_4242.db", "gauge_livesum_4343.db", "histogram_4242.db"]


def test_worker_exit_without_multiprocess_metrics_is_harmless(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    gunicorn_conf.child_exit(None, SimpleNamespace(pid=4242))  # would raise TypeError inside prometheus
    gunicorn_conf.on_exit(None)


def test_server_exit_removes_only_its_own_metrics_dir(tmp_path, monkeypatch):
    ours, theirs = tmp_path / "authsvc-metrics-abc123", tmp_path / "prometheus"
    for folder in (ours, theirs):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"")
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
        gunicorn_conf.on_exit(None)
    assert not ours.exists() and theirs.exists()


# --- health -----------------------------------------------------------------------------------------------------

class Exploding:
    """A dependency that records each use and fails it."""

    def __init__(self) -> None:
        self.calls = 0

    def connect(self, *args, **kwargs):
        self.calls += 1
        raise sa.exc.OperationalError("SELECT 1", {}, ConnectionRefusedError("down"))

    def check(self):
        self.calls += 1
        raise ConnectionError("redis down")


class Hanging:
    def __init__(self) -> None:
        self.release = threading.Event()

    def check(self):
        self.release.wait(10)
        return True


@pytest.mark.asvs("V16.5.2")
def test_liveness_touches_no_dependency(app, client, monkeypatch):
    svc = app.extensions["authsvc"]
    database, storage = Exploding(), Exploding()
    monkeypatch.setattr(svc.engine, "connect", database.connect)
    svc.throttle.storage = storage
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}
    assert database.calls == storage.calls == 0


@pytest.mark.asvs("V16.5.2")
def test_readiness_is_ok_when_both_dependencies_answer(client):
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "checks": {"database": "ok", "ratelimit_storage": "ok"}}


@pytest.mark.asvs("V16.5.2")
@pytest.mark.parametrize("broken", [("database",), ("ratelimit_storage",), ("database", "ratelimit_storage")])
def test_readiness_names_the_dependency_that_is_down(app, client, broken, monkeypatch):
    svc = app.extensions["authsvc"]
    if "database" in broken:
        monkeypatch.setattr(svc.engine, "connect", Exploding().connect)
    if "ratelimit_storage" in broken:
        svc.throttle.storage = Exploding()
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"] == {name: "unavailable" if name in broken else "ok"
                                         for name in ("database", "ratelimit_storage")}
    assert b"redis down" not in resp.data and b"OperationalError" not in resp.data


@pytest.mark.asvs("V16.5.2")
def test_readiness_gives_up_on_a_hanging_dependency_within_its_timeout(app, client):
    storage = Hanging()
    app.extensions["authsvc"].throttle.storage = storage
    started = time.monotonic()
    try:
        resp = client.get("/readyz")
    finally:
        storage.release.set()
    assert time.monotonic() - started < health.CHECK_TIMEOUT_SECONDS + 1.5
    assert resp.status_code == 503
    assert resp.get_json()["checks"] == {"database": "ok", "ratelimit_storage": "timeout"}


PROBE_AGENTS = ["kube-probe/1.29", "GoogleHC/1.0", "ELB-HealthChecker/2.0", "Consul Health Check",
                "Prometheus/2.51.0", "Blackbox Exporter/0.25.0"]


@pytest.mark.asvs("V8.3.1", "V16.5.3")
@pytest.mark.parametrize("agent", PROBE_AGENTS)
def test_a_probe_user_agent_does_not_pass_verify(client, agent):
    resp = client.get("/auth/verify", headers={"User-Agent": agent})
    assert resp.status_code == 401 and "X-Auth-User" not in resp.headers


@pytest.mark.asvs("V8.3.1", "V16.5.3")
@pytest.mark.parametrize("path, query, status", [
    ("/healthz/../auth/verify", "", 404),
    ("/auth/verify", "healthz", 401),
    ("/auth/verify", "path=/healthz", 401),
    ("//healthz", "", 200),  # "//healthz" is /healthz: the liveness answer itself
    ("/auth/verify/../../healthz", "", 404),
    ("/auth/verify/healthz", "", 404),
    ("/auth/verify;/healthz", "", 404),
    ("/auth/verify%2f..%2fhealthz", "", 404),
    ("/readyz/../auth/verify", "", 404),
    ("/metrics/../auth/verify", "", 404),
])
def test_health_looking_paths_do_not_pass_verify(tmp_path, path, query, status):
    # Behind a trusted proxy too, with the probe's user agent and the proxy's URI headers.
    app = build_app(tmp_path, AUTHSVC_TRUSTED_PROXIES="1")
    resp = new_client(app).get("/", environ_overrides={"PATH_INFO": path, "QUERY_STRING": query}, headers={
        "User-Agent": "kube-probe/1.29", "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https",
        "X-Original-URI": "/healthz", "X-Forwarded-Uri": "/healthz"})
    assert "X-Auth-User" not in resp.headers and "X-Auth-User-Id" not in resp.headers
    # Denied, not found, or the liveness answer itself: never a pass.
    assert resp.status_code == status
    if status == 200:
        assert resp.get_json() == {"status": "ok"}


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_grant_nothing(mapp, path):
    client = new_client(mapp)
    resp = client.get(path, headers={"User-Agent": "kube-probe/1.29"})
    assert resp.status_code == 200
    assert not resp.headers.getlist("Set-Cookie") and "X-Auth-User" not in resp.headers
    assert client.get("/auth/verify", headers={"User-Agent": "kube-probe/1.29"}).status_code == 401
