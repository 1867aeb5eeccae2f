"""Properties of the second step's decisions (authsvc.rules.second_step, authsvc.rules.auth_methods)
over arbitrary input.

* Reading a code never raises, whatever the text (lone surrogates included), and what it accepts
  is exactly six ASCII digits or a canonical recovery code; a shown recovery code reads back as
  itself however it is grouped or cased.
* Over any sequence of codes typed at any times, each step is accepted at most once, accepted
  steps strictly increase, and each lies within one step of the clock it was typed at: the same
  code twice, or an older code after a newer one, never gets in.
* ``mfa`` appears in a recorded or re-read method list exactly when its factors (or a passkey that
  verified its user) earn it.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.auth_methods import FACTOR, is_multi_factor, parse_methods, session_methods, format_methods
from authsvc.rules.second_step import (
    ACCEPTED,
    MALFORMED,
    RECOVERY,
    RECOVERY_ALPHABET,
    RECOVERY_LENGTH,
    TOTP,
    candidate_steps,
    format_recovery_code,
    read_code,
    recovery_code,
    step_verdict,
    time_step,
)

any_text = st.text(alphabet=st.characters())  # every code point, surrogates included
code_like = st.text(alphabet=st.sampled_from("0123456789 -abcdefghijklmnopqrstuvwxyzIOL\uff10\u0660\t"), max_size=40)
canonical = st.text(alphabet=st.sampled_from(RECOVERY_ALPHABET), min_size=RECOVERY_LENGTH, max_size=RECOVERY_LENGTH)
times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(st.one_of(any_text, code_like))
def test_reading_a_code_never_raises_and_accepts_only_the_two_formats(raw):
    kind, value = read_code(raw)
    if kind == TOTP:
        assert len(value) == 6 and all(c in "0123456789" for c in value)
    elif kind == RECOVERY:
        assert len(value) == RECOVERY_LENGTH and all(c in RECOVERY_ALPHABET for c in value)
    else:
        assert (kind, value) == (MALFORMED, "")


@given(canonical, st.sampled_from(["-", " ", ""]), st.booleans())
def test_a_shown_recovery_code_reads_back_as_itself(code, separator, upper):
    shown = format_recovery_code(code).replace("-", separator)
    assert recovery_code(shown.upper() if upper else shown) == code


@given(st.lists(st.tuples(st.floats(min_value=0, max_value=600), st.integers(min_value=-3, max_value=3)),
                max_size=40), times)
def test_each_step_is_accepted_at_most_once_and_only_near_its_clock(typed, start):
    """``typed``: (seconds after ``start``, which step relative to that moment the code is for)."""
    last = 0
    accepted = []
    clock = start
    for after, offset in typed:
        clock = max(clock, start + after)  # the server's clock never runs backwards here
        current = time_step(clock)
        step = current + offset
        if step_verdict(step, last, clock) == ACCEPTED:
            assert step > last and abs(step - current) <= 1 and step in candidate_steps(clock)
            accepted.append(step)
            last = step
    assert accepted == sorted(set(accepted))


methods = st.lists(st.sampled_from(sorted(FACTOR)), max_size=8)


@given(methods)
def test_mfa_is_recorded_exactly_when_earned_and_survives_storage(used):
    recorded = session_methods(used)
    assert ("mfa" in recorded) == is_multi_factor(used)
    assert len(recorded) == len(set(recorded))
    assert parse_methods(format_methods(recorded)) == recorded


@given(any_text)
def test_any_stored_text_reads_as_known_values_only(stored):
    read = parse_methods(stored)
    assert all(value in FACTOR for value in read)
    assert ("mfa" in read) == is_multi_factor(read)
