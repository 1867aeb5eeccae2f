"""Control: the login flow as a service, without Flask (issue 16, finding 4).

:class:`authsvc.core.login_flow.LoginService` is driven here directly, with real stores on a fresh
SQLite database, the test argon2 policy, the throttle on in-memory storage and a clock the test
moves: every outcome it returns (signed in, failed, refused), the lock-out learnt from the failure's
own verdict (no second storage read), the throttle's gate held while the password is checked and
let go when argon2 gives up (``HashingBusy``), the password normalised once, the password change's
check through the same throttle, and no Flask in the module. The HTTP behaviour around it (statuses,
cookies, audit lines) is held by test_login_basics, test_throttle, test_devices and the others.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import unicodedata

import pytest
from argon2 import PasswordHasher, Type
from limits.storage import MemoryStorage

from authsvc.core import db, login_flow
from authsvc.core.accounts import AccountStore
from authsvc.core.devices import DeviceCookies, DeviceRegistry
from authsvc.core.hashing import Hasher, HashingBusy, Verified
from authsvc.core.login_flow import TOO_LONG, Confirmed, Failed, LoginService, Refused, SignedIn
from authsvc.rules.passwords import normalize_password
from authsvc.core.policy import load_policy
from authsvc.core.signing import timed_serializer
from authsvc.core.throttle import Throttle
from tests.conftest import PASSWORD, ROOT, STRONG_KEY, TEST_POLICY, Clock

POLICY = load_policy(TEST_POLICY)
HASHER = Hasher(POLICY.argon2)  # one per process, as in the app: its dummy hash costs an argon2
COMPOSED = "caf\u00e9 au lait, s'il vous pla\u00eet 42"  # NFC, as every stored hash is made


class Events:
    """The audit sink: what the flow emitted, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict]] = []

    def emit(self, event: str, **fields) -> None:
        self.seen.append((event, fields))

    def names(self) -> list[str]:
        return [event for event, _ in self.seen]


@dataclasses.dataclass
class Flow:
    service: LoginService
    throttle: Throttle
    accounts: AccountStore
    registry: DeviceRegistry
    cookies: DeviceCookies
    events: Events
    clock: Clock


def make_flow(tmp_path, **throttle_rules) -> Flow:
    clock = Clock()
    engine = db.make_engine(f"sqlite:///{tmp_path / 'authsvc.db'}")
    db.upgrade(engine)
    rules = dataclasses.replace(POLICY.throttle, **throttle_rules)
    accounts = AccountStore(engine, clock)
    throttle = Throttle(MemoryStorage(), rules, clock)
    registry = DeviceRegistry(engine, clock, rules.max_devices_per_account, rules.device_cookie_lifetime_days)
    cookies = DeviceCookies(timed_serializer(STRONG_KEY, (), "authsvc.device"), rules.device_cookie_lifetime_days)
    events = Events()
    service = LoginService(accounts=accounts, hasher=HASHER, throttle=throttle, known_devices=registry,
                           device_cookies=cookies, audit=events,
                           max_username_length=POLICY.limits.username_max_length,
                           max_password_length=POLICY.passwords.max_length)
    for name, password in (("alice", PASSWORD), ("carol", COMPOSED)):
        accounts.create(name, HASHER.hash(normalize_password(password)))
    return Flow(service, throttle, accounts, registry, cookies, events, clock)


@pytest.fixture
def flow(tmp_path) -> Flow:
    return make_flow(tmp_path)


def device_of(flow: Flow, outcome: SignedIn, username: str = "alice") -> str:
    device = flow.cookies.device_for(outcome.device_cookie, username)
    assert device is not None, "the device cookie is not valid for the account"
    return device


# --- signed in ---------------------------------------------------------------------------------------------


@pytest.mark.asvs("V6.3.1")
def test_the_right_password_signs_in_and_registers_this_browser_as_a_known_device(flow):
    outcome = flow.service.attempt("Alice", PASSWORD, remember=True)
    assert isinstance(outcome, SignedIn)
    assert (outcome.account.username, outcome.remember, outcome.known_device) == ("alice", True, False)
    assert flow.registry.is_known("alice", device_of(flow, outcome))
    assert flow.events.seen == [("login_success", {"remembered": True, "known_device": False,
                                                   "user_id": outcome.account.id})]


@pytest.mark.asvs("V6.3.1")
def test_a_known_device_keeps_its_id_and_a_forgotten_one_is_anonymous(flow):
    first = flow.service.attempt("alice", PASSWORD)
    device = device_of(flow, first)
    again = flow.service.attempt("alice", PASSWORD, device=device)
    assert again.known_device and device_of(flow, again) == device
    flow.registry.forget_all(first.account.id)
    forgotten = flow.service.attempt("alice", PASSWORD, device=device)
    assert not forgotten.known_device and device_of(flow, forgotten) != device


def test_a_signed_in_outcome_without_known_devices_sets_no_device_cookie(tmp_path):
    flow = make_flow(tmp_path, max_devices_per_account=0)
    outcome = flow.service.attempt("alice", PASSWORD)
    assert isinstance(outcome, SignedIn) and outcome.device_cookie is None


def test_a_hash_made_with_older_parameters_is_upgraded_from_the_normalised_password(flow):
    old = PasswordHasher(time_cost=2, memory_cost=12288, parallelism=1, type=Type.ID).hash(COMPOSED)
    carol = flow.accounts.by_username("carol")
    flow.accounts.set_password_hash(carol.id, old, changed=False)
    typed = unicodedata.normalize("NFD", COMPOSED)  # as a Mac keyboard sends it
    outcome = flow.service.attempt("carol", typed)
    assert isinstance(outcome, SignedIn)
    upgraded = flow.accounts.by_username("carol").password_hash
    assert upgraded != old
    assert HASHER.verify(upgraded, COMPOSED, anonymous=False) == Verified(True, needs_rehash=False)
    assert flow.events.names() == ["password_rehashed", "login_success"]


# --- failed: the same answer whatever went wrong -----------------------------------------------------------


@pytest.mark.asvs("V6.3.8")
@pytest.mark.parametrize("username, password, reason", [
    ("alice", "not the password at all", "bad_password"),
    ("alice", PASSWORD.upper(), "bad_password"),
    ("mallory", PASSWORD, "unknown_user"),
    ("a" * 5000, PASSWORD, "unknown_user"),  # longer than any name: looked up nowhere, argon2 all the same
])
def test_a_wrong_password_or_unknown_user_fails_with_only_a_reason_for_the_log(flow, username, password, reason):
    calls = []
    real = HASHER.verify
    flow.service.hasher = type("Counting", (), {"verify": lambda self, *a, **k: calls.append(1) or real(*a, **k)})()
    outcome = flow.service.attempt(username, password)
    assert outcome == Failed(reason)
    assert calls == [1], "every failure costs one argon2, whether the account exists or not"
    user_id = flow.accounts.by_username("alice").id if reason == "bad_password" else None
    assert flow.events.seen == [("login_failure", {"reason": reason, "known_device": False, "user_id": user_id})]


@pytest.mark.asvs("V6.3.8")
def test_a_disabled_account_fails_like_a_wrong_password_even_with_the_right_one(flow):
    flow.accounts.set_disabled(flow.accounts.by_username("alice").id, True)
    assert flow.service.attempt("alice", PASSWORD) == Failed("disabled")
    assert flow.events.names() == ["login_failure"]


# --- refused: no password checked --------------------------------------------------------------------------


@pytest.mark.asvs("V6.3.1")
def test_a_guessing_run_is_refused_with_the_back_off_and_nothing_checked(flow, monkeypatch):
    for _ in range(POLICY.throttle.failures_before_backoff):
        assert isinstance(flow.service.attempt("alice", "wrong guess"), Failed)
    monkeypatch.setattr(flow.service, "hasher", None)  # a refused attempt must not reach argon2
    outcome = flow.service.attempt("alice", PASSWORD)
    assert outcome == Refused("backoff", POLICY.throttle.backoff_initial_seconds)
    assert flow.events.seen[-1] == ("login_throttled", {"reason": "backoff", "known_device": False})
    flow.clock.advance(POLICY.throttle.backoff_initial_seconds)
    monkeypatch.undo()
    assert isinstance(flow.service.attempt("alice", PASSWORD), SignedIn)


@pytest.mark.parametrize("extra", [1, 1000])
def test_a_password_too_long_to_be_anyones_is_refused_before_the_throttle_or_argon2(flow, monkeypatch, extra):
    monkeypatch.setattr(flow.service, "hasher", None)
    monkeypatch.setattr(flow.service, "throttle", None)
    outcome = flow.service.attempt("alice", "x" * (POLICY.passwords.max_length + extra))
    assert outcome == Refused(TOO_LONG) and flow.events.seen == []


def test_the_length_rule_counts_the_normalised_password(flow):
    # The maximum length in decomposed letters: twice as long as typed, the maximum once normalised.
    typed = unicodedata.normalize("NFD", "\u00e9" * POLICY.passwords.max_length)
    assert len(typed) == 2 * POLICY.passwords.max_length
    assert flow.service.attempt("alice", typed) == Failed("bad_password")


# --- lock-out: known from the failure's own verdict ---------------------------------------------------------


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("known", [False, True])
def test_the_failure_that_reaches_the_lock_out_reports_it_without_a_second_storage_read(tmp_path, monkeypatch,
                                                                                         known):
    flow = make_flow(tmp_path, failures_before_backoff=10, max_consecutive_failures=3)
    device = device_of(flow, flow.service.attempt("alice", PASSWORD)) if known else None
    flow.events.seen.clear()
    checks = []
    real = flow.throttle.check
    monkeypatch.setattr(flow.throttle, "check", lambda *a: checks.append(a) or real(*a))
    for _ in range(3):
        assert flow.service.attempt("alice", "wrong guess", device=device) == Failed("bad_password")
    assert len(checks) == 3, "one read per attempt, before the gate: none after the failure"
    locked = "device_locked_out" if known else "account_locked_out"
    user_id = flow.accounts.by_username("alice").id
    assert flow.events.seen[-2:] == [
        ("login_failure", {"reason": "bad_password", "known_device": known, "user_id": user_id}),
        (locked, {"reason": "max_consecutive_failures", "user_id": user_id})]
    assert flow.events.names().count(locked) == 1, "reported once, by the failure that reached it"
    assert flow.service.attempt("alice", PASSWORD, device=device) == \
        Refused("locked", POLICY.throttle.backoff_max_seconds)


@pytest.mark.asvs("V6.3.1")
def test_record_failure_returns_the_verdict_a_fresh_check_would_give(tmp_path):
    flow = make_flow(tmp_path, failures_before_backoff=2, max_consecutive_failures=4)
    seen = []
    for _ in range(4):
        with flow.throttle.attempt("alice", None) as attempt:
            assert attempt.verdict.allowed
            seen.append(attempt.record_failure())
        assert seen[-1] == flow.throttle.check("alice", None)
        flow.clock.advance(seen[-1].retry_after if seen[-1].reason == "backoff" else 0)
    assert [v.reason for v in seen] == ["ok", "backoff", "backoff", "locked"]


def test_a_refused_attempt_has_nothing_to_record(flow):
    for _ in range(POLICY.throttle.failures_before_backoff):
        flow.service.attempt("alice", "wrong guess")
    with flow.throttle.attempt("alice", None) as attempt:
        assert not attempt.verdict.allowed
        with pytest.raises(RuntimeError):
            attempt.record_failure()
        with pytest.raises(RuntimeError):
            attempt.record_success()


# --- the gate --------------------------------------------------------------------------------------------


@pytest.mark.asvs("V6.3.1", "V2.4.1")
def test_a_parallel_attempt_is_busy_while_the_password_is_checked_and_free_after(flow):
    parallel = []
    real = HASHER.verify

    def verify(*args, **kwargs):
        with flow.throttle.attempt("alice", None) as other:  # arrives while argon2 runs
            parallel.append(other.verdict)
        return real(*args, **kwargs)
    flow.service.hasher = type("Racing", (), {"verify": staticmethod(verify)})()
    assert flow.service.attempt("alice", "wrong guess") == Failed("bad_password")
    assert [(v.allowed, v.reason) for v in parallel] == [(False, "busy")]
    flow.service.hasher = HASHER
    assert isinstance(flow.service.attempt("alice", PASSWORD), SignedIn)


@pytest.mark.asvs("V2.4.1")
@pytest.mark.parametrize("known", [False, True])
def test_the_gate_is_let_go_when_argon2_gives_up_with_hashing_busy(flow, monkeypatch, known):
    device = device_of(flow, flow.service.attempt("alice", PASSWORD)) if known else None

    def busy(*args, **kwargs):
        raise HashingBusy(retry_after=3)
    monkeypatch.setattr(flow.service, "hasher", type("Busy", (), {"verify": staticmethod(busy)})())
    with pytest.raises(HashingBusy):
        flow.service.attempt("alice", PASSWORD, device=device)
    with pytest.raises(HashingBusy):
        flow.service.confirm_password(flow.accounts.by_username("alice"), PASSWORD)
    monkeypatch.undo()
    with flow.throttle.attempt("alice", device) as attempt:  # neither the bucket's nor the account's gate held
        assert attempt.verdict.allowed
    assert isinstance(flow.service.attempt("alice", PASSWORD, device=device), SignedIn)
    assert "login_failure" not in flow.events.names(), "a 503 is not a wrong password"


def test_the_gate_is_let_go_whatever_ends_the_block(flow):
    with pytest.raises(ZeroDivisionError), flow.throttle.attempt("alice", None) as attempt:
        assert attempt.verdict.allowed
        raise ZeroDivisionError("any exception a caller's code may raise")
    with flow.throttle.attempt("alice", None) as attempt:
        assert attempt.verdict.allowed


# --- one normalisation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_a_password_typed_composed_or_decomposed_signs_in(flow, form):
    assert isinstance(flow.service.attempt("carol", unicodedata.normalize(form, COMPOSED)), SignedIn)


def test_compatibility_forms_stay_different_passwords(flow):
    # NFC only (NIST): a ligature or a circled digit is not the letters or digit it looks like.
    flow.accounts.set_password_hash(flow.accounts.by_username("carol").id, HASHER.hash("\ufb01ne \u2460 day"))
    assert flow.service.attempt("carol", "fine 1 day") == Failed("bad_password")
    assert isinstance(flow.service.attempt("carol", "\ufb01ne \u2460 day"), SignedIn)


def test_the_password_is_normalised_once_per_attempt(flow, monkeypatch):
    calls = []
    monkeypatch.setattr(login_flow, "normalize_password", lambda p: calls.append(p) or normalize_password(p))
    old = PasswordHasher(time_cost=2, memory_cost=12288, parallelism=1, type=Type.ID)
    carol = flow.accounts.by_username("carol")
    flow.accounts.set_password_hash(carol.id, old.hash(COMPOSED), changed=False)  # a rehash uses it too
    assert isinstance(flow.service.attempt("carol", unicodedata.normalize("NFD", COMPOSED)), SignedIn)
    assert flow.service.attempt("carol", "wrong") == Failed("bad_password")
    assert isinstance(flow.service.confirm_password(carol, COMPOSED), Confirmed)
    assert len(calls) == 3


# --- the password change's check of the current password ----------------------------------------------------


# A password change's current password, and a step-up's (a sensitive change long after sign-in):
# both are password guesses a stolen session could make, through the login throttle.
CONFIRMING = pytest.mark.parametrize("confirm, event", [("confirm_password", "password_change"),
                                                        ("reauthenticate", "step_up")])


@pytest.mark.asvs("V6.2.3")
@CONFIRMING
def test_the_current_password_is_confirmed_through_the_login_throttle(flow, confirm, event):
    alice = flow.accounts.by_username("alice")
    check = getattr(flow.service, confirm)
    assert check(alice, PASSWORD) == Confirmed(alice)
    assert check(alice, "wrong") == Failed("bad_current_password")
    assert flow.events.seen == [(f"{event}_failed", {"reason": "bad_current_password"})]
    with flow.throttle.attempt("alice", None) as login:  # a login attempt is checking its password
        assert login.verdict.allowed
        assert check(alice, PASSWORD) == Refused("busy", 1)
    assert flow.events.seen[-1] == (f"{event}_throttled", {"reason": "busy"})


@pytest.mark.asvs("V6.2.3", "V6.3.1")
@CONFIRMING
def test_wrong_current_passwords_count_in_the_accounts_back_off(flow, confirm, event):
    alice = flow.accounts.by_username("alice")
    check = getattr(flow.service, confirm)
    calls = []
    real = HASHER.verify
    flow.service.hasher = type("Counting", (), {"verify": lambda self, *a, **k: calls.append(1) or real(*a, **k)})()
    too_long = "x" * (POLICY.passwords.max_length + 1)
    assert check(alice, too_long) == Failed("bad_current_password")
    assert calls == [], "a password too long to be anyone's needs no argon2 to be wrong"
    for _ in range(POLICY.throttle.failures_before_backoff - 1):
        assert check(alice, "wrong") == Failed("bad_current_password")
    assert flow.service.attempt("alice", PASSWORD) == Refused("backoff", POLICY.throttle.backoff_initial_seconds)
    assert check(alice, PASSWORD) == Refused("backoff", POLICY.throttle.backoff_initial_seconds)  # the right one too


@pytest.mark.asvs("V6.3.1")
@CONFIRMING
def test_right_current_passwords_count_in_the_accounts_success_limit(flow, confirm, event):
    """A right current password runs argon2 like a sign-in, so it counts in the account's success
    windows like one: a signed-in holder posting the password change form back to back (each new
    password refused, nothing changed) ran argon2 without limit, at full priority, and could fill
    the process's global window for every new browser (found by review, session 13)."""
    alice = flow.accounts.by_username("alice")
    check = getattr(flow.service, confirm)
    calls = []
    real = HASHER.verify
    flow.service.hasher = type("Counting", (), {"verify": lambda self, *a, **k: calls.append(1) or real(*a, **k)})()
    first = int(POLICY.throttle.successes_per_account[0].split()[0])  # "3 per 10 seconds"
    outcomes = [check(alice, PASSWORD) for _ in range(first + 2)]
    assert [type(o).__name__ for o in outcomes] == ["Confirmed"] * first + ["Refused"] * 2
    assert outcomes[-1].reason == "successes" and len(calls) == first
    assert flow.service.attempt("alice", PASSWORD).reason == "successes"  # one budget with sign-ins


# --- no Flask -----------------------------------------------------------------------------------------------


def test_the_login_flow_imports_no_web_framework():
    code = ("import sys, authsvc.core.login_flow; "
            "web = sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug', 'flask_login', "
            "'flask_limiter', 'flask_talisman')); "
            "assert not web, web")
    result = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
