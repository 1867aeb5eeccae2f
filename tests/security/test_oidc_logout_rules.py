"""The pure logout rules (authsvc.rules.oidc_logout): hostile return addresses, hint claims, the
logout-CSRF decision, delivery verdicts; with hypothesis where a property says it all."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules import oidc_logout as r

REG = ("https://app.example.com/signed-out", "https://app.example.com/bye?x=1")
ISS = "https://auth.example.test"
NOW = 1_800_000_000


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", [
    "https://app.example.com/signed-out/", "https://app.example.com/signed-ou", "HTTPS://app.example.com/signed-out",
    "https://APP.example.com/signed-out", "https://app.example.com/signed-out#", "https://app.example.com/signed-out?",
    "https://app.example.com/bye", "https://app.example.com/bye?x=1&y=2", "https://app.example.com/bye?x=2",
    "javascript:alert(1)", "https://app.example.com/signed-out\x00", " https://app.example.com/signed-out",
    "https://app.example.com/signed-out\t", "https://app.example.com/signed%2Dout", "https://app.exаmple.com/signed-out",
    "https://app.example.com:443/signed-out", "//app.example.com/signed-out", "https://app.example.com\\signed-out",
])
def test_anything_but_a_registered_string_is_not_registered(uri):
    assert r.post_logout_redirect_verdict(uri, REG) == "not_registered"


def test_missing_huge_and_clientless():
    assert r.post_logout_redirect_verdict(None, REG) == "missing"
    assert r.post_logout_redirect_verdict("", REG) == "missing"
    assert r.post_logout_redirect_verdict(REG[0] + "a" * 3000, REG) == "too_long"
    assert r.post_logout_redirect_verdict(REG[0], None) == "no_client"
    assert r.post_logout_redirect_verdict(["x"], REG) == "not_registered"


@given(st.text(max_size=80))
def test_ok_exactly_for_members(uri):
    assert (r.post_logout_redirect_verdict(uri, REG) == r.OK) == (uri in REG)


def test_logout_location_refuses_what_the_verdict_refuses():
    assert r.logout_location(REG[1], REG, "a b") == REG[1] + "&state=a+b"
    assert r.logout_location(REG[0], REG, None) == REG[0]
    with pytest.raises(ValueError):
        r.logout_location("https://evil.example/", REG, "s")


def claims(**kw):
    base = {"iss": ISS, "aud": ["c1"], "sub": "s", "sid": "x", "iat": NOW - 10}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize("header,claim,expected", [
    ({"alg": "none"}, claims(), "alg_refused"),
    ({"alg": "HS256"}, claims(), "alg_refused"),
    ({"alg": "es256"}, claims(), "alg_refused"),
    ({"alg": "ES256"}, claims(iss="https://evil.example"), "wrong_issuer"),
    ({"alg": "ES256"}, claims(iss=ISS + "/"), "wrong_issuer"),
    ({"alg": "ES256"}, claims(aud=None), "no_audience"),
    ({"alg": "ES256"}, claims(aud=[]), "no_audience"),
    ({"alg": "ES256"}, claims(aud=[1]), "no_audience"),
    ({"alg": "ES256"}, claims(aud=["c2"]), "client_mismatch"),
    ({"alg": "ES256"}, claims(sub=""), "no_subject"),
    ({"alg": "ES256"}, claims(sub=5), "no_subject"),
    ({"alg": "ES256"}, claims(sid=5), "malformed"),
    ({"alg": "ES256"}, claims(iat=True), "malformed"),
    ({"alg": "ES256"}, claims(iat="1"), "malformed"),
    ({"alg": "ES256"}, claims(iat=NOW + 3600), "issued_in_future"),
    ({"alg": "ES256"}, claims(iat=NOW - 86401), "too_old"),
    ({"alg": "RS256"}, claims(), "ok"),
    ({"alg": "ES256"}, claims(aud="c1"), "ok"),
])
def test_hint_claims(header, claim, expected):
    assert r.hint_claims_verdict(header, claim, issuer=ISS, client_id="c1", now=NOW, max_age=86400) == expected


def test_hint_client_prefers_azp_then_a_single_audience():
    assert r.hint_client({"azp": "a", "aud": ["b", "c"]}) == "a"
    assert r.hint_client({"aud": "b"}) == "b" and r.hint_client({"aud": ["b"]}) == "b"
    assert r.hint_client({"aud": ["b", "c"]}) is None


@pytest.mark.asvs("V10.6.2")
@given(st.booleans(), st.one_of(st.none(), st.text(max_size=5)), st.one_of(st.none(), st.text(max_size=5)),
       st.one_of(st.none(), st.text(max_size=5)), st.one_of(st.none(), st.text(max_size=5)))
def test_only_a_hint_naming_this_session_and_user_ends_it_without_asking(signed_in, hsid, hsub, ssid, ssub):
    step = r.logout_step(signed_in=signed_in, hint_sid=hsid, hint_sub=hsub, session_sid=ssid, session_sub=ssub)
    if not signed_in:
        assert step == r.NOTHING_TO_END
    elif step == r.END_NOW:
        assert hsid and hsid == ssid and hsub is not None and hsub == ssub
    else:
        assert step == r.CONFIRM


def test_logout_token_claims_have_string_sid_and_no_nonce():
    c = r.logout_token_claims(issuer=ISS, client_id="c", sub="s", sid="x", now=NOW + 0.7, lifetime=120, jti="j")
    assert c == {"iss": ISS, "aud": "c", "iat": NOW, "exp": NOW + 120, "jti": "j", "sub": "s", "sid": "x",
                 "events": {r.BACKCHANNEL_EVENT: {}}}


@pytest.mark.parametrize("status,verdict", [
    (200, "delivered"), (204, "delivered"), (None, "retry"), (500, "retry"), (503, "retry"), (429, "retry"),
    (408, "retry"), (400, "give_up"), (401, "give_up"), (404, "give_up"), (301, "give_up"), (302, "give_up"),
    (100, "give_up"),
])
def test_delivery_verdicts(status, verdict):
    assert r.delivery_verdict(status) == verdict


def test_backoff_doubles_and_is_capped():
    assert [r.backoff_seconds(a, 1.0) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert r.backoff_seconds(30, 1.0) == 60.0


# --- boundaries (each pins one edge a one-character change would move: scripts/mutation) ---------

def _hint(**claims):
    base = {"iss": ISS, "aud": "wiki", "sub": "s-1", "sid": "7", "iat": NOW}
    base.update(claims)
    return base


def test_a_return_address_of_exactly_the_cap_is_still_judged_by_the_list():
    at_cap = "https://app.example.com/" + "a" * (r.MAX_REDIRECT_URI - len("https://app.example.com/"))
    assert len(at_cap) == r.MAX_REDIRECT_URI
    assert r.post_logout_redirect_verdict(at_cap, (at_cap,)) == r.OK
    assert r.post_logout_redirect_verdict(at_cap + "a", (at_cap + "a",)) == "too_long"


def test_an_unregistered_return_address_raises_with_its_own_message():
    with pytest.raises(ValueError, match=r"^post_logout_redirect_uri not registered for this client$"):
        r.logout_location("https://evil.example/", REG, "s")


@pytest.mark.parametrize("aud", [{"wiki": 1}, 7, None, True, ("wiki",)])
def test_an_audience_neither_a_string_nor_a_list_is_no_audience(aud):
    assert r.hint_claims_verdict({"alg": "ES256"}, _hint(aud=aud), issuer=ISS, client_id="wiki", now=NOW,
                                 max_age=3600) == "no_audience"


def test_a_hint_issued_exactly_at_the_skew_or_exactly_max_age_ago_is_still_accepted():
    judge = lambda iat: r.hint_claims_verdict({"alg": "ES256"}, _hint(iat=iat), issuer=ISS, client_id="wiki",
                                              now=NOW, max_age=3600)
    assert judge(NOW + r.CLOCK_SKEW_SECONDS) == r.OK and judge(NOW + r.CLOCK_SKEW_SECONDS + 1) == "issued_in_future"
    assert judge(NOW - 3600) == r.OK and judge(NOW - 3601) == "too_old"


def test_an_empty_azp_falls_back_to_the_single_audience():
    assert r.hint_client({"azp": "", "aud": "wiki"}) == "wiki"
    assert r.hint_client({"azp": "other", "aud": "wiki"}) == "other"


def test_a_hint_without_a_subject_never_ends_the_session_at_once():
    """Same sid, but neither side names a user: ask first (None == None is no match)."""
    assert r.logout_step(signed_in=True, hint_sid="7", hint_sub=None, session_sid="7", session_sub=None) == r.CONFIRM


def test_a_3xx_from_a_receiver_is_not_a_delivery():
    assert r.delivery_verdict(299) == r.DELIVERED
    assert r.delivery_verdict(300) == r.GIVE_UP and r.delivery_verdict(301) == r.GIVE_UP


@pytest.mark.parametrize("state, verdict", [
    (None, "ok"), ("s", "ok"), ("x" * 1024, "ok"),
    ("", "invalid_state"), ("x" * 1025, "invalid_state"), (123, "invalid_state"), (b"s", "invalid_state"),
    (["s"], "invalid_state"),
])
def test_state_is_returned_only_when_it_is_a_short_string(state, verdict):
    assert r.state_verdict(state) == verdict


@pytest.mark.parametrize("registered", ["https://app.example.com/signed-out", "https://app.example.com/bye?from=idp",
                                        "http://127.0.0.1:7000/bye"])
def test_no_single_edit_of_a_registered_logout_uri_is_accepted(registered):
    """authentik CVE-2024-52289's class on the logout side: the registered post-logout redirect
    URI is a string, never a pattern; every string one edit away from it is refused."""
    from tests.security.test_oidc_redirect_rules import single_edits

    accepted = [e for e in set(single_edits(registered)) - {registered}
                if r.post_logout_redirect_verdict(e, (registered,)) == r.OK]
    assert accepted == []
    assert r.post_logout_redirect_verdict(registered, (registered,)) == r.OK
