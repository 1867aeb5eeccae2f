"""Quadratic normalisation before any limit (review finding 10).

The attack: a password (or username) of thousands of combining marks passed the length check on the
raw field, then NFC (NFKC for usernames) sorted each run of marks into canonical order, in time
growing with the square of the run, before the refusal. From a browser holding a device cookie
(any account's: the attacker's own) POST /login was exempt from the per-client limit, and a 400
touched no other counter, so such requests could be repeated without end.

Now every username and password field is judged by the Stream-Safe bound of UAX #15 (at most 30
non-starters in a row, authsvc.rules.streamsafe) on the raw text, before anything normalises it, and is
refused with a 400 that says why: login, password change and the CLI. A request POST /login refuses
for its size or shape is never exempt from the per-client limit, so the Nth gets 429. No timing is
measured: a spy on ``unicodedata.normalize`` shows the attack's text never reaches a normaliser.
Text with a few marks per letter (decomposed input, Vietnamese, up to 30 in a row) still signs in.
"""

from __future__ import annotations

import unicodedata

import pytest
from werkzeug.datastructures import MultiDict

from authsvc.core.policy import load_policy
from authsvc.rules.streamsafe import MAX_NON_STARTERS, is_stream_safe, longest_non_starter_run
from tests.conftest import (
    HTTPS,
    PASSWORD,
    TEST_POLICY,
    add_user,
    csrf,
    login,
    new_client,
    run_cli,
)

HOST = HTTPS.split("://")[1]

ACUTE, CEDILLA_BELOW = "\u0301", "\u0316"   # combining classes 230 and 220: NFC must reorder them
# The review's payload: 4,096 marks (the raw password field's cap), classes alternating.
ATTACK = (ACUTE + CEDILLA_BELOW) * 2048
assert len(ATTACK) == 4096
RUN = (ACUTE + CEDILLA_BELOW) * 16  # any 32 of them: a text holding this is the attack's, not a legit one


# --- the bound itself (pure) -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "run"), [
    pytest.param("", 0, id="empty"),
    pytest.param("plain ascii password", 0, id="ascii"),
    pytest.param("caf\u00e9", 1, id="precomposed-e-acute"),
    pytest.param("cafe\u0301", 1, id="decomposed-e-acute"),
    pytest.param("M\u1eadt kh\u1ea9u", 2, id="vietnamese-precomposed"),
    pytest.param("a" + ACUTE * 30, 30, id="thirty-marks"),
    pytest.param("a" + ACUTE * 31, 31, id="thirty-one-marks"),
    pytest.param(ACUTE * 31, 31, id="marks-without-a-base"),
    pytest.param("\u1e69" + ACUTE * 28, 30, id="s-dot-below-dot-above-counts-its-two-marks"),
    pytest.param("\u1e69" + ACUTE * 29, 31, id="s-dot-below-dot-above-plus-29"),
    pytest.param("\uff9e" * 31, 31, id="halfwidth-voiced-mark-ccc-0-but-nfkd-mark"),
    pytest.param("\u0f73" * 16, 32, id="tibetan-ii-two-marks-each"),
    pytest.param("\u0344" * 15 + "\u0301", 31, id="greek-dialytika-tonos"),
    pytest.param("a" + ACUTE * 30 + "b" + ACUTE * 30, 30, id="two-runs-of-thirty"),
    pytest.param("\u3300", 1, id="square-apaato-holds-a-mark-inside"),
    pytest.param("\ud800" + ACUTE, 1, id="lone-surrogate"),
])
def test_longest_run_counts_non_starters_as_nfkd_has_them(text, run):
    assert longest_non_starter_run(text) == run
    assert is_stream_safe(text) == (run <= MAX_NON_STARTERS)


@pytest.mark.parametrize("length", [30, 31, 32, 100, 4096])
def test_runs_just_under_and_over_the_bound(length):
    assert is_stream_safe("x" + (ACUTE + CEDILLA_BELOW) * (length // 2) + ACUTE * (length % 2)) == (length <= 30)


@pytest.mark.parametrize(("value", "problem"), [
    ("fine", None), ("x" * 11, "too_long"), ("a\x00b", "invalid_characters"), ("a\ufffdb", "invalid_characters"),
    ("a" + ACUTE * 31, "combining_marks"), ("a" + ACUTE * 30, None), (ATTACK[:10], None),
])
def test_value_problem_is_judged_on_the_raw_value(value, problem):
    from authsvc.web.forms import value_problem

    assert value_problem(value, 10 if problem == "too_long" else 100) == problem


# --- refused before any normalisation -------------------------------------------------------------------

@pytest.fixture
def normalised(monkeypatch):
    """Every text longer than one code point that reaches ``unicodedata.normalize`` (the stream-safe
    check itself normalises one code point at a time)."""
    seen: list[str] = []
    real = unicodedata.normalize

    def spy(form, text):
        if len(text) > 1:
            seen.append(text)
        return real(form, text)
    monkeypatch.setattr(unicodedata, "normalize", spy)
    return seen


def attack_seen(seen: list[str]) -> bool:
    return any(RUN in text for text in seen)


def device_browser(app, name: str = "mallory", *, signed_in: bool = False):
    """The attacker's browser, with a device cookie from signing in to an account of their own
    (and, unless ``signed_in``, the session cookie dropped again)."""
    add_user(app, name)
    c = new_client(app)
    c.environ_base["REMOTE_ADDR"] = "203.0.113.66"
    assert login(c, name).status_code == 303
    assert c.get_cookie(app.extensions["authsvc"].cookies.device, domain=HOST) is not None
    if not signed_in:
        c.delete_cookie(app.extensions["authsvc"].cookies.session, domain=HOST)
    return c


FIELDS = [pytest.param("password", id="password"), pytest.param("username", id="username")]


@pytest.mark.asvs("V6.2.9")
@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("with_device", [False, True], ids=["anonymous", "known-device"])
def test_login_refuses_a_field_of_combining_marks_with_400_before_normalising(app, normalised, field, with_device):
    c = device_browser(app) if with_device else new_client(app)
    form = {"csrf_token": csrf(c), "username": "mallory", "password": PASSWORD}
    form[field] = ATTACK if field == "password" else ATTACK[:256]
    normalised.clear()
    answer = c.post("/login", data=form)
    assert answer.status_code == 400
    assert "combining marks in a row" in answer.get_data(as_text=True)
    assert not attack_seen(normalised), "the attack's text was normalised before the refusal"


@pytest.mark.parametrize("field", ["current_password", "new_password"])
def test_password_change_refuses_combining_marks_before_normalising(app, normalised, field):
    c = device_browser(app, "alice", signed_in=True)
    form = {"csrf_token": csrf(c, "/"), "current_password": PASSWORD, "new_password": "a new long passphrase 77"}
    form[field] = ATTACK
    normalised.clear()
    answer = c.post("/account/password", data=form)
    assert answer.status_code == 400 and "combining marks in a row" in answer.get_data(as_text=True)
    assert not attack_seen(normalised)


def test_cli_user_add_refuses_a_name_of_combining_marks_before_nfkc(app, tmp_path, monkeypatch, capsys, normalised):
    code = run_cli(monkeypatch, tmp_path, "user", "add", "a" + RUN, "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 1 and "combining marks in a row" in capsys.readouterr().err
    assert not attack_seen(normalised)


@pytest.mark.parametrize("command", ["add", "passwd"])
def test_cli_refuses_a_password_of_combining_marks_before_nfc(app, tmp_path, monkeypatch, capsys, normalised, command):
    if command == "passwd":
        add_user(app, "alice")
    code = run_cli(monkeypatch, tmp_path, "user", command, "alice" if command == "passwd" else "bob",
                   "--password-stdin", stdin=ATTACK + "\n")
    assert code == 1 and "combining marks in a row" in capsys.readouterr().err
    assert not attack_seen(normalised)


# --- counted toward the per-client limit -------------------------------------------------------------------

OVERSIZE = [
    pytest.param({"password": ATTACK}, id="password-of-combining-marks"),
    pytest.param({"username": ATTACK[:256]}, id="username-of-combining-marks"),
    pytest.param({"password": "p" * 1025}, id="password-over-max-length"),
    pytest.param({"password": "p" * 5000}, id="password-over-the-raw-field-cap"),
    pytest.param({"username": "u" * 300}, id="username-over-the-raw-field-cap"),
]


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("fields", OVERSIZE)
@pytest.mark.parametrize("with_device", [False, True], ids=["anonymous", "known-device"])
def test_the_nth_oversize_login_gets_429_even_from_a_known_device(app, fields, with_device):
    """policies: per_client 10 per minute. The device browser's own sign-in was the first hit."""
    c = device_browser(app) if with_device else new_client(app)
    if not with_device:
        c.environ_base["REMOTE_ADDR"] = "203.0.113.67"
    statuses = []
    for _ in range(12):
        form = {"csrf_token": csrf(c), "username": "mallory", "password": PASSWORD, **fields}
        statuses.append(c.post("/login", data=form).status_code)
    first_429 = statuses.index(429) if 429 in statuses else None
    assert first_429 is not None, statuses
    assert set(statuses[:first_429]) == {400} and set(statuses[first_429:]) == {429}, statuses
    assert first_429 == (9 if with_device else 10)


MAX_BODY = 65536  # policies/test.toml keeps the default [limits] max_content_length


def post_oversize(c, path: str):
    """A form post over ``limits.max_content_length`` (its Content-Length says so), with a valid CSRF
    token and the fields a sign-in has, as a script would send it."""
    body = f"csrf_token={csrf(c)}&username=mallory&password=x&pad={'a' * MAX_BODY}"
    return c.post(path, data=body, content_type="application/x-www-form-urlencoded")


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("path", ["/login", "/login/mfa"])
@pytest.mark.parametrize("with_device", [False, True], ids=["anonymous", "known-device"])
def test_the_nth_login_refused_as_too_large_gets_429_and_spends_the_addresses_budget(app, path, with_device):
    """A body over the limit is refused (413) where the form is first read, before the view's
    per-client limit: such posts were never counted, so one address could send them without end,
    each read up to the limit. Now they count in the same budget as the address's sign-ins."""
    c = device_browser(app) if with_device else new_client(app)
    if not with_device:
        c.environ_base["REMOTE_ADDR"] = "203.0.113.68"
    statuses = [post_oversize(c, path).status_code for _ in range(12)]
    first_429 = statuses.index(429) if 429 in statuses else None
    assert first_429 is not None, statuses
    assert set(statuses[:first_429]) == {413} and set(statuses[first_429:]) == {429}, statuses
    assert first_429 == (9 if with_device and path == "/login" else 10)
    # The same budget: the address's next well-formed attempt without a device cookie is refused too.
    other = new_client(app)
    other.environ_base["REMOTE_ADDR"] = c.environ_base["REMOTE_ADDR"]
    assert other.post(path, data={"csrf_token": csrf(other), "username": "mallory", "password": PASSWORD,
                                  "code": "123456"}).status_code == 429


def test_a_known_devices_well_formed_logins_stay_exempt_from_the_per_client_limit(app, clock):
    """The control: logins that reach the password check are a known device's, counted apart from
    the anonymous per-client limit (by its own per-device limit, 10 a minute: review finding 1)."""
    c = device_browser(app)
    statuses = []
    for _ in range(11):  # the device's sign-in in device_browser was anonymous: 11 + 1 is over per_client
        clock.advance(6)  # within throttle.successes_per_account (3 in 10 s, 10 a minute)
        statuses.append(login(c, "mallory").status_code)
        c.delete_cookie(app.extensions["authsvc"].cookies.session, domain=HOST)
    assert statuses == [303] * 10 + [429]  # the 11th: per_device


POLICY = load_policy(TEST_POLICY)


@pytest.mark.parametrize(("form", "refused"), [
    ({"username": ["a"], "password": ["p" * 1024]}, False),
    ({"username": ["a"], "password": ["p" * 1025]}, True),
    ({"username": ["a"], "password": ["\ufb2c" * 400]}, True),   # 400 code points, 1,200 after NFC
    ({"username": ["a"], "password": ["x" + ACUTE * 30]}, False),
    ({"username": ["a"], "password": ["x" + ACUTE * 31]}, True),
    ({"username": ["a" + ACUTE * 31], "password": ["p"]}, True),
    ({"username": ["a"], "password": ["p", "q"]}, True),
    ({"username": [], "password": ["p"]}, True),
    ({"username": ["a"]}, True),
])
def test_refused_for_size_predicts_the_login_views_400s(form, refused):
    from authsvc.web.limiter import refused_for_size

    assert refused_for_size(MultiDict(form), POLICY) == refused


# --- what people really type still works -------------------------------------------------------------------

@pytest.mark.parametrize(("stored", "typed"), [
    pytest.param("M\u1eadt kh\u1ea9u c\u1ee7a t\u00f4i r\u1ea5t d\u00e0i", None, id="vietnamese-nfc"),
    pytest.param("M\u1eadt kh\u1ea9u c\u1ee7a t\u00f4i r\u1ea5t d\u00e0i",
                 unicodedata.normalize("NFD", "M\u1eadt kh\u1ea9u c\u1ee7a t\u00f4i r\u1ea5t d\u00e0i"),
                 id="vietnamese-typed-decomposed"),
    pytest.param("zalgo-ish but fine z" + ACUTE + CEDILLA_BELOW + "\u0308 passphrase", None, id="three-marks"),
    pytest.param("thirty marks on one letter e" + ACUTE * 30 + " ok", None, id="exactly-thirty"),
    pytest.param("\u0939\u093f\u0928\u094d\u0926\u0940 \u092a\u093e\u0938\u0935\u0930\u094d\u0921 \u0932\u0902\u092c\u093e",
                 None, id="devanagari"),
])
def test_passwords_with_a_few_combining_marks_still_sign_in(app, stored, typed):
    add_user(app, "alice", unicodedata.normalize("NFC", stored))
    c = new_client(app)
    assert login(c, "alice", typed or stored).status_code == 303
