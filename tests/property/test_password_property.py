"""Properties of the password policy (authsvc.rules.passwords) over arbitrary text.

Text here is any Python str, lone surrogates included (st.characters() with no filter produces
them; UTF-8 form data cannot, but a JSON body with "\\ud800" or a buggy client can). Decision:
a password containing a surrogate is rejected with a problem, never an exception, because it
could not be encoded for hashing.

Length properties are stated on the NFC form, since that is what is counted: NFC may shorten
("e" + U+0301 -> "é") or lengthen (U+0958 -> two code points) a string.
"""

from __future__ import annotations

import gzip
import importlib.resources
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.passwords import (
    PasswordRules,
    load_default_blocklist,
    normalize_password,
    password_problems,
)

BLOCKLIST = load_default_blocklist()  # loaded here so no example pays for it
RULES = PasswordRules()
SMALL_CAP = PasswordRules(min_length=15, max_length=64)

any_text = st.text(alphabet=st.characters())  # every code point, surrogates included
usernames = st.text(alphabet=st.characters(), max_size=40)


def _bundled_entries() -> list[str]:
    resource = importlib.resources.files("authsvc").joinpath(
        "data/common-passwords.txt.gz"
    )
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return [line.rstrip("\n") for line in lines if line.strip()]


ENTRIES = _bundled_entries()
LENGTH_PROBLEM = re.compile(r"Password is \d+ characters?; the minimum is \d+\.")


@pytest.mark.asvs("V6.2.8")
@given(any_text)
def test_normalize_is_idempotent(password):
    once = normalize_password(password)
    assert normalize_password(once) == once


@pytest.mark.asvs("V6.2.8")
@given(st.text(alphabet=st.characters(exclude_categories=["M", "Cs"])))
def test_normalize_never_truncates_text_without_combining_marks(password):
    # Without combining marks there is nothing to compose, so NFC can only keep or expand.
    assert len(normalize_password(password)) >= len(password)


@pytest.mark.asvs("V6.2.1", "V6.2.9")
@given(any_text, usernames)
def test_password_problems_never_raises_and_returns_sentences(password, username):
    found = password_problems(
        password, username=username, rules=RULES, blocklist=BLOCKLIST
    )
    assert isinstance(found, list)
    assert all(
        isinstance(p, str) and p.startswith("Password ") and p.endswith(".")
        for p in found
    )


@pytest.mark.asvs("V6.2.8")
@given(any_text, st.characters(categories=["Cs"]), any_text)
def test_any_surrogate_is_a_problem_not_an_exception(before, surrogate, after):
    found = password_problems(
        before + surrogate + after, username="u", rules=SMALL_CAP, blocklist=BLOCKLIST
    )
    assert found
    assert any("surrogate" in p or "longer than" in p for p in found)


@pytest.mark.asvs("V6.2.1")
@given(
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30), usernames
)
def test_anything_under_the_minimum_has_a_problem(password, username):
    found = password_problems(
        password, username=username, rules=RULES, blocklist=BLOCKLIST
    )
    if len(normalize_password(password)) < RULES.min_length:
        assert f"Password is {len(normalize_password(password))} " in " ".join(found)
        assert found


@pytest.mark.asvs("V6.2.9")
@given(
    st.text(alphabet=st.characters(), min_size=SMALL_CAP.max_length + 1, max_size=400),
    usernames,
)
def test_anything_over_the_maximum_has_a_problem(password, username):
    found = password_problems(
        password, username=username, rules=SMALL_CAP, blocklist=BLOCKLIST
    )
    if len(normalize_password(password)) > SMALL_CAP.max_length:
        assert found


@pytest.mark.asvs("V6.2.9")
@given(
    st.integers(min_value=RULES.max_length + 1, max_value=20_000),
    st.characters(exclude_categories=["Cs"]),
)
def test_anything_over_the_default_cap_is_rejected_as_too_long(length, char):
    password = (char * length)[:length]
    found = password_problems(password, username="u", rules=RULES, blocklist=BLOCKLIST)
    if len(normalize_password(password)) > RULES.max_length:
        assert found == ["Password is longer than 1024 characters."]


@pytest.mark.asvs("V6.2.4")
@given(st.sampled_from(ENTRIES), st.randoms(use_true_random=False))
def test_every_bundled_entry_is_rejected_whatever_its_ascii_case(entry, rnd):
    password = "".join(
        c.swapcase() if c.isascii() and rnd.random() < 0.5 else c for c in entry
    )
    found = password_problems(password, username="u", rules=RULES, blocklist=BLOCKLIST)
    assert (
        "Password is on a list of common or breached passwords; choose another."
        in found
    )


@pytest.mark.asvs("V6.2.4")
@given(
    st.sampled_from([e for e in ENTRIES if len(e) >= 4]),
    st.integers(min_value=2, max_value=6),
)
def test_bundled_entry_repeated_is_rejected(entry, times):
    found = password_problems(
        entry * times, username="u", rules=RULES, blocklist=BLOCKLIST
    )
    assert [p for p in found if not LENGTH_PROBLEM.match(p)], found
