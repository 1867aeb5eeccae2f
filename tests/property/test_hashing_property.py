"""Property: argon2 hashing round-trips any password a browser can send, and only that password.

Arbitrary Unicode text up to ~200 code points (every category but surrogates, which UTF-8 form
data cannot carry): NUL, control characters, combining marks, astral-plane characters, empty.
Each example hashes for real with the cheap test policy, so the example count is kept small.
"""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from authsvc.hashing import Hasher
from authsvc.passwords import normalize_password
from authsvc.policy import load_policy
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
