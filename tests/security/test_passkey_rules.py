"""Threat list for authsvc.rules.passkeys: the relying party, the signature counter, passkey names
and the RFC 8176 methods of a passkey sign-in.

A wrong relying-party id either breaks every passkey (too narrow) or lets sibling sites use them
(too wide: a public suffix, another site); a counter accepted when it does not grow lets a cloned
authenticator or a replayed assertion through; a name is shown on the account page, so it must not
reorder or hide the text around it. Each hostile input comes back refused with a stable reason.
"""

from __future__ import annotations

import unicodedata

import pytest

from authsvc.rules.passkeys import (
    BIDI_CONTROLS,
    MAX_NAME_LENGTH,
    MAX_RAW_NAME_LENGTH,
    MAX_SIGN_COUNT,
    NameDecision,
    RelyingParty,
    RelyingPartyDecision,
    passkey_methods,
    passkey_name,
    relying_party,
    rp_id_problem,
    sign_count_verdict,
)

SUFFIXES = frozenset({"co.uk", "github.io"})


def P(*values, id: str):
    return pytest.param(*values, id=id)


# --- the relying party --------------------------------------------------------------------------------

GOOD_PARTIES = [
    P("https://auth.example.com", None, None, "auth.example.com", "https://auth.example.com", id="public host"),
    P("https://Auth.Example.com:443/", None, None, "auth.example.com", "https://auth.example.com",
      id="origin canonicalised first"),
    P("https://auth.example.com:8443", None, None, "auth.example.com", "https://auth.example.com:8443",
      id="port stays in the origin, never in the id"),
    P("https://auth.example.com", ".example.com", None, "example.com", "https://auth.example.com",
      id="sso: the cookie domain"),
    P("https://auth.example.com", "example.com", None, "example.com", "https://auth.example.com",
      id="sso: cookie domain without dot"),
    P("https://auth.example.com", None, "example.com", "example.com", "https://auth.example.com",
      id="explicit parent"),
    P("https://auth.example.com", ".example.com", "auth.example.com", "auth.example.com", "https://auth.example.com",
      id="explicit host wins over the cookie domain"),
    P("https://login.eu.corp.example.co.uk", None, "corp.example.co.uk", "corp.example.co.uk",
      "https://login.eu.corp.example.co.uk", id="explicit grandparent under a multi-label suffix"),
    P("http://localhost:8000", None, None, "localhost", "http://localhost:8000", id="development on localhost"),
    P("http://auth.localhost:8000", None, None, "auth.localhost", "http://auth.localhost:8000",
      id="development on a localhost subdomain"),
    P("https://xn--bcher-kva.example", None, None, "xn--bcher-kva.example", "https://xn--bcher-kva.example",
      id="IDN in punycode"),
]


@pytest.mark.parametrize("public_url, cookie_domain, rp_id, expected_id, expected_origin", GOOD_PARTIES)
def test_relying_party_id_and_origin(public_url, cookie_domain, rp_id, expected_id, expected_origin):
    decision = relying_party(public_url, cookie_domain, rp_id, public_suffixes=SUFFIXES)
    assert decision == RelyingPartyDecision(RelyingParty(expected_id, expected_origin), "ok")


BAD_PARTIES = [
    # no origin to expect
    P(None, None, None, "no_public_url", id="no public url"),
    P("", None, None, "no_public_url", id="empty public url"),
    P("auth.example.com", None, None, "bad_public_url", id="no scheme"),
    P("https://auth.example.com/login", None, None, "bad_public_url", id="path in public url"),
    P("https://user@auth.example.com", None, None, "bad_public_url", id="userinfo in public url"),
    P("ftp://auth.example.com", None, None, "bad_public_url", id="other scheme"),
    P("https://auth.exämple.com", None, None, "bad_public_url", id="unicode host in public url"),
    # WebAuthn refuses IP addresses and insecure contexts
    P("https://192.0.2.10", None, None, "ip_address", id="ipv4 host"),
    P("https://[2001:db8::1]", None, None, "ip_address", id="ipv6 host"),
    P("http://127.0.0.1:8000", None, None, "ip_address", id="the development default"),
    P("http://auth.example.com", None, None, "not_secure", id="plain http"),
    P("http://localhost.example.com", None, None, "not_secure", id="localhost as a prefix only"),
    P("http://evil-localhost", None, None, "not_secure", id="localhost as a suffix without dot"),
    # not the host nor a parent of it
    P("https://auth.example.com", None, "evilexample.com", "not_a_parent", id="suffix not on a label boundary"),
    P("https://auth.example.com", None, "other.example.com", "not_a_parent", id="sibling host"),
    P("https://auth.example.com", None, "evil.com", "not_a_parent", id="another site"),
    P("https://auth.example.com", None, "sub.auth.example.com", "not_a_parent", id="child of the host"),
    P("https://auth.example.com", None, "example.com.evil.com", "not_a_parent", id="host as a prefix"),
    P("https://auth.example.com", ".evil.com", None, "not_a_parent", id="cookie domain of another site"),
    P("https://auth.example.com", None, "xample.com", "not_a_parent", id="partial label"),
    # public suffixes
    P("https://auth.example.com", None, "com", "public_suffix", id="a TLD"),
    P("https://auth.example.com", ".com", None, "public_suffix", id="a TLD as cookie domain"),
    P("https://auth.example.co.uk", None, "co.uk", "public_suffix", id="listed multi-label suffix"),
    P("https://me.github.io", None, "github.io", "public_suffix", id="hosting suffix"),
    # not written as browsers compare it
    P("https://auth.example.com", None, "Example.com", "not_canonical", id="upper case"),
    P("https://auth.example.com", None, "example.com.", "not_canonical", id="trailing dot"),
    P("https://auth.example.com", None, "EXAMPLE.COM", "not_canonical", id="all upper case"),
    P("https://auth.example.com", None, "exаmple.com", "not_ascii", id="cyrillic a homoglyph"),
    P("https://auth.example.com", None, "ｅxample.com", "not_ascii", id="full-width letter"),
    P("https://auth.example.com", None, "example\u200b.com", "not_ascii", id="zero-width space"),
    # not a domain at all
    P("https://auth.example.com", None, "", "not_a_domain", id="empty"),
    P("https://auth.example.com", None, ".example.com", "not_a_domain", id="leading dot in an explicit id"),
    P("https://auth.example.com", None, "example..com", "not_a_domain", id="empty label"),
    P("https://auth.example.com", None, "https://example.com", "not_a_domain", id="an origin"),
    P("https://auth.example.com", None, "example.com:443", "not_a_domain", id="a port"),
    P("https://auth.example.com", None, "example.com/", "not_a_domain", id="a path"),
    P("https://auth.example.com", None, "user@example.com", "not_a_domain", id="userinfo"),
    P("https://auth.example.com", None, "*.example.com", "not_a_domain", id="wildcard"),
    P("https://auth.example.com", None, " example.com", "not_a_domain", id="leading space"),
    P("https://auth.example.com", None, "example.com\n", "not_a_domain", id="trailing newline"),
    P("https://auth.example.com", None, "example.com\x00", "not_a_domain", id="NUL"),
    P("https://auth.example.com", None, "exa%6dple.com", "not_a_domain", id="percent-encoded"),
    P("https://auth.example.com", None, "example\\.com", "not_a_domain", id="backslash"),
    P("https://auth.example.com", None, "ex_ample.com", "not_a_domain", id="underscore"),
    P("https://auth.example.com", None, "-example.com", "not_a_domain", id="label starts with a hyphen"),
    P("https://auth.example.com", None, "example-.com", "not_a_domain", id="label ends with a hyphen"),
    P("https://auth.example.com", None, "a" * 64 + ".com", "not_a_domain", id="label of 64"),
    P("https://auth.example.com", None, ("a" * 63 + ".") * 4 + "com", "not_a_domain", id="longer than 253"),
    P("https://auth.example.com", None, "::1", "not_a_domain", id="ipv6 literal id"),
    # IP-shaped ids
    P("https://auth.example.com", None, "192.0.2.10", "ip_address", id="ipv4 id"),
    P("https://auth.example.com", None, "example.0x10", "ip_address", id="hex last label"),
    P("https://auth.example.com", None, "example.123", "ip_address", id="numeric last label"),
]


@pytest.mark.parametrize("public_url, cookie_domain, rp_id, reason", BAD_PARTIES)
def test_unusable_relying_party_is_refused_with_a_reason(public_url, cookie_domain, rp_id, reason):
    assert relying_party(public_url, cookie_domain, rp_id, public_suffixes=SUFFIXES) == RelyingPartyDecision(None,
                                                                                                           reason)


@pytest.mark.parametrize("value", [None, 42, b"example.com", ["example.com"]])
def test_an_rp_id_that_is_not_text_is_not_a_domain(value):
    assert rp_id_problem(value) == "not_a_domain"


def test_localhost_alone_is_the_one_single_label_id():
    assert rp_id_problem("localhost") is None
    assert rp_id_problem("intranet") == "public_suffix"


def test_public_suffix_list_is_the_callers():
    assert rp_id_problem("co.uk") is None
    assert rp_id_problem("co.uk", frozenset({"co.uk"})) == "public_suffix"


# --- the signature counter --------------------------------------------------------------------------------

@pytest.mark.parametrize("stored, received", [
    P(0, 0, id="no counter, first use"),
    P(0, 1, id="first count"),
    P(5, 6, id="one more"),
    P(5, 500, id="a jump (other relying parties count too)"),
    P(MAX_SIGN_COUNT - 1, MAX_SIGN_COUNT, id="the last value"),
])
def test_a_growing_counter_or_none_at_all_is_accepted(stored, received):
    assert sign_count_verdict(stored, received) == "ok"


@pytest.mark.parametrize("stored, received, reason", [
    P(5, 4, "regressed", id="one back: a cloned authenticator"),
    P(5, 0, "regressed", id="back to zero: counting stopped"),
    P(MAX_SIGN_COUNT, 0, "regressed", id="wrapped around"),
    P(1, 1, "repeated", id="the same count: a replay"),
    P(MAX_SIGN_COUNT, MAX_SIGN_COUNT, "repeated", id="the same last value"),
    P(-1, 0, "invalid", id="negative stored"),
    P(0, -1, "invalid", id="negative received"),
    P(0, MAX_SIGN_COUNT + 1, "invalid", id="over 32 bits"),
    P(MAX_SIGN_COUNT + 1, MAX_SIGN_COUNT + 2, "invalid", id="stored over 32 bits"),
    P(0, True, "invalid", id="a bool is no count"),
    P(False, 1, "invalid", id="a bool stored"),
    P(0, 1.0, "invalid", id="a float"),
    P(0, "1", "invalid", id="text"),
    P(None, 1, "invalid", id="none"),
])
def test_a_counter_that_does_not_grow_is_refused(stored, received, reason):
    assert sign_count_verdict(stored, received) == reason


# --- names -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    P("Laptop", "Laptop", id="plain"),
    P("  Work   YubiKey  ", "Work YubiKey", id="whitespace folded"),
    P("Phone\u00a0(old)", "Phone (old)", id="no-break space folded"),
    P("e\u0301t\u00e9", "\u00e9t\u00e9", id="NFC"),
    P("Ａ", "Ａ", id="full width kept (NFC, not NFKC)"),
    P("👩\u200d💻 laptop", "👩\u200d💻 laptop", id="emoji with a joiner"),
    P("می\u200cخواهم", "می\u200cخواهم", id="Persian with a non-joiner"),
    P("עברית", "עברית", id="right-to-left script without controls"),
    P("x" * MAX_NAME_LENGTH, "x" * MAX_NAME_LENGTH, id="the longest"),
    P(" " * 10 + "x" * MAX_NAME_LENGTH + " " * 10, "x" * MAX_NAME_LENGTH, id="the longest, padded"),
    P("<script>alert(1)</script>", "<script>alert(1)</script>", id="markup is text (escaped when shown)"),
])
def test_acceptable_names(raw, expected):
    assert passkey_name(raw) == NameDecision(expected, "ok")


HOSTILE_NAMES = [
    P("", "empty", id="empty"),
    P("   ", "empty", id="spaces"),
    P("\u3000\u2003", "empty", id="wide spaces"),
    P("x" * (MAX_NAME_LENGTH + 1), "too_long", id="one too many"),
    P("x" * (MAX_RAW_NAME_LENGTH + 1), "too_long", id="refused unread"),
    P("x" * 10_000_000, "too_long", id="ten million"),
    P("a" + "\u0301" * 31, "combining_marks", id="zalgo past the stream-safe bound"),
    P("Laptop\x00", "control_character", id="NUL"),
    P("Lap\ntop", "control_character", id="newline"),
    P("Lap\ttop", "control_character", id="tab"),
    P("Lap\rtop", "control_character", id="carriage return"),
    P("\x1b[31mred", "control_character", id="ANSI escape"),
    P("Lap\x7ftop", "control_character", id="DEL"),
    P("Lap\x85top", "control_character", id="NEL"),
    P("Lap\u2028top", "control_character", id="line separator"),
    P("Lap\u2029top", "control_character", id="paragraph separator"),
    P("Lap\x1ctop", "control_character", id="file separator (str.split would eat it)"),
    P("my\u202egnp.exe", "bidi_control", id="right-to-left override"),
    P("\u202dleft", "bidi_control", id="left-to-right override"),
    P("\u202aembed", "bidi_control", id="left-to-right embedding"),
    P("\u202bembed", "bidi_control", id="right-to-left embedding"),
    P("pop\u202c", "bidi_control", id="pop directional formatting"),
    P("\u2066isolate", "bidi_control", id="left-to-right isolate"),
    P("\u2067isolate", "bidi_control", id="right-to-left isolate"),
    P("\u2068isolate", "bidi_control", id="first strong isolate"),
    P("isolate\u2069", "bidi_control", id="pop directional isolate"),
    P("mark\u200e", "bidi_control", id="left-to-right mark"),
    P("mark\u200f", "bidi_control", id="right-to-left mark"),
    P("mark\u061c", "bidi_control", id="arabic letter mark"),
    P("Lap\u200btop", "invisible_character", id="zero-width space"),
    P("Lap\u2060top", "invisible_character", id="word joiner"),
    P("\ufeffLaptop", "invisible_character", id="byte order mark"),
    P("Lap\u00adtop", "invisible_character", id="soft hyphen"),
    P("tag\U000e0041", "invisible_character", id="tag character"),
    P("Lap\ud800top", "invalid_character", id="lone surrogate"),
    P("Lap\ue000top", "invalid_character", id="private use"),
    P("Lap\U000f0000to", "invalid_character", id="plane 15 private use"),
    P("Lap\ufffetop", "invalid_character", id="noncharacter"),
    P("Lap\U0010ffff", "invalid_character", id="last noncharacter"),
    P("Lap\ufffdtop", "invalid_character", id="replacement character (undecodable bytes)"),
    P("Lap\u0378top", "invalid_character", id="unassigned"),
]


@pytest.mark.parametrize("raw, reason", HOSTILE_NAMES)
def test_hostile_names_are_refused_not_cleaned(raw, reason):
    assert passkey_name(raw) == NameDecision(None, reason)


@pytest.mark.parametrize("value", [None, 42, b"Laptop", ["Laptop"], {"name": "Laptop"}, 4.2])
def test_a_name_that_is_not_text_is_refused(value):
    assert passkey_name(value) == NameDecision(None, "not_text")


def test_every_bidi_control_is_refused_alone_and_inside_text():
    for char in sorted(BIDI_CONTROLS):
        assert passkey_name(char).reason == "bidi_control"
        assert passkey_name(f"a{char}b").reason == "bidi_control"


def test_the_length_limit_counts_what_is_stored_after_normalisation():
    decomposed = "e\u0301" * MAX_NAME_LENGTH   # 128 code points typed, 64 stored
    assert passkey_name(decomposed) == NameDecision("\u00e9" * MAX_NAME_LENGTH, "ok")
    assert passkey_name(decomposed + "e").reason == "too_long"


def test_no_accepted_name_holds_a_character_the_rules_refuse():
    for code in range(0x3000):
        char = chr(code)
        decided = passkey_name(f"a{char}b")
        if decided.name is not None:
            assert unicodedata.category(char) not in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp")
            assert char not in BIDI_CONTROLS


# --- RFC 8176 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("multi_device, user_verified, methods", [
    P(False, True, ("hwk", "user", "mfa"), id="device-bound, verified: hardware key, multi-factor"),
    P(True, True, ("swk", "user", "mfa"), id="synced, verified: software key, multi-factor"),
    P(False, False, ("hwk", "user"), id="device-bound, presence only: one factor"),
    P(True, False, ("swk", "user"), id="synced, presence only: one factor"),
])
def test_passkey_methods(multi_device, user_verified, methods):
    assert passkey_methods(multi_device=multi_device, user_verified=user_verified) == methods
