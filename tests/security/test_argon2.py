"""Password storage (control 2): argon2id with the policy's parameters, upgraded at login.

The attacks: an offline attacker with the users table (weak or outdated parameters), an online
attacker telling accounts apart by response or by work done (ASVS 6.3.8), a password that is
silently truncated, case-folded or not Unicode-normalized (ASVS 6.2.8), a megabyte "password"
or a login flood used to exhaust CPU and memory (bounded argon2).
"""

from __future__ import annotations

import random
import re
import string
import subprocess
import time
import unicodedata

import pytest
from argon2 import PasswordHasher, Type
from itsdangerous import TimestampSigner

from authsvc.core.config import ARGON2_MEMORY_FLOOR_KIB
from authsvc.core.policy import load_policy
from tests.conftest import (
    PASSWORD,
    ROOT,
    TEST_POLICY,
    add_user,
    build_app,
    csrf,
    login,
    make_env,
    new_client,
)

AUTHSVC = ROOT / ".venv" / "bin" / "authsvc"
ARGON2ID = re.compile(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}\Z")


def params(stored: str) -> tuple[int, int, int]:
    match = ARGON2ID.match(stored)
    assert match, stored
    m, t, p = (int(x) for x in match.groups())
    return m, t, p


def policy_params(svc) -> tuple[int, int, int]:
    a = svc.policy.argon2
    return a.memory_cost_kib, a.time_cost, a.parallelism


def stored_hash(svc, name: str = "alice") -> str:
    return svc.accounts.by_username(name).password_hash


def random_password(length: int, seed: int) -> str:
    """Reproducible, pattern-free, policy-compliant (no username, no service name)."""
    alphabet = string.ascii_letters + string.digits + "!#%&()*+,-./:;<=>?[]^_{|}~ "
    return "".join(random.Random(seed).choices(alphabet, k=length))


class CountingPasswordHasher:
    """Wraps the hasher's argon2-cffi ``PasswordHasher`` (whose attributes are read-only) and
    records each ``verify``: the argon2 work really done, under any wrapper the app adds."""

    def __init__(self, inner: PasswordHasher) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def verify(self, stored, password):
        self.calls.append(stored)
        return self._inner.verify(stored, password)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def count_verifications(svc, monkeypatch) -> list[str]:
    counting = CountingPasswordHasher(svc.hasher._ph)
    monkeypatch.setattr(svc.hasher, "_ph", counting)
    return counting.calls


@pytest.fixture
def verify_calls(svc, monkeypatch):
    return count_verifications(svc, monkeypatch)


def cli_add(tmp_path, name: str, password: str):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", **make_env(tmp_path)}
    return subprocess.run([str(AUTHSVC), "user", "add", name, "--password-stdin"], check=False, cwd=tmp_path,
                          env=env, input=password + "\n", capture_output=True, text=True, encoding="utf-8",
                          timeout=60, start_new_session=True)


# --- stored format and parameters (V11.4.2) ----------------------------------------------------


@pytest.mark.asvs("V11.4.2")
def test_stored_hash_is_argon2id_v19_with_policy_parameters(svc, user):
    stored = stored_hash(svc)
    assert stored.startswith("$argon2id$v=19$")
    assert params(stored) == policy_params(svc)
    assert PASSWORD not in stored


@pytest.mark.asvs("V11.4.2")
def test_same_password_twice_gets_distinct_salts(app, svc):
    add_user(app, "alice")
    add_user(app, "bob")
    assert stored_hash(svc, "alice") != stored_hash(svc, "bob")
    assert stored_hash(svc, "alice").split("$")[4] != stored_hash(svc, "bob").split("$")[4]


@pytest.mark.asvs("V11.4.2")
@pytest.mark.parametrize("policy_file", [None, TEST_POLICY], ids=["default-policy", "test-policy"])
def test_policy_argon2_parameters_meet_the_owasp_floor(policy_file):
    a = load_policy(policy_file).argon2
    assert a.memory_cost_kib >= ARGON2_MEMORY_FLOOR_KIB[min(a.time_cost, 3)]
    assert a.parallelism >= 1 and a.hash_len >= 32 and a.salt_len >= 16


# --- rehash on login (V11.2.2) ----------------------------------------------------------------


OLD_HASHERS = {
    "argon2id-lower-memory": PasswordHasher(time_cost=3, memory_cost=8192, parallelism=1),
    "argon2id-fewer-passes": PasswordHasher(time_cost=2, memory_cost=12288, parallelism=1),
    "argon2id-other-parallelism": PasswordHasher(time_cost=3, memory_cost=12288, parallelism=2),
    "argon2i": PasswordHasher(time_cost=3, memory_cost=12288, parallelism=1, type=Type.I),
}


@pytest.mark.asvs("V11.2.2", "V11.4.2")
@pytest.mark.parametrize("old", list(OLD_HASHERS))
def test_hash_with_old_parameters_is_upgraded_at_next_good_login(app, svc, old):
    old_hash = OLD_HASHERS[old].hash(PASSWORD)
    svc.accounts.create("alice", old_hash)
    assert login(new_client(app)).status_code == 303
    upgraded = stored_hash(svc)
    assert upgraded != old_hash
    assert params(upgraded) == policy_params(svc)
    assert login(new_client(app)).status_code == 303  # the new hash is of the same password
    assert stored_hash(svc) == upgraded  # and is not rewritten again


@pytest.mark.asvs("V11.2.2")
def test_failed_login_does_not_rehash(app, svc):
    old_hash = OLD_HASHERS["argon2id-lower-memory"].hash(PASSWORD)
    svc.accounts.create("alice", old_hash)
    assert login(new_client(app), password=PASSWORD + "x").status_code == 401
    assert stored_hash(svc) == old_hash


@pytest.mark.asvs("V11.2.2")
def test_rehash_does_not_count_as_a_password_change(app, svc, clock):
    account = svc.accounts.create("alice", OLD_HASHERS["argon2id-lower-memory"].hash(PASSWORD))
    clock.advance(3600)
    assert login(new_client(app)).status_code == 303
    assert svc.accounts.by_username("alice").password_changed_at == account.password_changed_at


@pytest.mark.asvs("V11.2.2")
def test_current_hash_is_not_rewritten_at_login(app, svc, user):
    before = stored_hash(svc)
    assert login(new_client(app)).status_code == 303
    assert stored_hash(svc) == before


# --- no account enumeration; one argon2 verification per attempt (V6.3.8) ------------------------


@pytest.fixture
def frozen_signatures(monkeypatch):
    """Freeze itsdangerous' timestamp so signed values (CSRF token, session cookie) made in
    different seconds are byte-identical: what differs then is what the server chose to say."""
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: 1_800_000_000)


def _comparable(response) -> tuple:
    headers = [(k, v) for k, v in response.headers.items() if k.lower() != "x-request-id"]
    return response.status_code, response.get_data(), sorted(headers)


@pytest.mark.asvs("V6.3.8")
def test_unknown_user_wrong_password_and_disabled_account_are_indistinguishable(app, svc, frozen_signatures,
                                                                              verify_calls):
    browser = new_client(app)
    responses = {}

    verify_calls.clear()
    responses["unknown user"] = login(browser, "alice", PASSWORD)
    assert len(verify_calls) == 1

    account = add_user(app, "alice")
    verify_calls.clear()
    responses["wrong password"] = login(browser, "alice", PASSWORD + "!")
    assert len(verify_calls) == 1

    svc.accounts.set_disabled(account.id, True)
    verify_calls.clear()
    responses["disabled, right password"] = login(browser, "alice", PASSWORD)
    assert len(verify_calls) == 1

    verify_calls.clear()
    responses["disabled, wrong password"] = login(browser, "alice", PASSWORD + "!")
    assert len(verify_calls) == 1

    first = _comparable(responses["unknown user"])
    assert first[0] == 401
    for case, response in responses.items():
        assert _comparable(response) == first, case


@pytest.mark.asvs("V6.3.8")
def test_unknown_user_runs_argon2_against_a_hash_with_current_parameters(app, svc, verify_calls):
    assert login(new_client(app), "nobody", PASSWORD).status_code == 401
    assert len(verify_calls) == 1
    assert params(verify_calls[0]) == policy_params(svc)  # same cost as a real account


@pytest.mark.asvs("V6.3.8")
def test_successful_login_runs_exactly_one_verification(app, user, verify_calls):
    assert login(new_client(app)).status_code == 303
    assert len(verify_calls) == 1


# --- Unicode normalization (NFC) ----------------------------------------------------------------


@pytest.mark.asvs("V6.2.8")
def test_password_set_decomposed_via_cli_logs_in_composed(app, tmp_path):
    decomposed = "Cafe\u0301 au lait, rue de la Paix 17"
    composed = unicodedata.normalize("NFC", decomposed)
    assert composed != decomposed
    result = cli_add(tmp_path, "alice", decomposed)
    assert result.returncode == 0, result.stderr
    assert login(new_client(app), "alice", composed).status_code == 303
    assert login(new_client(app), "alice", decomposed).status_code == 303
    assert login(new_client(app), "alice", "Cafe au lait, rue de la Paix 17").status_code == 401


@pytest.mark.asvs("V6.2.8")
def test_password_is_nfc_not_nfkc_normalized(app, svc):
    """NFC only: a compatibility look-alike (full-width digits, ligatures) is a different password."""
    svc.accounts.create("alice", svc.hasher.hash("ﬁnal answer is ４２ today"))
    assert login(new_client(app), "alice", "final answer is 42 today").status_code == 401
    assert login(new_client(app), "alice", "ﬁnal answer is ４２ today").status_code == 303


# --- length cap and no truncation (V6.2.8, V6.2.9) ---------------------------------------------


@pytest.mark.asvs("V6.2.9")
@pytest.mark.parametrize("length", [64, 128, 1024])
def test_long_password_set_via_cli_logs_in(app, tmp_path, length):
    password = random_password(length, seed=length)
    result = cli_add(tmp_path, "alice", password)
    assert result.returncode == 0, result.stderr
    assert login(new_client(app), "alice", password).status_code == 303


@pytest.mark.asvs("V6.2.9")
def test_password_over_the_cap_cannot_be_set_via_cli(app, tmp_path, svc):
    result = cli_add(tmp_path, "alice", random_password(1025, seed=1))
    assert result.returncode != 0
    assert "longer than 1024" in result.stderr
    assert svc.accounts.by_username("alice") is None


@pytest.mark.asvs("V6.2.9")
@pytest.mark.parametrize("length", [1025, 1100, 4096, 4097, 20000])
def test_over_long_login_password_gets_clean_400_without_argon2(app, user, verify_calls, length):
    browser = new_client(app)
    response = login(browser, "alice", random_password(length, seed=length))
    assert response.status_code == 400
    assert b"Traceback" not in response.get_data()
    assert response.mimetype == "text/html"
    assert verify_calls == []


@pytest.mark.asvs("V6.2.9")
def test_over_long_password_of_unknown_user_also_runs_no_argon2(app, verify_calls):
    assert login(new_client(app), "nobody", "x" * 1025).status_code == 400
    assert verify_calls == []


@pytest.mark.asvs("V6.2.8")
def test_password_is_verified_exactly_no_truncation_or_case_change(app, svc):
    password = random_password(100, seed=100)
    svc.accounts.create("alice", svc.hasher.hash(password))
    for attempt in (password[:72], password[:99], password.swapcase()):
        assert attempt != password
        assert login(new_client(app), "alice", attempt).status_code == 401
    assert login(new_client(app), "alice", password).status_code == 303


@pytest.mark.asvs("V6.2.8")
def test_password_bytes_past_72_matter(app, svc):
    """bcrypt-style truncation: two passwords equal in their first 72 bytes must not collide."""
    password = random_password(100, seed=7)
    svc.accounts.create("alice", svc.hasher.hash(password))
    assert login(new_client(app), "alice", password[:72] + random_password(28, seed=8)).status_code == 401
    assert login(new_client(app), "alice", password + "x").status_code == 401


@pytest.mark.asvs("V6.2.8")
def test_surrounding_whitespace_is_part_of_the_password(app, svc):
    svc.accounts.create("alice", svc.hasher.hash("  " + PASSWORD + " "))
    assert login(new_client(app), "alice", PASSWORD).status_code == 401
    assert login(new_client(app), "alice", "  " + PASSWORD + " ").status_code == 303


# --- bounded hashing ----------------------------------------------------------------------------


ONE_SLOT_POLICY = """\
[argon2]
time_cost = 3
memory_cost_kib = 12288
parallelism = 1
max_concurrent = 1
queue_timeout_seconds = 0.2
"""


@pytest.mark.asvs("V2.4.1", "V16.5.2")
@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_login_while_argon2_slots_are_full_gets_503_retry_after_without_hashing(tmp_path, monkeypatch, username):
    policy = tmp_path / "one-slot.toml"
    policy.write_text(ONE_SLOT_POLICY)
    app = build_app(tmp_path, AUTHSVC_POLICY=str(policy))
    svc = app.extensions["authsvc"]
    add_user(app)
    calls = count_verifications(svc, monkeypatch)

    browser = new_client(app)
    token = csrf(browser)
    with svc.hasher._slots.held():  # another request is hashing
        started = time.monotonic()
        response = browser.post("/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
        waited = time.monotonic() - started
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert calls == []
    assert 0.15 <= waited < 10  # waited for the queue timeout, then gave up
    assert browser.get("/auth/verify").status_code == 401

    # Once the slot is free the same attempt is served normally.
    response = login(browser, username)
    assert response.status_code == (303 if username == "alice" else 401)
    assert len(calls) == 1


# --- argon2's memory in huge pages (authsvc serve's GLIBC_TUNABLES) --------------------------------
# A performance setting, not a control; tested here because it must never override an operator's
# choice nor drop their other tunables. tests/integration/test_argon2_memory.py counts the page
# faults under the real server.

@pytest.mark.parametrize("given, expected", [
    (None, "glibc.malloc.hugetlb=1"),
    ("", "glibc.malloc.hugetlb=1"),
    (":", "glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0",
     "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2:", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    # the operator's own value stands, whatever it is and wherever it is
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),
    ("glibc.malloc.hugetlb=2", "glibc.malloc.hugetlb=2"),
    ("glibc.malloc.hugetlb=1", "glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"),
    ("glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2", "glibc.malloc.hugetlb=0:glibc.malloc.arena_max=2"),
    (" glibc.malloc.hugetlb =0", " glibc.malloc.hugetlb =0"),  # malformed but clearly meant: not overridden
    ("glibc.malloc.hugetlb", "glibc.malloc.hugetlb"),
    # look-alikes are other tunables, so the setting is added
    ("glibc.malloc.hugetlbx=0", "glibc.malloc.hugetlbx=0:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.hugetlb_=0", "glibc.malloc.hugetlb_=0:glibc.malloc.hugetlb=1"),
    ("xglibc.malloc.hugetlb=0", "xglibc.malloc.hugetlb=0:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=glibc.malloc.hugetlb", "glibc.malloc.arena_max=glibc.malloc.hugetlb:glibc.malloc.hugetlb=1"),
])
def test_hugepages_tunable_is_added_unless_the_operator_set_it(given, expected):
    from authsvc.core.hashing import with_hugepages
    assert with_hugepages(given) == expected


def test_server_environ_changes_nothing_but_the_tunable():
    from authsvc.server.cli import server_environ
    environ = {"PATH": "/usr/bin", "AUTHSVC_ENV": "production", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    served = server_environ(environ)
    assert served == {**environ, "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
    assert environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"  # the caller's mapping is not touched


def test_serve_hands_gunicorn_the_tunable_and_leaves_its_own_environment_alone(tmp_path, monkeypatch):
    import os

    from authsvc.server import cli

    from authsvc.core import db
    for key in [k for k in os.environ if k.startswith(("AUTHSVC_", "PROMETHEUS_"))]:
        monkeypatch.delenv(key)
    env = make_env(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    db.upgrade(db.make_engine(env["AUTHSVC_DATABASE_URL"]))
    handed: list[dict] = []

    def execve(path, argv, environ):
        handed.append(environ)
        os.rmdir(environ["PROMETHEUS_MULTIPROC_DIR"])  # made for the gunicorn that never runs
    monkeypatch.setattr(cli.os, "execve", execve)
    cli.main(["serve", "--bind", "127.0.0.1:0", "--workers", "1"])
    assert handed[0]["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert handed[0]["AUTHSVC_ENV"] == "production"
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
