"""What a rotated remember token presented again means: authsvc.core.remember.reuse_verdict and
presented_verdict, the pure decisions behind findings 4 and 5 of the December review.

A rotated token comes back in three situations: a second tab of the same browser raced the first
(within the grace: refuse, nothing else), the response carrying its successor never reached the
browser (neither the successor token nor its session was ever used: end them, restore this
browser), or two browsers hold it (the successor was used: theft, sign the user out everywhere).
The hostile inputs: every combination of the signals, times on and around the grace boundary, a
clock going backwards, NaN and infinities, unknown signals (a token rotated before successors
were recorded), a successor ended as unused that comes back anyway, and look-alike revoke reasons.
"""

from __future__ import annotations

import itertools
import math

import pytest

from authsvc.core.remember import (
    UNUSED_SUCCESSOR,
    TokenFacts,
    presented_verdict,
    reuse_verdict,
)

GRACE = 5.0
NOW = 1_800_000_000.0
SIGNALS = (True, False, None)  # used, never used, not known
TIMES = (-1e9, -GRACE - 1, -1.0, 0.0, GRACE - 1e-6, GRACE, GRACE + 1e-6, GRACE + 1, 60.0, 3600.0, 14 * 86400.0,
         1e12, math.inf, -math.inf, math.nan)


def within_grace(since: float) -> bool:
    # Written apart from the code: a race is a second use no later than the grace after the first
    # (a clock behind the rotating instance's included); an unknown time is not a race.
    return not math.isnan(since) and since <= GRACE


# --- reuse_verdict: every combination -----------------------------------------------------------------

@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("since, token_used, session_used", list(itertools.product(TIMES, SIGNALS, SIGNALS)))
def test_every_combination_of_time_and_successor_signals(since, token_used, session_used):
    verdict = reuse_verdict(since, GRACE, token_used, session_used)
    if within_grace(since):
        assert verdict == "race"
    elif token_used is False and session_used is False:
        assert verdict == "lost"
    else:
        assert verdict == "replay"


@pytest.mark.asvs("V7.4.1")
def test_the_grace_boundary_is_inclusive_and_one_microsecond_later_is_judged():
    assert reuse_verdict(GRACE, GRACE, True, True) == "race"
    assert reuse_verdict(GRACE + 1e-6, GRACE, True, True) == "replay"
    assert reuse_verdict(GRACE + 1e-6, GRACE, False, False) == "lost"


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("token_used, session_used", [(True, False), (False, True), (True, True)])
def test_any_use_of_the_successor_makes_a_late_reuse_theft(token_used, session_used):
    assert reuse_verdict(3600.0, GRACE, token_used, session_used) == "replay"


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("token_used, session_used", [(None, False), (False, None), (None, None)])
def test_not_knowing_whether_the_successor_was_used_counts_as_used(token_used, session_used):
    """A token rotated before successors were recorded: judged as it always was, as theft."""
    assert reuse_verdict(3600.0, GRACE, token_used, session_used) == "replay"


@pytest.mark.asvs("V7.4.1")
def test_an_unknown_time_since_the_rotation_is_never_a_race():
    assert reuse_verdict(math.nan, GRACE, True, True) == "replay"
    assert reuse_verdict(math.nan, GRACE, False, False) == "lost"


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("grace", [0.0, 1.0, 30.0])
def test_the_grace_is_the_policys_not_a_constant(grace):
    assert reuse_verdict(grace, grace, True, True) == "race"
    assert reuse_verdict(grace + 0.5, grace, True, True) == "replay"


@pytest.mark.parametrize("value", [0, 1, "", "False", "no", []], ids=repr)
def test_only_a_real_false_means_never_used(value):
    """A falsy stand-in for "never used" (0, "", an empty list) must not read as a lost response."""
    assert reuse_verdict(3600.0, GRACE, value, False) == "replay"
    assert reuse_verdict(3600.0, GRACE, False, value) == "replay"


# --- presented_verdict: the whole decision for a presented token --------------------------------------

def facts(**changes) -> TokenFacts:
    base = {"expires_at": NOW + 86400, "rotated_at": None, "revoked_at": None, "revoke_reason": None,
            "user_disabled": False, "successor_used": None, "successor_session_used": None}
    base.update(changes)
    return TokenFacts(**base)


def rotated(ago: float, token_used, session_used, **changes) -> TokenFacts:
    return facts(rotated_at=NOW - ago, successor_used=token_used, successor_session_used=session_used, **changes)


CASES = {
    "fresh token": (facts(), "ok"),
    "fresh token, account disabled": (facts(user_disabled=True), "disabled"),
    "fresh token, expired to the second": (facts(expires_at=NOW), "expired"),
    "fresh token, a second before expiry": (facts(expires_at=NOW + 1), "ok"),
    "revoked at logout": (facts(revoked_at=NOW - 60, revoke_reason="logout"), "revoked"),
    "revoked with every token of the user": (facts(revoked_at=NOW - 60, revoke_reason="all"), "revoked"),
    "revoked, no reason recorded (before 0004)": (facts(revoked_at=NOW - 60), "revoked"),
    "revoked and rotated": (rotated(60, False, False, revoked_at=NOW - 30, revoke_reason="logout"), "revoked"),
    "rotated, tab race": (rotated(1, True, True), "race"),
    "rotated, successor session used": (rotated(60, False, True), "replay"),
    "rotated, successor token used": (rotated(60, True, False), "replay"),
    "rotated, nothing used: lost response": (rotated(60, False, False), "lost"),
    "rotated, lost response, account disabled since": (rotated(60, False, False, user_disabled=True), "disabled"),
    "rotated, lost response, token expired since": (rotated(60, False, False, expires_at=NOW - 1), "expired"),
    "rotated, successor used, account disabled": (rotated(60, True, True, user_disabled=True), "replay"),
    "rotated, successor used, expired": (rotated(60, True, True, expires_at=NOW - 1), "replay"),
    "rotated before successors were recorded": (rotated(60, None, None), "replay"),
    "ended as unused, presented after all": (facts(revoked_at=NOW - 60, revoke_reason=UNUSED_SUCCESSOR), "replay"),
    "ended as unused, presented within the grace": (
        facts(revoked_at=NOW - GRACE, revoke_reason=UNUSED_SUCCESSOR), "race"),
    "ended as unused, account disabled since": (
        facts(revoked_at=NOW - 60, revoke_reason=UNUSED_SUCCESSOR, user_disabled=True), "replay"),
}


@pytest.mark.asvs("V7.4.1", "V7.4.2")
@pytest.mark.parametrize("name", list(CASES))
def test_presented_token(name):
    token, expected = CASES[name]
    assert presented_verdict(token, NOW, GRACE) == expected


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize("reason", ["UNUSED_SUCCESSOR", " unused_successor", "unused_successor\x00", "unused-successor",
                                    "unused_successor ", "ｕnused_successor", "unused"])
def test_only_the_exact_unused_reason_turns_a_revoked_token_into_replay(reason):
    assert presented_verdict(facts(revoked_at=NOW - 60, revoke_reason=reason), NOW, GRACE) == "revoked"


@pytest.mark.asvs("V7.4.1", "V7.4.2")
@pytest.mark.parametrize("ago, token_used, session_used, disabled, expired, revoked",
                         list(itertools.product((1.0, GRACE, 60.0, math.nan), SIGNALS, SIGNALS, (False, True),
                                                (False, True), (None, "logout", UNUSED_SUCCESSOR))))
def test_a_presented_token_restores_only_when_nothing_speaks_against_it(ago, token_used, session_used, disabled,
                                                                        expired, revoked):
    token = rotated(ago, token_used, session_used, user_disabled=disabled,
                    expires_at=NOW - 1 if expired else NOW + 1,
                    revoked_at=None if revoked is None else NOW - 60, revoke_reason=revoked)
    verdict = presented_verdict(token, NOW, GRACE)
    restores = verdict in ("ok", "lost")
    assert verdict != "ok", "a rotated token restored as if fresh"
    assert restores == (revoked is None and not disabled and not expired and not within_grace(ago)
                        and token_used is False and session_used is False)
    if revoked is None and not within_grace(ago) and (token_used is not False or session_used is not False):
        assert verdict == "replay"
