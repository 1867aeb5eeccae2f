"""Property: argon2 hashing round-trips any password a browser can send, and only that password.

Arbitrary Unicode text up to ~200 code points (every category but surrogates, which UTF-8 form
data cannot carry): NUL, control characters, combining marks, astral-plane characters, empty.
Each example hashes for real with the cheap test policy, so the example count is kept small.
"""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from authsvc.core.hashing import Hasher
from authsvc.rules.passwords import normalize_password
from authsvc.core.policy import load_policy
from tests.conftest import TEST_POLICY

HASHER = Hasher(load_policy(TEST_POLICY).argon2)
A = load_policy(TEST_POLICY).argon2
PREFIX = f"$argon2id$v=19$m={A.memory_cost_kib},t={A.time_cost},p={A.parallelism}$"

passwords = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FEW
@given(password=passwords, other=passwords)
def test_hash_verifies_its_password_and_no_other(password, other):
    assume(other != password)
    stored = HASHER.hash(password)
    assert stored.startswith(PREFIX)
    assert HASHER.verify(stored, password, anonymous=True).ok
    assert not HASHER.verify(stored, other, anonymous=True).ok


@FEW
@given(password=passwords)
def test_one_character_more_or_less_does_not_verify(password):
    """No truncation and no trimming: a prefix or an extension is another password."""
    stored = HASHER.hash(password)
    assert not HASHER.verify(stored, password + "\x00", anonymous=False).ok
    if password:
        assert not HASHER.verify(stored, password[:-1], anonymous=False).ok


@FEW
@given(password=passwords)
def test_login_normalization_makes_nfd_and_nfc_spellings_one_password(password):
    """What the login view does: hash and verify the NFC form, whichever form was typed."""
    stored = HASHER.hash(normalize_password(password))
    assert HASHER.verify(stored, normalize_password(unicodedata.normalize("NFD", password)), anonymous=False).ok
    assert HASHER.verify(stored, normalize_password(unicodedata.normalize("NFC", password)), anonymous=False).ok


tunable_names = st.from_regex(r"[a-z][a-z0-9_.]{0,30}", fullmatch=True)
tunable_entries = st.tuples(tunable_names, st.from_regex(r"[0-9a-z]{0,6}", fullmatch=True)).map("=".join)


@given(entries=st.lists(tunable_entries, max_size=6))
def test_hugepages_tunable_keeps_every_other_tunable_in_order_and_adds_itself_once(entries):
    """Property (authsvc.core.hashing.with_hugepages): without the tunable the operator's entries come
    back in order with hugetlb=1 after them; with it anywhere (any value), the value is unchanged."""
    from authsvc.core.hashing import HUGEPAGES_TUNABLE, with_hugepages

    given_ = ":".join(entries)
    if any(e.split("=", 1)[0] == HUGEPAGES_TUNABLE for e in entries):
        assert with_hugepages(given_) == given_
    else:
        assert with_hugepages(given_).split(":") == [*entries, f"{HUGEPAGES_TUNABLE}=1"]


@given(before=st.lists(tunable_entries, max_size=3), after=st.lists(tunable_entries, max_size=3),
       value=st.from_regex(r"[0-9]{0,2}", fullmatch=True))
def test_hugepages_tunable_never_overrides_the_operators_value(before, after, value):
    from authsvc.core.hashing import HUGEPAGES_TUNABLE, with_hugepages

    given_ = ":".join([*before, f"{HUGEPAGES_TUNABLE}={value}", *after])
    assert with_hugepages(given_) == given_
