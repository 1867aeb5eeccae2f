"""read_identity: the identity headers as authsvc writes them, and every way they can be forged or
damaged. Anything not exactly authsvc's form is Malformed (a 401), never a guess and never an error."""

from __future__ import annotations

import time

import pytest
from flask_authsvc.identity import (
    ANONYMOUS,
    BAD_GROUPS,
    BAD_METHODS,
    BAD_USER,
    BAD_USER_ID,
    CONTROL_CHARACTER,
    MAX_HEADER_LENGTH,
    MISSING_USER,
    MISSING_USER_ID,
    NOT_ASCII,
    REPEATED,
    TOO_LONG,
    Identity,
    Malformed,
    headers_from_environ,
    read_identity,
)


def read(**values: str | list[str]):
    names = {"user": "X-Auth-User", "user_id": "X-Auth-User-Id", "groups": "X-Auth-Groups",
             "methods": "X-Auth-Methods"}
    return read_identity({names[k]: v if isinstance(v, list) else [v] for k, v in values.items()})


def refused(verdict, reason: str, header: str | None = None) -> bool:
    return isinstance(verdict, Malformed) and verdict.reason == reason and (header is None or verdict.header == header)


# --- what authsvc sends ---------------------------------------------------------------------------

def test_authsvc_answer_is_read():
    assert read(user="alice", user_id="7", methods="pwd,otp,mfa", groups="admins,staff") == Identity(
        "alice", "7", ("admins", "staff"), ("pwd", "otp", "mfa"))


def test_every_character_of_authsvc_usernames_is_accepted():
    assert read(user="a.b_c@d+e-0.9", user_id="1") == Identity("a.b_c@d+e-0.9", "1")


def test_mfa_is_what_authsvc_said_never_derived_here():
    assert read(user="a", user_id="1", methods="pwd,otp,mfa").mfa
    assert not read(user="a", user_id="1", methods="pwd,otp").mfa   # authsvc derives mfa; so do we not
    assert not read(user="a", user_id="1").mfa


def test_no_identity_headers_is_anonymous():
    assert read_identity({}) is ANONYMOUS
    assert read_identity({"Cookie": ["x=1"], "X-Auth-Userx": ["alice"]}) is ANONYMOUS


def test_blanked_headers_are_anonymous():
    """Traefik and Caddy blank a header they cannot remove: empty is absent."""
    assert read(user="", user_id="", methods="", groups="") is ANONYMOUS
    assert read(user=["", ""]) is ANONYMOUS


def test_header_names_are_matched_without_case():
    assert read_identity({"x-auth-user": ["alice"], "X-AUTH-USER-ID": ["1"]}) == Identity("alice", "1")


# --- half an identity ----------------------------------------------------------------------------

def test_user_without_id_is_refused():
    assert refused(read(user="alice"), MISSING_USER_ID, "X-Auth-User-Id")
    assert refused(read(user="alice", user_id=""), MISSING_USER_ID)


def test_id_or_methods_without_user_is_refused():
    assert refused(read(user_id="1"), MISSING_USER, "X-Auth-User")
    assert refused(read(user="", user_id="1"), MISSING_USER)
    assert refused(read(methods="pwd,otp,mfa"), MISSING_USER)
    assert refused(read(groups="admins"), MISSING_USER)


# --- repeated headers (an appending proxy, or a client whose copy got through) ---------------------

@pytest.mark.parametrize("joined", ["alice,mallory", "alice, mallory", "alice ,mallory", "alice,", ",alice", "alice,alice"])
def test_repeated_user_joined_by_the_wsgi_server_is_refused(joined):
    assert refused(read(user=joined, user_id="1"), BAD_USER, "X-Auth-User")


@pytest.mark.parametrize("joined", ["1,2", "1, 2", "1,1", "1,"])
def test_repeated_user_id_is_refused(joined):
    assert refused(read(user="alice", user_id=joined), BAD_USER_ID)


def test_repeated_header_given_as_two_values_is_refused():
    assert refused(read(user=["alice", "mallory"], user_id="1"), REPEATED, "X-Auth-User")
    assert refused(read(user="alice", user_id=["1", "1"]), REPEATED, "X-Auth-User-Id")
    assert refused(read(user="alice", user_id="1", groups=["a", "b"]), REPEATED, "X-Auth-Groups")


def test_same_header_under_two_spellings_is_refused():
    verdict = read_identity({"X-Auth-User": ["alice"], "x-auth-user": ["mallory"], "X-Auth-User-Id": ["1"]})
    assert refused(verdict, REPEATED, "X-Auth-User")


# --- control characters: header injection, log forging ---------------------------------------------

CONTROLS = ["\n", "\r", "\r\n", "\x00", "\t", "\x1b", "\x7f", "\x0b", "\x0c", "\x08"]


@pytest.mark.parametrize("ch", CONTROLS, ids=repr)
@pytest.mark.parametrize("header", ["user", "user_id", "groups", "methods"])
def test_control_character_in_any_header_is_refused(header, ch):
    values = {"user": "alice", "user_id": "1", "groups": "staff", "methods": "pwd"}
    values[header] = values[header][:1] + ch + values[header][1:]
    assert refused(read(**values), CONTROL_CHARACTER)


def test_forged_log_line_in_username_is_refused():
    assert refused(read(user="alice\n2026-12-07 INFO admin signed in", user_id="1"), CONTROL_CHARACTER)


# --- Unicode look-alikes and invisible characters ----------------------------------------------------

@pytest.mark.parametrize("name", [
    "\u0430lice",        # Cyrillic a
    "ａｌｉｃｅ",         # full-width
    "alice\u200b",       # zero-width space
    "\u202eecila",       # right-to-left override
    "al\u00adice",       # soft hyphen
    "alice\u00a0",       # no-break space
    "\u0131",            # dotless i (casefolds near "i")
    "\u212a",            # Kelvin sign (casefolds to "k")
    "ali\u0301ce",       # combining accent
    "alice\ufeff",       # byte-order mark
])
def test_unicode_look_alike_usernames_are_refused(name):
    assert refused(read(user=name, user_id="1"), NOT_ASCII, "X-Auth-User")


@pytest.mark.parametrize("user_id", ["\u0661\u0662", "\uff11", "\u00b2", "1\u200b"])
def test_non_ascii_digits_in_user_id_are_refused(user_id):
    assert refused(read(user="alice", user_id=user_id), NOT_ASCII)


def test_unicode_group_look_alike_is_refused():
    assert refused(read(user="a", user_id="1", groups="\u0430dmins"), NOT_ASCII, "X-Auth-Groups")


def test_latin1_mojibake_of_a_utf8_name_is_refused():
    """WSGI hands header bytes over as latin-1: UTF-8 'ä' arrives as two non-ASCII characters."""
    assert refused(read(user="ä".encode().decode("latin-1"), user_id="1"), NOT_ASCII)


# --- not authsvc's normal form ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Alice", "ALICE", " alice", "alice ", "ali ce", "alice;admin", "alice/..",
                                  "alice\\x", "alice\"", "<script>", "alice%0a", "*", "alice=1", "'", "(a)"])
def test_username_outside_authsvc_form_is_refused(name):
    assert refused(read(user=name, user_id="1"), BAD_USER, "X-Auth-User")


@pytest.mark.parametrize("user_id", ["-1", "+1", "1.0", "0x1f", "1e3", " 1", "1 ", "one", "1_000", "99999999999999999999999"])
def test_user_id_that_is_not_a_plain_number_is_refused(user_id):
    assert refused(read(user="alice", user_id=user_id), BAD_USER_ID, "X-Auth-User-Id")


def test_leading_zeros_in_user_id_are_kept_as_given():
    """The id is opaque text: '007' is not folded to '7' (two spellings never name one account here)."""
    assert read(user="a", user_id="007").user_id == "007"


# --- groups and methods: lists ------------------------------------------------------------------------

@pytest.mark.parametrize("raw, groups", [
    ("admins", ("admins",)),
    ("admins,staff", ("admins", "staff")),
    ("admins, staff", ("admins", "staff")),
    (" admins ,  staff ", ("admins", "staff")),  # a tab is a control character: refused
    ("admins,,staff,", ("admins", "staff")),
    (",", ()),
    ("admins,admins", ("admins",)),
    ("Team-A,team-a", ("Team-A", "team-a")),     # compared exactly: no case folding
    ("ns:ops", ("ns:ops",)),
])
def test_group_lists_are_read(raw, groups):
    assert read(user="a", user_id="1", groups=raw).groups == groups


@pytest.mark.parametrize("raw", ["admin staff", "admins;staff", "adm|ins", "a/b", "admins\u00a0", "a,b c", '"admins"'])
def test_group_with_a_foreign_separator_or_character_is_refused(raw):
    verdict = read(user="a", user_id="1", groups=raw)
    assert isinstance(verdict, Malformed) and verdict.header == "X-Auth-Groups"


def test_too_many_or_too_long_groups_are_refused():
    assert refused(read(user="a", user_id="1", groups=",".join(f"g{i}" for i in range(257))), BAD_GROUPS)
    assert refused(read(user="a", user_id="1", groups="g" * 129), BAD_GROUPS)
    assert len(read(user="a", user_id="1", groups=",".join(f"g{i}" for i in range(256))).groups) == 256


@pytest.mark.parametrize("raw", ["PWD", "pwd;mfa", "pwd mfa", "pwd,m-fa", "pwd,1", "p" * 17, ",".join(["pwd"] * 17)])
def test_malformed_methods_are_refused(raw):
    assert refused(read(user="a", user_id="1", methods=raw), BAD_METHODS, "X-Auth-Methods")


def test_methods_list_whitespace_and_repeats():
    assert read(user="a", user_id="1", methods=" pwd , otp,mfa,mfa ").methods == ("pwd", "otp", "mfa")


# --- huge values: bounded before any work ---------------------------------------------------------------

@pytest.mark.parametrize("header", ["user", "user_id", "groups", "methods"])
def test_header_over_the_bound_is_refused(header):
    values = {"user": "a", "user_id": "1"}
    values[header] = "a" * (MAX_HEADER_LENGTH + 1)
    assert refused(read(**values), TOO_LONG)


def test_long_username_under_the_header_bound_is_refused():
    assert refused(read(user="a" * 257, user_id="1"), TOO_LONG, "X-Auth-User")
    assert read(user="a" * 256, user_id="1").username == "a" * 256


def test_megabytes_of_header_are_refused_in_constant_time():
    huge = "a," * 5_000_000
    started = time.perf_counter()
    assert refused(read(user="a", user_id="1", groups=huge), TOO_LONG)
    assert time.perf_counter() - started < 0.05


# --- from a WSGI environ ---------------------------------------------------------------------------------

def test_environ_headers_are_found_and_others_ignored():
    environ = {"HTTP_X_AUTH_USER": "alice", "HTTP_X_AUTH_USER_ID": "1", "HTTP_COOKIE": "s=secret",
               "REMOTE_ADDR": "10.0.0.5"}
    assert headers_from_environ(environ) == {"X-Auth-User": ["alice"], "X-Auth-User-Id": ["1"]}


def test_non_string_environ_value_is_malformed_not_an_error():
    verdict = read_identity(headers_from_environ({"HTTP_X_AUTH_USER": b"alice", "HTTP_X_AUTH_USER_ID": "1"}))
    assert refused(verdict, CONTROL_CHARACTER, "X-Auth-User")
