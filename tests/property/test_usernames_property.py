"""Properties of username normalization (authsvc.rules.usernames) over arbitrary text.

"Alice", "ＡＬＩＣＥ" and "alice" must be one account, and a name that survives the rules must be a
plain-ASCII key that is its own normal form: otherwise the key stored at creation and the key
computed at login could differ, or two visually identical names could be two accounts.
Every line of corpus/usernames.txt goes through the same oracle (test_corpus_replay.py).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.usernames import normalize_username
from tests.property.oracles import assert_username_oracle

# Characters whose NFKC or casefold form is ASCII, or that look like ASCII: the interesting ones.
TRICKY = ("\u212a\u017f\u0130\u0131\u00df\u1e9e\ufb01\ufb00\uff21\uff41\u2160\u2170\u00aa\u00ba\u00b2\u2474"
          "\u0345\u0390\u1fd3\u00a8\u00b4\u2024\u2025\u3002\uff0e\u0430\u03bf\u0456\u200b\u200d\u202e\ufeff"
          "\u00a0\u3000\u2000\u0307\u0308\u0301")
names = st.text(alphabet=st.one_of(st.sampled_from(TRICKY), st.characters(codec="ascii"), st.characters()),
                max_size=24)


@given(names)
def test_any_name_normalizes_without_error_and_accepted_keys_are_plain_ascii_fixed_points(raw):
    assert_username_oracle(raw)


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._@+-", min_size=1, max_size=20))
def test_full_width_and_upper_case_forms_of_an_ascii_name_are_the_same_account(name):
    full_width = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name)
    assert normalize_username(name.upper()) == normalize_username(full_width) == normalize_username(name) == name


@given(names, st.integers(min_value=1, max_value=8))
def test_the_length_limit_applies_to_the_key(raw, limit):
    assert_username_oracle(raw, limit)
