"""What apps are told about how a session signed in: authsvc.rules.auth_methods (RFC 8176 values).

``mfa`` must never appear without the factors that earn it: it is derived from the others every
time, whether a list is being recorded or read back from the database; the one claim taken is a
passkey's (a key whose authenticator verified the user: authsvc.rules.passkeys). A stored list that was
tampered with or garbled reads as fewer methods, never as more, and never as anything that could
break the ``X-Auth-Methods`` header.
"""

from __future__ import annotations

import pytest

from authsvc.rules.auth_methods import (
    FACTOR,
    format_methods,
    is_multi_factor,
    parse_methods,
    session_methods,
)


@pytest.mark.asvs("V6.3.3")
@pytest.mark.parametrize("used, recorded", [
    (["pwd"], ("pwd",)),
    (["pwd", "otp"], ("pwd", "otp", "mfa")),
    (["pwd", "hwk"], ("pwd", "hwk", "mfa")),
    (["swk", "user", "mfa"], ("swk", "user", "mfa")),  # a user-verified passkey alone
    (["hwk", "user", "mfa"], ("hwk", "user", "mfa")),
    (["hwk", "user"], ("hwk", "user")),                # a passkey without user verification: presence only
    (["pwd", "hwk", "user"], ("pwd", "hwk", "user", "mfa")),  # a password and a passkey
    (["otp"], ("otp",)),
    (["otp", "hwk"], ("otp", "hwk")),                  # two things held: one factor
    (["pwd", "pin"], ("pwd", "pin")),                  # two things known: one factor
    (["pwd", "pwd", "otp", "otp"], ("pwd", "otp", "mfa")),
    ([], ()),
])
def test_a_session_records_each_method_once_and_mfa_only_for_two_factors(used, recorded):
    assert session_methods(used) == recorded


@pytest.mark.parametrize("used", [
    ["pwd", "mfa"],          # claimed, not earned: only a key's claim counts
    ["mfa"],
    ["otp", "mfa"],
    ["pwd", "user"],         # user presence is nobody's factor
    ["pwd", "geo"],
    ["pwd", "rba"],
])
def test_mfa_is_derived_never_taken(used):
    assert "mfa" not in session_methods(used)
    assert not is_multi_factor(used)


@pytest.mark.parametrize("stored, read", [
    ("pwd", ("pwd",)),
    ("pwd,otp,mfa", ("pwd", "otp", "mfa")),
    ("pwd,mfa", ("pwd",)),                                  # a forged mfa is dropped
    ("hwk,user,mfa", ("hwk", "user", "mfa")),               # a user-verified passkey's sign-in
    ("hwk,user", ("hwk", "user")),
    ("pwd,otp", ("pwd", "otp", "mfa")),                     # mfa derived again
    ("pwd, otp", ("pwd",)),                                 # " otp" is not a value
    ("PWD,OTP", ()),                                        # case matters: RFC 8176 values are lower-case
    ("pwd\r\nX-Auth-User: admin", ()),                      # header injection
    ("pwd,\x00otp", ("pwd",)),
    ("pwd,,otp,", ("pwd", "otp", "mfa")),
    ("", ()),
    ("pwd," * 100, ()),                                     # longer than any stored list
    (None, ()),
    (b"pwd", ()),
    (42, ()),
])
def test_a_stored_list_reads_back_as_known_values_only(stored, read):
    assert parse_methods(stored) == read


def test_every_value_and_the_header_form_are_plain_lower_case_tokens():
    assert all(value.isascii() and value.isalpha() and value.islower() for value in FACTOR)
    assert format_methods(("pwd", "otp", "mfa")) == "pwd,otp,mfa"
    assert parse_methods(format_methods(session_methods(["pwd", "otp"]))) == ("pwd", "otp", "mfa")
