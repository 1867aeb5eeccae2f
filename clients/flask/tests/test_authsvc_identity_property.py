"""Property tests: read_identity never raises, and what it accepts is exactly authsvc's form; the OIDC
callback's iss check passes exactly the issuer, once; the record of ended sign-ins, bounded per
subject, is never less strict than one keeping every record."""

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

PER_SUBJECT = 20  # each record's per-subject bound in these tests: small, so they reach the collapse


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


# --- the record of ended sign-ins against a naive one that keeps every record apart ---------------

_subjects = st.sampled_from(["u1", "u2", "u3"])
# (kind, subject, n, seconds later): "sid" ends sid n of the subject, "loose" a sid with no subject,
# "sub" every sign-in of the subject so far, "burst" n + 10 fresh sids of the subject one by one.
_ends = st.lists(st.tuples(st.sampled_from(["sid", "sid", "sub", "loose", "burst"]), _subjects,
                           st.integers(0, 30), st.sampled_from([0, 1, 3600, 86_400])), max_size=40)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ends, st.integers(1, 4))
def test_ended_record_is_never_less_strict_than_keeping_every_record_and_counts_distinct_subjects(ends, most):
    """Collapsing a subject's sids (past PER_SUBJECT) ends nothing of another subject's and nothing
    of its own made after them, and lets through no sign-in the naive record refuses (of a sid: made
    before that sid was ended, with the sid's own subject, as every sign-in is); full() is true
    exactly with ``most`` distinct subjects (or subject-less sids) holding records under a day old."""
    from flask_authsvc.logout_tokens import MAX_SIGN_IN_SECONDS, MemoryEndedSessions

    now = [1_000_000.0]
    ended = MemoryEndedSessions(max_entries=most, clock=lambda: now[0], per_subject=PER_SUBJECT)
    owner, sid_at, sub_at = {}, {}, {}     # naive: sid -> subject, sid -> ended at, subject -> ended at
    collapsed, share = {}, {}              # subject -> when it last collapsed, its sids since

    def young(at):
        return at is not None and not at < now[0] - MAX_SIGN_IN_SECONDS

    def end_sid(sid, sub):
        ended.end(sid, sub, now[0])
        if sid in owner and owner[sid] is not None:
            share[owner[sid]].discard(sid)
        owner[sid], sid_at[sid] = sub, now[0]
        if sub is not None:
            share[sub] = {s for s in share.get(sub, set()) if young(sid_at[s])} | {sid}
            if len(share[sub]) > PER_SUBJECT:
                collapsed[sub], share[sub] = now[0], set()

    for step, (kind, sub, n, later) in enumerate(ends):
        now[0] += later
        if kind == "sub":
            ended.end(None, sub, now[0])
            sub_at[sub] = now[0]
        elif kind == "burst":
            for i in range(n + 10):
                end_sid(f"{sub}-burst{step}-{i}", sub)
        else:
            end_sid(f"{sub}-{n}" if kind == "sid" else f"loose-{n}", sub if kind == "sid" else None)
        live = {owner[s] or s for s, at in sid_at.items() if young(at)}
        live |= {s for s, at in (*sub_at.items(), *collapsed.items()) if young(at)}
        assert ended.full() is (len(live) >= most)
        for query_sub in ("u1", "u2", "u3"):
            for t in (now[0] - 5000, now[0] - 1, now[0], now[0] + 1):
                for query_sid in (None, *list(sid_at)[-5:], f"{query_sub}-0", "loose-0"):
                    # A sign-in is made before it is ended: a sid ended at ``at`` is asked about at ``t <= at``.
                    # And a sid is presented with its own subject (both from one ID token, or random).
                    if query_sid is not None and (owner.get(query_sid) not in (None, query_sub)
                                                  or young(sid_at.get(query_sid)) and t > sid_at[query_sid]):
                        continue
                    naive = young(sid_at.get(query_sid)) or (young(sub_at.get(query_sub)) and t <= sub_at[query_sub])
                    real = ended.is_ended(query_sid, query_sub, t)
                    assert real or not naive                      # never less strict
                    if real and not naive:                        # stricter only for a collapsed subject
                        assert young(collapsed.get(query_sub)) and t <= collapsed[query_sub]
