"""Properties of the Stream-Safe bound (authsvc.rules.streamsafe) over arbitrary text.

The oracle is the definition (UAX #15, UAX15-D4): normalise the whole text to NFKD and count the
longest run of code points whose canonical combining class is not 0. authsvc may not do that on
untrusted input (it is what costs the square of a run); the linear count must agree with it on
every text short enough for the oracle to be cheap, for every limit.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.streamsafe import MAX_NON_STARTERS, is_stream_safe, longest_non_starter_run

# Marks of several classes, precomposed letters with marks, compatibility characters that are or
# hold marks (U+FF9E, U+0F73, U+0344), characters whose NFKD is long (U+FDFA), Hangul, ASCII.
TRICKY = ("\u0300\u0301\u0316\u0323\u0327\u0345\u05b0\u064b\u093c\u0e38\u1dc0\u20d0\u302a\u3099\u309b\uff9e"
          "\u0f71\u0f72\u0f73\u0344\u1e69\u1ec7\u00e9\u0958\ufb2c\u1fed\ufdfa\uac00\u1100\u1161\u2126\u212b\u3300\u330e"
          "aeiou ")
texts = st.text(alphabet=st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=["Cs"])), max_size=80)
runs = st.lists(st.sampled_from("\u0300\u0301\u0316\u0323\u0345\u3099\uff9e\u0f73\u0344"), min_size=0, max_size=70)


def oracle(text: str) -> int:
    longest = run = 0
    for char in unicodedata.normalize("NFKD", text):
        run = run + 1 if unicodedata.combining(char) else 0
        longest = max(longest, run)
    return longest


@given(texts)
def test_the_linear_count_agrees_with_nfkd(text):
    assert longest_non_starter_run(text) == oracle(text)


@given(texts, st.sampled_from([0, 1, 2, 17, 18, 29, MAX_NON_STARTERS, 31]))
def test_the_bound_agrees_with_nfkd_for_every_limit(text, limit):
    assert is_stream_safe(text, limit) == (oracle(text) <= limit)


@given(st.text(alphabet="abc", max_size=5), runs, st.text(alphabet="xyz\u1e69", max_size=5))
def test_a_run_of_marks_around_letters_is_judged_by_its_nfkd_length(before, marks, after):
    text = before + "".join(marks) + after
    assert is_stream_safe(text) == (oracle(text) <= MAX_NON_STARTERS)
