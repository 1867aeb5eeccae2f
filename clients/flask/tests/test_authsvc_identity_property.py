"""Property tests: read_identity never raises, and what it accepts is exactly authsvc's form; the OIDC
callback's iss check passes exactly the issuer, once."""

from __future__ import annotations

import re

import pytest

hypothesis = pytest.importorskip("hypothesis")
from flask_authsvc.identity import HEADERS, Identity, Malformed, read_identity
from flask_authsvc.logsafe import escape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

names = st.sampled_from([*HEADERS, *(h.lower() for h in HEADERS), "Cookie", "X-Auth-User2"])
values = st.one_of(st.text(max_size=40), st.text(alphabet="abcz09,. @+_-A\t\n\u0430", max_size=30),
                   st.sampled_from(["alice", "7", "pwd,otp,mfa", "admins, staff", "", " "]))


# Shared CPUs: no deadline, and slow generation is no failure.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(names, st.lists(values, max_size=3), max_size=6))
def test_never_raises_and_accepts_only_authsvc_form(headers):
    verdict = read_identity(headers)
    if isinstance(verdict, Identity):
        assert re.fullmatch(r"[a-z0-9._@+-]{1,256}", verdict.username, re.ASCII)
        assert re.fullmatch(r"[0-9]{1,20}", verdict.user_id, re.ASCII)
        assert all(re.fullmatch(r"[A-Za-z0-9._@+:-]{1,128}", g, re.ASCII) for g in verdict.groups)
        assert all(re.fullmatch(r"[a-z]{1,16}", m, re.ASCII) for m in verdict.methods)
    elif isinstance(verdict, Malformed):
        assert verdict.header in HEADERS


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_escaped_log_values_are_one_printable_ascii_line(value):
    out = escape(value)
    assert out.isascii() and out.isprintable() and "\n" not in out and "\r" not in out
    assert len(out) <= 120 * 10 + 3


ISSUER = "https://auth.example.test:8443"
near_issuers = st.one_of(st.text(max_size=60), st.builds(lambda a, b: a + ISSUER + b, st.text(max_size=3),
                                                         st.text(max_size=3)))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_issuers, max_size=3), st.booleans())
def test_an_authorization_response_passes_the_iss_check_only_with_the_issuer_once(values, required):
    """RFC 9207: whatever the query carried, the response passes only with exactly the issuer, once
    (or nothing, while the provider does not advertise iss)."""
    from flask_authsvc.redirects import authorization_response_iss_problem

    passed = authorization_response_iss_problem(values, issuer=ISSUER, required=required) is None
    assert passed == (values == [ISSUER] or (values == [] and not required))
