"""Threat list for authsvc.rules.oidc_requests: scopes, PKCE (S256 only, for every client), prompt
and max_age, the client's second-factor requirement, and consent."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.oidc_requests import (
    ASK,
    CONSENT_REQUIRED,
    LOGIN,
    LOGIN_REQUIRED,
    MAX_SCOPE_LENGTH,
    MFA_SET_UP_NEEDED,
    PROCEED,
    REAUTHENTICATE,
    SKIP,
    STEP_UP,
    SUPPORTED_SCOPES,
    challenge_verdict,
    consent_decision,
    parse_max_age,
    parse_prompt,
    parse_scope,
    pkce_matches,
    s256,
    session_decision,
    verifier_verdict,
)

VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"   # RFC 7636 appendix B
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def P(value, id: str):
    return pytest.param(value, id=id)


# --- scope ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, scopes", [
    ("openid", ("openid",)), ("openid profile", ("openid", "profile")),
    ("profile openid offline_access", ("openid", "profile", "offline_access")),
    ("openid openid", ("openid",)),
])
def test_scopes_are_read_in_one_order_each_once(raw, scopes):
    decision = parse_scope(raw)
    assert decision.accepted and decision.scopes == scopes


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("raw, reason", [
    pytest.param(None, "missing", id="none"), pytest.param("", "missing", id="empty"), pytest.param("profile", "openid_missing", id="no_openid"),
    pytest.param("OPENID", "openid_missing", id="upper_case"), pytest.param("openid admin", "unknown_scope", id="unknown"),
    pytest.param("openid  profile", "malformed", id="double_space"), pytest.param(" openid", "malformed", id="leading_space"),
    pytest.param("openid ", "malformed", id="trailing_space"), pytest.param("openid\tprofile", "malformed", id="tab"),
    pytest.param("openid\nprofile", "malformed", id="newline"), pytest.param("openid\"x", "malformed", id="quote"),
    pytest.param("openid\\x", "malformed", id="backslash"), pytest.param("openid profilé", "malformed", id="non_ascii"),
    pytest.param("openid\u00a0profile", "malformed", id="nbsp"), pytest.param("openid " + "x" * 600, "too_long", id="huge"),
    pytest.param(["openid"], "missing", id="list"),
])
def test_hostile_scopes_are_refused(raw, reason):
    assert parse_scope(raw).reason == reason


# --- the groups scope: hostile spellings of it ---------------------------------------------------

@pytest.mark.parametrize("raw, scopes", [
    pytest.param("openid groups", ("openid", "groups"), id="groups"),
    pytest.param("groups openid", ("openid", "groups"), id="order_ignored"),
    pytest.param("openid groups groups groups", ("openid", "groups"), id="duplicates_once"),
    pytest.param("groups openid groups openid", ("openid", "groups"), id="interleaved_duplicates"),
    pytest.param("offline_access groups profile openid", ("openid", "profile", "groups", "offline_access"),
                 id="all_four_in_reverse"),
    pytest.param("openid " + " ".join(["groups"] * 72), ("openid", "groups"), id="duplicates_up_to_the_cap"),
])
def test_the_groups_scope_is_read_in_one_order_and_once(raw, scopes):
    decision = parse_scope(raw)
    assert decision.accepted and decision.scopes == scopes
    assert decision.text() == " ".join(scopes)


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("raw, reason", [
    pytest.param("groups", "openid_missing", id="groups_without_openid"),
    pytest.param("groups groups", "openid_missing", id="only_duplicates"),
    pytest.param("openid GROUPS", "unknown_scope", id="upper_case"),
    pytest.param("openid Groups", "unknown_scope", id="title_case"),
    pytest.param("OpenID groups", "openid_missing", id="openid_case"),
    pytest.param("openid group", "unknown_scope", id="singular"),
    pytest.param("openid groups_", "unknown_scope", id="suffix"),
    pytest.param("openid groups:admin", "unknown_scope", id="parameterised"),
    pytest.param("openid groups.read", "unknown_scope", id="dotted"),
    pytest.param("openid groups,profile", "unknown_scope", id="comma_joined"),
    pytest.param("openid groups+profile", "unknown_scope", id="plus_joined"),
    pytest.param("openid groups%20profile", "unknown_scope", id="percent_encoded_space"),
    pytest.param("openid groups admin", "unknown_scope", id="unknown_beside_groups"),
    pytest.param("openid groups roles", "unknown_scope", id="roles"),
    pytest.param(r"openid gro\u0075ps", "malformed", id="backslash_escape"),
    pytest.param("openid gr\u043eups", "malformed", id="cyrillic_o"),
    pytest.param("openid ｇroups", "malformed", id="fullwidth_g"),
    pytest.param("openid groups\u200b", "malformed", id="zero_width_space"),
    pytest.param("openid groups\x00", "malformed", id="nul"),
    pytest.param("openid\x0bgroups", "malformed", id="vertical_tab"),
    pytest.param("openid groups\r\n", "malformed", id="crlf"),
    pytest.param("openid,groups", "openid_missing", id="comma_only"),
    pytest.param("openid+groups", "openid_missing", id="plus_only"),
    pytest.param("openid  groups", "malformed", id="double_space"),
    pytest.param("openid groups ", "malformed", id="trailing_space"),
    pytest.param("openid " + " ".join(["groups"] * 73), "too_long", id="duplicates_past_the_cap"),
    pytest.param("openid groups " + "x" * 10_000, "too_long", id="huge"),
    pytest.param("openid " + "groups " * 100_000, "too_long", id="huge_duplicates"),
])
def test_hostile_spellings_of_the_groups_scope_are_refused(raw, reason):
    assert parse_scope(raw).reason == reason


def test_the_length_cap_is_on_the_raw_string_exactly():
    at_cap = "openid " + "g" * (MAX_SCOPE_LENGTH - len("openid "))
    assert len(at_cap) == MAX_SCOPE_LENGTH
    assert parse_scope(at_cap).reason == "unknown_scope"  # read: at the cap is not too long
    assert parse_scope(at_cap + "g").reason == "too_long"


def test_a_refused_scope_grants_nothing():
    for raw in ("openid GROUPS", "groups", "openid groups\x00", "openid " + "groups " * 100):
        decision = parse_scope(raw)
        assert not decision.accepted and decision.scopes == () and decision.text() == ""


def test_groups_is_offered_and_every_supported_scope_is_a_valid_scope_token():
    assert "groups" in SUPPORTED_SCOPES and SUPPORTED_SCOPES[0] == "openid"
    assert len(set(SUPPORTED_SCOPES)) == len(SUPPORTED_SCOPES)


def test_a_narrower_supported_list_refuses_groups():
    assert parse_scope("openid groups", ("openid", "profile")).reason == "unknown_scope"
    assert parse_scope("openid profile", ("openid", "profile")).scopes == ("openid", "profile")


@given(st.lists(st.sampled_from(SUPPORTED_SCOPES), min_size=0, max_size=12), st.randoms())
def test_any_mix_of_supported_scopes_with_openid_reads_as_the_set_in_order(extra, rnd):
    tokens = ["openid", *extra]
    rnd.shuffle(tokens)
    decision = parse_scope(" ".join(tokens))
    assert decision.accepted
    assert decision.scopes == tuple(s for s in SUPPORTED_SCOPES if s in tokens)


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters=" "), min_size=1, max_size=40))
def test_a_scope_token_other_than_the_supported_ones_is_never_accepted(token):
    decision = parse_scope("openid " + token)
    if token in SUPPORTED_SCOPES:
        assert decision.accepted
    else:
        assert not decision.accepted and decision.scopes == ()


# --- PKCE -----------------------------------------------------------------------------------------

def test_the_rfc_7636_example_verifies():
    assert s256(VERIFIER) == CHALLENGE
    assert challenge_verdict(CHALLENGE, "S256") == "ok"
    assert pkce_matches(VERIFIER, CHALLENGE, "S256")


@pytest.mark.asvs("V10.4.6")
@pytest.mark.parametrize("challenge, method, reason", [
    pytest.param(None, None, "missing", id="no_pkce"),
    pytest.param("", "S256", "missing", id="empty_challenge"),
    pytest.param(CHALLENGE, "plain", "plain_refused", id="plain"),
    pytest.param(VERIFIER, "plain", "plain_refused", id="plain_with_verifier"),
    pytest.param(CHALLENGE, None, "method_missing", id="method_defaults_to_plain"),
    pytest.param(CHALLENGE, "", "method_missing", id="method_empty"),
    pytest.param(CHALLENGE, "s256", "unsupported_method", id="method_case"),
    pytest.param(CHALLENGE, "S512", "unsupported_method", id="other_method"),
    pytest.param(CHALLENGE, "S256 ", "unsupported_method", id="method_space"),
    pytest.param(CHALLENGE + "=", "S256", "malformed", id="padding"),
    pytest.param(CHALLENGE[:-1], "S256", "malformed", id="short"),
    pytest.param(CHALLENGE + "A", "S256", "malformed", id="long"),
    pytest.param(CHALLENGE[:-1] + "N", "S256", "malformed", id="non_canonical_last_char"),
    pytest.param(CHALLENGE.replace("-", "+"), "S256", "malformed", id="standard_base64"),
    pytest.param(CHALLENGE[:-1] + "\u0410", "S256", "malformed", id="cyrillic"),
    pytest.param("A" * 128, "S256", "malformed", id="plain_sized"),
    pytest.param(["x"], "S256", "malformed", id="list"),
])
def test_pkce_challenges_other_than_s256_are_refused(challenge, method, reason):
    assert challenge_verdict(challenge, method) == reason


@pytest.mark.asvs("V10.4.6")
@pytest.mark.parametrize("verifier", [
    P(None, "missing"), P("", "empty"), P("a" * 42, "too_short"), P("a" * 129, "too_long"),
    P(VERIFIER + " ", "space"), P(VERIFIER[:-1] + "+", "plus"), P(VERIFIER[:-1] + "/", "slash"),
    P(VERIFIER[:-1] + "=", "equals"), P(VERIFIER[:-1] + "é", "non_ascii"), P(VERIFIER[:-1] + "\x00", "nul"),
    P(CHALLENGE[:-1] + "!", "bang"),
])
def test_malformed_verifiers_never_match(verifier):
    assert verifier_verdict(verifier) != "ok"
    assert not pkce_matches(verifier, CHALLENGE, "S256")


@pytest.mark.asvs("V10.4.6")
def test_the_challenge_itself_is_not_a_verifier_and_plain_never_matches():
    assert not pkce_matches(CHALLENGE, CHALLENGE, "S256")
    assert not pkce_matches(VERIFIER, VERIFIER, "plain")
    assert not pkce_matches(VERIFIER[:-1] + "l", CHALLENGE, "S256")


@given(st.from_regex(r"[A-Za-z0-9._~-]{43,128}", fullmatch=True))
def test_every_s256_challenge_made_from_a_verifier_is_accepted_and_matches(verifier):
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge_verdict(challenge, "S256") == "ok"
    assert pkce_matches(verifier, challenge, "S256")


# --- prompt and max_age ---------------------------------------------------------------------------

@pytest.mark.parametrize("raw, values", [
    (None, set()), ("", set()), ("none", {"none"}), ("login", {"login"}), ("login consent", {"login", "consent"}),
])
def test_prompt_values(raw, values):
    assert parse_prompt(raw) == ("ok", frozenset(values))


@pytest.mark.parametrize("raw", ["none login", "NONE", "login  consent", "bogus", " none", "none\n",
                                 "x" * 65, ["none"]])
def test_bad_prompts_are_invalid(raw):
    assert parse_prompt(raw)[0] == "invalid"


@pytest.mark.parametrize("raw, value", [(None, None), ("", None), ("0", 0), ("3600", 3600), ("999999999", 999999999)])
def test_max_age_is_read_as_whole_seconds(raw, value):
    assert parse_max_age(raw) == ("ok", value)


@pytest.mark.parametrize("raw", ["-1", "1.5", "1e3", " 1", "1 ", "٣", "１", "0x10", "9999999999", "+1"])
def test_bad_max_age_is_invalid(raw):
    assert parse_max_age(raw)[0] == "invalid"


NOW = 1_800_000_000.0


def decide(**kw):
    base = dict(signed_in=True, prompt=frozenset(), max_age=None, authenticated_at=NOW - 100, now=NOW,
                multi_factor=False, require_mfa=False, has_second_factor=False)
    base.update(kw)
    return session_decision(**base)


def test_a_signed_in_session_proceeds():
    assert decide() == PROCEED


def test_prompt_none_never_shows_a_page():
    none = frozenset({"none"})
    assert decide(signed_in=False, prompt=none) == LOGIN_REQUIRED
    assert decide(prompt=none, max_age=10) == LOGIN_REQUIRED
    assert decide(prompt=none, require_mfa=True, has_second_factor=True) == LOGIN_REQUIRED
    assert decide(prompt=none) == PROCEED


def test_signed_out_goes_to_the_login():
    assert decide(signed_in=False) == LOGIN


@pytest.mark.parametrize("max_age, authenticated_at, expected", [
    (100, NOW - 100, PROCEED), (100, NOW - 101, REAUTHENTICATE), (0, NOW, PROCEED), (0, NOW - 1, REAUTHENTICATE),
    (3600, None, REAUTHENTICATE),  # restored from remember-me: never recent
])
def test_a_sign_in_older_than_max_age_signs_in_again(max_age, authenticated_at, expected):
    assert decide(max_age=max_age, authenticated_at=authenticated_at) == expected


def test_prompt_login_always_reauthenticates():
    assert decide(prompt=frozenset({"login"}), authenticated_at=NOW) == REAUTHENTICATE


@pytest.mark.asvs("V6.3.3")
def test_a_client_requiring_mfa_steps_up_a_one_factor_session():
    assert decide(require_mfa=True, has_second_factor=True) == STEP_UP
    assert decide(require_mfa=True, has_second_factor=False) == MFA_SET_UP_NEEDED
    assert decide(require_mfa=True, multi_factor=True) == PROCEED


# --- consent --------------------------------------------------------------------------------------

@pytest.mark.asvs("V10.7.1")
@pytest.mark.parametrize("trusted, prompt, granted, requested, expected", [
    (True, frozenset(), None, ("openid",), SKIP),
    (False, frozenset(), None, ("openid",), ASK),
    (False, frozenset(), frozenset({"openid"}), ("openid",), SKIP),
    (False, frozenset(), frozenset({"openid"}), ("openid", "profile"), ASK),  # more than was allowed
    (False, frozenset({"consent"}), frozenset({"openid"}), ("openid",), ASK),
    (False, frozenset({"none"}), None, ("openid",), CONSENT_REQUIRED),
    (False, frozenset({"none"}), frozenset({"openid", "profile"}), ("openid",), SKIP),
])
def test_consent(trusted, prompt, granted, requested, expected):
    assert consent_decision(trusted=trusted, prompt=prompt, granted=granted, requested=requested) == expected


def test_module_depends_only_on_the_standard_library():
    import ast
    import inspect

    from authsvc.rules import oidc_requests

    tree = ast.parse(inspect.getsource(oidc_requests))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "re", "base64", "hashlib", "hmac", "dataclasses"}


# --- boundaries pinned by mutation testing (docs/mutation.md) -------------------------------------

@pytest.mark.parametrize("verifier, reason", [
    (None, "missing"), ("", "missing"), ("a" * 42, "malformed"), ("a" * 43, "ok"), ("a" * 128, "ok"),
    ("a" * 129, "malformed"), (["a" * 43], "malformed"), (VERIFIER[:-1] + " ", "malformed"), ("XXXX", "malformed"),
])
def test_verifier_reason_codes(verifier, reason):
    assert verifier_verdict(verifier) == reason


def test_a_prompt_of_64_characters_is_read_and_65_is_invalid():
    at_cap = "select_account select_account select_account consent login login"
    over = "select_account select_account select_account select_account login"
    assert (len(at_cap), len(over)) == (64, 65)
    assert parse_prompt(at_cap) == ("ok", frozenset({"select_account", "consent", "login"}))
    assert parse_prompt(over) == ("invalid", frozenset())
