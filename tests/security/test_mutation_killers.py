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

from authsvc.rules import secretkeys
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
