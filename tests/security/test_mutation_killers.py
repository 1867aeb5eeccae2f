"""Boundary tests for the security core's pure decisions, written to kill mutants that
``scripts/mutation`` found surviving the other test modules (see docs/mutation.md).

Each test pins one edge a one-character change in the code would move: ``>=`` versus ``>``,
an off-by-one in a cap, a reason code, a default. They are cheap (no HTTP, no argon2), so they
also run in the mutation test selection of pyproject.toml's ``[tool.mutmut]``.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from authsvc.policy import load_policy
from authsvc.sessions import LIVE, SessionRecord, needs_touch, session_verdict
from authsvc.throttle import Verdict, backoff_seconds, block_after_failure, decide, window_full

POLICY = load_policy()
SESSIONS = dataclasses.replace(POLICY.sessions, idle_timeout_seconds=600, absolute_lifetime_seconds=3600,
                               touch_interval_seconds=60)
THROTTLE = dataclasses.replace(POLICY.throttle, failures_before_backoff=3, failure_window_seconds=300,
                               backoff_initial_seconds=30, backoff_max_seconds=900, max_consecutive_failures=10)


def record(**changes) -> SessionRecord:
    base = SessionRecord(id=7, user_id=3, username="alice", user_disabled=False, created_at=1000.0,
                         last_seen_at=1000.0, expires_at=1000.0 + 3600, remembered=False,
                         client_ip="192.0.2.1", user_agent="test", revoked_at=None)
    return dataclasses.replace(base, **changes)


# --- sessions.session_verdict / needs_touch -------------------------------------------------------


@pytest.mark.asvs("V7.3.1")
def test_idle_session_ends_exactly_at_the_idle_timeout_not_a_second_later():
    rec = record()
    assert session_verdict(rec, 1000.0 + 599.999, SESSIONS) == LIVE
    assert session_verdict(rec, 1000.0 + 600, SESSIONS) == "idle"
    assert session_verdict(rec, 1000.0 + 601, SESSIONS) == "idle"


@pytest.mark.asvs("V7.3.2")
def test_session_ends_exactly_at_its_absolute_expiry_even_while_active():
    rec = record(last_seen_at=1000.0 + 3599)
    assert session_verdict(rec, 1000.0 + 3599.5, SESSIONS) == LIVE
    assert session_verdict(rec, 1000.0 + 3600, SESSIONS) == "expired"
    assert session_verdict(rec, 1000.0 + 3601, SESSIONS) == "expired"


@pytest.mark.asvs("V7.4.1", "V7.4.2")
def test_revocation_and_disabling_win_over_a_fresh_unexpired_session():
    assert session_verdict(record(revoked_at=1000.0), 1000.0, SESSIONS) == "revoked"
    assert session_verdict(record(revoked_at=0.0), 1000.0, SESSIONS) == "revoked"  # falsy time still revokes
    assert session_verdict(record(user_disabled=True), 1000.0, SESSIONS) == "disabled"
    # Both: revocation is reported first (the audit reason must not depend on the account state).
    assert session_verdict(record(revoked_at=1.0, user_disabled=True), 1000.0, SESSIONS) == "revoked"
    assert session_verdict(None, 1000.0, SESSIONS) == "unknown"


@pytest.mark.asvs("V7.3.2")
def test_an_expired_session_reports_expired_before_idle():
    rec = record(last_seen_at=1000.0)
    assert session_verdict(rec, 1000.0 + 3600, SESSIONS) == "expired"


def test_a_verdict_of_a_live_session_is_the_live_constant():
    assert LIVE == "live"
    assert session_verdict(record(), 1000.0, SESSIONS) == "live"


def test_last_seen_is_written_exactly_once_the_touch_interval_has_passed():
    rec = record()
    assert not needs_touch(rec, 1000.0, SESSIONS)
    assert not needs_touch(rec, 1000.0 + 59.999, SESSIONS)
    assert needs_touch(rec, 1000.0 + 60, SESSIONS)
    assert needs_touch(rec, 1000.0 + 61, SESSIONS)


# --- throttle.decide / backoff_seconds / block_after_failure ----------------------------------------


@pytest.mark.asvs("V6.3.1")
def test_lock_out_starts_exactly_at_max_consecutive_failures_and_names_the_reason():
    assert decide(9, 0.0, 5000.0, THROTTLE) == Verdict(True, 0, "ok")
    locked = decide(10, 0.0, 5000.0, THROTTLE)
    assert locked == Verdict(False, THROTTLE.backoff_max_seconds, "locked")
    assert decide(11, 0.0, 5000.0, THROTTLE).reason == "locked"
    # Locked wins over an active back-off.
    assert decide(10, 6000.0, 5000.0, THROTTLE).reason == "locked"


@pytest.mark.asvs("V6.3.1")
def test_back_off_refuses_until_its_end_and_rounds_the_wait_up():
    assert decide(4, 5030.0, 5000.0, THROTTLE) == Verdict(False, 30, "backoff")
    assert decide(4, 5030.0, 5029.2, THROTTLE) == Verdict(False, 1, "backoff")  # ceil(0.8)
    assert decide(4, 5030.0, 5029.999, THROTTLE).retry_after == 1
    assert decide(4, 5030.0, 5000.5, THROTTLE).retry_after == 30  # ceil(29.5)
    assert decide(4, 5030.0, 5030.0, THROTTLE).allowed  # the block is over at its end time
    assert decide(4, 5030.0, 5031.0, THROTTLE).allowed


def test_an_allowed_verdict_has_no_wait_and_reason_ok():
    verdict = decide(0, 0.0, 0.0, THROTTLE)
    assert verdict.allowed is True and verdict.retry_after == 0 and verdict.reason == "ok"
    assert Verdict(True) == Verdict(True, 0, "ok")


@pytest.mark.asvs("V6.3.1")
def test_backoff_doubles_from_the_initial_value_after_the_free_failures_and_is_capped():
    assert [backoff_seconds(n, THROTTLE) for n in range(0, 10)] == \
        [30.0, 30.0, 30.0, 30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0]
    assert backoff_seconds(10_000, THROTTLE) == 900.0  # no overflow, no float('inf')
    assert isinstance(backoff_seconds(3, THROTTLE), float)
    tiny = dataclasses.replace(THROTTLE, backoff_initial_seconds=1, backoff_max_seconds=10**12)
    # The exponent is capped at 32, so a huge count cannot build a huge integer.
    assert backoff_seconds(3 + 40, tiny) == float(2 ** 32)
    assert backoff_seconds(3 + 32, tiny) == float(2 ** 32)
    assert backoff_seconds(3 + 31, tiny) == float(2 ** 31)


@pytest.mark.asvs("V6.3.1")
def test_window_counts_failures_strictly_inside_it():
    now = 10_000.0
    inside = [now - 299, now - 100, now]
    assert window_full(inside, now, THROTTLE)
    assert not window_full(inside[1:], now, THROTTLE)
    # A failure exactly one window old has left it.
    assert not window_full([now - 300, now - 100, now], now, THROTTLE)
    assert window_full([now - 299.999, now - 100, now], now, THROTTLE)


@pytest.mark.asvs("V6.3.1")
def test_block_after_failure_starts_when_the_window_fills():
    now = 10_000.0
    assert block_after_failure([now - 10, now], 2, now, 0.0, THROTTLE) is None
    assert block_after_failure([now - 20, now - 10, now], 3, now, 0.0, THROTTLE) == now + 30
    assert block_after_failure([now - 20, now - 10, now], 4, now, 0.0, THROTTLE) == now + 60
    assert block_after_failure([now - 20, now - 10, now], 5, now, 0.0, THROTTLE) == now + 120


@pytest.mark.asvs("V6.3.1")
def test_block_persists_while_failures_keep_coming_within_a_window_of_the_last_block():
    now = 10_000.0
    # Window not full (old failures aged out during a long block), but the last block ended
    # less than a window ago: still blocked, with the back-off of the consecutive count.
    assert block_after_failure([now], 6, now, now - 299, THROTTLE) == now + backoff_seconds(6, THROTTLE)
    assert block_after_failure([now], 6, now, now - 1, THROTTLE) == now + 240
    # Exactly a window after the last block ended: forgiven.
    assert block_after_failure([now], 6, now, now - 300, THROTTLE) is None
    assert block_after_failure([now], 6, now, now - 301, THROTTLE) is None
    # No previous block (0) never counts as persisting, whatever the clock says.
    assert block_after_failure([now], 6, 100.0, 0.0, THROTTLE) is None
    # A block in the future (still running) persists.
    assert block_after_failure([now], 6, now, now + 50, THROTTLE) == now + 240


def test_retry_after_is_an_int_the_retry_after_header_can_carry():
    verdict = decide(4, 5000.5, 5000.0, THROTTLE)
    assert isinstance(verdict.retry_after, int) and verdict.retry_after == math.ceil(0.5)
