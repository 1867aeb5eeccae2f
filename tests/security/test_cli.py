"""The ``authsvc`` command (interface): account administration and the production audit.

Every test runs the installed ``.venv/bin/authsvc`` in a scrubbed environment with the working
directory in ``tmp_path``, on the same SQLite file as the in-process ``app`` fixture, so what the
command does is checked through the HTTP interface. The threats: default accounts (ASVS 6.3.2), weak
or look-alike account names, weak passwords set by an operator, passwords echoed to the terminal,
and configurations that `authsvc check` must not call sound.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time

import pytest

from authsvc.server import cli
from authsvc.rules.secretkeys import secret_problems
from tests.conftest import (
    PASSWORD,
    ROOT,
    STRONG_KEY,
    add_user,
    login,
    make_env,
    new_client,
)

AUTHSVC = ROOT / ".venv" / "bin" / "authsvc"
SESSION = "__Host-authsvc_session"
NEW_PASSWORD = "tangerine orbit lighthouse 1987"


def cli_env(tmp_path, **overrides) -> dict:
    """A scrubbed environment: nothing from the developer's shell, only what the test states."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    env.update(make_env(tmp_path, **overrides))
    return env


def run_cli(tmp_path, *args, input: str | None = None, timeout: float = 60, **overrides):
    return subprocess.run([str(AUTHSVC), *args], check=False, cwd=tmp_path, env=cli_env(tmp_path, **overrides),
                          input=input, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          start_new_session=True)  # no controlling terminal: getpass cannot open /dev/tty


def add_via_cli(tmp_path, name: str, password: str, **overrides):
    return run_cli(tmp_path, "user", "add", name, "--password-stdin", input=password + "\n", **overrides)


def usernames(app) -> list[str]:
    """The accounts in the shared database (read in-process: one subprocess per test is enough)."""
    return [account.username for account in app.extensions["authsvc"].accounts.all()]


def session_token(app, browser) -> str:
    cookie = browser.get_cookie(SESSION, domain="auth.example.test").value
    return app.session_interface.get_signing_serializer(app).loads(cookie)["_user_id"]


# --- gen-secret -------------------------------------------------------------------------------


@pytest.mark.asvs("V11.5.1", "V11.2.3")
def test_gen_secret_prints_64_urlsafe_chars_unique_each_run_and_strong(tmp_path):
    keys = [run_cli(tmp_path, "gen-secret").stdout for _ in range(3)]
    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{64}\n", key)
        assert secret_problems(key.strip()) == []
    assert len(set(keys)) == 3


def test_gen_secret_needs_no_configuration(tmp_path):
    """An operator with no key yet must be able to make one: gen-secret ignores the refused settings."""
    result = run_cli(tmp_path, "gen-secret", AUTHSVC_SECRET_KEY=None, AUTHSVC_ENV="production")
    assert result.returncode == 0
    assert len(result.stdout.strip()) == 64


# --- no default accounts ----------------------------------------------------------------------


@pytest.mark.asvs("V6.3.2")
def test_fresh_database_has_no_accounts_user_list_is_empty(tmp_path):
    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(tmp_path, "user", "list")
    assert result.returncode == 0
    assert result.stdout == ""


@pytest.mark.asvs("V6.3.2")
@pytest.mark.parametrize("username,password", [
    ("admin", "admin"), ("root", "root"), ("admin", "password"), ("administrator", "changeme"),
    ("sa", "sa"), ("admin", "admin123456789012"), ("authsvc", "authsvc"), ("test", "test"),
])
def test_default_credentials_do_not_log_in_on_fresh_database(app, client, username, password):
    response = login(client, username, password)
    assert response.status_code == 401
    assert client.get("/auth/verify").status_code == 401


# --- user add ---------------------------------------------------------------------------------


def test_user_add_with_password_stdin_creates_a_working_account_without_echo(app, tmp_path):
    result = add_via_cli(tmp_path, "alice", PASSWORD)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert usernames(app) == ["alice"]
    assert login(new_client(app)).status_code == 303


@pytest.mark.parametrize("ending", ["\r\n", "\r", ""])
def test_a_password_from_stdin_is_the_line_without_its_ending_whichever(app, tmp_path, ending):
    # A password file saved on Windows ends in CRLF: the "\r" was kept in the password, one no browser
    # can send, and the account could never sign in (found by review, session 14).
    result = run_cli(tmp_path, "user", "add", "alice", "--password-stdin", input=PASSWORD + ending)
    assert result.returncode == 0, result.stderr
    assert login(new_client(app)).status_code == 303


@pytest.mark.parametrize("password", [PASSWORD + "\x00", "\x00" + PASSWORD, PASSWORD + "\ufffd"])
def test_a_password_the_sign_in_form_refuses_is_refused_by_the_cli_too(app, tmp_path, password):
    # The form refuses NUL and U+FFFD before anything else (authsvc.web.forms.value_problem); the
    # CLI stored such a password, which then could never be used (found by review, session 14).
    result = add_via_cli(tmp_path, "alice", password)
    assert result.returncode != 0 and "never sends" in result.stderr, result.stderr
    assert usernames(app) == []


def test_user_list_never_shows_password_hashes(app, tmp_path):
    add_user(app)
    result = run_cli(tmp_path, "user", "list")
    assert "alice" in result.stdout
    assert "$argon2" not in result.stdout
    assert app.extensions["authsvc"].accounts.by_username("alice").password_hash not in result.stdout


@pytest.mark.asvs("V6.2.1", "V6.2.4", "V6.2.11")
@pytest.mark.parametrize("password,reason", [
    pytest.param("Tq8vLr2mWz5kXc", "minimum is 15", id="too-short-14"),
    pytest.param("", "minimum is 15", id="empty"),
    pytest.param("123456789987654321", "common", id="common-password"),
    pytest.param("passwordpasswordpassword", "common", id="common-password-repeated"),
    pytest.param("alice-in-wonderland-42", "username", id="contains-the-username"),
    pytest.param("my authsvc login 2024 x", "authsvc", id="contains-the-service-name"),
    pytest.param("abcdefghijklmnopqrstu", "sequence", id="alphabet-walk"),
])
def test_user_add_refuses_weak_password_and_says_why(app, tmp_path, password, reason):
    result = add_via_cli(tmp_path, "alice", password)
    assert result.returncode != 0
    assert reason in result.stderr
    if password:
        assert password not in result.stdout + result.stderr
    assert usernames(app) == []


@pytest.mark.asvs("V6.2.5")
@pytest.mark.parametrize("password", [
    pytest.param("glimmeringostrich", id="lowercase-only"),
    pytest.param("493817265049381726", id="digits-only-no-pattern"),
    pytest.param("orchid 🦜 parrot 🌵 mesa", id="spaces-and-emoji"),
])
def test_user_add_needs_no_composition_rules(app, tmp_path, password):
    assert add_via_cli(tmp_path, "alice", password).returncode == 0
    assert login(new_client(app), "alice", password).status_code == 303


@pytest.mark.parametrize("name", [
    pytest.param("alice", id="same"),
    pytest.param("ALICE", id="upper-case"),
    pytest.param("Alice", id="title-case"),
    pytest.param("ａｌｉｃｅ", id="full-width"),
    pytest.param(" alice ", id="padded-with-spaces"),
])
def test_user_add_refuses_existing_name_in_any_case_or_width(app, tmp_path, name):
    add_user(app, "alice")
    result = add_via_cli(tmp_path, name, NEW_PASSWORD)
    assert result.returncode != 0
    assert "already exists" in result.stderr
    assert usernames(app) == ["alice"]
    assert login(new_client(app), "alice", NEW_PASSWORD).status_code == 401  # the original is untouched


@pytest.mark.parametrize("name", [
    pytest.param("\u0430lice", id="cyrillic-a"),
    pytest.param("alic\u0435", id="cyrillic-ie"),
    pytest.param("\u0440aypal", id="cyrillic-er"),
    pytest.param("ali\x1b[31mce", id="ansi-escape"),
    pytest.param("ali\tce", id="tab"),
    pytest.param("ali\x07ce", id="bell"),
    pytest.param("ali\u200bce", id="zero-width-space"),
    pytest.param("ali\u202ece", id="right-to-left-override"),
    pytest.param("ali ce", id="inner-space"),
    pytest.param("alice\u0301", id="combining-accent"),
    pytest.param("", id="empty"),
    pytest.param("a" * 65, id="too-long"),
])
def test_user_add_refuses_control_characters_and_look_alike_names(app, tmp_path, name):
    result = add_via_cli(tmp_path, name, NEW_PASSWORD)
    assert result.returncode != 0
    assert "Username" in result.stderr
    assert usernames(app) == []


def test_cyrillic_look_alike_cannot_shadow_an_existing_account(app, tmp_path):
    add_user(app, "alice")
    assert add_via_cli(tmp_path, "\u0430lice", NEW_PASSWORD).returncode != 0
    assert usernames(app) == ["alice"]


# --- password prompt (getpass) ----------------------------------------------------------------


def run_in_pty(tmp_path, args, replies: list[tuple[str, str]], timeout: float = 30):
    """Run the CLI with a pseudo-terminal as stdin/stdout/stderr, answering each prompt once it
    appears (so the reply is typed after the program had its chance to turn echo off).
    Returns (exit code, everything the terminal showed)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([str(AUTHSVC), *args], cwd=tmp_path, env=cli_env(tmp_path), stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    shown, searched_from = b"", 0
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if replies and replies[0][0].encode() in shown[searched_from:]:
                prompt, reply = replies.pop(0)
                searched_from = shown.index(prompt.encode(), searched_from) + len(prompt)
                os.write(master, reply.encode() + b"\n")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, shown.decode("utf-8", "replace")


def test_user_add_prompt_on_terminal_does_not_echo_the_password(app, tmp_path):
    code, shown = run_in_pty(tmp_path, ["user", "add", "alice"], [("Password:", PASSWORD), ("Repeat:", PASSWORD)])
    assert "Password:" in shown and "Repeat:" in shown
    assert PASSWORD not in shown
    assert code == 0, shown
    assert login(new_client(app)).status_code == 303


def test_user_add_prompt_mismatch_creates_nothing(app, tmp_path):
    code, shown = run_in_pty(tmp_path, ["user", "add", "alice"], [("Password:", PASSWORD), ("Repeat:", NEW_PASSWORD)])
    assert code != 0
    assert "did not match" in shown
    assert PASSWORD not in shown and NEW_PASSWORD not in shown
    assert usernames(app) == []


def test_user_add_without_terminal_or_password_stdin_fails_cleanly_on_no_input(app, tmp_path):
    """stdin is an empty pipe and there is no terminal: getpass gets end-of-file. The command
    must fail with a message, not a traceback, and create nothing."""
    result = run_cli(tmp_path, "user", "add", "alice", input="")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "--password-stdin" in result.stderr
    assert usernames(app) == []


def test_user_add_without_terminal_reads_piped_password_without_printing_it(app, tmp_path):
    """getpass falls back to reading the pipe (with its warning on stderr); the password itself is
    never written back to stdout or stderr."""
    result = run_cli(tmp_path, "user", "add", "alice", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert PASSWORD not in result.stdout + result.stderr
    assert "Password:" not in result.stdout  # prompts go to the terminal or stderr, never stdout
    assert result.returncode == 0, result.stderr
    assert login(new_client(app)).status_code == 303


# --- user passwd / disable / enable -----------------------------------------------------------


@pytest.mark.asvs("V7.4.3")
def test_user_passwd_changes_password_and_ends_existing_sessions(app, tmp_path, user):
    browser = new_client(app)
    assert login(browser).status_code == 303
    result = run_cli(tmp_path, "user", "passwd", "alice", "--password-stdin", input=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert NEW_PASSWORD not in result.stdout + result.stderr
    assert browser.get("/auth/verify").status_code == 401
    assert login(new_client(app), "alice", PASSWORD).status_code == 401
    assert login(new_client(app), "alice", NEW_PASSWORD).status_code == 303


@pytest.mark.asvs("V6.2.4", "V6.2.11")
@pytest.mark.parametrize("password,reason", [
    pytest.param("short one", "minimum", id="too-short"),
    pytest.param("123456789987654321", "common", id="common"),
    pytest.param("ALICE and the looking glass", "username", id="contains-username"),
])
def test_user_passwd_applies_the_policy_and_keeps_the_old_password(app, tmp_path, user, password, reason):
    before = app.extensions["authsvc"].accounts.by_username("alice").password_hash
    result = run_cli(tmp_path, "user", "passwd", "alice", "--password-stdin", input=password + "\n")
    assert result.returncode != 0
    assert reason in result.stderr
    assert app.extensions["authsvc"].accounts.by_username("alice").password_hash == before
    assert login(new_client(app)).status_code == 303


@pytest.mark.asvs("V7.4.2")
def test_user_disable_ends_sessions_and_blocks_login_until_enabled(app, tmp_path, user):
    browser = new_client(app)
    assert login(browser).status_code == 303
    assert run_cli(tmp_path, "user", "disable", "alice").returncode == 0
    assert browser.get("/auth/verify").status_code == 401
    assert login(new_client(app)).status_code == 401
    assert "disabled" in run_cli(tmp_path, "user", "list").stdout
    assert run_cli(tmp_path, "user", "enable", "alice").returncode == 0
    assert browser.get("/auth/verify").status_code == 401  # enabling does not revive old sessions
    assert login(new_client(app)).status_code == 303


@pytest.mark.parametrize("command", [
    ["user", "passwd", "ghost", "--password-stdin"], ["user", "disable", "ghost"], ["user", "enable", "ghost"],
    ["sessions", "list", "ghost"], ["sessions", "revoke", "ghost"],
])
def test_commands_on_unknown_user_fail_with_message(app, tmp_path, command):
    result = run_cli(tmp_path, *command, input=NEW_PASSWORD + "\n")
    assert result.returncode != 0
    assert "no user named 'ghost'" in result.stderr
    assert usernames(app) == []


def test_user_commands_refuse_a_database_without_schema(tmp_path):
    result = add_via_cli(tmp_path, "alice", PASSWORD)
    assert result.returncode != 0
    assert "authsvc db upgrade" in result.stderr


# --- sessions list / revoke -------------------------------------------------------------------


@pytest.mark.asvs("V7.4.5")
def test_sessions_list_shows_each_live_session_but_never_its_token(app, tmp_path, user):
    browsers = [new_client(app), new_client(app)]
    for browser in browsers:
        assert login(browser).status_code == 303
    result = run_cli(tmp_path, "sessions", "list", "alice")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("127.0.0.1" in line for line in lines)
    for browser in browsers:
        token = session_token(app, browser)
        assert token not in result.stdout
        assert browser.get_cookie(SESSION, domain="auth.example.test").value not in result.stdout


@pytest.mark.asvs("V16.4.1")
def test_sessions_list_escapes_terminal_control_sequences_in_user_agent(app, tmp_path, user):
    """The User-Agent is the attacker's text: printed raw, escape sequences would clear or retitle
    the operator's terminal, and tabs or carriage returns would forge extra columns or lines."""
    browser = new_client(app)
    browser.environ_base["HTTP_USER_AGENT"] = "Mozilla\x1b[2J\x1b]0;pwned\x07\tfake\rroot\u202eevil"
    assert login(browser).status_code == 303
    result = run_cli(tmp_path, "sessions", "list", "alice")
    assert result.returncode == 0
    raw = result.stdout
    assert not any(c in raw for c in "\x1b\x07\r\u202e")
    lines = raw.splitlines()
    assert len(lines) == 1
    assert len(lines[0].split("\t")) == 5
    assert "Mozilla" in lines[0]


@pytest.mark.asvs("V7.4.5")
def test_sessions_revoke_ends_every_session_of_that_user_only(app, tmp_path, user):
    add_user(app, "bob")
    alice_browsers = [new_client(app), new_client(app)]
    for browser in alice_browsers:
        assert login(browser).status_code == 303
    bob = new_client(app)
    assert login(bob, "bob").status_code == 303
    result = run_cli(tmp_path, "sessions", "revoke", "alice")
    assert result.returncode == 0
    assert "revoked 2 session(s)" in result.stdout
    assert [b.get("/auth/verify").status_code for b in alice_browsers] == [401, 401]
    assert bob.get("/auth/verify").status_code == 200
    assert run_cli(tmp_path, "sessions", "list", "alice").stdout == ""


# --- authsvc check ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upgraded_db(tmp_path_factory):
    """One database brought to head with `authsvc db upgrade`, shared by the read-only check runs."""
    where = tmp_path_factory.mktemp("checked-db")
    result = run_cli(where, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    return f"sqlite:///{where / 'authsvc.db'}"


# Shared rate-limit storage, as production needs: `check` names it but never connects to it.
SHARED_STORAGE = "redis://127.0.0.1:6379/0"


def check_in_process(tmp_path, monkeypatch, capsys, **overrides) -> tuple[int, str]:
    """`authsvc check` through ``cli.main`` with exactly the stated environment. The subprocess
    runs above prove the installed command and its exit status; the matrix below runs in-process
    so thirty configurations cost seconds, not minutes."""
    for name in [n for n in os.environ if n.startswith("AUTHSVC_")]:
        monkeypatch.delenv(name)
    for name, value in make_env(tmp_path, **{"AUTHSVC_RATELIMIT_STORAGE_URI": SHARED_STORAGE, **overrides}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    code = cli.main(["check"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def problem_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(("error: ", "warning: "))]


@pytest.mark.asvs("V11.2.3", "V13.2.3")
def test_check_passes_sound_production_config_after_db_upgrade(tmp_path):
    upgrade = run_cli(tmp_path, "db", "upgrade")
    assert upgrade.returncode == 0
    assert "database at revision" in upgrade.stdout
    result = run_cli(tmp_path, "check", AUTHSVC_RATELIMIT_STORAGE_URI=SHARED_STORAGE)
    assert result.returncode == 0, result.stdout
    assert problem_lines(result.stdout) == []
    assert result.stdout.splitlines()[-1].startswith("ok: configuration is sound for production")
    assert STRONG_KEY not in result.stdout + result.stderr


def test_check_does_not_call_per_process_throttle_counts_sound_for_production(tmp_path):
    """With memory:// (the default) each of serve's workers (2 by default) and each instance counts
    alone: an attacker gets that many times every limit. `check` called it a note and then printed
    "configuration is sound for production"; now it is a warning (check fails, serve still starts)
    with the fix, and only a note in development."""
    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    result = run_cli(tmp_path, "check")
    assert result.returncode == 1, result.stdout
    (line,) = problem_lines(result.stdout)
    assert line.startswith("warning: AUTHSVC_RATELIMIT_STORAGE_URI=memory:// counts per process") and "redis://" in line
    assert not any(out.startswith("ok:") for out in result.stdout.splitlines())
    development = run_cli(tmp_path, "check", AUTHSVC_ENV="development")
    assert any(out.startswith("note: AUTHSVC_RATELIMIT_STORAGE_URI") for out in development.stdout.splitlines())


def test_check_in_process_passes_the_matrix_base_config(tmp_path, monkeypatch, capsys, upgraded_db):
    """The control for every case below: without the one change, check finds nothing."""
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_DATABASE_URL=upgraded_db)
    assert code == 0, shown
    assert problem_lines(shown) == []


@pytest.mark.parametrize("rp_id", ["example.test", "auth.example.test", ".Example.Test", " example.test "])
def test_check_accepts_a_relying_party_id_that_covers_the_service(tmp_path, monkeypatch, capsys, upgraded_db, rp_id):
    """mfa.rp_id may name the service's host or a domain above it (any case, a leading dot or
    spaces are forgiven, as for the cookie domain); the unsound ones are in UNSOUND below."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[mfa]\nrp_id = "{rp_id}"\n')
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_DATABASE_URL=upgraded_db,
                                   AUTHSVC_POLICY=str(policy))
    assert code == 0, shown
    assert problem_lines(shown) == []


def _policy(text: str):
    def make(tmp_path) -> dict:
        path = tmp_path / "policy.toml"
        path.write_text(text)
        return {"AUTHSVC_POLICY": str(path)}
    return make


def _env(**values):
    return lambda tmp_path: values


def _key_file_0644(tmp_path) -> dict:
    path = tmp_path / "key"
    path.write_text(STRONG_KEY + "\n")
    path.chmod(0o644)
    return {"AUTHSVC_SECRET_KEY": None, "AUTHSVC_SECRET_KEY_FILE": str(path)}


def _fresh_database(tmp_path) -> dict:
    return {"AUTHSVC_DATABASE_URL": f"sqlite:///{tmp_path / 'never-upgraded.db'}"}


def _oidc_client_without_public_url(tmp_path) -> dict:
    """A database with one OpenID Connect client registered, and no AUTHSVC_PUBLIC_URL."""
    from authsvc.core import db
    from authsvc.core.oidc.store import ClientStore

    url = f"sqlite:///{tmp_path / 'with-a-client.db'}"
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        ClientStore(engine, time.time).add("Wiki", ("https://wiki.example.test/cb",), public=False)
    finally:
        engine.dispose()
    return {"AUTHSVC_DATABASE_URL": url, "AUTHSVC_PUBLIC_URL": None}


# An older key still in AUTHSVC_SECRET_KEY_FALLBACKS (it verifies cookies until it leaves the list).
ROTATED_KEY = "Vq2-rotated-out-key-9d4c1e7a5b3f8e2d6c0a4b9f1e7d3c5a8b2"


# (setup, text one problem line must contain, number of problem lines or None for "at least one")
UNSOUND = {
    "weak-key-from-tutorial": (_env(AUTHSVC_SECRET_KEY="you-will-never-guess-" + STRONG_KEY),
                               "AUTHSVC_SECRET_KEY is, or is built from, a well-known", 1),
    "short-key": (_env(AUTHSVC_SECRET_KEY="Xk9#vQ2!mP7@tR4$"), "AUTHSVC_SECRET_KEY is 16 bytes", 1),
    "missing-key": (_env(AUTHSVC_SECRET_KEY=None), "AUTHSVC_SECRET_KEY is not set", 1),
    "weak-fallback-key": (_env(AUTHSVC_SECRET_KEY_FALLBACKS="changeme"), "AUTHSVC_SECRET_KEY_FALLBACKS", None),
    "key-file-0644": (_key_file_0644, "chmod 600", 1),
    "key-and-key-file": (lambda p: {**_key_file_0644(p), "AUTHSVC_SECRET_KEY": STRONG_KEY}, "not both", 1),
    "argon2-t2-below-19MiB": (_policy("[argon2]\ntime_cost = 2\nmemory_cost_kib = 12288\nparallelism = 1\n"),
                              "below the OWASP/ASVS floor", 1),
    "argon2-t3-below-12MiB": (_policy("[argon2]\ntime_cost = 3\nmemory_cost_kib = 8192\n"),
                              "below the OWASP/ASVS floor", 1),
    "argon2-t1-below-46MiB": (_policy("[argon2]\ntime_cost = 1\nmemory_cost_kib = 19456\n"),
                              "below the OWASP/ASVS floor", 1),
    "argon2-short-salt": (_policy("[argon2]\nsalt_len = 8\n"), "salt_len >= 16", 1),
    "argon2-anonymous-above-max": (_policy("[argon2]\nmax_concurrent = 2\nanonymous_max_concurrent = 3\n"),
                                   "anonymous_max_concurrent must be between 1 and max_concurrent", 1),
    "argon2-anonymous-zero": (_policy("[argon2]\nanonymous_max_concurrent = 0\n"),
                              "anonymous_max_concurrent must be between 1 and max_concurrent", 1),
    "argon2-anonymous-takes-every-slot": (_policy("[argon2]\nmax_concurrent = 4\nanonymous_max_concurrent = 4\n"),
                                          "can take every argon2 slot from known devices", 1),
    "argon2-anonymous-queue-negative": (_policy("[argon2]\nanonymous_queue = -1\n"), "anonymous_queue", 1),
    "argon2-anonymous-same-priority": (_policy("[argon2]\nanonymous_nice = 0\n"), "anonymous_nice = 0", 1),
    "argon2-anonymous-nice-20": (_policy("[argon2]\nanonymous_nice = 20\n"),
                                 "anonymous_nice must be between 0 and 19", 1),
    "min-length-14": (_policy("[passwords]\nmin_length = 14\n"), "passwords.min_length=14", 1),
    "max-length-32": (_policy("[passwords]\nmax_length = 32\n"), "passwords.max_length=32", 1),
    "remember-31-days": (_policy("[sessions]\nremember_lifetime_days = 31\n"), "remember_lifetime_days=31", 1),
    "idle-timeout-2h": (_policy("[sessions]\nidle_timeout_seconds = 7200\n"), "idle_timeout_seconds=7200", 1),
    "verify-cache-5s": (_policy("[sessions]\nverify_cache_seconds = 5\n"), "verify_cache_seconds", 1),
    "max-consecutive-failures-101": (_policy("[throttle]\nmax_consecutive_failures = 101\n"),
                                     "max_consecutive_failures=101", 1),
    "throttle-fails-open-to-memory": (_policy('[throttle]\nstorage_failure = "memory"\n'),
                                      'storage_failure="memory"', 1),
    "no-per-client-limit": (_policy("[throttle]\nper_client = []\n"), "throttle.per_client", 1),
    "hsts-1000s": (_policy("[headers]\nhsts_max_age_seconds = 1000\n"), "hsts_max_age_seconds", 1),
    # Values that switch a protection off (found by review): each is refused, naming the key.
    "throttle-window-0-backoff-never-starts": (_policy("[throttle]\nfailure_window_seconds = 0\n"),
                                                "throttle.failure_window_seconds=0", 1),
    "throttle-lockout-forgotten-after-1s": (_policy("[throttle]\nconsecutive_failure_memory_seconds = 1\n"),
                                            "throttle.consecutive_failure_memory_seconds=1", 1),
    "no-session-cap": (_policy("[sessions]\nmax_sessions_per_user = 0\n"), "sessions.max_sessions_per_user=0", 1),
    "remember-theft-grace-1-year": (_policy("[sessions]\nremember_rotation_grace_seconds = 31536000\n"),
                                    "sessions.remember_rotation_grace_seconds=31536000", 1),
    "no-token-endpoint-limit": (_policy("[oidc]\ntoken_requests_per_client = []\n"),
                                "oidc.token_requests_per_client is empty", 1),
    "body-limit-1-terabyte": (_policy("[limits]\nmax_content_length = 1000000000000\n"),
                              "limits.max_content_length=1000000000000", 1),
    "username-limit-100-million": (_policy("[limits]\nusername_max_length = 100000000\n"),
                                   "limits.username_max_length=100000000", 1),
    "argon2-queue-wait-1-hour": (_policy("[argon2]\nqueue_timeout_seconds = 3600\n"),
                                 "argon2.queue_timeout_seconds=3600", 1),
    "argon2-queue-wait-inf": (_policy("[argon2]\nqueue_timeout_seconds = inf\n"),
                              "argon2.queue_timeout_seconds must be a finite number", 1),
    "argon2-queue-wait-nan": (_policy("[argon2]\nqueue_timeout_seconds = nan\n"),
                              "argon2.queue_timeout_seconds must be a finite number", 1),
    "verify-cache-nan": (_policy("[sessions]\nverify_cache_seconds = nan\n"),
                         "sessions.verify_cache_seconds must be a finite number", 1),
    "http-redirect-origin": (_env(AUTHSVC_REDIRECT_ALLOWED_ORIGINS="http://app.example.test"),
                             "redirect origin http://app.example.test is http", 1),
    "http-redirect-app-in-policy": (_policy('[[redirects.apps]]\norigin = "http://wiki.example.test"\n'),
                                    "redirect origin http://wiki.example.test is http", 1),
    "http-redirect-app-in-upper-case": (_policy('[[redirects.apps]]\norigin = "HTTP://wiki.example.test"\n'),
                                        "redirect origin HTTP://wiki.example.test is http", 1),
    "http-redirect-app-in-mixed-case": (_policy('[[redirects.apps]]\norigin = "hTtP://wiki.example.test"\n'),
                                        "is http", 1),
    "http-public-url": (_env(AUTHSVC_PUBLIC_URL="http://auth.example.test"), "AUTHSVC_PUBLIC_URL must be https", 1),
    "cookie-domain-public-suffix": (_env(AUTHSVC_COOKIE_DOMAIN="co.uk"), "public suffix", 1),
    "cookie-domain-dotted-public-suffix": (_env(AUTHSVC_COOKIE_DOMAIN=".github.io"), "public suffix", 1),
    "cookie-domain-single-label": (_env(AUTHSVC_COOKIE_DOMAIN="test"), "public suffix", 1),
    "cookie-domain-not-covering-public-url": (_env(AUTHSVC_COOKIE_DOMAIN=".other.test"), "does not cover", 1),
    "cookie-domain-suffix-trick": (_env(AUTHSVC_COOKIE_DOMAIN="ple.test"), "does not cover", 1),
    "rp-id-public-suffix": (_policy('[mfa]\nrp_id = "co.uk"\n'), "mfa.rp_id='co.uk' is not a domain", 1),
    "rp-id-single-label": (_policy('[mfa]\nrp_id = "test"\n'), "mfa.rp_id='test' is not a domain", 1),
    "rp-id-with-port": (_policy('[mfa]\nrp_id = "example.test:443"\n'), "is not a domain", 1),
    "rp-id-url": (_policy('[mfa]\nrp_id = "https://example.test"\n'), "is not a domain", 1),
    "rp-id-other-domain": (_policy('[mfa]\nrp_id = "other.test"\n'), "does not cover the service's host", 1),
    "rp-id-suffix-trick": (_policy('[mfa]\nrp_id = "ple.test"\n'), "does not cover the service's host", 1),
    "database-password-postgres": (
        _env(AUTHSVC_DATABASE_URL="postgresql+psycopg://authsvc:postgres@127.0.0.1:9/authsvc"),
        "default database password", None),
    "database-password-percent-encoded": (
        _env(AUTHSVC_DATABASE_URL="postgresql+psycopg://authsvc:p%61ssword@127.0.0.1:9/authsvc"),
        "default database password", None),
    "database-password-all-percent-encoded": (
        _env(AUTHSVC_DATABASE_URL="postgresql+psycopg://authsvc:%70%6f%73%74%67%72%65%73@127.0.0.1:9/authsvc"),
        "default database password", None),
    "database-password-in-the-query": (
        _env(AUTHSVC_DATABASE_URL="postgresql+psycopg://authsvc@127.0.0.1:9/authsvc?password=postgres"),
        "default database password", None),
    "metrics-token-is-a-fallback-key": (
        _env(AUTHSVC_SECRET_KEY_FALLBACKS=ROTATED_KEY, AUTHSVC_METRICS_TOKEN=ROTATED_KEY),
        "AUTHSVC_METRICS_TOKEN repeats a key in AUTHSVC_SECRET_KEY_FALLBACKS", 1),
    # Input the service cannot use: one error naming the setting, never a traceback, and `check`
    # refuses what `serve` would refuse (found by review).
    "policy-section-not-a-table": (_policy("argon2 = 5\n"), "policy key argon2 must be a table", 1),
    "policy-app-not-a-table": (_policy("[redirects]\napps = [1]\n"), "redirects.apps[0] must be a table", 1),
    "redirect-default-off-site": (_policy('[redirects]\ndefault = "https://evil.example"\n'),
                                  "redirects.default: default redirect 'https://evil.example' is not a safe", 1),
    "redirect-app-origin-with-a-path": (_policy('[[redirects.apps]]\norigin = "https://app.example.test/wiki"\n'),
                                        "redirects.apps: origin 'https://app.example.test/wiki' must not have a path",
                                        1),
    "redirect-app-bad-path-prefix": (_policy('[[redirects.apps]]\norigin = "https://app.example.test"\n'
                                             'path_prefix = "wiki"\n'), "redirects.apps: path_prefix 'wiki'", 1),
    "database-url-port-not-a-number": (
        _env(AUTHSVC_DATABASE_URL="postgresql://authsvc:S3cretDbPw@db.internal:54x2/authsvc"),
        "AUTHSVC_DATABASE_URL cannot be read as a database URL", 1),
    "database-url-not-a-url": (_env(AUTHSVC_DATABASE_URL="authsvc.db"),
                               "AUTHSVC_DATABASE_URL cannot be read as a database URL", 1),
    "unknown-policy-key": (_policy("[passwords]\nmin_lenght = 15\n"), "unknown policy key passwords.min_lenght", 1),
    "authsvc-env-typo-prod": (_env(AUTHSVC_ENV="prod"), "AUTHSVC_ENV='prod'", 1),
    "schema-not-upgraded": (_fresh_database, "authsvc db upgrade", 1),
    "oidc-issuer-placeholder": (_oidc_client_without_public_url,
                                "AUTHSVC_PUBLIC_URL is not set, but 1 OpenID Connect client(s) are registered", 1),
    "oidc-issuer-unknown-clients": (lambda p: {**_fresh_database(p), "AUTHSVC_PUBLIC_URL": None},
                                    "AUTHSVC_PUBLIC_URL is not set, but OpenID Connect clients may be registered", 2),
}


def test_check_names_the_placeholder_issuer_and_the_fix(tmp_path, monkeypatch, capsys):
    """The OpenID Provider's error says which setting, why (the issuer in every ID token) and what to set."""
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, **_oidc_client_without_public_url(tmp_path))
    assert code == 1
    line = next(line for line in problem_lines(shown) if "OpenID" in line)
    assert line.startswith("error: ") and "https://authsvc.invalid" in line
    assert "Fix: set AUTHSVC_PUBLIC_URL to the https origin" in line and "AUTHSVC_PUBLIC_URL=https://" in line


def test_check_only_notes_a_missing_public_url_before_any_oidc_client(tmp_path, monkeypatch, capsys, upgraded_db):
    """Forward auth alone needs no AUTHSVC_PUBLIC_URL: with no OIDC client registered check passes and
    says to set it before the first one; in development the placeholder is not even mentioned."""
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_DATABASE_URL=upgraded_db,
                                   AUTHSVC_PUBLIC_URL=None)
    assert code == 0, shown
    assert problem_lines(shown) == []
    assert any(line.startswith("note: AUTHSVC_PUBLIC_URL is not set") and "oidc client add" in line
               for line in shown.splitlines()), shown
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, AUTHSVC_ENV="development",
                                   **_oidc_client_without_public_url(tmp_path))
    assert "OpenID" not in shown, shown


@pytest.mark.asvs("V11.2.3", "V11.4.2", "V13.2.3", "V13.3.2", "V6.2.1", "V6.2.9", "V3.4.1")
@pytest.mark.parametrize("case", list(UNSOUND))
def test_check_fails_unsound_config_with_one_line_per_problem(tmp_path, monkeypatch, capsys, upgraded_db, case):
    setup, expected, count = UNSOUND[case]
    overrides = {"AUTHSVC_DATABASE_URL": upgraded_db, **setup(tmp_path)}
    code, shown = check_in_process(tmp_path, monkeypatch, capsys, **overrides)
    assert code != 0, shown
    problems = problem_lines(shown)
    assert any(expected in line for line in problems), shown
    if count is not None:
        assert len(problems) == count, shown
    assert not any(line.startswith("ok:") for line in shown.splitlines())
    for name, value in overrides.items():  # no key or database password is printed back
        if value and name in ("AUTHSVC_SECRET_KEY", "AUTHSVC_SECRET_KEY_FALLBACKS"):
            assert value not in shown.replace(name, "")
    assert STRONG_KEY not in shown
    assert ":postgres@" not in shown and "S3cretDbPw" not in shown
    assert "Traceback" not in shown


SWITCHED_OFF = """
[throttle]
failure_window_seconds = 0
consecutive_failure_memory_seconds = 1
[sessions]
max_sessions_per_user = 0
remember_rotation_grace_seconds = 31536000
[oidc]
token_requests_per_client = []
[limits]
max_content_length = 1000000000000
username_max_length = 100000000
"""


def test_production_refuses_to_start_on_a_policy_that_switches_protections_off(tmp_path):
    """The back-off that never starts, a lock-out forgotten after a second, no session cap, a year of
    remember-me replay read as a tab race, no limit on client-secret guessing and unbounded bodies:
    each passed `check` and started in production. Now the start is refused, naming every key;
    development still starts (it lists them as warnings)."""
    from authsvc.core import config
    from authsvc.web.app import StartupRefused, create_app

    policy = tmp_path / "policy.toml"
    policy.write_text(SWITCHED_OFF)
    with pytest.raises(StartupRefused) as refused:
        create_app(config.from_env(make_env(tmp_path, AUTHSVC_POLICY=str(policy)),
                                   instance_path=str(tmp_path / "instance")))
    assert {p.setting for p in refused.value.problems} == {
        "throttle.failure_window_seconds", "throttle.consecutive_failure_memory_seconds",
        "sessions.max_sessions_per_user", "sessions.remember_rotation_grace_seconds",
        "oidc.token_requests_per_client", "limits.max_content_length", "limits.username_max_length"}
    development = config.from_env(make_env(tmp_path, AUTHSVC_POLICY=str(policy), AUTHSVC_ENV="development"),
                                  instance_path=str(tmp_path / "instance"))
    assert {p.severity for p in config.audit(development) if p.setting.startswith(("throttle", "sessions"))} \
        == {"warning"}


# --- authsvc serve: memory:// counts per worker ---------------------------------------------------

@pytest.mark.parametrize("env, workers, warned", [
    ({}, 2, True), ({}, 4, True), ({}, 1, False),
    ({"AUTHSVC_RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}, 4, False),
    ({"AUTHSVC_ENV": "development"}, 2, False),
], ids=["memory-2-workers", "memory-4-workers", "memory-1-worker", "redis-4-workers", "development"])
def test_serve_warns_that_memory_storage_multiplies_the_throttle_by_the_workers(tmp_path, env, workers, warned):
    """With memory:// each worker keeps its own counts: an attacker's requests spread over the
    workers get each limit once per worker (the lock-out after 100 consecutive failures becomes up
    to 100 per worker). serve says so, with the multiplied figure and both fixes."""
    from authsvc.core import config

    settings = config.from_env(make_env(tmp_path, **env), instance_path=str(tmp_path / "instance"))
    found = config.serve_problems(settings, workers)
    if not warned:
        assert found == []
        return
    (problem,) = found
    most = settings.policy.throttle.max_consecutive_failures
    assert problem.severity == "warning" and problem.setting == "AUTHSVC_RATELIMIT_STORAGE_URI"
    assert f"with {workers} workers" in problem.message
    assert f"up to {most * workers} consecutive failures, not {most}" in problem.message
    assert "redis://" in problem.message and "--workers 1" in problem.message


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_prints_the_memory_storage_warning_before_it_starts_gunicorn(tmp_path, monkeypatch, capsys, workers):
    from authsvc.core import db

    for key in [k for k in os.environ if k.startswith(("AUTHSVC_", "PROMETHEUS_"))]:
        monkeypatch.delenv(key)
    env = make_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    db.upgrade(db.make_engine(env["AUTHSVC_DATABASE_URL"]))
    started = []

    def execve(path, argv, environ):
        started.append(argv)
        os.rmdir(environ["PROMETHEUS_MULTIPROC_DIR"])  # made for the gunicorn that never runs
    monkeypatch.setattr(cli.os, "execve", execve)
    cli.main(["serve", "--bind", "127.0.0.1:0", "--workers", str(workers)])
    out = capsys.readouterr().out
    assert started, out  # the warning does not stop it
    warned = [line for line in map(json.loads, filter(None, out.splitlines())) if line["level"] == "warning"]
    if workers == 1:
        assert warned == [], out
    else:  # one JSON line in the server's log (AUTHSVC_LOG: stdout here), like every other line
        (line,) = warned
        assert line["logger"] == "authsvc.server"
        assert line["message"].startswith("AUTHSVC_RATELIMIT_STORAGE_URI=memory:// with 2 workers"), line


@pytest.mark.parametrize("uri", ["rediss//:S3cretRedisPw@redis.internal:6379/0", "redis+foo://:S3cretRedisPw@h:6379/0",
                                 "redis:/:S3cretRedisPw@h:6379/0"])
def test_a_storage_uri_limits_cannot_open_is_refused_by_name_never_by_value(tmp_path, monkeypatch, capsys, uri):
    """limits' own error quotes the whole URI, a Redis password with it: a typo in the scheme put the
    password in the traceback serve died with (journald, the log shipper). The refusal names the
    setting and shows no part of its value, and serve exits with it, not with a traceback."""
    for key in [k for k in os.environ if k.startswith(("AUTHSVC_", "PROMETHEUS_"))]:
        monkeypatch.delenv(key)
    for name, value in make_env(tmp_path, AUTHSVC_RATELIMIT_STORAGE_URI=uri).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli.os, "execve", lambda *a: pytest.fail("gunicorn started"))
    code = cli.main(["serve", "--bind", "127.0.0.1:0"])
    captured = capsys.readouterr()
    assert code not in (0, None)
    assert "AUTHSVC_RATELIMIT_STORAGE_URI" in captured.out + captured.err
    assert "S3cretRedisPw" not in captured.out + captured.err and "Traceback" not in captured.out + captured.err


@pytest.mark.parametrize("policy", ['[redirects]\ndefault = "https://evil.example"\n',
                                    '[[redirects.apps]]\norigin = "https://app.example.test/wiki"\n',
                                    "argon2 = 5\n"], ids=["default-off-site", "origin-with-a-path", "not-a-table"])
def test_serve_refuses_a_policy_it_cannot_build_with_one_line_not_a_traceback(tmp_path, monkeypatch, capsys, policy):
    """`check` said "ok" for these, then `serve` (and every other command) died with a ValueError
    or TypeError traceback. Now both refuse with the setting's name, before gunicorn starts."""
    for key in [k for k in os.environ if k.startswith(("AUTHSVC_", "PROMETHEUS_"))]:
        monkeypatch.delenv(key)
    path = tmp_path / "policy.toml"
    path.write_text(policy)
    for name, value in make_env(tmp_path, AUTHSVC_POLICY=str(path)).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(cli.os, "execve", lambda *a: pytest.fail("gunicorn started"))
    code = cli.main(["serve", "--bind", "127.0.0.1:0"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.startswith("authsvc: AUTHSVC_POLICY: ") and "Traceback" not in captured.err + captured.out


@pytest.mark.parametrize("option, value", [("--workers", "0"), ("--workers", "-1"), ("--threads", "0"),
                                           ("--workers", "two")])
def test_serve_refuses_a_server_with_no_worker_or_thread(monkeypatch, capsys, option, value):
    """`serve --workers 0` started a gunicorn arbiter that listened on the port with no worker to
    answer: every request hung. A count below 1 is a usage error before anything starts."""
    monkeypatch.setattr(cli.os, "execve", lambda *a: pytest.fail("gunicorn started"))
    with pytest.raises(SystemExit) as usage:
        cli.main(["serve", "--bind", "127.0.0.1:0", option, value])
    assert usage.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err


@pytest.mark.parametrize("uri, per_process", [
    ("memory://", True), ("MEMORY://", True), ("Memory://", True), (" memory://", True), ("memory:", True),
    ("redis://127.0.0.1:6379/0", False), ("redis://memory:6379/0", False), ("REDIS://memory/0", False),
    ("redis+sentinel://s1:26379/memory", False),
])
def test_every_spelling_of_the_memory_storage_counts_per_process(tmp_path, uri, per_process):
    """limits reads the scheme case-insensitively and the URI stripped, so ``MEMORY://`` is the
    in-memory storage too: the check's note and serve's warning must see it whatever the spelling."""
    from limits.storage import MemoryStorage, storage_from_string

    from authsvc.core import config

    if per_process:
        assert isinstance(storage_from_string(uri), MemoryStorage)  # what the app would really use
    assert config.counts_per_process(uri) is per_process
    settings = config.from_env(make_env(tmp_path, AUTHSVC_RATELIMIT_STORAGE_URI=uri),
                               instance_path=str(tmp_path / "instance"))
    assert bool(config.serve_problems(settings, 2)) is per_process
    warned = [p for p in config.audit(settings) if p.severity == "warning" and p.setting == "AUTHSVC_RATELIMIT_STORAGE_URI"]
    assert bool(warned) is per_process
