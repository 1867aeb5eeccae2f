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
    DEFAULT_CLIENT_SCOPES,
    LOGIN,
    LOGIN_REQUIRED,
    MAX_SCOPE_LENGTH,
    MFA_SET_UP_NEEDED,
    PROCEED,
    PROMPT_VALUES,
    REAUTHENTICATE,
    SKIP,
    STEP_UP,
    SUPPORTED_SCOPES,
    auth_time,
    challenge_verdict,
    consent_decision,
    parse_max_age,
    parse_prompt,
    parse_scope,
    pkce_matches,
    refresh_scope,
    s256,
    SIGNED_OUT_WAY_BACK_MAX_AGE,
    session_decision,
    signed_out_way_back,
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


@pytest.mark.parametrize("authenticated_at, asked, prompt, expected", [
    (NOW - 100, NOW - 50, frozenset(), REAUTHENTICATE),       # asked after the last sign-in: still due
    (NOW - 100, NOW - 100, frozenset(), PROCEED),             # signed in at that very moment
    (NOW - 10, NOW - 50, frozenset(), PROCEED),               # signed in (or stepped up) since
    (None, NOW - 50, frozenset(), REAUTHENTICATE),            # restored from remember-me: never
    (NOW - 100, NOW - 50, frozenset({"none"}), LOGIN_REQUIRED),
    (NOW - 100, None, frozenset(), PROCEED),                  # never asked
    (NOW - 100, float("nan"), frozenset(), REAUTHENTICATE),   # unreadable: due
])
def test_a_sign_in_asked_for_stays_due_until_one_after_it(authenticated_at, asked, prompt, expected):
    assert decide(authenticated_at=authenticated_at, reauth_asked_at=asked, prompt=prompt) == expected


@pytest.mark.parametrize("prompt, max_age, expected", [
    (frozenset(), None, None),                                   # nothing asked: back as it came
    (frozenset({"consent"}), None, None),
    (frozenset({"select_account"}), None, None),
    (frozenset({"login"}), None, ()),
    (frozenset(), 0, ()),
    (frozenset(), 86400000, ()),
    (frozenset({"login", "consent"}), 10, (("prompt", "consent"),)),  # consent is still asked
    (frozenset({"login", "consent", "select_account"}), None, (("prompt", "consent select_account"),)),
])
def test_a_signed_out_request_for_a_fresh_sign_in_comes_back_satisfied_by_one(prompt, max_age, expected):
    got = signed_out_way_back(prompt, max_age)
    if expected is None:
        assert got is None
    else:
        assert got == expected + (("max_age", str(SIGNED_OUT_WAY_BACK_MAX_AGE)),)


@given(st.sets(st.sampled_from(["login", "consent", "select_account"])), st.one_of(st.none(), st.integers(0, 10**9)))
def test_the_way_back_a_sign_in_just_now_passes_and_a_restore_never_does(prompt, max_age):
    """Whatever the signed-out request asked, its way back keeps every prompt value but ``login``,
    is answered for a session signed in just now (the form's sign-in, up to the window later) and
    never for one restored from remember-me (no factor proved: ``authenticated_at`` None)."""
    way_back = signed_out_way_back(frozenset(prompt), max_age)
    if "login" not in prompt and max_age is None:
        assert way_back is None
        return
    params = dict(way_back)
    back_prompt = parse_prompt(params.get("prompt"))[1]
    back_age = parse_max_age(params["max_age"])[1]
    assert back_prompt == frozenset(prompt) - {"login"}
    for ago in (0, 1, SIGNED_OUT_WAY_BACK_MAX_AGE):
        assert decide(prompt=back_prompt, max_age=back_age, authenticated_at=NOW - ago) == PROCEED
    assert decide(prompt=back_prompt, max_age=back_age, authenticated_at=None) == REAUTHENTICATE


@pytest.mark.parametrize("authenticated_at, chain, started, expected", [
    (NOW - 10, NOW - 5 * 86400, NOW - 20, NOW - 10),   # a sign-in or step-up in this session
    (None, NOW - 5 * 86400, NOW - 20, NOW - 5 * 86400),  # restored: the chain's sign-in, not the restore
    (None, None, NOW - 20, NOW - 20),                  # a chain from before revision 0011
])
def test_auth_time_is_the_last_proof_never_a_restore(authenticated_at, chain, started, expected):
    assert auth_time(authenticated_at, chain, started) == expected


@pytest.mark.asvs("V6.3.3")
def test_a_client_requiring_mfa_steps_up_a_one_factor_session():
    assert decide(require_mfa=True, has_second_factor=True) == STEP_UP
    assert decide(require_mfa=True, has_second_factor=False) == MFA_SET_UP_NEEDED
    assert decide(require_mfa=True, multi_factor=True) == PROCEED


# --- consent --------------------------------------------------------------------------------------

@pytest.mark.asvs("V10.7.1")
@pytest.mark.parametrize("trusted, prompt, granted, requested, expected", [
    (True, frozenset(), None, ("openid",), SKIP),
    (True, frozenset({"none"}), None, ("openid",), SKIP),
    (False, frozenset(), None, ("openid",), ASK),
    (False, frozenset(), frozenset({"openid"}), ("openid",), SKIP),
    (False, frozenset(), frozenset({"openid"}), ("openid", "profile"), ASK),  # more than was allowed
    (False, frozenset({"consent"}), frozenset({"openid"}), ("openid",), ASK),
    (False, frozenset({"none"}), None, ("openid",), CONSENT_REQUIRED),
    (False, frozenset({"none"}), frozenset({"openid", "profile"}), ("openid",), SKIP),
])
def test_consent(trusted, prompt, granted, requested, expected):
    """A confidential client: trusted ones never ask, others once per scope set."""
    assert consent_decision(trusted=trusted, public=False, prompt=prompt, granted=granted,
                            requested=requested) == expected


ALL = frozenset(SUPPORTED_SCOPES)


def scopes_id(scopes) -> str:
    """A test id that is the same in every process (a set's repr follows the hash seed, and the
    pytest-xdist workers must collect the same ids)."""
    return repr(scopes) if scopes is None or isinstance(scopes, tuple) else "{" + ",".join(sorted(scopes)) + "}"


@pytest.mark.asvs("V10.7.1")
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "marked_trusted"])
@pytest.mark.parametrize("granted", [None, frozenset(), frozenset({"openid"}), ALL], ids=scopes_id)
@pytest.mark.parametrize("prompt", [frozenset(), frozenset({"consent"}), frozenset({"login"}),
                                    frozenset({"select_account"})], ids=scopes_id)
@pytest.mark.parametrize("requested", [("openid",), ("openid", "profile"), tuple(SUPPORTED_SCOPES)], ids=repr)
def test_a_public_client_is_asked_every_time_whatever_was_remembered_or_flagged(trusted, granted, prompt, requested):
    """Its identity cannot be assured (anyone can send its client_id): the user always says yes
    again, even with every scope remembered and even if an operator marked it trusted."""
    assert consent_decision(trusted=trusted, public=True, prompt=prompt, granted=granted,
                            requested=requested) == ASK


@pytest.mark.asvs("V10.7.1")
@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize("granted", [None, ALL], ids=scopes_id)
def test_prompt_none_for_a_public_client_is_always_consent_required(trusted, granted):
    """A silent request can never show the page, so it never gets a code without one."""
    assert consent_decision(trusted=trusted, public=True, prompt=frozenset({"none"}), granted=granted,
                            requested=("openid",)) == CONSENT_REQUIRED


@given(st.booleans(), st.booleans(), st.sets(st.sampled_from(sorted(PROMPT_VALUES))),
       st.one_of(st.none(), st.frozensets(st.sampled_from(SUPPORTED_SCOPES))),
       st.lists(st.sampled_from(SUPPORTED_SCOPES), min_size=1, max_size=4))
def test_consent_is_skipped_only_for_a_confidential_client(public, trusted, prompt, granted, requested):
    verdict = consent_decision(trusted=trusted, public=public, prompt=frozenset(prompt), granted=granted,
                               requested=tuple(requested))
    if public:
        assert verdict != SKIP
    if verdict == SKIP and not trusted:
        assert granted is not None and set(requested) <= granted and "consent" not in prompt


# --- the client's own scope list (ASVS V10.4.11) ---------------------------------------------------

MINIMAL = ("openid",)
SIGN_IN = ("openid", "profile")


def test_the_default_client_scopes_are_a_sign_in_and_no_more():
    assert DEFAULT_CLIENT_SCOPES == ("openid", "profile")
    assert "offline_access" not in DEFAULT_CLIENT_SCOPES and "groups" not in DEFAULT_CLIENT_SCOPES


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("raw, allowed, scopes", [
    pytest.param("openid", MINIMAL, ("openid",), id="openid_alone"),
    pytest.param("openid profile", SIGN_IN, ("openid", "profile"), id="all_it_has"),
    pytest.param("openid", SIGN_IN, ("openid",), id="less_than_it_has"),
    pytest.param("profile openid profile", SIGN_IN, ("openid", "profile"), id="duplicates_and_order"),
    pytest.param("openid groups offline_access", SUPPORTED_SCOPES, ("openid", "groups", "offline_access"),
                 id="everything_given"),
])
def test_a_client_gets_the_scopes_it_was_given(raw, allowed, scopes):
    decision = parse_scope(raw, allowed=allowed)
    assert decision.accepted and decision.scopes == scopes


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("raw, allowed, reason", [
    pytest.param("openid profile", MINIMAL, "not_allowed", id="profile_not_given"),
    pytest.param("openid groups", SIGN_IN, "not_allowed", id="groups_not_given"),
    pytest.param("openid offline_access", SIGN_IN, "not_allowed", id="refresh_not_given"),
    pytest.param("openid profile groups offline_access", SIGN_IN, "not_allowed", id="everything_asked"),
    pytest.param("openid profile offline_access profile", SIGN_IN, "not_allowed", id="hidden_among_duplicates"),
    pytest.param("offline_access openid", SIGN_IN, "not_allowed", id="first_in_line"),
    pytest.param("openid OFFLINE_ACCESS", SIGN_IN, "unknown_scope", id="upper_case"),
    pytest.param("openid Offline_Access", SIGN_IN, "unknown_scope", id="mixed_case"),
    pytest.param("openid offline-access", SIGN_IN, "unknown_scope", id="hyphen"),
    pytest.param("openid offline_access\t", SIGN_IN, "malformed", id="trailing_tab"),
    pytest.param("openid \toffline_access", SIGN_IN, "malformed", id="leading_tab"),
    pytest.param("openid  offline_access", SIGN_IN, "malformed", id="double_space"),
    pytest.param(" openid offline_access", SIGN_IN, "malformed", id="leading_space"),
    pytest.param("openid\u3000offline_access", SIGN_IN, "malformed", id="ideographic_space"),
    pytest.param("openid offline_acc\u0435ss", SIGN_IN, "malformed", id="cyrillic_e"),
    pytest.param("openid ｏffline_access", SIGN_IN, "malformed", id="fullwidth_o"),
    pytest.param("openid offline_access\u200d", SIGN_IN, "malformed", id="zero_width_joiner"),
    pytest.param("openid gr\u043eups", SIGN_IN, "malformed", id="cyrillic_o_groups"),
    pytest.param("openid pro\ufb01le", SIGN_IN, "malformed", id="fi_ligature"),
    pytest.param("", SIGN_IN, "missing", id="empty"),
    pytest.param(None, SIGN_IN, "missing", id="none"),
    pytest.param("profile", SIGN_IN, "openid_missing", id="no_openid"),
    pytest.param("openid " + "offline_access " * 200, SUPPORTED_SCOPES, "too_long", id="huge"),
    pytest.param("openid " + "x" * 100_000, SIGN_IN, "too_long", id="very_huge"),
    pytest.param("openid", (), "not_allowed", id="empty_list_allows_nothing"),
])
def test_a_scope_outside_the_clients_list_is_refused_not_narrowed(raw, allowed, reason):
    decision = parse_scope(raw, allowed=allowed)
    assert decision.reason == reason and decision.scopes == ()


@pytest.mark.asvs("V10.4.11")
@given(st.lists(st.sampled_from(SUPPORTED_SCOPES), max_size=6),
       st.frozensets(st.sampled_from(SUPPORTED_SCOPES)), st.randoms())
def test_an_accepted_scope_is_always_within_the_clients_list(extra, allowed, rnd):
    tokens = ["openid", *extra]
    rnd.shuffle(tokens)
    decision = parse_scope(" ".join(tokens), allowed=allowed)
    assert decision.accepted == (set(tokens) <= allowed)
    assert set(decision.scopes) <= allowed


# --- the refresh grant never widens (ASVS V10.4.11) -----------------------------------------------

GRANTED = "openid profile offline_access"


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("raw, granted, allowed, scopes", [
    pytest.param(None, GRANTED, SUPPORTED_SCOPES, ("openid", "profile", "offline_access"), id="omitted_is_granted"),
    pytest.param("", GRANTED, SUPPORTED_SCOPES, ("openid", "profile", "offline_access"), id="empty_is_granted"),
    pytest.param("openid", GRANTED, SUPPORTED_SCOPES, ("openid",), id="narrowed"),
    pytest.param("offline_access openid", GRANTED, SUPPORTED_SCOPES, ("openid", "offline_access"), id="reordered"),
    pytest.param(None, GRANTED, ("openid", "offline_access"), ("openid", "offline_access"),
                 id="taken_off_the_client_is_dropped"),
])
def test_a_refresh_keeps_or_narrows_the_scope(raw, granted, allowed, scopes):
    decision = refresh_scope(raw, granted, allowed)
    assert decision.accepted and decision.scopes == scopes


@pytest.mark.asvs("V10.4.11")
@pytest.mark.parametrize("raw, granted, allowed, reason", [
    pytest.param("openid profile groups", GRANTED, SUPPORTED_SCOPES, "not_granted", id="wider_than_granted"),
    pytest.param("openid groups", "openid offline_access", SUPPORTED_SCOPES, "not_granted", id="other_scope"),
    pytest.param("openid groups", GRANTED, SIGN_IN, "not_allowed", id="not_the_clients"),
    pytest.param("openid profile", GRANTED, MINIMAL, "not_allowed", id="taken_off_the_client"),
    pytest.param("openid GROUPS", GRANTED, SUPPORTED_SCOPES, "unknown_scope", id="case"),
    pytest.param("openid  profile", GRANTED, SUPPORTED_SCOPES, "malformed", id="double_space"),
    pytest.param("openid\tprofile", GRANTED, SUPPORTED_SCOPES, "malformed", id="tab"),
    pytest.param("openid gr\u043eups", GRANTED, SUPPORTED_SCOPES, "malformed", id="look_alike"),
    pytest.param("profile", GRANTED, SUPPORTED_SCOPES, "openid_missing", id="no_openid"),
    pytest.param("openid " + "profile " * 100, GRANTED, SUPPORTED_SCOPES, "too_long", id="huge"),
    pytest.param(None, "", SUPPORTED_SCOPES, "not_allowed", id="nothing_granted"),
    pytest.param(None, GRANTED, ("profile",), "not_allowed", id="openid_taken_off"),
    pytest.param(None, "openid groups", SUPPORTED_SCOPES[1:], "not_allowed", id="granted_but_client_lost_openid"),
])
def test_a_refresh_asking_for_more_or_oddly_is_refused(raw, granted, allowed, reason):
    decision = refresh_scope(raw, granted, allowed)
    assert decision.reason == reason and decision.scopes == ()


@pytest.mark.asvs("V10.4.11")
@given(st.lists(st.sampled_from(SUPPORTED_SCOPES), min_size=1, max_size=6),
       st.frozensets(st.sampled_from(SUPPORTED_SCOPES)), st.frozensets(st.sampled_from(SUPPORTED_SCOPES)),
       st.booleans())
def test_a_refresh_never_widens_the_granted_scope_or_the_clients_list(asked, granted, allowed, omit):
    raw = None if omit else " ".join(asked)
    decision = refresh_scope(raw, " ".join(sorted(granted)), allowed)
    assert set(decision.scopes) <= granted & allowed


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
