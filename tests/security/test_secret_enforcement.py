"""Secret-key enforcement (control 1): what signs the cookies, and when authsvc refuses to start.

Whoever knows the key forges a login, so production (``AUTHSVC_ENV`` unset or "production")
refuses a key that is missing, short, visibly non-random or copied from a tutorial, in the app
factory and in the ``authsvc`` command alike; the refusal names the setting and the fix and never
echoes the key. Rotation works through ``AUTHSVC_SECRET_KEY_FALLBACKS``; every cookie is signed
with HMAC-SHA-256 and a SHA-1 signature is refused even under the right key.
"""

from __future__ import annotations

import hashlib
import stat
import subprocess
import time
from pathlib import Path

import pytest
from flask.sessions import session_json_serializer
from itsdangerous import URLSafeTimedSerializer

from authsvc.core import config
from authsvc.web.app import StartupRefused, create_app
from tests.conftest import (
    ROOT,
    STRONG_KEY,
    Clock,
    add_user,
    build_app,
    cookie_value,
    free_port,
    login,
    make_env,
    new_client,
)

AUTHSVC = ROOT / ".venv" / "bin" / "authsvc"
SESSION = "__Host-authsvc_session"
HOST = "auth.example.test"

# Two unrelated strong keys for rotation (made with `authsvc gen-secret`).
KEY_A = "pC4w0Vt7yQm2Zr9Lx1Ks8Jd5Hf3Gb6Na0Ue4Ti7Yo2Wq9Pl5Rm1Xc8Bv3Nz6Dk0S"
KEY_B = "Rz8Ht2Wm5Qv9Lc1Xn7Jb4Kf0Dg6Ys3Pa8Ue2Ti5Yo9Wq1Pl4Rm7Xc0Bv6Nz3Dk2A"

FIX_COMMAND = "authsvc gen-secret"

# (id, key) pairs production must refuse. None = the variable is not set at all.
BAD_KEYS = [
    ("missing", None),
    ("empty", ""),
    ("blank", "   "),
    ("16-byte-random-looking", "Xk9#vQ2!mP7@tR4$"),
    ("31-bytes", STRONG_KEY[:31]),
    ("low-entropy-two-symbols", "1" * 40 + "2"),
    ("repeated-short-unit", "aZ" * 24),
    ("keyboard-walk", "qwertyuiopasdfghjklzxcvbnm1234567890"),
    ("flask-tutorial-dev", "dev"),
    ("changeme", "changeme"),
    ("secret", "secret"),
    ("mega-tutorial", "you-will-never-guess"),
    ("flasky", "hard to guess string"),
    ("super-secret-key", "super secret key"),
    ("changeme-repeated-to-32-bytes", "changeme" * 4),
    ("dev-padded-with-zeros", "dev" + "0" * 40),
    ("mega-tutorial-plus-random-suffix", "you-will-never-guess-" + STRONG_KEY),
    ("flasky-repeated", "hard to guess string" * 3),
    ("super-secret-key-mixed-case-punctuated", "Super_Secret_Key!" * 3),
    ("secret-key-padded-with-spaces", "  secret_key  ".ljust(48, "x")),
]
BAD_KEY_PARAMS = [pytest.param(key, id=name) for name, key in BAD_KEYS]
# A smaller set for the subprocess tests (each starts a Python process).
CLI_BAD_KEY_PARAMS = [pytest.param(key, id=name) for name, key in BAD_KEYS
                      if name in {"missing", "16-byte-random-looking", "low-entropy-two-symbols",
                                  "changeme", "mega-tutorial", "dev-padded-with-zeros"}]


def settings_for(tmp_path, **env):
    return config.from_env(make_env(tmp_path, **env), instance_path=str(tmp_path / "instance"))


def assert_refusal_explains_without_leaking(text: str, key: str | None, setting: str = "AUTHSVC_SECRET_KEY") -> None:
    assert setting in text
    assert FIX_COMMAND in text
    if key and key.strip():
        # The fixed words of the message may legitimately contain a short key ("secret" is in
        # "gen-secret"); what is left must not.
        rest = text.replace(setting, "").replace(FIX_COMMAND, "")
        assert key not in rest
        assert key.strip() not in rest


def cli_env(tmp_path, **overrides) -> dict:
    """A scrubbed environment: nothing from the developer's shell, only what the test states."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    env.update(make_env(tmp_path, **overrides))
    return env


def run_cli(tmp_path, *args, input: str | None = None, timeout: float = 60, **overrides):
    return subprocess.run([str(AUTHSVC), *args], check=False, cwd=tmp_path, env=cli_env(tmp_path, **overrides),
                          input=input, capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          start_new_session=True)


def key_file(tmp_path, mode: int, content: str = STRONG_KEY) -> Path:
    path = tmp_path / "secret_key_file"
    path.write_text(content + "\n")
    path.chmod(mode)
    return path


# --- the app factory (production) -------------------------------------------------------------


@pytest.mark.asvs("V11.2.3", "V13.3.1")
@pytest.mark.parametrize("key", BAD_KEY_PARAMS)
def test_create_app_refuses_weak_or_default_secret_key_in_production(tmp_path, key):
    with pytest.raises(StartupRefused) as refused:
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=key))
    assert all(p.severity == "error" for p in refused.value.problems)
    assert_refusal_explains_without_leaking(str(refused.value), key)


@pytest.mark.asvs("V11.2.3")
@pytest.mark.parametrize("key", [pytest.param("dev", id="dev"), pytest.param(None, id="missing")])
def test_unset_authsvc_env_means_production_and_refuses_weak_key(tmp_path, key):
    with pytest.raises(StartupRefused):
        create_app(settings_for(tmp_path, AUTHSVC_ENV=None, AUTHSVC_SECRET_KEY=key))


@pytest.mark.asvs("V11.2.3")
def test_strong_key_starts_in_production(tmp_path):
    app = create_app(settings_for(tmp_path))
    assert app.secret_key == STRONG_KEY


@pytest.mark.asvs("V11.2.3")
def test_gen_secret_output_is_accepted_by_the_enforcement(tmp_path):
    key = run_cli(tmp_path, "gen-secret").stdout.strip()
    assert create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=key)).secret_key == key


# --- AUTHSVC_SECRET_KEY_FILE ------------------------------------------------------------------


@pytest.mark.asvs("V13.3.2")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_key_file_readable_by_group_or_others_is_refused_with_chmod_fix(tmp_path, mode):
    path = key_file(tmp_path, mode)
    with pytest.raises(StartupRefused) as refused:
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=None, AUTHSVC_SECRET_KEY_FILE=str(path)))
    message = str(refused.value)
    assert f"chmod 600 {path}" in message
    assert f"{mode:04o}" in message
    assert STRONG_KEY not in message


@pytest.mark.asvs("V13.3.2", "V13.3.1")
@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_file_private_to_its_owner_is_accepted(tmp_path, mode):
    path = key_file(tmp_path, mode)
    app = create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=None, AUTHSVC_SECRET_KEY_FILE=str(path)))
    assert app.secret_key == STRONG_KEY  # the trailing newline is not part of the key


@pytest.mark.asvs("V11.2.3")
def test_key_file_holding_a_weak_key_is_refused(tmp_path):
    path = key_file(tmp_path, 0o600, "changeme")
    with pytest.raises(StartupRefused) as refused:
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=None, AUTHSVC_SECRET_KEY_FILE=str(path)))
    assert_refusal_explains_without_leaking(str(refused.value), "changeme", "AUTHSVC_SECRET_KEY_FILE")


@pytest.mark.asvs("V13.3.1")
def test_setting_both_key_and_key_file_is_refused(tmp_path):
    path = key_file(tmp_path, 0o600)
    with pytest.raises(config.ConfigError) as refused:
        settings_for(tmp_path, AUTHSVC_SECRET_KEY=KEY_A, AUTHSVC_SECRET_KEY_FILE=str(path))
    message = str(refused.value)
    assert "AUTHSVC_SECRET_KEY" in message and "AUTHSVC_SECRET_KEY_FILE" in message
    assert KEY_A not in message and STRONG_KEY not in message


@pytest.mark.asvs("V13.3.1")
def test_missing_key_file_is_refused(tmp_path):
    with pytest.raises((config.ConfigError, StartupRefused)) as refused:
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=None,
                                AUTHSVC_SECRET_KEY_FILE=str(tmp_path / "no-such-file")))
    assert "AUTHSVC_SECRET_KEY_FILE" in str(refused.value)


# --- development mode -------------------------------------------------------------------------


def test_development_without_key_generates_one_private_key_and_reuses_it(tmp_path, capsys):
    first = create_app(settings_for(tmp_path, AUTHSVC_ENV="development", AUTHSVC_SECRET_KEY=None))
    path = tmp_path / "instance" / "secret_key"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.secret_key == path.read_text().strip()
    assert config.secretkeys.secret_problems(first.secret_key) == []
    second = create_app(settings_for(tmp_path, AUTHSVC_ENV="development", AUTHSVC_SECRET_KEY=None))
    assert second.secret_key == first.secret_key


def test_development_keys_differ_between_instance_folders(tmp_path):
    one = create_app(settings_for(tmp_path / "one", AUTHSVC_ENV="development", AUTHSVC_SECRET_KEY=None))
    two = create_app(settings_for(tmp_path / "two", AUTHSVC_ENV="development", AUTHSVC_SECRET_KEY=None))
    assert one.secret_key != two.secret_key


def test_development_mode_prints_not_for_production_banner(tmp_path, capsys):
    create_app(settings_for(tmp_path, AUTHSVC_ENV="development", AUTHSVC_SECRET_KEY=None))
    err = capsys.readouterr().err
    assert "DEVELOPMENT" in err
    assert "production" in err.lower()


def test_production_prints_no_development_banner(tmp_path, capsys):
    create_app(settings_for(tmp_path))
    assert "DEVELOPMENT" not in capsys.readouterr().err


def test_production_never_generates_a_key(tmp_path):
    with pytest.raises(StartupRefused):
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=None))
    assert not (tmp_path / "instance" / "secret_key").exists()


def test_development_cli_generates_key_in_cwd_instance_and_shows_banner(tmp_path):
    dev = {"AUTHSVC_ENV": "development", "AUTHSVC_SECRET_KEY": None}
    assert run_cli(tmp_path, "db", "upgrade", **dev).returncode == 0
    path = tmp_path / "instance" / "secret_key"  # the working directory's instance folder
    assert path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text()
    listed = run_cli(tmp_path, "user", "list", **dev)
    assert listed.returncode == 0, listed.stderr
    assert "DEVELOPMENT" in listed.stderr
    assert key.strip() not in listed.stdout + listed.stderr
    assert path.read_text() == key  # reused, not replaced


# --- key rotation (AUTHSVC_SECRET_KEY_FALLBACKS) ------------------------------------------------


def _session_under_key_a(tmp_path, clock):
    app_a = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=KEY_A)
    add_user(app_a)
    browser = new_client(app_a)
    assert login(browser).status_code == 303
    assert browser.get("/auth/verify").status_code == 200
    return cookie_value(browser, SESSION)


def _verify_with_cookie(app, value: str) -> int:
    browser = new_client(app)
    browser.set_cookie(SESSION, value, domain=HOST)
    return browser.get("/auth/verify").status_code


@pytest.mark.asvs("V11.2.2", "V13.3.4")
def test_rotation_old_key_in_fallbacks_keeps_existing_sessions(tmp_path):
    clock = Clock()
    cookie = _session_under_key_a(tmp_path, clock)
    app_b = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=KEY_B, AUTHSVC_SECRET_KEY_FALLBACKS=KEY_A)
    assert _verify_with_cookie(app_b, cookie) == 200


@pytest.mark.asvs("V11.2.2", "V9.1.1")
def test_rotation_removing_old_key_ends_its_sessions(tmp_path):
    clock = Clock()
    cookie = _session_under_key_a(tmp_path, clock)
    app_b = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=KEY_B)
    assert _verify_with_cookie(app_b, cookie) == 401


@pytest.mark.asvs("V11.2.2")
def test_rotation_new_logins_are_signed_with_new_key_not_the_fallback(tmp_path):
    clock = Clock()
    app_b = build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=KEY_B, AUTHSVC_SECRET_KEY_FALLBACKS=KEY_A)
    add_user(app_b)
    browser = new_client(app_b)
    assert login(browser).status_code == 303
    cookie = cookie_value(browser, SESSION)
    assert _verify_with_cookie(build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=KEY_B), cookie) == 200
    assert _verify_with_cookie(build_app(tmp_path, clock, AUTHSVC_SECRET_KEY=KEY_A), cookie) == 401


@pytest.mark.asvs("V11.2.3")
@pytest.mark.parametrize("fallback", ["dev", "changeme", "you-will-never-guess", "Xk9#vQ2!mP7@tR4$"])
def test_weak_fallback_key_is_refused(tmp_path, fallback):
    with pytest.raises(StartupRefused) as refused:
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=KEY_B, AUTHSVC_SECRET_KEY_FALLBACKS=f"{KEY_A},{fallback}"))
    message = str(refused.value)
    assert "AUTHSVC_SECRET_KEY_FALLBACKS" in message
    assert fallback not in message.replace("AUTHSVC_SECRET_KEY_FALLBACKS", "")


@pytest.mark.asvs("V11.2.2")
def test_fallback_repeating_the_current_key_is_refused(tmp_path):
    with pytest.raises(StartupRefused):
        create_app(settings_for(tmp_path, AUTHSVC_SECRET_KEY=KEY_B, AUTHSVC_SECRET_KEY_FALLBACKS=KEY_B))


# --- HMAC-SHA-256 only ------------------------------------------------------------------------


def _logged_in(tmp_path):
    app = build_app(tmp_path)
    add_user(app)
    browser = new_client(app)
    response = login(browser, remember=True)
    assert response.status_code == 303
    return app, browser


def _forge_session(app, data: dict, digest, key: str | None = None) -> str:
    """The session cookie a holder of ``key`` (default: the app's own) would make with ``digest``."""
    return URLSafeTimedSerializer(key or app.secret_key, salt=app.session_interface.salt,
                                  serializer=session_json_serializer,
                                  signer_kwargs={"key_derivation": "hmac", "digest_method": digest}).dumps(data)


def _signature(cookie: str) -> str:
    return cookie.rsplit(".", 1)[1]


@pytest.mark.asvs("V11.4.1", "V11.4.3", "V9.1.2")
def test_session_cookie_signature_is_hmac_sha256_length(tmp_path):
    _app, browser = _logged_in(tmp_path)
    signature = _signature(cookie_value(browser, SESSION))
    assert len(signature) == 43  # 32 bytes base64url; HMAC-SHA-1 would be 27
    assert set(signature) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.asvs("V11.4.1", "V11.4.3")
@pytest.mark.parametrize("name", ["__Host-authsvc_remember", "__Host-authsvc_device"])
def test_other_signed_cookies_use_hmac_sha256_length(tmp_path, name):
    _app, browser = _logged_in(tmp_path)
    assert len(_signature(cookie_value(browser, name))) == 43


@pytest.mark.asvs("V9.1.2", "V11.4.1")
def test_session_cookie_resigned_with_sha1_under_the_right_key_is_refused(tmp_path):
    app, browser = _logged_in(tmp_path)
    data = app.session_interface.get_signing_serializer(app).loads(cookie_value(browser, SESSION))
    assert data.get("_user_id")
    sha256 = _forge_session(app, data, hashlib.sha256)
    sha1 = _forge_session(app, data, hashlib.sha1)
    assert len(_signature(sha1)) == 27
    assert _verify_with_cookie(app, sha256) == 200  # the forging recipe is right...
    assert _verify_with_cookie(app, sha1) == 401    # ...and only the digest differs


@pytest.mark.asvs("V9.1.1", "V7.2.1")
def test_session_cookie_signed_with_another_key_is_refused(tmp_path):
    app, browser = _logged_in(tmp_path)
    data = app.session_interface.get_signing_serializer(app).loads(cookie_value(browser, SESSION))
    assert _verify_with_cookie(app, _forge_session(app, data, hashlib.sha256, key=KEY_A)) == 401


# --- the command line: `authsvc serve` and `authsvc check` --------------------------------------


@pytest.mark.asvs("V11.2.3", "V13.3.1")
@pytest.mark.parametrize("key", CLI_BAD_KEY_PARAMS)
def test_serve_refuses_weak_key_quickly_without_starting_gunicorn(tmp_path, key):
    # A gunicorn that started would run until the timeout (TimeoutExpired fails the test).
    started = time.monotonic()
    result = run_cli(tmp_path, "serve", "--bind", "127.0.0.1:0", "--workers", "1", timeout=60,
                     AUTHSVC_SECRET_KEY=key)
    assert time.monotonic() - started < 45
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Listening at" not in output and "Booting worker" not in output
    assert "refuses to start" in result.stderr
    assert_refusal_explains_without_leaking(output, key)


@pytest.mark.asvs("V13.3.2")
def test_serve_refuses_world_readable_key_file(tmp_path):
    path = key_file(tmp_path, 0o644)
    result = run_cli(tmp_path, "serve", "--bind", "127.0.0.1:0", timeout=30,
                     AUTHSVC_SECRET_KEY=None, AUTHSVC_SECRET_KEY_FILE=str(path))
    assert result.returncode != 0
    assert "chmod 600" in result.stderr
    assert STRONG_KEY not in result.stdout + result.stderr


@pytest.mark.asvs("V13.3.1")
def test_serve_refuses_key_and_key_file_together(tmp_path):
    path = key_file(tmp_path, 0o600)
    result = run_cli(tmp_path, "serve", "--bind", "127.0.0.1:0", timeout=30,
                     AUTHSVC_SECRET_KEY=KEY_A, AUTHSVC_SECRET_KEY_FILE=str(path))
    assert result.returncode != 0
    assert "not both" in result.stderr
    assert KEY_A not in result.stdout + result.stderr


@pytest.mark.asvs("V11.2.3")
def test_serve_with_strong_key_does_start_gunicorn(tmp_path):
    """The control for the refusals above: the same command with a sound key keeps running."""
    assert run_cli(tmp_path, "db", "upgrade").returncode == 0
    log = tmp_path / "serve.log"
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(AUTHSVC), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                                cwd=tmp_path, env=cli_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "Booting worker" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert "Listening at" in log.read_text()
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.asvs("V11.2.3")
@pytest.mark.parametrize("key", CLI_BAD_KEY_PARAMS)
def test_check_fails_on_weak_key_and_names_the_fix(tmp_path, key):
    result = run_cli(tmp_path, "check", AUTHSVC_SECRET_KEY=key)
    assert result.returncode != 0
    key_lines = [line for line in result.stdout.splitlines() if "AUTHSVC_SECRET_KEY" in line]
    assert key_lines and all(line.startswith("error: ") for line in key_lines)
    assert_refusal_explains_without_leaking(result.stdout + result.stderr, key)


@pytest.mark.asvs("V13.3.2")
def test_check_fails_on_world_readable_key_file(tmp_path):
    path = key_file(tmp_path, 0o644)
    result = run_cli(tmp_path, "check", AUTHSVC_SECRET_KEY=None, AUTHSVC_SECRET_KEY_FILE=str(path))
    assert result.returncode != 0
    assert any("chmod 600" in line for line in result.stdout.splitlines())


def test_settings_repr_shows_no_key_token_or_connection_password(tmp_path):
    """A Settings object in a traceback or a log line must not give away a secret."""
    token, db_password = "m" * 40, "Db-Pa55word-xyzzy"
    settings = settings_for(tmp_path, AUTHSVC_SECRET_KEY_FALLBACKS=KEY_A, AUTHSVC_METRICS_TOKEN=token,
                            AUTHSVC_DATABASE_URL=f"postgresql+psycopg://authsvc:{db_password}@db.example/authsvc",
                            AUTHSVC_RATELIMIT_STORAGE_URI=f"redis://:{db_password}@redis.example:6379/0")
    assert settings.secret_key == STRONG_KEY and settings.secret_key_fallbacks == (KEY_A,)  # they were read
    assert settings.metrics_token == token and db_password in settings.database_url
    shown = repr(settings)
    for secret in (STRONG_KEY, KEY_A, token, db_password):
        assert secret not in shown
    assert "production" in shown  # repr still says what it can
