"""Threat list for authsvc.rules.second_step: what a typed code is, whether a TOTP step may be
accepted, whether a pending sign-in still stands, whether a change needs step-up.

Codes are read strictly: six ASCII digits for an authenticator app, 24 characters of Crockford's
base32 for a recovery code, spaces and hyphens ignored. Everything else (other scripts' digits,
full-width digits, control characters, huge input, a code of another length) is malformed and
counts as a wrong code. A step is accepted once: only later than the last accepted one, and only
within one step of the server's clock. The HTTP behaviour around these is in test_mfa_flow.py.
"""

from __future__ import annotations

import math
import time

import pytest

from authsvc.rules import second_step as rules
from authsvc.rules.second_step import (
    ACCEPTED,
    BINDING_CHANGED,
    CHANGED_SINCE,
    EXPIRED,
    FACTOR_ADDED,
    LIVE,
    MALFORMED,
    OUT_OF_WINDOW,
    RECOVERY,
    RECOVERY_ALPHABET,
    REUSED,
    TOTP,
    account_verdict,
    candidate_steps,
    format_recovery_code,
    pending_verdict,
    read_code,
    recovery_code,
    step_up_due,
    step_verdict,
    time_step,
    totp_code,
)

NOW = 1_800_000_015.0              # step 60_000_000, 15 s into it
STEP = 60_000_000
CODE24 = "abcd0123efgh4567jkmn89pq"  # a recovery code: 24 characters of the alphabet


def P(value, id: str):
    return pytest.param(value, id=id)


# --- authenticator codes -----------------------------------------------------------------------

@pytest.mark.asvs("V6.5.4")
@pytest.mark.parametrize("typed, digits", [
    ("123456", "123456"),
    ("123 456", "123456"),
    ("123-456", "123456"),
    (" 123456 ", "123456"),
    ("1-2-3-4-5-6", "123456"),
    ("000000", "000000"),
])
def test_six_ascii_digits_with_spaces_or_hyphens_are_a_totp_code(typed, digits):
    assert totp_code(typed) == digits
    assert read_code(typed) == (TOTP, digits)


HOSTILE_TOTP = [
    P("\uff11\uff12\uff13\uff14\uff15\uff16", "full-width digits"),
    P("\u0661\u0662\u0663\u0664\u0665\u0666", "Arabic-Indic digits"),
    P("\u0967\u0968\u0969\u096a\u096b\u096c", "Devanagari digits"),
    P("\u00b9\u00b2\u00b3456", "superscripts (str.isdigit accepts them)"),
    P("\U0001d7cf\U0001d7d0\U0001d7d13456", "mathematical bold digits"),
    P("12345\u0666", "one Arabic-Indic digit"),
    P("123\t456", "tab between groups"),
    P("123\n456", "newline between groups"),
    P("123456\r\n", "CRLF after"),
    P("123\x00456", "NUL"),
    P("\u00a0123456", "no-break space"),
    P("123\u2212456", "minus sign, not hyphen-minus"),
    P("123\u2010456", "Unicode hyphen"),
    P("123\u200b456", "zero-width space"),
    P("+123456", "sign"),
    P("12345", "five digits"),
    P("1234567", "seven digits"),
    P("12345a", "a letter"),
    P("１２３４５６", "full-width again, literally"),
    P("", "empty"),
    P("      ", "only spaces"),
    P("-" * 6, "only hyphens"),
    P("1" * 6 + " " * 60, "66 characters with padding"),
    P("1" * 10_000_000, "ten million digits"),
    P(None, "None"),
    P(123456, "an int"),
    P(b"123456", "bytes"),
    P(["123456"], "a list"),
]


@pytest.mark.asvs("V6.5.4")
@pytest.mark.parametrize("typed", HOSTILE_TOTP)
def test_anything_but_six_ascii_digits_is_no_totp_code(typed):
    assert totp_code(typed) is None


def test_huge_input_is_refused_before_it_is_copied():
    # A separator-stripping translate over ten million characters would take a while; the length
    # bound answers first.
    started = time.perf_counter()
    assert read_code("1 " * 5_000_000) == (MALFORMED, "")
    assert time.perf_counter() - started < 0.05


# --- recovery codes ------------------------------------------------------------------------------

@pytest.mark.asvs("V6.5.2")
@pytest.mark.parametrize("typed", [
    CODE24,
    CODE24.upper(),
    format_recovery_code(CODE24),
    format_recovery_code(CODE24).upper(),
    " ".join(format_recovery_code(CODE24).split("-")),
    "  " + format_recovery_code(CODE24) + "  ",
])
def test_a_recovery_code_reads_the_same_in_any_case_and_grouping(typed):
    assert recovery_code(typed) == CODE24
    assert read_code(typed) == (RECOVERY, CODE24)


def test_crockford_look_alikes_read_as_the_digits_they_look_like():
    assert recovery_code("abcdOl23efgh4567jkmn89pq") == "abcd0123efgh4567jkmn89pq"
    assert recovery_code("abcd0I23efgh4567jkmn89pq") == "abcd0123efgh4567jkmn89pq"


def test_the_recovery_alphabet_has_32_distinct_unambiguous_characters():
    assert len(set(RECOVERY_ALPHABET)) == 32
    assert not set("ilou") & set(RECOVERY_ALPHABET)
    assert rules.RECOVERY_LENGTH * math.log2(len(RECOVERY_ALPHABET)) >= 112  # ASVS V6.5.2: plain hash allowed


@pytest.mark.parametrize("typed", [
    P(CODE24[:-1], "23 characters"),
    P(CODE24 + "a", "25 characters"),
    P(CODE24[:-1] + "u", "u is not in the alphabet"),
    P(CODE24[:-1] + "!", "punctuation"),
    P(CODE24[:-1] + "\u00e9", "accented letter"),
    P(CODE24[:-1] + "\uff41", "full-width a"),
    P(CODE24[:-1] + "\u0430", "Cyrillic a"),
    P(CODE24[:12] + "_" + CODE24[12:], "underscore separator"),
    P(CODE24[:12] + "\t" + CODE24[12:], "tab separator"),
    P(CODE24[:12] + "\x00" + CODE24[12:], "NUL"),
    P(CODE24[:12] + "\u2010" + CODE24[12:], "Unicode hyphen"),
    P("K" * 24 + "\u212a", "Kelvin sign lower-cases to k"),
    P("\u0130" + CODE24[1:], "dotted capital I lower-cases to two characters"),
    P("-".join(CODE24) + "-" * 20, "grouped past the length bound"),
    P(None, "None"),
    P(b"abcd", "bytes"),
])
def test_malformed_recovery_codes_are_refused(typed):
    assert recovery_code(typed) is None


def test_a_code_of_either_format_cannot_pass_as_the_other():
    assert read_code("123456") == (TOTP, "123456")
    assert read_code("1" * 24) == (RECOVERY, "1" * 24)
    assert read_code("1" * 7) == (MALFORMED, "")
    assert read_code("abcdef") == (MALFORMED, "")


def test_recovery_codes_are_shown_in_six_groups_of_four():
    assert format_recovery_code(CODE24) == "abcd-0123-efgh-4567-jkmn-89pq"


# --- time steps and acceptance ----------------------------------------------------------------------

def test_time_steps_are_rfc_6238_steps_of_the_server_clock():
    assert time_step(59.0) == 1 and time_step(60.0) == 2 and time_step(0.0) == 0
    assert candidate_steps(NOW) == (STEP - 1, STEP, STEP + 1)
    assert candidate_steps(10.0) == (0, 1)  # never a negative step


@pytest.mark.parametrize("now", [math.nan, math.inf, -math.inf, -1.0, -30.0])
def test_a_time_without_a_step_gives_no_candidates(now):
    assert time_step(now) is None
    assert candidate_steps(now) == ()
    assert step_verdict(STEP, 0, now) == OUT_OF_WINDOW


@pytest.mark.asvs("V6.5.1", "V6.5.5")
@pytest.mark.parametrize("step, last, verdict", [
    (STEP, STEP - 1, ACCEPTED),
    (STEP + 1, STEP, ACCEPTED),           # a clock one step ahead
    (STEP - 1, STEP - 5, ACCEPTED),       # a clock one step behind
    (STEP, STEP, REUSED),                 # the same code twice
    (STEP - 1, STEP, REUSED),             # an older code after a newer one
    (STEP, STEP + 1, REUSED),             # a later step was accepted already
    (STEP - 2, 0, OUT_OF_WINDOW),         # a code from two steps ago
    (STEP + 2, 0, OUT_OF_WINDOW),         # two steps ahead
    (0, -1, OUT_OF_WINDOW),
    (-STEP, -STEP - 1, OUT_OF_WINDOW),
])
def test_a_step_is_accepted_once_and_only_within_one_step_of_now(step, last, verdict):
    assert step_verdict(step, last, NOW) == verdict


# --- the pending sign-in ------------------------------------------------------------------------------

@pytest.mark.parametrize("started, now, bound, binding, verdict", [
    (NOW, NOW, "b1", "b1", LIVE),
    (NOW, NOW + 299.9, "b1", "b1", LIVE),
    (NOW, NOW + 300, "b1", "b1", EXPIRED),
    (NOW, NOW + 10**9, "b1", "b1", EXPIRED),
    (NOW, NOW - 5, "b1", "b1", LIVE),            # another instance's clock a little behind
    (NOW, NOW - 300, "b1", "b1", EXPIRED),       # started implausibly far in the future
    (math.nan, NOW, "b1", "b1", EXPIRED),
    (NOW, math.nan, "b1", "b1", EXPIRED),
    (math.inf, NOW, "b1", "b1", EXPIRED),
    (-math.inf, NOW, "b1", "b1", EXPIRED),
    (NOW, NOW, "b1", "b2", BINDING_CHANGED),     # taken to another browser
    (NOW, NOW, "", "", BINDING_CHANGED),         # never bound: never resumed
    (NOW, NOW + 10**9, "b1", "b2", BINDING_CHANGED),  # tampering is named before age
])
def test_a_pending_sign_in_stands_only_for_its_browser_and_its_lifetime(started, now, bound, binding, verdict):
    assert pending_verdict(started, now, 300, bound, binding) == verdict


@pytest.mark.parametrize("changed, started, set_up, has_factor, verdict", [
    (NOW - 10, NOW, False, True, LIVE),
    (NOW, NOW, False, True, LIVE),                  # set in the very instant the sign-in started
    (NOW + 0.001, NOW, False, True, CHANGED_SINCE),
    (NOW + 10**6, NOW, True, False, CHANGED_SINCE),
    (math.nan, NOW, False, True, CHANGED_SINCE),
    (NOW, math.nan, False, True, CHANGED_SINCE),
    (NOW - 10, NOW, True, False, LIVE),             # setting up the first factor, none yet
    (NOW - 10, NOW, True, True, FACTOR_ADDED),      # the owner added one meanwhile
    (NOW + 1, NOW, True, True, CHANGED_SINCE),   # the password is named first
])
def test_a_pending_sign_in_stands_only_while_the_account_is_as_it_was(changed, started, set_up, has_factor, verdict):
    assert account_verdict(changed, started, set_up, has_factor) == verdict


# --- step-up ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("authenticated, now, due", [
    (NOW, NOW, False),
    (NOW, NOW + 299, False),
    (NOW, NOW + 300, True),
    (None, NOW, True),                 # restored from a remember-me cookie: never fresh
    (NOW, NOW - 5, False),             # another instance's clock a little behind
    (NOW + 10**6, NOW, True),          # a time far in the future is no authentication
    (math.nan, NOW, True),
    (NOW, math.nan, True),
])
def test_a_sensitive_change_needs_an_authentication_within_the_window(authenticated, now, due):
    assert step_up_due(authenticated, now, 300) is due


def test_module_depends_only_on_the_standard_library():
    import ast
    import pathlib
    import sys

    tree = ast.parse(pathlib.Path(rules.__file__).read_text(encoding="utf-8"))
    imported = {(node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
                for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize("reason, ends", [
    ("origin", True), ("rp_id", True), ("challenge", True), ("user_mismatch", True),
    ("no_challenge", False), ("malformed", False), ("user_not_verified", False), ("rejected", False),
    ("unknown_credential", False), ("counter_regressed", False), ("counter_repeated", False),
    ("raced", False), ("disabled", False), ("", False),
])
def test_only_a_passkey_refusal_that_may_be_an_attack_ends_the_pending_sign_in(reason, ends):
    assert rules.passkey_ends_flow(reason) is ends


# --- boundaries the mutation run found untested (scripts/mutation, 2026-12-07) ---------------------

def test_a_typed_code_may_be_exactly_the_input_bound_long_and_no_longer():
    padded = "123456".center(rules.MAX_CODE_INPUT)  # spaces people type, up to the bound
    assert len(padded) == rules.MAX_CODE_INPUT and totp_code(padded) == "123456"
    assert totp_code(padded + " ") is None


def test_a_one_second_period_is_a_period():
    assert time_step(1_800_000_123.9, 1) == 1_800_000_123
    assert time_step(1_800_000_123.9, 0) is None


def test_steps_and_verdicts_use_the_period_they_are_given():
    now = 1_800_000_000.0
    assert candidate_steps(now, period=60, drift=0) == (30_000_000,)
    assert candidate_steps(now, period=60, drift=1) == (29_999_999, 30_000_000, 30_000_001)
    assert step_verdict(30_000_000, 0, now, period=60) == ACCEPTED
    assert step_verdict(60_000_000, 0, now, period=60) == OUT_OF_WINDOW  # the 30 s step is not the 60 s one


def test_an_authentication_dated_a_whole_window_ahead_of_the_clock_is_not_recent():
    # A clock stepped back must not make an old authentication count as fresh for a whole window.
    assert step_up_due(1_000.0 + 300, 1_000.0, 300)
    assert not step_up_due(1_000.0 + 299, 1_000.0, 300)
