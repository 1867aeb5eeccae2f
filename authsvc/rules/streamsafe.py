"""The Stream-Safe Text Format bound (Unicode UAX #15, section 13): at most 30 non-starters in a row.

Normalising (NFC for passwords, NFKC for usernames) puts each run of combining marks in canonical
order, and that sort is quadratic in the run's length: a form field of nothing but combining marks
makes normalisation far costlier than anything else a refused request does. No text in any language
needs more than a few marks on one character, and UAX #15 bounds a run at 30 (UAX15-D4: "would not
contain any sequences of non-starters longer than 30 characters in length when normalized to NFKD").
So a value is judged by this bound before anything normalises it, and refused when over it.

:func:`longest_non_starter_run` is linear: it normalises one code point at a time (a bounded
decomposition, never a whole run), counting what the whole text's NFKD would hold, so
compatibility characters that decompose to marks (U+FF9E HALFWIDTH KATAKANA VOICED SOUND MARK) and
precomposed letters with marks (U+1E69) count as their decompositions do.
"""

from __future__ import annotations

import unicodedata

MAX_NON_STARTERS = 30
_LONGEST_DECOMPOSITION = 18  # code points in the longest NFKD of one code point (U+FDFA)


_STARTER = (0, 0, False, 0)  # the shape of nearly every character: one object, compared by identity
_SHAPES: dict[str, tuple[int, int, bool, int]] = {}
_MAX_REMEMBERED = 65536  # distinct characters whose shape is kept (a flood of rare ones cannot grow it)


def _shape(char: str) -> tuple[int, int, bool, int]:
    """For one code point's NFKD: its non-starters leading and trailing, whether all of it is
    non-starters, and its longest run of them (U+3300 SQUARE APAATO holds one inside)."""
    longest = run = 0
    marks = []
    for c in unicodedata.normalize("NFKD", char):
        marks.append(unicodedata.combining(c) != 0)
        run = run + 1 if marks[-1] else 0
        longest = max(longest, run)
    leading = next((i for i, mark in enumerate(marks) if not mark), len(marks))
    trailing = next((i for i, mark in enumerate(reversed(marks)) if not mark), len(marks))
    shape = (leading, trailing, leading == len(marks), longest)
    shape = _STARTER if shape == _STARTER else shape
    if len(_SHAPES) < _MAX_REMEMBERED:
        _SHAPES[char] = shape
    return shape


def longest_non_starter_run(text: str, *, stop_above: int | None = None) -> int:
    """The longest run of non-starters (canonical combining class > 0) in ``text``'s NFKD, in
    time linear in ``len(text)``; with ``stop_above``, a count above it as soon as a run passes it
    (the scan stops there, so not that run's whole length). ASCII has none."""
    if text.isascii():
        return 0
    limit = len(text) * _LONGEST_DECOMPOSITION if stop_above is None else stop_above
    longest = run = 0
    for char in text:
        shape = _SHAPES.get(char) or _shape(char)
        if shape is _STARTER:
            run = 0
            continue
        leading, trailing, all_marks, inside = shape
        if all_marks:
            run += leading
        else:
            longest = max(longest, run + leading, inside)
            run = trailing
        longest = max(longest, run)
        if longest > limit:
            break
    return longest


def is_stream_safe(text: str, limit: int = MAX_NON_STARTERS) -> bool:
    """True when no run of non-starters in ``text`` (as NFKD would have it) is longer than ``limit``."""
    if text.isascii():
        return True
    shapes = {_SHAPES.get(char) or _shape(char) for char in set(text)}
    # No character all marks: a run spans at most one character's tail and the next's head (or lies
    # inside one decomposition). The usual case, decided without walking the text.
    if limit >= _LONGEST_DECOMPOSITION and not any(all_marks for _, _, all_marks, _ in shapes) and \
            max(shape[1] for shape in shapes) + max(shape[0] for shape in shapes) <= limit:
        return True
    return longest_non_starter_run(text, stop_above=limit) <= limit
