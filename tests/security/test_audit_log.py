"""Control: security audit log (ASVS 5.0 V16.1-V16.4).

The log is read the way an operator's collector reads it: the bytes the service writes to its
configured destination (stdout by default, captured with ``capsys``; a file; a syslog socket).

Attacks and failures tried here:

- a log that leaks credentials: one session of real use with canary passwords goes through every
  event type, then every password, cookie, raw token inside a cookie, CSRF token, bearer token and
  key is searched for in the captured output;
- forging log lines with CR/LF, NEL, U+2028 or terminal escapes in the username, the User-Agent
  or ``next``;
- a client choosing its own request id to confuse an investigation (only a trusted proxy may);
- events that leave out when, where, who or what, or that the code emits but the inventory and the
  operations guide do not list;
- lines going somewhere else than the configured destination, or twice.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import stat
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from authsvc.server import cli

from authsvc.core import config

from authsvc.web import logging_setup
from authsvc.web.app import StartupRefused, create_app
from authsvc.core.audit import EVENTS
from tests.conftest import (
    ROOT,
    STRONG_KEY,
    TEST_POLICY,
    Clock,
    add_user,
    build_app,
    cookie_value,
    csrf,
    login,
    make_env,
    new_client,
)

HOST = "auth.example.test"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
# Canary secrets: if any of these strings reaches the log, something logs what it must not.
CANARY = "CANARY-pw-7d3e9a1f-alice-correct"
CANARY_WRONG = "CANARY-wrong-0b6c2e8d4a-guess"
CANARY_NEW = "CANARY-new-5f1a9c3e7b-battery"
CANARY_CLI = "CANARY-cli-3c8e1b7d2f-staple"
CANARY_BOB = "CANARY-bob-9e4d2a6c1b-horse"
CANARY_CAROL = "CANARY-c-1a2b3c4d5e-stone-wall"
CANARY_WEAK_KEY = "CANARY-weak-key-8f7e"
CANARY_METRICS = "CANARY-metrics-token-Qm3v8Zt1Lw9Rx4Kp7Bn2Yd6Hs0"
CANARY_WRONG_METRICS = "CANARY-not-the-metrics-token-Fj5Wq8Nc3Ue"


@pytest.fixture(autouse=True)
def stdout_logging_afterwards():
    """Tests here point the process-wide log elsewhere; leave it on stdout for the next test."""
    yield
    logging_setup.configure("stdout")


def lockout_policy(tmp_path: Path) -> str:
    """Cheap argon2; back-off after 2 failures, lock-out at 4; no per-client limit (one address)."""
    path = tmp_path / "lockout-policy.toml"
    path.write_text(Path(TEST_POLICY).read_text() + "\n[throttle]\nper_client = []\n"
                    "failures_before_backoff = 2\nmax_consecutive_failures = 4\n")
    return str(path)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def events(text: str, name: str | None = None) -> list[dict]:
    return [e for e in json_lines(text) if "event" in e and (name is None or e["event"] == name)]


def post_form(client, path: str, data: dict, csrf_from: str, **kwargs):
    return client.post(path, data={"csrf_token": csrf(client, csrf_from), **data}, **kwargs)


def fail_until_locked(app, clock, client, username: str) -> None:
    """Wrong passwords (waiting out each back-off) until the throttle locks this bucket."""
    for _ in range(10):
        resp = login(client, username, CANARY_WRONG)
        if resp.status_code == 429:
            if resp.headers["Retry-After"] == str(app.extensions["authsvc"].policy.throttle.backoff_max_seconds):
                return
            clock.advance(int(resp.headers["Retry-After"]) + 1)
    raise AssertionError(f"{username} was never locked out")


class Secrets(set):
    """Every secret value the browsers held at some point, cookie values and what is inside them."""

    def take(self, app, *clients) -> None:
        svc = app.extensions["authsvc"]
        signer = app.session_interface.get_signing_serializer(app)
        for client in clients:
            for name in (svc.cookies.session, svc.cookies.remember, svc.cookies.device):
                value = cookie_value(client, name)
                if not value:
                    continue
                self.add(value)
                if name == svc.cookies.session:
                    payload = signer.loads(value)
                    self.update(payload[k] for k in ("_user_id", "csrf_token") if payload.get(k))
                elif name == svc.cookies.remember:
                    self.add(svc.remember.serializer.loads(value).split(".", 1)[1])  # the validator

    def csrf(self, client, path: str = "/login") -> str:
        token = csrf(client, path)
        self.add(token)
        return token


# --- secrets never reach the log ----------------------------------------------------------------------

@pytest.mark.asvs("V16.2.5", "V16.3.1", "V16.3.3", "V16.3.4")
def test_no_password_token_cookie_or_key_reaches_the_log_across_every_event_type(tmp_path, capsys, monkeypatch):
    clock = Clock()
    env = make_env(tmp_path, AUTHSVC_POLICY=lockout_policy(tmp_path), AUTHSVC_METRICS_TOKEN=CANARY_METRICS)
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=env["AUTHSVC_POLICY"], AUTHSVC_METRICS_TOKEN=CANARY_METRICS)
    svc = app.extensions["authsvc"]
    add_user(app, "alice", CANARY)
    add_user(app, "bob", CANARY_BOB)
    found = Secrets({CANARY, CANARY_WRONG, CANARY_NEW, CANARY_CLI, CANARY_BOB, CANARY_CAROL, CANARY_WEAK_KEY,
                     CANARY_METRICS, CANARY_WRONG_METRICS, STRONG_KEY})

    a = new_client(app)
    found.csrf(a)
    assert login(a, "alice", CANARY_WRONG).status_code == 401                                  # login_failure
    assert login(a, "alice", CANARY, remember=True, next="https://evil.example/").status_code == 303
    found.take(app, a)                                                  # login_success, redirect_rejected
    assert a.get("/auth/verify").status_code == 200
    first_remember = cookie_value(a, svc.cookies.remember)

    r = new_client(app)                                                  # a second browser with the cookie
    r.set_cookie(svc.cookies.remember, first_remember, domain=HOST)
    assert r.get("/").status_code == 303                                 # remember_rotated
    found.take(app, r)
    r.delete_cookie(svc.cookies.session, domain=HOST)                     # the browser restarts ...
    lost = new_client(app)                                               # ... and that answer never arrives
    lost.set_cookie(svc.cookies.remember, cookie_value(r, svc.cookies.remember), domain=HOST)
    assert lost.get("/").status_code == 303
    clock.advance(60)
    assert r.get("/").status_code == 303                                 # remember_successor_unused
    found.take(app, r)
    assert r.get("/").status_code == 200                                 # the restored session in use
    clock.advance(60)
    thief = new_client(app)
    thief.set_cookie(svc.cookies.remember, first_remember, domain=HOST)
    thief.get("/")                                                       # remember_replay_detected
    junk = new_client(app)
    junk.set_cookie(svc.cookies.remember, "forged.cookie-value", domain=HOST)
    junk.get("/")                                                        # remember_rejected

    assert login(a, "alice", CANARY).status_code == 303                  # the replay ended every session
    b = new_client(app)
    assert login(b, "alice", CANARY).status_code == 303
    found.take(app, a, b)
    b_session = b.get("/api/v1/session").get_json()["session_id"]
    assert post_form(a, f"/account/sessions/{b_session}/revoke", {}, "/").status_code == 303  # user_revoked
    assert a.get("/auth/verify", headers={"User-Agent": "another browser"}).status_code == 401  # binding_changed
    clock.advance(10)  # alice's next sign-in and password checks: throttle.successes_per_account, 3 in 10 s
    assert login(a, "alice", CANARY).status_code == 303
    found.take(app, a)
    found.csrf(a, "/")
    assert post_form(a, "/account/password", {"current_password": CANARY_WRONG, "new_password": CANARY_NEW},
                     "/").status_code == 400                             # password_change_failed
    assert post_form(a, "/account/password", {"current_password": CANARY, "new_password": CANARY_NEW},
                     "/").status_code == 200                             # password_changed
    found.take(app, a)
    assert a.post("/login", data={"username": "alice", "password": CANARY_NEW}).status_code == 400  # csrf_failed
    assert post_form(a, "/logout", {}, "/").status_code == 303           # logout

    assert a.get("/metrics", headers={"Authorization": f"Bearer {CANARY_WRONG_METRICS}"}).status_code == 401
    assert a.get("/metrics", headers={"Authorization": f"Bearer {CANARY_METRICS}"}).status_code == 200

    d = new_client(app)                                                  # bob's own browser: a known device
    assert login(d, "bob", CANARY_BOB).status_code == 303
    found.take(app, d)
    assert post_form(d, "/logout", {}, "/").status_code == 303
    fail_until_locked(app, clock, new_client(app), "bob")                # login_throttled, account_locked_out
    fail_until_locked(app, clock, d, "bob")                              # device_locked_out
    found.take(app, d)

    for name, value in env.items():                                      # the administrator's command line
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{CANARY_CLI}\n{CANARY_CAROL}\n"))
    for argv in (["user", "passwd", "alice", "--password-stdin"], ["user", "add", "carol", "--password-stdin"],
                 ["user", "disable", "alice"], ["user", "enable", "alice"], ["user", "unlock", "bob"],
                 ["sessions", "revoke", "bob"]):
        assert cli.main(argv) == 0, argv

    weak = config.from_env(make_env(tmp_path, AUTHSVC_SECRET_KEY=CANARY_WEAK_KEY),
                           instance_path=str(tmp_path / "instance"))
    with pytest.raises(StartupRefused):
        create_app(weak)                                                 # config_refused

    captured = capsys.readouterr()
    log = captured.out + captured.err
    seen = {e["event"] for e in events(captured.out)}
    assert seen >= {"login_failure", "login_success", "redirect_rejected", "remember_rotated",
                    "remember_replay_detected", "remember_successor_unused", "remember_rejected", "session_revoked", "password_change_failed",
                    "password_changed", "csrf_failed", "logout", "metrics_denied", "login_throttled",
                    "account_locked_out", "device_locked_out", "user_created", "account_disabled",
                    "account_enabled", "account_unlocked", "config_refused"}, "the capture missed events"
    assert {e["reason"] for e in events(captured.out, "session_revoked")} >= {
        "user_revoked", "binding_changed", "admin_revoked"}
    assert len(found) > 25
    leaked = sorted(s for s in found if s in log)
    assert not leaked, f"secrets in the log: {leaked}"


@pytest.mark.asvs("V16.2.5", "V16.3.1")
def test_no_totp_secret_code_or_recovery_code_reaches_the_log(tmp_path, capsys, monkeypatch):
    """Every second-factor event, from set-up to reset: the secret, the codes typed (right, wrong,
    reused) and the recovery codes appear in no line, as text or as any field's value."""
    from tests.security.factors import App, app_from_set_up_page, post_with_csrf, second_step

    clock = Clock()
    app = build_app(tmp_path, clock)
    add_user(app, "alice", CANARY)
    a = new_client(app)
    assert login(a, "alice", CANARY).status_code == 303
    phone = app_from_set_up_page(a.get("/account/totp").get_data(as_text=True), clock)
    typed = [phone.wrong_codes(1)[0], phone.code()]
    assert post_with_csrf(a, "/account/totp", {"code": typed[0]}, "/account/totp").status_code == 400   # mfa_failed
    assert post_with_csrf(a, "/account/totp", {"code": typed[1]}, "/account/totp").status_code == 200   # mfa_added
    page = post_with_csrf(a, "/account/recovery-codes", {}).get_data(as_text=True)    # recovery_codes_generated
    recovery = re.findall(r'<code class="recovery-code">([^<]+)</code>', page)
    b = new_client(app)
    assert login(b, "alice", CANARY).status_code == 303                                 # mfa_required
    assert second_step(b, typed[1]).status_code == 401                                  # mfa_failed (reused)
    assert second_step(b, recovery[0]).status_code == 303                               # recovery_code_used
    clock.advance(30)
    c = new_client(app)
    assert login(c, "alice", CANARY).status_code == 303
    typed.append(phone.code())
    assert second_step(c, typed[-1]).status_code == 303                                 # mfa_used
    clock.advance(app.extensions["authsvc"].policy.mfa.step_up_seconds + 1)
    assert post_with_csrf(c, "/account/totp/remove", {"password": CANARY}).status_code == 200  # mfa_removed
    for key, value in make_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AUTHSVC_INSTANCE_PATH", str(tmp_path / "instance"))
    for argv in (["user", "mfa", "alice"], ["user", "mfa-reset", "alice"], ["mfa", "reseal"]):
        assert cli.main(argv) == 0, argv                                                # mfa_reset, mfa_resealed

    captured = capsys.readouterr()
    log = captured.out + captured.err
    seen = {e["event"] for e in events(captured.out)}
    assert seen >= {"mfa_added", "mfa_failed", "mfa_required", "mfa_used", "recovery_code_used",
                    "recovery_codes_generated", "mfa_removed", "mfa_reset", "mfa_resealed"}, seen
    assert isinstance(phone, App) and len(recovery) == 10
    canonical = [code.replace("-", "") for code in recovery]
    leaked = [s for s in [phone.totp.secret, *recovery, *canonical] if s in log]
    assert not leaked, f"second-factor secrets in the log: {leaked}"
    values = {str(v) for e in json_lines(captured.out) for v in e.values()}
    assert not values & set(typed), "a typed code is a field's value"


# --- what each line says ------------------------------------------------------------------------------

@pytest.mark.asvs("V16.2.1", "V16.2.2", "V16.2.4", "V16.3.1")
def test_failed_login_line_says_when_where_who_and_what(app, user, client, capsys):
    capsys.readouterr()
    resp = login(client, "alice", "not the password at all", headers={"User-Agent": "Mozilla/5.0 test"})
    assert resp.status_code == 401
    out = capsys.readouterr().out
    assert out and all(line.startswith("{") for line in out.splitlines()), "every stdout line is JSON"
    (line,) = events(out, "login_failure")
    assert TS.match(line["ts"]), line["ts"]
    assert line == {"ts": line["ts"], "event": "login_failure", "outcome": "failure", "reason": "bad_password",
                    "request_id": resp.headers["X-Request-ID"], "user_id": user.id, "client_ip": "127.0.0.1",
                    "user_agent": "Mozilla/5.0 test", "known_device": False}


@pytest.mark.asvs("V16.2.4")
def test_events_without_a_request_still_have_every_common_field(app, capsys):
    capsys.readouterr()
    app.extensions["authsvc"].audit.emit("account_unlocked", user_id=7, by="cli")
    (line,) = json_lines(capsys.readouterr().out)
    assert line["request_id"] is None and line["client_ip"] is None and line["user_agent"] is None
    assert line["user_id"] == 7 and line["outcome"] == "success" and TS.match(line["ts"])


@pytest.mark.asvs("V16.2.5")
def test_fields_named_like_secrets_are_dropped_even_if_a_caller_passes_them(app, capsys):
    capsys.readouterr()
    app.extensions["authsvc"].audit.emit("login_failure", password=CANARY, token=CANARY_NEW, cookie=CANARY_BOB,
                                         csrf_token=CANARY_CLI, reason="bad_password")
    out = capsys.readouterr().out
    assert "CANARY" not in out and events(out, "login_failure")[0]["reason"] == "bad_password"


# --- log injection ----------------------------------------------------------------------------------------

FORGED = '\r\n{"event":"login_success","user_id":1}\x85fake login_success\u2028\x1b[2J'


@pytest.mark.asvs("V16.4.1")
def test_crlf_nel_and_escape_codes_cannot_forge_a_log_line(app, user, capsys):
    client = new_client(app)
    token = csrf(client)
    capsys.readouterr()
    resp = client.post("/login", data={"csrf_token": token, "username": "a\r\nfake login_success" + FORGED,
                                       "password": "x" * 20, "next": "/" + FORGED},
                       environ_overrides={"HTTP_USER_AGENT": "ua" + FORGED})
    assert resp.status_code == 401
    out = capsys.readouterr().out
    assert out.split("\n")[:-1] == out.splitlines(), "a line break other than the one ending each line"
    assert not any(c in out for c in "\r\x85\u2028\x1b")
    lines = json_lines(out)
    assert len(lines) == len(out.splitlines()) == 2
    assert [e["event"] for e in lines] == ["redirect_rejected", "login_failure"]
    assert lines[0]["value"] == ("/" + FORGED)[:200] and lines[1]["user_agent"] == "ua" + FORGED


@pytest.mark.asvs("V16.3.3", "V16.4.1")
def test_rejected_redirect_is_logged_escaped_and_truncated(client, capsys):
    hostile = "https://evil.example/\r\n" + "A" * 5000
    capsys.readouterr()
    client.get("/login", query_string={"next": hostile})
    (line,) = events(capsys.readouterr().out, "redirect_rejected")
    assert line["reason"] and line["outcome"] == "refused"
    assert hostile.startswith(line["value"]) and 20 < len(line["value"]) <= 256
    assert "\\r\\n" in json.dumps(line)


@pytest.mark.asvs("V16.2.5")
@pytest.mark.parametrize("hostile", [
    "https://wiki.example.test/magic-login?token=RESET-CANARY-7b1f",
    "https://wiki.example.test/cb#access_token=RESET-CANARY-7b1f",
    "//evil.example/?code=RESET-CANARY-7b1f",
    "/reset?token=RESET-CANARY-7b1f&" + "x" * 3000,
], ids=["query", "fragment", "scheme_relative", "too_long"])
def test_a_rejected_redirect_is_logged_without_its_query_or_fragment(client, capsys, hostile):
    # A link with a reset token, a magic-link token or an OAuth code in it, refused as `next`, wrote
    # its first 200 characters, token included, to the audit log (found by review, session 14).
    capsys.readouterr()
    client.get("/login", query_string={"next": hostile})
    out = capsys.readouterr().out
    (line,) = events(out, "redirect_rejected")
    assert "CANARY" not in out and line["length"] == len(hostile)
    assert hostile.startswith(line["value"]) and line["value"]


# --- start-up refusal ---------------------------------------------------------------------------------------

@pytest.mark.asvs("V16.3.4", "V16.2.5")
def test_refused_production_config_is_logged_with_setting_names_only(tmp_path, capsys):
    settings = config.from_env(make_env(tmp_path, AUTHSVC_SECRET_KEY=CANARY_WEAK_KEY,
                                        AUTHSVC_METRICS_TOKEN="short-metrics-token"),
                               instance_path=str(tmp_path / "instance"))
    capsys.readouterr()
    with pytest.raises(StartupRefused):
        create_app(settings)
    out = capsys.readouterr().out
    (line,) = events(out, "config_refused")
    assert line["settings"] == "AUTHSVC_METRICS_TOKEN,AUTHSVC_SECRET_KEY" and line["outcome"] == "refused"
    assert CANARY_WEAK_KEY not in out and "short-metrics-token" not in out


# --- lock-outs -------------------------------------------------------------------------------------------------

@pytest.mark.asvs("V16.3.1", "V16.3.3")
def test_account_and_device_lockouts_are_logged_once_when_they_happen(tmp_path, capsys):
    clock = Clock()
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=lockout_policy(tmp_path))
    bob = add_user(app, "bob", CANARY_BOB)
    owner = new_client(app)
    assert login(owner, "bob", CANARY_BOB).status_code == 303
    assert post_form(owner, "/logout", {}, "/").status_code == 303
    capsys.readouterr()
    fail_until_locked(app, clock, new_client(app), "bob")
    out = capsys.readouterr().out
    (locked,) = events(out, "account_locked_out")
    assert locked["user_id"] == bob.id and locked["reason"] == "max_consecutive_failures"
    assert {e["reason"] for e in events(out, "login_throttled")} == {"backoff", "locked"}
    assert not events(out, "device_locked_out")

    fail_until_locked(app, clock, owner, "bob")  # the owner's browser has its own bucket
    out = capsys.readouterr().out
    (locked,) = events(out, "device_locked_out")
    assert locked["user_id"] == bob.id and not events(out, "account_locked_out")
    assert login(owner, "bob", CANARY_BOB).status_code == 429
    assert not events(capsys.readouterr().out, "device_locked_out"), "logged once, not on every attempt"


# --- request ids -------------------------------------------------------------------------------------------------

@pytest.mark.asvs("V16.2.1")
def test_client_cannot_choose_its_request_id_without_a_trusted_proxy(client, capsys):
    capsys.readouterr()
    resp = client.get("/login", query_string={"next": "//evil.example"}, headers={"X-Request-ID": "chosen-by-client"})
    rid = resp.headers["X-Request-ID"]
    assert rid != "chosen-by-client" and re.fullmatch(r"[0-9a-f]{16}", rid)
    assert events(capsys.readouterr().out, "redirect_rejected")[0]["request_id"] == rid


@pytest.mark.asvs("V16.2.1")
@pytest.mark.parametrize("incoming, kept", [
    ("edge-7f3a9c.1:2", True),
    ("x" * 64, True),
    ("x" * 65, False),
    ("two words", False),
    ('id","event":"login_success', False),
])
def test_request_id_from_a_trusted_proxy_is_kept_only_if_well_formed(tmp_path, capsys, incoming, kept):
    app = build_app(tmp_path, AUTHSVC_TRUSTED_PROXIES="1")
    capsys.readouterr()
    resp = new_client(app).get("/login", query_string={"next": "//evil.example"},
                               headers={"X-Request-ID": incoming, "X-Forwarded-For": "203.0.113.9",
                                        "X-Forwarded-Proto": "https"})
    rid = resp.headers["X-Request-ID"]
    assert (rid == incoming) is kept
    (line,) = events(capsys.readouterr().out, "redirect_rejected")
    assert line["request_id"] == rid and line["client_ip"] == "203.0.113.9"


@pytest.mark.asvs("V16.2.1", "V16.3.4", "V16.5.1")
def test_error_lines_outside_the_audit_log_carry_the_same_request_id(app, client, capsys, monkeypatch):
    def down(*_args, **_kwargs):
        raise OperationalError("SELECT users", {}, ConnectionRefusedError("database is down"))
    monkeypatch.setattr(app.extensions["authsvc"].accounts, "by_username", down)
    token = csrf(client)
    capsys.readouterr()
    resp = client.post("/login", data={"csrf_token": token, "username": "alice", "password": CANARY})
    assert resp.status_code == 503 and b"OperationalError" not in resp.data
    rid = resp.headers["X-Request-ID"]
    out = capsys.readouterr().out
    lines = json_lines(out)
    assert len(lines) == len(out.splitlines())
    (error,) = [e for e in lines if e.get("logger") == "authsvc"]
    assert error["level"] == "error" and "database unavailable" in error["message"] and TS.match(error["ts"])
    assert {e["request_id"] for e in lines} == {rid}
    assert [e["event"] for e in lines if "event" in e] == ["dependency_failed"]
    assert CANARY not in out


# --- destinations ------------------------------------------------------------------------------------------------

def our_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger("authsvc").handlers if isinstance(h.formatter, logging_setup.JsonLines)]


@pytest.mark.asvs("V16.2.3")
def test_many_apps_in_one_process_share_one_handler_and_write_each_line_once(tmp_path, capsys):
    apps = [build_app(tmp_path / str(n)) for n in range(3)]
    assert len(our_handlers()) == 1
    capsys.readouterr()
    apps[1].extensions["authsvc"].audit.emit("account_enabled", user_id=1)
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.asvs("V16.2.3", "V16.4.2")
def test_file_destination_gets_every_line_owner_only_and_stdout_gets_none(tmp_path, capsys):
    path = tmp_path / "audit.log"
    app = build_app(tmp_path, AUTHSVC_LOG=f"file:{path}")
    capsys.readouterr()
    login(new_client(app), "nobody", "not the password at all")
    assert capsys.readouterr().out == ""
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [e["event"] for e in events(path.read_text())] == ["login_failure"]
    assert len(our_handlers()) == 1


@pytest.mark.asvs("V16.4.2")
def test_the_file_logrotate_moves_away_is_reopened_owner_only_whatever_the_umask(tmp_path, capsys):
    """logrotate renames the log; the handler then makes a new file at the next line. It made it
    with open()'s mode, 0666 less the umask: 0644 under the usual 022, so every local user could
    read the audit trail from the first rotation on. The new file is 0600 like the first."""
    path = tmp_path / "audit.log"
    before = os.umask(0o022)
    try:
        app = build_app(tmp_path, AUTHSVC_LOG=f"file:{path}")
        audit = app.extensions["authsvc"].audit
        audit.emit("account_disabled", user_id=1, by="cli")
        path.rename(tmp_path / "audit.log.1")  # what logrotate does (without copytruncate)
        audit.emit("account_enabled", user_id=1, by="cli")
    finally:
        os.umask(before)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [e["event"] for e in events(path.read_text())] == ["account_enabled"]
    assert [e["event"] for e in events((tmp_path / "audit.log.1").read_text())] == ["account_disabled"]


@pytest.mark.asvs("V16.2.3", "V16.4.3")
def test_syslog_destination_sends_each_event_to_the_socket(tmp_path, capsys):
    address = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(5)
        app = build_app(tmp_path, AUTHSVC_LOG=f"syslog:{address}")
        capsys.readouterr()
        app.extensions["authsvc"].audit.emit("account_disabled", user_id=3, by="cli")
        message = server.recv(65536).decode()
    assert capsys.readouterr().out == ""
    prefix = "<86>authsvc: "  # facility authpriv (10) * 8 + severity info (6)
    assert message.startswith(prefix)
    line = json.loads(message[len(prefix):].rstrip("\x00"))
    assert line["event"] == "account_disabled" and line["user_id"] == 3


@pytest.mark.asvs("V16.2.3")
@pytest.mark.parametrize("value", ["http://collector.example/logs", "file:relative/audit.log", "stderr", "syslog:"])
def test_unknown_log_destination_is_refused_with_the_accepted_forms(tmp_path, value):
    with pytest.raises(config.ConfigError, match=r"AUTHSVC_LOG: .*stdout, file:/absolute/path, syslog"):
        config.from_env(make_env(tmp_path, AUTHSVC_LOG=value), instance_path=str(tmp_path))


@pytest.mark.asvs("V16.2.3")
def test_unreachable_log_destination_refuses_start_up(tmp_path):
    with pytest.raises(config.ConfigError, match="AUTHSVC_LOG=syslog:/nonexistent/log.sock: cannot log there"):
        build_app(tmp_path, AUTHSVC_LOG="syslog:/nonexistent/log.sock")


# --- the inventory ------------------------------------------------------------------------------------------------

_EMIT = re.compile(r"(?:\.emit|_audit)\(\s*([^,)]+)")


@pytest.mark.asvs("V16.1.1")
def test_every_emitted_event_is_in_the_inventory_and_the_operations_guide():
    emitted = set()
    for path in (ROOT / "authsvc").rglob("*.py"):
        for expression in _EMIT.findall(path.read_text()):
            emitted.update(re.findall(r'"([a-z_]+)"', expression))
    assert emitted == set(EVENTS), "authsvc.core.audit.EVENTS and the code disagree"
    guide = (ROOT / "docs" / "operations.md").read_text()
    assert not [e for e in EVENTS if f"`{e}`" not in guide], "events missing from docs/operations.md"
