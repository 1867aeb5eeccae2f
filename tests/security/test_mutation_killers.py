"""Boundary tests for the security core's pure decisions, written to kill mutants that
``scripts/mutation`` found surviving the other test modules (see docs/mutation.md).

Each test pins one edge a one-character change in the code would move: ``>=`` versus ``>``,
an off-by-one in a cap, a reason code, a default. They are cheap (no HTTP, no argon2), so they
also run in the mutation test selection of pyproject.toml's ``[tool.mutmut]``.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os

import pytest

from authsvc.rules import access, secretkeys
from authsvc.rules.access import AccessRules, Decision, Rule
from authsvc.rules.passwords import Blocklist, PasswordRules, load_default_blocklist, password_problems, shortest_period
from authsvc.core.policy import load_policy
from authsvc.rules.redirects import AllowedApp, build_rules, parse_origin, validate_next
from authsvc.rules.secretkeys import key_file_problems, read_key_file, secret_problems
from authsvc.core.sessions import LIVE, SessionRecord, needs_touch, session_verdict
from authsvc.core.throttle import Verdict, backoff_seconds, block_after_failure, decide, window_full

POLICY = load_policy()
SESSIONS = dataclasses.replace(POLICY.sessions, idle_timeout_seconds=600, absolute_lifetime_seconds=3600,
                               touch_interval_seconds=60)
THROTTLE = dataclasses.replace(POLICY.throttle, failures_before_backoff=3, failure_window_seconds=300,
                               backoff_initial_seconds=30, backoff_max_seconds=900, max_consecutive_failures=10)


def record(**changes) -> SessionRecord:
    base = SessionRecord(id=7, user_id=3, username="alice", user_disabled=False, created_at=1000.0,
                         last_seen_at=1000.0, expires_at=1000.0 + 3600, remembered=False,
                         client_ip="192.0.2.1", user_agent="test", revoked_at=None)
    return dataclasses.replace(base, **changes)


# --- sessions.session_verdict / needs_touch -------------------------------------------------------


@pytest.mark.asvs("V7.3.1")
def test_idle_session_ends_exactly_at_the_idle_timeout_not_a_second_later():
    rec = record()
    assert session_verdict(rec, 1000.0 + 599.999, SESSIONS) == LIVE
    assert session_verdict(rec, 1000.0 + 600, SESSIONS) == "idle"
    assert session_verdict(rec, 1000.0 + 601, SESSIONS) == "idle"


@pytest.mark.asvs("V7.3.2")
def test_session_ends_exactly_at_its_absolute_expiry_even_while_active():
    rec = record(last_seen_at=1000.0 + 3599)
    assert session_verdict(rec, 1000.0 + 3599.5, SESSIONS) == LIVE
    assert session_verdict(rec, 1000.0 + 3600, SESSIONS) == "expired"
    assert session_verdict(rec, 1000.0 + 3601, SESSIONS) == "expired"


@pytest.mark.asvs("V7.4.1", "V7.4.2")
def test_revocation_and_disabling_win_over_a_fresh_unexpired_session():
    assert session_verdict(record(revoked_at=1000.0), 1000.0, SESSIONS) == "revoked"
    assert session_verdict(record(revoked_at=0.0), 1000.0, SESSIONS) == "revoked"  # falsy time still revokes
    assert session_verdict(record(user_disabled=True), 1000.0, SESSIONS) == "disabled"
    # Both: revocation is reported first (the audit reason must not depend on the account state).
    assert session_verdict(record(revoked_at=1.0, user_disabled=True), 1000.0, SESSIONS) == "revoked"
    assert session_verdict(None, 1000.0, SESSIONS) == "unknown"


@pytest.mark.asvs("V7.3.2")
def test_an_expired_session_reports_expired_before_idle():
    rec = record(last_seen_at=1000.0)
    assert session_verdict(rec, 1000.0 + 3600, SESSIONS) == "expired"


def test_a_fresh_unrevoked_session_of_an_enabled_user_is_live():
    assert session_verdict(record(), 1000.0, SESSIONS) == LIVE


def test_last_seen_is_written_exactly_once_the_touch_interval_has_passed():
    rec = record()
    assert not needs_touch(rec, 1000.0, SESSIONS)
    assert not needs_touch(rec, 1000.0 + 59.999, SESSIONS)
    assert needs_touch(rec, 1000.0 + 60, SESSIONS)
    assert needs_touch(rec, 1000.0 + 61, SESSIONS)


# --- throttle.decide / backoff_seconds / block_after_failure ----------------------------------------


@pytest.mark.asvs("V6.3.1")
def test_lock_out_starts_exactly_at_max_consecutive_failures_and_names_the_reason():
    assert decide(9, 0.0, 5000.0, THROTTLE) == Verdict(True, 0, "ok")
    locked = decide(10, 0.0, 5000.0, THROTTLE)
    assert locked == Verdict(False, THROTTLE.backoff_max_seconds, "locked")
    assert decide(11, 0.0, 5000.0, THROTTLE).reason == "locked"
    # Locked wins over an active back-off.
    assert decide(10, 6000.0, 5000.0, THROTTLE).reason == "locked"


@pytest.mark.asvs("V6.3.1")
def test_back_off_refuses_until_its_end_and_rounds_the_wait_up():
    assert decide(4, 5030.0, 5000.0, THROTTLE) == Verdict(False, 30, "backoff")
    assert decide(4, 5030.0, 5029.2, THROTTLE) == Verdict(False, 1, "backoff")  # ceil(0.8)
    assert decide(4, 5030.0, 5029.999, THROTTLE).retry_after == 1
    assert decide(4, 5030.0, 5000.5, THROTTLE).retry_after == 30  # ceil(29.5)
    assert decide(4, 5030.0, 5030.0, THROTTLE).allowed  # the block is over at its end time
    assert decide(4, 5030.0, 5031.0, THROTTLE).allowed


def test_an_allowed_verdict_has_no_wait_and_reason_ok():
    verdict = decide(0, 0.0, 0.0, THROTTLE)
    assert verdict.allowed is True and verdict.retry_after == 0 and verdict.reason == "ok"
    assert Verdict(True) == Verdict(True, 0, "ok")


@pytest.mark.asvs("V6.3.1")
def test_backoff_doubles_from_the_initial_value_after_the_free_failures_and_is_capped():
    assert [backoff_seconds(n, THROTTLE) for n in range(0, 10)] == \
        [30.0, 30.0, 30.0, 30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0]
    assert backoff_seconds(10_000, THROTTLE) == 900.0  # no overflow, no float('inf')
    assert isinstance(backoff_seconds(3, THROTTLE), float)
    tiny = dataclasses.replace(THROTTLE, backoff_initial_seconds=1, backoff_max_seconds=10**12)
    # The exponent is capped at 32, so a huge count cannot build a huge integer.
    assert backoff_seconds(3 + 40, tiny) == float(2 ** 32)
    assert backoff_seconds(3 + 32, tiny) == float(2 ** 32)
    assert backoff_seconds(3 + 31, tiny) == float(2 ** 31)


@pytest.mark.asvs("V6.3.1")
def test_window_counts_failures_strictly_inside_it():
    now = 10_000.0
    inside = [now - 299, now - 100, now]
    assert window_full(inside, now, THROTTLE)
    assert not window_full(inside[1:], now, THROTTLE)
    # A failure exactly one window old has left it.
    assert not window_full([now - 300, now - 100, now], now, THROTTLE)
    assert window_full([now - 299.999, now - 100, now], now, THROTTLE)


@pytest.mark.asvs("V6.3.1")
def test_block_after_failure_starts_when_the_window_fills():
    now = 10_000.0
    assert block_after_failure([now - 10, now], 2, now, 0.0, THROTTLE) is None
    assert block_after_failure([now - 20, now - 10, now], 3, now, 0.0, THROTTLE) == now + 30
    assert block_after_failure([now - 20, now - 10, now], 4, now, 0.0, THROTTLE) == now + 60
    assert block_after_failure([now - 20, now - 10, now], 5, now, 0.0, THROTTLE) == now + 120


@pytest.mark.asvs("V6.3.1")
def test_block_persists_while_failures_keep_coming_within_a_window_of_the_last_block():
    now = 10_000.0
    # Window not full (old failures aged out during a long block), but the last block ended
    # less than a window ago: still blocked, with the back-off of the consecutive count.
    assert block_after_failure([now], 6, now, now - 299, THROTTLE) == now + backoff_seconds(6, THROTTLE)
    assert block_after_failure([now], 6, now, now - 1, THROTTLE) == now + 240
    # Exactly a window after the last block ended: forgiven.
    assert block_after_failure([now], 6, now, now - 300, THROTTLE) is None
    assert block_after_failure([now], 6, now, now - 301, THROTTLE) is None
    # No previous block (0) never counts as persisting, whatever the clock says.
    assert block_after_failure([now], 6, 100.0, 0.0, THROTTLE) is None
    # A block in the future (still running) persists.
    assert block_after_failure([now], 6, now, now + 50, THROTTLE) == now + 240


def test_retry_after_is_an_int_the_retry_after_header_can_carry():
    verdict = decide(4, 5000.5, 5000.0, THROTTLE)
    assert isinstance(verdict.retry_after, int) and verdict.retry_after == math.ceil(0.5)


# --- passwords ---------------------------------------------------------------------------------------

BLOCKLIST = load_default_blocklist()
PW_RULES = PasswordRules()
SEQUENCE = "Password is a simple sequence or keyboard pattern; choose another."
REPEATS_COMMON = "Password repeats a common password; choose another."


def pw(password: str, username: str = "u", rules: PasswordRules = PW_RULES) -> list[str]:
    return password_problems(password, username=username, rules=rules, blocklist=BLOCKLIST)


@pytest.mark.asvs("V6.2.1")
def test_length_message_counts_in_singular_and_plural():
    assert pw("\u03b6") == ["Password is 1 character; the minimum is 15."]  # not on any list, nothing repeated
    assert pw("ab") == ["Password is 2 characters; the minimum is 15."]  # two characters are no walk yet


def test_three_characters_stepping_evenly_are_already_a_sequence():
    assert pw('!"#') == ["Password is 3 characters; the minimum is 15.", SEQUENCE]


@pytest.mark.asvs("V6.2.4")
@pytest.mark.parametrize("password", ['!"#$%&\'()*+,-./', "!#%')+-/13579;=?"])
def test_a_constant_step_through_code_points_outside_any_keyboard_row_is_a_sequence(password):
    assert SEQUENCE in pw(password)


def test_steps_of_two_sizes_are_not_a_sequence():
    assert SEQUENCE not in pw("abdfhjlnprtvxzB")


def test_a_short_unit_repeated_exactly_once_is_a_pattern():
    assert "Password repeats a short pattern; choose another." in pw("xqzxqz")


@pytest.mark.asvs("V6.2.4")
def test_a_listed_password_with_exactly_three_characters_repeated_is_caught():
    assert REPEATS_COMMON in pw("sunshinesun")  # "sunshine" + 3 characters of it again


@pytest.mark.asvs("V6.2.4")
def test_a_four_letter_listed_unit_repeated_is_caught():
    assert REPEATS_COMMON in pw("abbyabbyabby")


def test_only_whole_repetitions_of_the_unit_count_as_a_listed_password_repeated():
    # "chouchou" is listed, but "chouchouch" repeats it by only two characters (the rule wants 3).
    assert REPEATS_COMMON not in pw("chouchouch")
    # "desmond" is listed, but this is "desmon" repeated; a listed word is not searched as a substring.
    assert REPEATS_COMMON not in pw("desmondesmondesmon")


@pytest.mark.asvs("V6.2.11")
def test_a_three_character_username_inside_the_password_is_refused():
    assert pw("xxbobxxTq8vLr2mWz", username="bob") == ["Password must not contain the username."]


def test_an_empty_username_forbids_nothing():
    assert pw("Tq8vLr2xxxxmWz5kXc9p", username="") == []


@pytest.mark.asvs("V6.2.9")
def test_a_password_exactly_at_the_raw_cap_is_normalized_before_it_is_judged():
    # Four code points that NFC composes into one (U+1FA7): 4096 raw, 1024 after normalizing = the cap.
    password = "\u03c9\u0314\u0342\u0345" * 1024
    assert len(password) == 4 * PW_RULES.max_length
    assert "Password is longer than 1024 characters." not in pw(password)
    assert pw(password + "x") == ["Password is longer than 1024 characters."]


def test_shortest_period_of_tricky_strings():
    assert shortest_period("") == 0
    assert shortest_period("aabaaa") == 4
    assert shortest_period("abab") == 2 and shortest_period("abcab") == 3 and shortest_period("x") == 1


def test_blocklist_lines_lose_only_their_line_ending():
    listed = Blocklist.from_lines(["pass word \r\n", "boxX\n"])
    assert "pass word " in listed and "pass word" not in listed
    assert "boxx" in listed and "bo" not in listed


@pytest.mark.asvs("V6.2.1", "V6.2.9")
def test_policy_bounds_are_inclusive_and_errors_name_the_setting():
    assert PasswordRules(min_length=8).min_length == 8
    assert PasswordRules(max_length=64).max_length == 64
    with pytest.raises(ValueError, match="ASVS 6.2.1 requires at least 8"):
        PasswordRules(min_length=7)
    with pytest.raises(ValueError, match=r"must be at least 64 \(ASVS 6.2.9\)"):
        PasswordRules(max_length=63)
    with pytest.raises(ValueError, match="^context_words must be non-empty strings.$"):
        PasswordRules(context_words=("",))


# --- throttle ------------------------------------------------------------------------------------------


def test_any_earlier_block_keeps_the_back_off_going_even_at_tiny_clock_values():
    assert block_after_failure([100.0], 6, 100.0, 0.5, THROTTLE) == 100.0 + backoff_seconds(6, THROTTLE)


# --- redirects -----------------------------------------------------------------------------------------

REDIRECTS = build_rules("https://auth.example.com", [AllowedApp("https://app.example.com", "/wiki", "Wiki"),
                                                     AllowedApp("https://[2001:db8::1]", "/v6", "v6")])


@pytest.mark.asvs("V3.7.2")
def test_path_prefix_of_a_double_slash_is_refused_not_widened_to_the_whole_origin():
    # Found by mutation testing: "//" used to become "/", admitting every path of the app's origin.
    with pytest.raises(ValueError, match="without '//'"):
        build_rules("https://auth.example.com", [AllowedApp("https://app.example.com", "//", "x")])


def test_path_prefix_errors_say_what_to_write():
    with pytest.raises(ValueError, match="must start with '/'"):
        build_rules("https://auth.example.com", [AllowedApp("https://app.example.com", "wiki", "x")])
    with pytest.raises(ValueError, match="dot segments, percent-encoding, query or fragment$"):
        build_rules("https://auth.example.com", [AllowedApp("https://app.example.com", "/a?b", "x")])
    with pytest.raises(TypeError, match="got str"):
        build_rules("https://auth.example.com", ["https://app.example.com"])


def test_build_rules_keeps_the_configured_maximum_length():
    assert build_rules("https://auth.example.com", max_length=100).max_length == 100


def test_a_lone_percent_in_the_fragment_is_escaped_exactly_once():
    assert validate_next("/p?q=5%#50%", REDIRECTS).target == "/p?q=5%25#50%25"


@pytest.mark.asvs("V3.7.2")
def test_a_second_closing_bracket_after_an_ipv6_host_is_malformed():
    decision = validate_next("https://[2001:db8::1]]/v6", REDIRECTS)
    assert (decision.accepted, decision.reason) == (False, "malformed")


@pytest.mark.parametrize("host", ["a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61])  # 253
def test_a_host_of_253_characters_is_a_valid_origin_and_254_is_not(host):
    assert len(host) == 253
    assert parse_origin(f"https://{host}") == f"https://{host}"
    with pytest.raises(ValueError):
        parse_origin(f"https://{host}e")


def test_parse_origin_accepts_port_1_and_upper_case_x_in_hosts():
    assert parse_origin("https://app.example.com:1") == "https://app.example.com:1"
    assert parse_origin("https://XKCD.Example.com") == "https://xkcd.example.com"


def test_parse_origin_errors_quote_the_configured_text():
    with pytest.raises(ValueError, match="^origin is empty; expected scheme://host"):
        parse_origin("")
    with pytest.raises(ValueError, match="'https://a://b' must not have a path"):
        parse_origin("https://a://b")
    with pytest.raises(ValueError, match=r"'https://-bad-\.example\.com'"):
        parse_origin("https://-bad-.example.com")
    with pytest.raises(ValueError, match="expected ':port' after the IPv6 literal"):
        parse_origin("https://[::1]]")


# --- secret keys ---------------------------------------------------------------------------------------

WEAK = "AUTHSVC_SECRET_KEY is, or is built from, a well-known example value"


@pytest.mark.asvs("V11.2.3")
def test_a_key_with_exactly_128_estimated_bits_is_enough():
    key = "GEF7vhcY7ceDQ3YepQh3EDCp5KCKFG5v"  # 16 symbols twice each: exactly 32 * 4.0 bits
    assert secretkeys._estimated_bits(key) == 128.0
    assert secret_problems(key) == []


@pytest.mark.asvs("V11.2.3")
def test_twelve_distinct_characters_are_enough_when_the_entropy_is():
    key = "gmbmgEtf7tGbEQmg7mEbGGQDfgfmD3eGQbgg7gbmbmGG"
    assert len(set(key)) == 12 and secret_problems(key) == []


@pytest.mark.asvs("V11.2.3")
def test_a_key_whose_steps_are_exactly_half_neighbours_is_mostly_a_sequence():
    found = secret_problems("HIbc9:ababXYFGKLGHvwZ[vwTUabstMNdeBCQRde3")
    assert any("mostly a run of neighbouring characters" in p for p in found), found


@pytest.mark.asvs("V11.2.3")
def test_random_text_exactly_twice_is_a_repeated_pattern():
    half = "Tq8vLr2mWz5kXc9pJh4nBd"
    assert any("repeats a shorter pattern" in p for p in secret_problems(half * 2))


@pytest.mark.asvs("V11.2.3")
def test_a_short_example_word_padded_with_too_little_randomness_is_weak():
    # "dev" + 29 characters worth 114 bits: the filler is not random enough to hide the example.
    assert WEAK in " ".join(secret_problems("dev55bfm85fvj7fvt62r4rkfnkrqrabh"))


@pytest.mark.asvs("V11.2.3")
def test_a_short_example_word_spelled_out_with_punctuation_is_weak():
    assert WEAK in " ".join(secret_problems("D-E-V"))
    assert WEAK in " ".join(secret_problems("d.e.v." * 6))  # repeated, 36 characters


@pytest.mark.asvs("V11.2.3")
def test_a_uuid_is_refused_with_the_reason():
    found = secret_problems("0f8fad5b-d9cb-469f-a165-70867728950e")
    assert "AUTHSVC_SECRET_KEY is a UUID, which holds at most 122 random bits; production needs at least 128. " \
           "Generate one with `authsvc gen-secret`." in found


@pytest.mark.parametrize("char", ["\ud800", "\udfff"])
def test_the_first_and_last_surrogates_are_invalid_key_characters(char):
    assert any("not valid UTF-8" in p for p in secret_problems(secretkeys.generate_secret() + char))


def test_key_file_messages_quote_odd_paths_safely(tmp_path):
    odd = tmp_path / "new\nline"
    [message] = key_file_problems(str(odd))
    assert "\n" not in message and repr(str(odd)) in message


@pytest.mark.asvs("V13.3.2")
def test_key_file_messages_say_what_to_do(tmp_path, monkeypatch):
    missing = tmp_path / "nope"
    assert key_file_problems(str(missing)) == [
        f"AUTHSVC_SECRET_KEY_FILE points to {missing}, which does not exist. Write a key there "
        "(`authsvc gen-secret`), then chmod 600 it."]
    assert key_file_problems(str(tmp_path)) == [
        f"AUTHSVC_SECRET_KEY_FILE points to {tmp_path}, which is not a regular file. Point it at a file that "
        "holds only the key."]
    plain = tmp_path / "plain"
    plain.write_text("x")
    assert key_file_problems(str(plain / "key")) == [
        f"AUTHSVC_SECRET_KEY_FILE points to {plain / 'key'}, which cannot be inspected (Not a directory). "
        "Let the service user reach it."]
    key = tmp_path / "key"
    key.write_text(secretkeys.generate_secret())
    key.chmod(0o600)

    def refuse(*_args, **_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(secretkeys, "open", refuse, raising=False)  # root can read anything
    assert key_file_problems(str(key)) == [
        f"AUTHSVC_SECRET_KEY_FILE file {key} cannot be read by this process (Permission denied). "
        "Make the service user its owner, mode 600."]


def test_read_key_file_errors_carry_errno_and_path(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as not_regular:
        read_key_file(str(fifo))
    assert (not_regular.value.errno, not_regular.value.filename) == (errno.EINVAL, str(fifo))
    huge = tmp_path / "huge"
    huge.write_bytes(b"k" * (secretkeys.MAX_KEY_FILE_BYTES + 1))
    with pytest.raises(OSError) as too_big:
        read_key_file(str(huge))
    assert (too_big.value.errno, too_big.value.filename) == (errno.EFBIG, str(huge))


def test_read_key_file_takes_a_file_of_exactly_the_maximum_size(tmp_path):
    exact = tmp_path / "exact"
    exact.write_bytes(b"k" * secretkeys.MAX_KEY_FILE_BYTES)
    assert len(read_key_file(str(exact))) == secretkeys.MAX_KEY_FILE_BYTES


def test_read_key_file_strips_only_spaces_tabs_and_line_ends(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"abcX\x0c\n")
    assert read_key_file(str(path)) == "abcX\x0c"
    path.write_bytes(b"abcX \t\r\n")
    assert read_key_file(str(path)) == "abcX"


@pytest.mark.asvs("V11.2.3")
def test_filler_of_exactly_128_bits_after_an_example_word_is_random_enough():
    key = "dev3aj4ase8scx9uewvwuhjh8cxnn3gg4v9"
    assert secretkeys._estimated_bits(key[3:]) == 128.0
    assert secret_problems(key) == []


@pytest.mark.asvs("V11.2.3")
def test_a_third_of_neighbouring_steps_is_not_mostly_a_sequence():
    key = "GHT7X4ehijBkMYgtnghinFGHBCHICDfVCDEC678Z"  # 16 of 39 steps go to a neighbour
    assert secret_problems(key) == []


def test_a_huge_key_file_is_never_read_whole(tmp_path, monkeypatch):
    """The 64 KiB limit bounds the read itself, not only the check after it."""
    sizes = []
    real_fdopen = os.fdopen

    class Recording:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def fileno(self):
            return self.handle.fileno()

        def read(self, size=-1):
            sizes.append(size)
            return self.handle.read(size)

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Recording(real_fdopen(fd, mode)))
    huge = tmp_path / "huge"
    huge.write_bytes(b"k" * (secretkeys.MAX_KEY_FILE_BYTES * 2))
    with pytest.raises(OSError):
        read_key_file(str(huge))
    assert sizes == [secretkeys.MAX_KEY_FILE_BYTES + 1]


def test_the_first_listed_app_names_the_destination_when_two_share_origin_and_prefix():
    rules = build_rules("https://auth.example.com", [AllowedApp("https://app.example.com", "/w", "One"),
                                                     AllowedApp("https://app.example.com", "/w", "Two")])
    assert validate_next("https://app.example.com/w/x", rules).app.name == "One"


# --- second factors (issue 17): passkey rules and stored methods --------------------------------

def test_a_stored_methods_list_of_exactly_the_cap_is_still_read():
    from authsvc.rules.auth_methods import MAX_STORED, parse_methods

    at_cap = ("pwd," * MAX_STORED)[:MAX_STORED]
    assert len(at_cap) == MAX_STORED and parse_methods(at_cap) == ("pwd",)
    assert parse_methods(at_cap + "x") == ()


def test_a_passkey_name_of_exactly_the_raw_cap_is_judged_not_cut_off():
    from authsvc.rules.passkeys import MAX_RAW_NAME_LENGTH, passkey_name

    padded = "Laptop" + " " * (MAX_RAW_NAME_LENGTH - len("Laptop"))
    assert passkey_name(padded).name == "Laptop"
    assert passkey_name(padded + " ").reason == "too_long"


def test_a_relying_party_id_of_253_characters_is_a_domain_and_254_is_not():
    from authsvc.rules.passkeys import rp_id_problem

    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == 253 and rp_id_problem(longest) is None
    one_more = ".".join(["a" * 63] * 3 + ["b" * 62])   # every label still a valid one
    assert len(one_more) == 254 and rp_id_problem(one_more) == "not_a_domain"


@pytest.mark.parametrize("host", ["auth.example.1", "a.b.123", "auth.example.0x7f", "example.3627734734"])
def test_a_host_ending_in_a_number_is_an_ip_address_whatever_the_labels_before(host):
    """Only the last label decides (browsers parse such a host as IPv4), not the first dot."""
    from authsvc.rules.passkeys import relying_party, rp_id_problem

    assert rp_id_problem(host) == "ip_address"
    assert relying_party("https://auth.example.test", rp_id=host).reason == "ip_address"
    assert relying_party(f"https://{host}").party is None   # (the origin parser refuses such hosts first)


# --- access rules (authsvc.rules.access) ---------------------------------------------------------
# Rules are built inside each test: mutmut's trampoline is off while a test module is imported, so
# an AccessRules built at module level never runs a mutated __post_init__.

APP, ADMIN = "app.example.com", "admin.example.com"
ONE, TWO = ("pwd",), ("pwd", "otp", "mfa")


def test_a_wildcard_rule_matches_subdomains_only_when_built_at_run_time():
    rules = AccessRules("one_factor", (Rule(("*.internal.example.com",), "deny"),))
    for host in ("a.internal.example.com", "A.b.Internal.example.com."):
        assert access.decide(rules, host, "/", "GET", "bob", (), ONE) == Decision("deny", 0, "rule"), host
    for host in ("internal.example.com", "evil-internal.example.com", "internal.example.com.evil.com"):
        assert access.decide(rules, host, "/", "GET", "bob", (), ONE) == Decision("allow", None, "default"), host


def test_a_path_rule_matches_its_path_and_below_and_a_root_rule_every_path():
    rules = AccessRules("one_factor", (Rule((APP,), "deny", paths=("/admin",)), Rule((ADMIN,), "deny", paths=("/",)),
                                       Rule(("dots.example.com",), "deny", paths=("/a/...",))))

    def on(host, path):
        return access.decide(rules, host, path, "GET", "bob", (), ONE)
    assert on(APP, "/admin") == on(APP, "/admin/x") == Decision("deny", 0, "rule")
    assert on(APP, "/Administrator") == Decision("allow", None, "default")   # not /admin read case-blind
    assert on(APP, "/ADMIN") == Decision("deny", None, "ambiguous_path")
    assert on(ADMIN, "/") == on(ADMIN, "/x") == Decision("deny", 1, "rule")
    # Windows reads "/a/..." as the folder "/a/": what lies under it reaches the rule only so read.
    assert on("dots.example.com", "/a/x") == Decision("deny", None, "ambiguous_path")


def test_a_hosts_plan_is_remembered_and_the_memory_is_bounded():
    rules = AccessRules("one_factor", (Rule((APP,), "deny"),))
    assert rules.plan(APP) is rules.plan(APP)
    for i in range(access.PLAN_CACHE + 10):
        rules.plan(f"h{i}.example.com")
    rules.plan(None)
    assert len(rules._plans) == access.PLAN_CACHE


@pytest.mark.parametrize(("default", "mfa", "one_factor"), [("deny", "deny", "deny"), ("two_factor", "allow", "step_up"),
                                                            ("one_factor", "allow", "allow")])
def test_without_rules_the_default_still_decides(default, mfa, one_factor):
    rules = AccessRules(default)
    assert access.decide(rules, APP, "/", "GET", "bob", (), TWO) == Decision(mfa, None, "no_rules")
    assert access.decide(rules, APP, "/", "GET", "bob", (), ONE) == Decision(one_factor, None, "no_rules")


def test_no_path_on_a_host_with_path_rules_is_ambiguous_and_a_nonsense_method_says_bad_method():
    rules = AccessRules("one_factor", (Rule((APP,), "deny", paths=("/a",)), Rule((ADMIN,), "deny", methods=frozenset({"POST"}))))
    assert access.decide(rules, APP, None, "GET", "bob", (), ONE) == Decision("deny", None, "ambiguous_path")
    assert access.decide(rules, ADMIN, "/", "post", "bob", (), ONE) == Decision("deny", None, "bad_method")


def test_a_method_rule_that_does_not_match_falls_through_to_the_next_rule_and_get_covers_head():
    rules = AccessRules("one_factor", (Rule((APP,), "bypass", methods=frozenset({"GET"})), Rule((APP,), "deny")))
    assert access.decide(rules, APP, "/", "POST", "bob", (), ONE) == Decision("deny", 1, "rule")
    assert access.decide(rules, APP, "/", "HEAD", None) == Decision("bypass", 0, "rule")
    assert access.method_matches(frozenset({"GET"}), "HEAD") and access.method_matches(frozenset({"HEAD"}), "HEAD")
    assert not access.method_matches(frozenset({"GET"}), "POST")
    assert not access.method_matches(frozenset({"POST"}), "HEAD")


def test_an_anonymous_request_sent_to_sign_in_by_a_rule_names_that_rule():
    rules = AccessRules("deny", (Rule((ADMIN,), "deny"), Rule((APP,), "one_factor")))
    assert access.decide(rules, APP, "/", "GET", None) == Decision("login", 1, "rule")


def test_an_escaped_capital_x_is_decoded_like_any_letter():
    assert access.normalize_path("/%58") == "/X" and access.normalize_path("/%78") == "/x"


def test_only_the_first_question_mark_starts_the_query():
    assert access.normalize_path("/x?y?/admin") == "/x"


def test_a_path_of_exactly_max_path_characters_is_read_and_one_more_is_ambiguous():
    longest = "/" + "a" * (access.MAX_PATH - 1)
    assert access.normalize_path(longest) == longest and access.normalize_path(longest + "a") is None


def test_a_host_of_253_characters_with_a_trailing_dot_and_a_port_is_read_and_254_is_not():
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(longest) == 253 and len(longest + ".:65535") == access.MAX_HOST + 7
    assert access.normalize_host(longest + ".:65535") == longest
    assert access.normalize_host(longest[:-4] + ":443") == longest[:-4]
    one_more = longest + "b"
    assert access.normalize_host(one_more) is None and access.normalize_host(one_more + ":1") is None


@pytest.mark.parametrize(("raw", "problem"), [
    ("app.example.com", None), ("*.example.com", None),
    (".".join(["a" * 63] * 3 + ["b" * 61]), None),
    (".".join(["a" * 63] * 3 + ["b" * 62]), 'must be a host name like "app.example.com", or "*.example.com" for its subdomains'),
    ("localhost", 'must be a host name like "app.example.com", or "*.example.com" for its subdomains'),
    (7, "must be a string"),
    ("аdmin.example.com", "is not ASCII: write an internationalized name in its xn-- (punycode) form"),
    ("admin.example.com:443", "names a port: write the host alone (rules match every port)"),
    ("Admin.example.com", 'is not in normal form: write "admin.example.com"'),
    ("admin.example.com.", 'is not in normal form: write "admin.example.com"'),
    ("Admin.Example.COM.", 'is not in normal form: write "admin.example.com"'),
])
def test_rule_host_problems_word_for_word(raw, problem):
    assert access.rule_host_problem(raw) == problem


@pytest.mark.parametrize(("raw", "problem"), [
    ("/admin", None), ("/", None), ("/a/b", None),
    (3, "must be a string"),
    ("/admin?x", "has a query or fragment, which never take part: write the path alone"),
    ("/admin#x", "has a query or fragment, which never take part: write the path alone"),
    ("/admin;x", 'must be a plain path starting with "/" (no encoded slash, backslash, ";" or dot segment)'),
    ("/admin/", 'is not in normal form: write "/admin" (prefixes already match on segment boundaries)'),
    ("/ADMINX/", 'is not in normal form: write "/ADMINX" (prefixes already match on segment boundaries)'),
    ("/a/../b", 'is not in normal form: write "/b" (prefixes already match on segment boundaries)'),
    ("//", 'is not in normal form: write "/" (prefixes already match on segment boundaries)'),
])
def test_rule_path_problems_word_for_word(raw, problem):
    assert access.rule_path_problem(raw) == problem


@pytest.mark.parametrize(("raw", "problem"), [("GET", None), ("PROPFIND", None), ("get", "bad"), ("", "bad"),
                                              ("G T", "bad"), (7, "bad")])
def test_method_problem(raw, problem):
    expected = 'must be an upper-case HTTP method like "GET" or "POST"' if problem else None
    assert access.method_problem(raw) == expected


def test_wide_bypass_messages():
    assert access.wide_bypass(Rule(("*.example.com",), "bypass", paths=("/x",))) == "bypasses every subdomain of a domain"
    for paths in ((), ("/",), ("/x", "/")):
        assert access.wide_bypass(Rule((APP,), "bypass", paths=paths)) == "bypasses a whole host (give it paths)"


def test_host_matches():
    assert access.host_matches("*.example.com", "a.example.com")
    assert not access.host_matches("*.example.com", "example.com")
    assert access.host_matches(APP, APP) and not access.host_matches(APP, ADMIN)


@pytest.mark.parametrize(("rules", "index", "shadow"), [
    # an earlier rule that does not cover is passed over, and a later one that does is found
    ((Rule((ADMIN,), "deny"), Rule((APP,), "deny"), Rule((APP,), "deny", paths=("/x",))), 2, 1),
    ((Rule((APP,), "deny", paths=("/a",)), Rule((APP,), "deny"), Rule((APP,), "deny", paths=("/b",))), 2, 1),
    ((Rule((APP,), "deny", methods=frozenset({"POST"})), Rule((APP,), "deny"),
      Rule((APP,), "deny", methods=frozenset({"GET"}))), 2, 1),
    ((Rule((APP,), "deny", users=frozenset({"x"})), Rule((APP,), "deny"), Rule((APP,), "deny", users=frozenset({"y"}))), 2, 1),
    # methods: the same set or a subset is shadowed, another is not
    ((Rule((APP,), "deny", methods=frozenset({"GET"})), Rule((APP,), "deny", methods=frozenset({"GET"}))), 1, 0),
    ((Rule((APP,), "deny", methods=frozenset({"GET", "POST"})), Rule((APP,), "deny", methods=frozenset({"GET"}))), 1, 0),
    ((Rule((APP,), "deny", methods=frozenset({"GET"})), Rule((APP,), "deny", methods=frozenset({"POST"}))), 1, None),
    # people: the same users or groups are shadowed, a group more is not
    ((Rule((APP,), "deny", users=frozenset({"x"})), Rule((APP,), "deny", users=frozenset({"x"}))), 1, 0),
    ((Rule((APP,), "deny", groups=frozenset({"g"})), Rule((APP,), "deny", groups=frozenset({"g"}))), 1, 0),
    ((Rule((APP,), "deny", users=frozenset({"x"})), Rule((APP,), "deny", users=frozenset({"x"}), groups=frozenset({"g"}))),
     1, None),
    # hosts: a wider wildcard covers a narrower one; another domain, a mere suffix or the bare domain do not
    ((Rule(("*.example.com",), "deny"), Rule(("*.a.example.com",), "deny")), 1, 0),
    ((Rule(("*.example.org",), "deny"), Rule(("*.example.com",), "deny")), 1, None),
    ((Rule(("*.ample.com",), "deny"), Rule(("*.example.com",), "deny")), 1, None),
    ((Rule(("example.com",), "deny"), Rule(("*.example.com",), "deny")), 1, None),
    ((Rule(("*.example.com",), "deny"), Rule(("example.com",), "deny")), 1, None),
])
def test_shadowed_by_edges(rules, index, shadow):
    assert access.shadowed_by(AccessRules("one_factor", rules), index) == shadow


# --- cross-site requests (authsvc.rules.sameorigin) -----------------------------------------------

@pytest.mark.parametrize("space", ["\n", "\r", "\x0b", "\x0c", "\xa0", "\u2028"])
@pytest.mark.parametrize("site", [None, "same-origin"])
def test_an_origin_padded_with_anything_but_spaces_and_tabs_is_foreign(space, site):
    from authsvc.rules.sameorigin import check

    own = "https://auth.example.test"
    assert check("POST", own + space, site, own).reason == "foreign_origin"
    assert check("POST", space + own + " \t", site, own).reason == "foreign_origin"
    assert check("POST", " \t" + own + " \t", site, own).allowed


# --- client identity for limits and session binding (authsvc.rules.clientip) ----------------------

@pytest.mark.parametrize(("remote_addr", "group", "key"), [
    (None, None, "unknown"), ("", None, "unknown"),
    ("not-an-address", None, "invalid"), ("192.0.2.1/32", None, "invalid"), ("%eth0", None, "invalid"),
    ("192.0.2.1", "192.0.2.1", "v4:192.0.2.1"), (" 192.0.2.1\t", "192.0.2.1", "v4:192.0.2.1"),
    ("::ffff:192.0.2.1", "192.0.2.1", "v4:192.0.2.1"),                    # a dual-stack socket's IPv4
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", "v6:2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64", "v6:2001:db8:1:2::/64"),  # one /64, one bucket
    ("2001:db8:1:3::1", "2001:db8:1:3::/64", "v6:2001:db8:1:3::/64"),      # the next /64 is another client
    ("fe80::1%eth0", "fe80::/64", "v6:fe80::/64"), ("fe80::1%eth0%x", "fe80::/64", "v6:fe80::/64"),
    ("192.0.2.1%a%b", "192.0.2.1", "v4:192.0.2.1"),                        # a zone id goes, whatever it holds
    ("::1", "::/64", "v6:::/64"),
])
def test_a_client_is_its_ipv4_address_or_its_ipv6_64(remote_addr, group, key):
    from authsvc.rules.clientip import client_group, client_key

    client_group.cache_clear()   # a warm cache would answer without asking the function
    assert client_group(remote_addr) == group
    assert client_key(remote_addr) == key


# --- which request the proxy asks about (authsvc.rules.forward_auth) ------------------------------

FA_NOTES = "https://app.example.test/notes"


@pytest.mark.parametrize(("url", "headers", "overridden"), [
    (f"{FA_NOTES}?_method=DELETE", {}, True),
    (f"{FA_NOTES}?a=1&_METHOD=put", {}, True),
    (f"{FA_NOTES}?_method", {}, True), (f"{FA_NOTES}?_method=", {}, True),       # blank still counts
    (f"{FA_NOTES}?%5F%6Dethod=PUT", {}, True),                                  # escaped: no "method" in sight
    (f"{FA_NOTES}?.method=PUT", {}, True), (f"{FA_NOTES}?_method[x]=PUT", {}, True),
    (f"{FA_NOTES}?_method%00junk=PUT", {}, True),
    (f"{FA_NOTES}?_method=PUT?x=1", {}, True),                                  # only the first "?" starts the query
    (f"{FA_NOTES}?methods=1&a=%20", {}, False), (f"{FA_NOTES}?a=_method", {}, False), (f"{FA_NOTES}", {}, False),
    (f"{FA_NOTES}/_method", {}, False),
    (FA_NOTES, {"X-HTTP-Method-Override": ""}, True), (FA_NOTES, {"X-HTTP-Method": "PUT"}, True),
    (FA_NOTES, {"X-Method-Override": "PUT"}, True),
])
def test_method_overridden(url, headers, overridden):
    from authsvc.rules.forward_auth import method_overridden

    assert method_overridden(headers, url) is overridden


@pytest.mark.parametrize(("name", "php"), [
    ("_method", "_method"), ("  _method", "_method"), ("_method[x]", "_method"), ("_method[", "_method"),
    ("_method\x00junk", "_method"), (".method", "_method"), (" method", "method"), ("a b.c", "a_b_c"),
    ("a[b.c]", "a"), ("x _method", "x__method"), ("_method[a][b]", "_method"),
    ("\t_method", "\t_method"), ("X_method", "X_method"),                      # only spaces are dropped
])
def test_php_name(name, php):
    from authsvc.rules.forward_auth import php_name

    assert php_name(name) == php


def test_a_method_override_in_any_description_makes_the_method_nonsense():
    from authsvc.rules.forward_auth import original_request

    traefik = {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes?_method=DELETE"}
    assert original_request(traefik, "https", 1) == \
        original_request({**traefik, "X-Forwarded-Uri": "/notes"}, "https", 1).__class__(
            "https://app.example.test/notes?_method=DELETE", "")
    # a malformed X-Original-URL gives no URL, but its query still says what the app may do
    assert original_request({"X-Original-URL": f"{FA_NOTES} x?_method=PUT"}, "https", 1).method == ""
    assert original_request({"X-Original-URL": f"{FA_NOTES}", "X-HTTP-Method-Override": "PUT"}, "https", 1).method == ""
    assert original_request({}, "https", 1).method == "GET"


def test_plain_http_forwarded_headers_give_an_http_url():
    from authsvc.rules.forward_auth import original_request

    headers = {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a"}
    assert original_request(headers, "http", 1).url == "http://app.example.test/notes/a"


@pytest.mark.parametrize(("value", "ok"), [
    (f"{FA_NOTES}/a?b", True), ("http://app.example.test:8443/", True), ("https://[::1]:8443/x", True),
    ("https://app.example.test@evil.example/notes", False), ("https://app_x.example.test/notes", False),
    ("https://app.example.test?/notes", False), ("https://app.example.test#/notes", False),
    ("https://app.example.test", False), ("https:///notes", False),
])
def test_well_formed_original_url(value, ok):
    from authsvc.rules.forward_auth import well_formed_original_url

    assert well_formed_original_url(value) is ok


def test_request_parts_and_the_step_up_location():
    from authsvc.rules.forward_auth import LoginRedirect, OriginalRequest, request_parts, step_up_location
    from authsvc.rules.redirects import AllowedApp, build_rules

    assert request_parts(OriginalRequest(None, "GET")) == (None, None)
    assert request_parts(OriginalRequest("https://app.example.test:8443/a?b=c#d", "GET")) == \
        ("app.example.test:8443", "/a?b=c#d")
    login = "https://auth.example.test/login"
    redirect = LoginRedirect(login, build_rules("https://auth.example.test", [AllowedApp("https://app.example.test")]), 1)
    location, decision = step_up_location(redirect, OriginalRequest("https://app.example.test/a", "GET"))
    assert location == f"{login}?next=https://app.example.test/a&step_up=1" and decision.accepted
    location, decision = step_up_location(redirect, OriginalRequest("https://evil.example/a", "GET"))
    assert location == f"{login}?step_up=1" and decision.reason == "host_not_allowed"
    assert step_up_location(redirect, OriginalRequest(None, "GET")) == (f"{login}?step_up=1", None)


# --- trusted proxies (authsvc.rules.proxy_networks) ------------------------------------------------

def test_empty_items_between_networks_are_skipped_and_an_empty_list_says_what_to_write():
    from authsvc.rules.proxy_networks import parse_networks

    assert [str(n) for n in parse_networks(" , 10.0.0.0/24,,fd00::/64,")] == ["10.0.0.0/24", "fd00::/64"]
    with pytest.raises(ValueError) as refused:
        parse_networks(" , ")
    assert str(refused.value) == ("lists no network; write the proxies' networks (default 127.0.0.0/8,::1/128), "
                                  "or set AUTHSVC_TRUSTED_PROXIES=0 to believe no forwarding header")


@pytest.mark.parametrize(("peer", "trusted"), [
    ("127.0.0.1%lo", True), ("127.0.0.1%a%b", True), ("::1%lo", True),
    (2130706433, False), (b"127.0.0.1", False), (("127.0.0.1",), False),
])
def test_a_zone_id_is_ignored_and_a_peer_that_is_no_string_is_not_trusted(peer, trusted):
    from authsvc.rules.proxy_networks import DEFAULT_NETWORKS, is_trusted_proxy, parse_networks

    assert is_trusted_proxy(peer, parse_networks(DEFAULT_NETWORKS)) is trusted


@pytest.mark.parametrize(("network", "refused"), [
    ("0.0.0.0/0", True), ("10.0.0.0/7", True), ("10.0.0.0/8", False), ("127.0.0.0/8", False),
    ("::/0", True), ("fd00::/31", True), ("fd00::/32", False), ("::1/128", False),
])
def test_far_too_wide_is_wider_than_a_8_or_a_32(network, refused):
    import ipaddress

    from authsvc.rules.proxy_networks import far_too_wide

    assert far_too_wide(ipaddress.ip_network(network)) is refused


# --- usernames and group names (authsvc.rules.usernames, authsvc.rules.groups) --------------------

@pytest.mark.parametrize(("raw", "problem"), [
    ("alice", None), (" Alice ", None), ("a" * 32, None),
    ("a" * 33, "Username is longer than 32 characters."), ("", "Username is empty."), ("  ", "Username is empty."),
    ("al ice", "Username may contain only letters a-z, digits and . _ @ + -"),
    ("a" + "\u0301" * 31, "Username has more than 30 combining marks in a row."),
])
def test_username_problems_word_for_word(raw, problem):
    from authsvc.rules.usernames import username_problem

    assert username_problem(raw, 32) == problem


@pytest.mark.parametrize(("raw", "problem"), [
    ("a" * 64, None), ("a" * 65, "Group name is longer than 64 characters."), ("", "Group name is empty."),
    (" \t", "Group name is empty."),
    ("-ops", "Group name may contain only letters a-z, digits and . _ - (starting with a letter or digit)"),
    ("a" + "\u0301" * 31, "Group name has more than 30 combining marks in a row."),
])
def test_group_problems_word_for_word(raw, problem):
    from authsvc.rules.groups import group_problem

    assert group_problem(raw) == problem


# --- the stream-safe bound with a cold cache (authsvc.rules.streamsafe) ---------------------------
# _SHAPES remembers every character a process has seen, so in a warm process _shape is never asked.

ACUTE_MARK = "\u0301"


def test_shapes_of_one_code_point_and_the_cache_that_remembers_them(monkeypatch):
    from authsvc.rules import streamsafe

    monkeypatch.setattr(streamsafe, "_SHAPES", {})
    assert streamsafe._shape("a") is streamsafe._STARTER
    assert streamsafe._shape("\u00e9") == (0, 1, False, 1)          # e + acute
    assert streamsafe._shape(ACUTE_MARK) == (1, 1, True, 1)
    assert streamsafe._shape("\u0f73") == (2, 2, True, 2)            # two marks, no base
    assert streamsafe._shape("\u1e69") == (0, 2, False, 2)           # s + dot below + dot above
    assert streamsafe._shape("\u3300") == (0, 0, False, 1)           # a mark inside
    assert streamsafe._SHAPES["\u00e9"] == (0, 1, False, 1) and streamsafe._SHAPES["a"] is streamsafe._STARTER


def test_the_shape_cache_stops_growing_at_its_bound(monkeypatch):
    from authsvc.rules import streamsafe

    full = dict.fromkeys(map(chr, range(0x10000, 0x10000 + streamsafe._MAX_REMEMBERED)), streamsafe._STARTER)
    monkeypatch.setattr(streamsafe, "_SHAPES", full)
    streamsafe._shape("\u00e9")
    assert len(full) == streamsafe._MAX_REMEMBERED and "\u00e9" not in full


@pytest.mark.parametrize(("text", "run"), [
    ("a" + ACUTE_MARK * 5 + "\u00e9\u00e9", 5), ("\u00e9" + ACUTE_MARK * 30, 31), ("\u1e69" * 3, 2),
    ("x" + ACUTE_MARK * 30 + "y", 30), ("\u0f73" * 16, 32), ("\u3300\u3300", 1), ("plain", 0),
])
def test_runs_are_counted_with_a_cold_cache(monkeypatch, text, run):
    from authsvc.rules import streamsafe

    monkeypatch.setattr(streamsafe, "_SHAPES", {})
    assert streamsafe.is_stream_safe(text) == (run <= streamsafe.MAX_NON_STARTERS)
    monkeypatch.setattr(streamsafe, "_SHAPES", {})
    assert streamsafe.longest_non_starter_run(text) == run


def test_stop_above_stops_the_scan_as_soon_as_a_run_passes_it():
    from authsvc.rules.streamsafe import longest_non_starter_run

    text = "a" + ACUTE_MARK * 10 + "b" + ACUTE_MARK * 20
    assert longest_non_starter_run(text) == 20
    assert longest_non_starter_run(text, stop_above=5) == 6
