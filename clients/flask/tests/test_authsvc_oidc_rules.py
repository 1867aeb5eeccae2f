"""The OIDC mode's pure decisions: the local next, the authorization response's issuer (RFC 9207),
the identity in ID token claims, logout tokens, and the record of ended sign-ins."""

from __future__ import annotations

import pytest
from flask_authsvc.identity import Identity, Malformed, identity_from_claims
from flask_authsvc.logout_tokens import (EVENT, MAX_SIGN_IN_SECONDS, MemoryEndedSessions,
                                         logout_token_problem)
from flask_authsvc.oidc import (
    PENDING,
    WRONG_AUDIENCE,
    WRONG_AZP,
    id_token_audience_problem,
    jwks_refresh_due,
    sign_in_expired,
    stale_pending_sign_ins,
)
from flask_authsvc.redirects import (
    ISS_MISSING,
    ISS_REPEATED,
    ISS_WRONG,
    authorization_response_iss_problem,
    local_next,
)


@pytest.mark.parametrize("value", ["/", "/private", "/a/b?c=d&e=%2F", "/user/alice#top", "/%2F%2Fevil"])
def test_paths_on_this_app_are_kept(value):
    assert local_next(value) == value


@pytest.mark.parametrize("value", [None, "", 5, "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil",
                                   "/a\\b", "https://evil.example/", "http:/evil", "javascript:alert(1)", "evil",
                                   "/ok\r\nSet-Cookie: a=b", "/tab\there", "/caf\u00e9", "/\u2215\u2215evil",
                                   "/" + "a" * 2048, " /lead", "/x\x00"], ids=repr)
def test_anything_else_lands_on_the_default(value):
    assert local_next(value) == "/"


ISSUER = "https://auth.example.test:8443"


def test_the_providers_own_issuer_once_passes():
    assert authorization_response_iss_problem([ISSUER], issuer=ISSUER, required=True) is None


def test_no_iss_passes_only_while_the_provider_does_not_advertise_it():
    assert authorization_response_iss_problem([], issuer=ISSUER, required=False) is None
    assert authorization_response_iss_problem([], issuer=ISSUER, required=True) == ISS_MISSING


@pytest.mark.parametrize("value", [
    "https://evil.example.test:8443",          # mix-up: another provider's response
    ISSUER + "/", ISSUER.upper(), "HTTPS://auth.example.test:8443", "https://auth.example.test",
    "https://auth.example.test:443", "http://auth.example.test:8443", "https%3A%2F%2Fauth.example.test%3A8443",
    " " + ISSUER, ISSUER + " ", ISSUER + "\x00", ISSUER + "\r\n", "https://auth.example.test:8443#",
    "https://auth.\u0435xample.test:8443",      # Cyrillic e
    "https://auth.example.test\uff1a8443", "", ISSUER * 100,
], ids=repr)
def test_any_other_issuer_is_wrong_even_when_not_required(value):
    for required in (True, False):
        assert authorization_response_iss_problem([value], issuer=ISSUER, required=required) == ISS_WRONG


@pytest.mark.parametrize("values", [[ISSUER, ISSUER], [ISSUER, "https://evil.example"], ["https://evil.example", ISSUER]])
def test_a_repeated_iss_is_refused_whichever_comes_first(values):
    assert authorization_response_iss_problem(values, issuer=ISSUER, required=True) == ISS_REPEATED


CLAIMS = {"preferred_username": "alice", "sub": "s-7f3a", "groups": ["staff"], "amr": ["pwd", "otp", "mfa"]}


def test_identity_from_sound_claims():
    assert identity_from_claims(CLAIMS) == Identity("alice", "s-7f3a", ("staff",), ("pwd", "otp", "mfa"))
    assert identity_from_claims({"preferred_username": "a", "sub": "1"}) == Identity("a", "1")


@pytest.mark.parametrize("change, claim", [
    ({"preferred_username": None}, "preferred_username"),
    ({"preferred_username": ""}, "preferred_username"),
    ({"preferred_username": "Alice"}, "preferred_username"),
    ({"preferred_username": "\uff41lice"}, "preferred_username"),
    ({"preferred_username": "a" * 257}, "preferred_username"),
    ({"preferred_username": 7}, "preferred_username"),
    ({"sub": None}, "sub"), ({"sub": ""}, "sub"), ({"sub": "a b"}, "sub"), ({"sub": "\u00e9"}, "sub"),
    ({"sub": "x" * 256}, "sub"), ({"sub": 7}, "sub"), ({"sub": "a\n"}, "sub"),
    ({"groups": "staff"}, "groups"), ({"groups": [1]}, "groups"), ({"groups": ["a b"]}, "groups"),
    ({"groups": ["g"] * 257}, "groups"), ({"groups": None}, "groups"),
    ({"amr": "pwd"}, "amr"), ({"amr": ["pwd", 1]}, "amr"), ({"amr": ["x" * 17]}, "amr"), ({"amr": ["pwd"] * 17}, "amr"),
], ids=repr)
def test_claims_outside_the_expected_form_are_malformed(change, claim):
    verdict = identity_from_claims({**CLAIMS, **change})
    assert isinstance(verdict, Malformed) and verdict.header == claim


PER_SUBJECT = 20  # each record's per-subject bound in these tests: small, so they reach the collapse
NOW = 1_800_000_000.0
TOKEN = {"iss": "https://auth.example.com", "aud": "microblog", "iat": NOW - 5, "jti": "j", "sid": "s1",
         "sub": "u1", "events": {EVENT: {}}}


def problem(**changes):
    claims = {k: v for k, v in {**TOKEN, **changes}.items() if v is not None}
    return logout_token_problem(claims, issuer="https://auth.example.com", client_id="microblog", now=NOW)


def test_a_logout_token_for_this_client_passes():
    assert problem() is None
    assert problem(aud=["other", "microblog"]) is None
    assert problem(sid=None) is None and problem(sub=None) is None
    assert problem(exp=NOW + 60) is None


@pytest.mark.parametrize("changes, reason", [
    ({"iss": "https://auth.example.com/"}, "wrong_issuer"), ({"iss": None}, "wrong_issuer"),
    ({"aud": "other"}, "wrong_audience"), ({"aud": ["other"]}, "wrong_audience"), ({"aud": None}, "wrong_audience"),
    ({"aud": {"microblog": 1}}, "wrong_audience"),
    ({"iat": None}, "bad_iat"), ({"iat": "1800000000"}, "bad_iat"), ({"iat": True}, "bad_iat"),
    ({"iat": NOW + 600}, "bad_iat"), ({"iat": NOW - 3600}, "bad_iat"),
    ({"exp": NOW - 600}, "expired"), ({"exp": "soon"}, "expired"),
    ({"events": None}, "not_a_logout_token"), ({"events": {}}, "not_a_logout_token"),
    ({"events": {EVENT: None}}, "not_a_logout_token"), ({"events": [EVENT]}, "not_a_logout_token"),
    ({"nonce": "n"}, "nonce_present"), ({"nonce": ""}, "nonce_present"),
    ({"sid": None, "sub": None}, "no_sid_or_sub"),
    ({"sid": ""}, "bad_sid_or_sub"), ({"sub": 5}, "bad_sid_or_sub"), ({"sid": "s" * 256}, "bad_sid_or_sub"),
], ids=repr)
def test_hostile_logout_claims_are_refused_with_a_reason(changes, reason):
    assert problem(**changes) == reason


def test_ended_sid_and_subject():
    clock = [NOW]
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, clock=lambda: clock[0])
    ended.end("s1", "u1", NOW)
    assert ended.is_ended("s1", "u1", NOW - 10)
    assert not ended.is_ended("s2", "u1", NOW - 10)          # a sid names one sign-in
    ended.end(None, "u2", NOW)
    assert ended.is_ended("s9", "u2", NOW - 1) and ended.is_ended(None, "u2", NOW)
    assert not ended.is_ended("s9", "u2", NOW + 1)           # signed in after the logout
    clock[0] = NOW + MAX_SIGN_IN_SECONDS - 1
    ended.end("s3", None, clock[0])
    assert ended.is_ended("s1", "u1", NOW - 10)              # kept while its sign-in could still be used
    assert sign_in_expired(NOW - 10, clock[0])
    clock[0] = NOW + MAX_SIGN_IN_SECONDS + 1
    ended.end("s4", None, clock[0])                          # old entries are forgotten as new ones come
    assert not ended.is_ended("s1", "u1", NOW - 10)


@pytest.mark.parametrize("keep", [0, 100, MAX_SIGN_IN_SECONDS - 1, float("nan")])
def test_ended_records_are_never_kept_shorter_than_a_sign_in_lasts(keep):
    """Forgotten sooner, the record of a Logout would let a copy of the cookie in again."""
    with pytest.raises(ValueError, match="keep_seconds"):
        MemoryEndedSessions(per_subject=PER_SUBJECT, keep_seconds=keep)


@pytest.mark.parametrize("age, expired", [
    (0, False), (MAX_SIGN_IN_SECONDS, False), (MAX_SIGN_IN_SECONDS + 0.001, True), (30 * 86_400, True),
    (-60, False),                     # another instance's clock a little ahead
    (float("nan"), True), (float("inf"), True),
])
def test_a_sign_in_lasts_a_day(age, expired):
    assert sign_in_expired(NOW - age, NOW) is expired


def test_ended_record_is_full_only_of_distinct_subjects_never_by_forgetting_a_record_still_needed():
    """A full record used to forget its oldest entry: one user's sign-outs flushed another's. It
    forgets nothing under a day old; only ``max_entries`` distinct subjects with such records fill
    it (and no sign-in starts while it is full)."""
    clock = [NOW]
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, max_entries=10, clock=lambda: clock[0])
    for i in range(9):
        ended.end(f"s{i}", f"u{i}", NOW)
    assert not ended.full()
    ended.end(None, "u9", NOW)
    assert ended.full()                                       # no sign-in starts now
    for i in range(10, 20):                                   # sign-ins made before it still end, recorded
        ended.end(f"s{i}", f"u{i}", NOW)
    assert all(ended.is_ended(f"s{i}", "u", NOW) for i in range(20) if i != 9) and ended.is_ended(None, "u9", NOW - 1)
    clock[0] = NOW + MAX_SIGN_IN_SECONDS - 1
    assert ended.full() and ended.is_ended("s0", "u", NOW)   # still needed: a sign-in lasts a day
    clock[0] = NOW + MAX_SIGN_IN_SECONDS + 1
    assert not ended.full() and not ended.is_ended("s0", "u", NOW) and not ended.is_ended(None, "u9", NOW - 1)


def cycle(ended, sub, times, start=NOW):
    """``sub`` signs in and out ``times`` times, one second apart: sign-in ``i`` made at ``start + 2i``,
    its Logout at ``start + 2i + 1`` (the sid the extension gives a local sign-in is random)."""
    for i in range(times):
        ended.end(f"{sub}-sid-{i}", sub, start + 2 * i + 1)


@pytest.mark.parametrize("sign_outs", [21, 100, 200])
def test_a_persons_sign_outs_in_a_day_leave_their_other_devices_signed_in(sign_outs):
    # With a bound of 20, 21 sign-outs at a kiosk collapsed alice's records into "every sign-in
    # before the last", and the phone she signed in on that morning was signed out (found by review,
    # session 14). The default bound is far above a person's day.
    ended = MemoryEndedSessions(clock=lambda: NOW + 10_000)
    phone_signed_in_at = NOW - 3600
    cycle(ended, "alice", sign_outs)
    assert not ended.is_ended("phone-sid", "alice", phone_signed_in_at)
    assert all(ended.is_ended(f"alice-sid-{i}", "alice", NOW + 2 * i) for i in range(sign_outs))


def test_one_subject_signing_in_and_out_over_and_over_never_fills_the_record_nor_drops_anothers_logout():
    """One account cycling sign-in and sign-out (no password needed while its authsvc session lives)
    used to fill the record with its own Logouts, and then every sign-in of everybody was a 503 for
    a day. A subject's own records are now collapsed past PER_SUBJECT, so it holds one entry or so."""
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, max_entries=3, clock=lambda: NOW + 10_000)
    ended.end("victim-sid", "victim", NOW)
    for i in range(PER_SUBJECT * 500):
        ended.end(f"m-{i}", "mallory", NOW + i / 100)
        assert not ended.full(), i
    assert ended.is_ended("victim-sid", "victim", NOW - 1)   # the victim's stolen cookie: still refused
    assert not ended.is_ended("carol-sid", "carol", NOW)     # another user's sign-in: still fine


def test_a_subjects_collapsed_records_still_refuse_each_of_its_sign_ins_made_before_them():
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, clock=lambda: NOW)
    cycle(ended, "mallory", PER_SUBJECT * 3)
    for i in range(PER_SUBJECT * 3):                          # each copy of a signed-out cookie
        assert ended.is_ended(f"mallory-sid-{i}", "mallory", NOW + 2 * i), i
    assert ended.is_ended("mallory-other-device", "mallory", NOW + 1)   # stricter for that subject only


def test_a_collapse_never_refuses_a_sign_in_made_after_it():
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, clock=lambda: NOW)
    cycle(ended, "mallory", PER_SUBJECT + 1)                 # collapsed at the last Logout
    last = NOW + 2 * PER_SUBJECT + 1
    assert ended.is_ended("new", "mallory", last)            # made at the collapse time: refused
    assert not ended.is_ended("new", "mallory", last + 0.001)
    ended.end("after", "mallory", last + 5)                  # it keeps recording sid by sid after it
    assert ended.is_ended("after", "mallory", last + 4) and not ended.is_ended("new", "mallory", last + 1)


@pytest.mark.parametrize("victim_end", [("v-sid", "victim"), ("v-sid", None), (None, "victim")], ids=repr)
def test_an_ended_record_of_another_subject_survives_any_amount_of_cycling(victim_end):
    clock = [NOW]
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, clock=lambda: clock[0])
    ended.end(*victim_end, NOW)
    for rounds in range(10):
        clock[0] = NOW + rounds * 3600                        # within the day the record must hold
        cycle(ended, "mallory", PER_SUBJECT * 100, start=clock[0])
        cycle(ended, f"mallory{rounds}", PER_SUBJECT + 1, start=clock[0])
        assert ended.is_ended("v-sid", "victim", NOW - 1), rounds
    assert not ended.is_ended("v2-sid", "victim2", NOW - 1)


def test_ended_sids_move_between_subjects_without_a_trace():
    """A sid ended again (under its subject, or another) leaves no stale entry in either subject's share."""
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, clock=lambda: NOW)
    ended.end("s", "u1", NOW)
    ended.end("s", "u2", NOW + 1)
    cycle(ended, "u1", PER_SUBJECT + 1, start=NOW + 10)      # u1 collapses: "s" is u2's now, kept
    assert ended.is_ended("s", "u2", NOW + 100)


def test_ending_again_moves_an_entry_behind_the_younger_ones():
    """Entries are forgotten from the front, oldest first, stopping at the first one still needed:
    an entry ended again must not stay in front with its new time, shielding older ones, nor be
    forgotten by its first time."""
    clock = [NOW]
    ended = MemoryEndedSessions(per_subject=PER_SUBJECT, clock=lambda: clock[0])
    ended.end(None, "u1", NOW)
    ended.end(None, "u2", NOW + 100)
    ended.end(None, "u1", NOW + 200)                          # u1 signed out everywhere again
    clock[0] = NOW + MAX_SIGN_IN_SECONDS + 150
    ended.end("s", None, clock[0])
    assert not ended.is_ended(None, "u2", NOW + 50)           # forgotten: too old
    assert ended.is_ended(None, "u1", NOW + 150)              # kept by its latest end
    ended.end(None, "u1", NOW)                                # an older logout never moves it back
    assert ended.is_ended(None, "u1", NOW + 150)


@pytest.mark.parametrize("claims", [
    {"aud": "microblog"}, {"aud": ["microblog"]}, {"aud": "microblog", "azp": "microblog"},
    {"aud": ["microblog", "other"], "azp": "microblog"}, {"aud": ["other", "microblog"], "azp": "microblog"},
], ids=repr)
def test_an_id_token_for_this_client_passes(claims):
    assert id_token_audience_problem(claims, "microblog") is None


@pytest.mark.parametrize("claims, reason", [
    ({}, WRONG_AUDIENCE), ({"aud": None}, WRONG_AUDIENCE), ({"aud": []}, WRONG_AUDIENCE),
    ({"aud": "other"}, WRONG_AUDIENCE), ({"aud": "other", "azp": "microblog"}, WRONG_AUDIENCE),
    ({"aud": ["other"], "azp": "microblog"}, WRONG_AUDIENCE), ({"aud": "Microblog"}, WRONG_AUDIENCE),
    ({"aud": "microblog "}, WRONG_AUDIENCE), ({"aud": {"microblog": 1}}, WRONG_AUDIENCE),
    ({"aud": ("microblog",)}, WRONG_AUDIENCE), ({"aud": "microblog,other"}, WRONG_AUDIENCE),
    ({"aud": ["microblog", "other"]}, WRONG_AZP), ({"aud": ["microblog", "microblog"]}, WRONG_AZP),
    ({"aud": ["microblog", "other"], "azp": "other"}, WRONG_AZP),
    ({"aud": "microblog", "azp": "other"}, WRONG_AZP), ({"aud": "microblog", "azp": None}, WRONG_AZP),
    ({"aud": "microblog", "azp": ""}, WRONG_AZP), ({"aud": "microblog", "azp": ["microblog"]}, WRONG_AZP),
], ids=repr)
def test_an_id_token_for_another_client_or_none_is_refused(claims, reason):
    assert id_token_audience_problem(claims, "microblog") == reason


def test_a_sign_in_start_keeps_only_the_latest_few_under_way():
    session = {f"{PENDING}s{i}": {"data": {}, "exp": NOW + i} for i in range(8)}
    session.update({"_authsvc_next": "/", "_state_other_x": {"exp": 0}, "_authsvc": {"u": "alice"}})
    dropped = stale_pending_sign_ins(session, keep=5)
    assert dropped == [f"{PENDING}s{i}" for i in range(4)]     # the oldest; four kept, plus the new one
    assert stale_pending_sign_ins({f"{PENDING}a": {"exp": NOW}}, keep=5) == []
    assert stale_pending_sign_ins({}, keep=5) == []
    assert stale_pending_sign_ins({f"{PENDING}a": {"exp": NOW}}, keep=1) == [f"{PENDING}a"]


@pytest.mark.parametrize("odd", [None, "soon", float("nan"), float("inf"), [], "x"], ids=repr)
def test_a_pending_sign_in_without_a_usable_expiry_is_dropped_first(odd):
    session = {f"{PENDING}new{i}": {"exp": NOW + i} for i in range(4)}
    session[f"{PENDING}odd"] = odd if odd == "x" else {"exp": odd}
    assert stale_pending_sign_ins(session, keep=5) == [f"{PENDING}odd"]


@pytest.mark.parametrize("last, now, due", [
    (None, 0.0, True), (100.0, 100.0, False), (100.0, 104.9, False), (100.0, 105.0, True), (100.0, 1e9, True),
    (100.0, 50.0, False),            # a clock behind the last fetch: not due
])
def test_the_jwks_is_fetched_again_at_most_every_five_seconds(last, now, due):
    assert jwks_refresh_due(last, now, every=5.0) is due
