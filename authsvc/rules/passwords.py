"""Password policy: NIST SP 800-63B rev. 4 §3.1.1.2 and OWASP ASVS 5.0 V6.2, as pure functions.

The contract a caller can rely on:

* :func:`normalize_password` is the only transformation ever applied to a password (Unicode NFC).
  Hash and verify the normalized value; never strip, truncate or change case.
* :func:`password_problems` returns an empty list for an acceptable password, otherwise one
  sentence per problem, written for the person choosing the password (NIST: "SHALL give the
  reason for rejection"). Messages never quote the password or the username.
* There are no composition rules (ASVS 6.2.5, NIST "SHALL NOT impose other composition rules").
  What is rejected is what an attacker tries first: short passwords, common and breached
  passwords, the username and service name, and trivially generated strings (one character
  repeated, a common word repeated, ``abcdef…``, ``12345…``, ``qwerty…``), which is the
  "repetitive or sequential characters" entry of NIST's blocklist guidance.
* Passwords containing lone surrogates (possible in a Python ``str``, impossible in UTF-8 form
  data) are rejected with a problem, never an exception: they cannot be encoded for hashing.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

__all__ = [
    "Blocklist",
    "PasswordRules",
    "load_default_blocklist",
    "normalize_password",
    "password_problems",
    "shortest_period",
]

# ASVS 6.2.1 floor; NIST rev. 4 allows 8 only when the password is one factor of MFA.
_ABSOLUTE_MIN_LENGTH = 8
# NIST rev. 4: "SHOULD permit a maximum password length of at least 64 characters" (ASVS 6.2.9).
_SMALLEST_ALLOWED_MAX = 64
# NFC changes length by a bounded factor; anything this far over the cap is refused before
# normalizing, so a megabyte of form data costs nothing.
_RAW_LENGTH_FACTOR = 4
# A repeated unit this short is a pattern whatever it is ("abab…", "x1x1…").
_SHORT_UNIT = 3
# Repeating a blocklisted word of at least this length is still that word (Django-style lists
# contain "asdf", "1234"; "passwordpassword" is not on the list but is as weak as "password").
_BLOCKLISTED_UNIT_MIN = 4
# How far a longer unit must recur before the password counts as that unit repeated; the copy may
# be cut short, because people pad to the minimum ("sunshinesunshin" is "sunshine" repeated).
_MIN_REPEAT = 3

_SURROGATE = re.compile("[\ud800-\udfff]")

# Orders people walk along when they want something "long". Each is treated as a cycle, so
# "1234567890123" and "qwertyuiopqwe" count as one walk; a constant step in either direction
# ("zyxw…", "acegi…", "poiuy…") counts too.
_WALK_ALPHABETS = (
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/",
    "1q2w3e4r5t6y7u8i9o0p",
)
_WALK_INDEXES = tuple(
    {char: i for i, char in enumerate(alphabet)} for alphabet in _WALK_ALPHABETS
)

_DEFAULT_BLOCKLIST = ("authsvc", "data/common-passwords.txt.gz")


@dataclass(frozen=True)
class PasswordRules:
    """The numbers of the password policy. Validated on construction, so a bad config fails at start-up."""

    min_length: int = 15  # NIST SP 800-63B rev 4, single-factor
    max_length: int = 1024  # cap (DoS guard); must be >= 64
    # Service-specific banned words (ASVS 6.1.2/6.2.11), matched case-insensitively anywhere.
    context_words: tuple[str, ...] = ("authsvc",)

    def __post_init__(self) -> None:
        if self.min_length < _ABSOLUTE_MIN_LENGTH:
            raise ValueError(
                f"min_length is {self.min_length}; ASVS 6.2.1 requires at least {_ABSOLUTE_MIN_LENGTH}."
            )
        if self.max_length < max(_SMALLEST_ALLOWED_MAX, self.min_length):
            raise ValueError(
                f"max_length is {self.max_length}; it must be at least 64 (ASVS 6.2.9) and at least min_length."
            )
        if any(
            not isinstance(word, str) or not word.strip() for word in self.context_words
        ):
            # An empty banned word is contained in every password and would reject them all.
            raise ValueError("context_words must be non-empty strings.")


def normalize_password(password: str) -> str:
    """Return the NFC form of ``password`` (NIST rev. 4). Nothing else: no strip, no case change, no cut."""
    return unicodedata.normalize("NFC", password)


def _fold(text: str) -> str:
    """Comparison key: NFC, then case-insensitive."""
    return normalize_password(text).casefold()


class Blocklist:
    """A set of common or breached passwords, matched case-insensitively on the whole password.

    Whole-password matching is what NIST asks for ("the entire password, not substrings");
    the repeated-word rule in :func:`password_problems` covers "passwordpassword".
    """

    __slots__ = ("_entries",)

    def __init__(self, passwords: Iterable[str] = ()) -> None:
        self._entries = frozenset(_fold(p) for p in passwords if p)

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Blocklist:
        """One password per line; line endings are removed, blank lines skipped. No comment syntax:
        real lists contain passwords such as ``#1password``."""
        return cls(line.rstrip("\r\n") for line in lines)

    def __contains__(self, password: object) -> bool:
        return isinstance(password, str) and _fold(password) in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<Blocklist of {len(self)} passwords>"


@functools.cache
def load_default_blocklist() -> Blocklist:
    """The bundled list of the 19,640 most common passwords (from Django; see ``authsvc/data/NOTICE``).

    Loaded once per process; call it at start-up so the first password change does not pay for it.
    """
    package, name = _DEFAULT_BLOCKLIST
    resource = importlib.resources.files(package).joinpath(name)
    with resource.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as lines:
        return Blocklist.from_lines(lines)


def password_problems(
    password: str, *, username: str, rules: PasswordRules, blocklist: Blocklist
) -> list[str]:
    """Why ``password`` may not be set for ``username``; an empty list means it is acceptable.

    Length is counted in code points after NFC normalization (NIST: each code point is one
    character). Never raises for any ``str``.
    """
    too_long = f"Password is longer than {rules.max_length} characters."
    if len(password) > _RAW_LENGTH_FACTOR * rules.max_length:
        return [too_long]
    if _SURROGATE.search(password):
        return [
            "Password contains invalid characters (unpaired surrogate code points); type it again."
        ]
    normalized = normalize_password(password)
    if len(normalized) > rules.max_length:
        # Stop here: the other checks are pointless until it is shortened, and this keeps the cost bounded.
        return [too_long]
    folded = normalized.casefold()
    problems = _length_problems(normalized, rules)
    problems += _guessable_problems(folded, blocklist)
    problems += _identity_problems(folded, username, rules)
    return problems


def _length_problems(normalized: str, rules: PasswordRules) -> list[str]:
    length = len(normalized)
    if length >= rules.min_length:
        return []
    unit = "character" if length == 1 else "characters"
    return [f"Password is {length} {unit}; the minimum is {rules.min_length}."]


def _guessable_problems(folded: str, blocklist: Blocklist) -> list[str]:
    """At most one problem: the first guessing strategy that would find the password."""
    if not folded:
        return []  # the length rule has already said everything about an empty password
    if folded in blocklist:
        return [
            "Password is on a list of common or breached passwords; choose another."
        ]
    period = shortest_period(folded)
    repeated = len(folded) - period  # characters that only copy the first `period` ones
    if period == 1 and repeated:
        return ["Password is a single character repeated; choose another."]
    if period <= _SHORT_UNIT and repeated >= period:
        return ["Password repeats a short pattern; choose another."]
    if repeated >= _MIN_REPEAT:
        unit = folded[:period]
        if _repeats_blocklisted(folded, period, blocklist):
            return ["Password repeats a common password; choose another."]
        if _is_walk(unit):
            return [
                "Password repeats a simple sequence or keyboard pattern; choose another."
            ]
    if _is_walk(folded):
        return ["Password is a simple sequence or keyboard pattern; choose another."]
    return []


def _repeats_blocklisted(folded: str, period: int, blocklist: Blocklist) -> bool:
    """Is ``folded`` a listed password repeated? The listed one may itself be a repetition
    ("chouchou" is listed, "chou" is not), so try each whole number of periods that leaves
    at least _MIN_REPEAT characters of repetition."""
    longest = len(folded) - _MIN_REPEAT
    return any(
        folded[:size] in blocklist
        for size in range(period, longest + 1, period)
        if size >= _BLOCKLISTED_UNIT_MIN
    )


def _identity_problems(folded: str, username: str, rules: PasswordRules) -> list[str]:
    problems = []
    user = _fold(username or "")
    if user and folded == user:
        problems.append("Password must not be the username.")
    elif len(user) >= 3 and user in folded:
        problems.append("Password must not contain the username.")
    for word in rules.context_words:
        if _fold(word) in folded:
            problems.append(f"Password must not contain '{word}'.")
    return problems


def shortest_period(text: str) -> int:
    """Smallest p with text[i] == text[i - p] for every i >= p (len(text) if none is shorter).

    "abcabcab" has period 3: a unit repeated, possibly cut short to reach a length. Computed
    with the Knuth-Morris-Pratt failure function, linear in len(text).
    """
    if not text:
        return 0
    border = [0] * len(text)
    k = 0
    for i in range(1, len(text)):
        while k and text[i] != text[k]:
            k = border[k - 1]
        if text[i] == text[k]:
            k += 1
        border[i] = k
    return len(text) - border[-1]


def _is_walk(text: str) -> bool:
    """True for three or more characters that step by a constant amount along one order:
    Unicode code points ("abcd", "!\"#$") or one of the cyclic alphabets and keyboard rows."""
    if len(text) < 3:
        return False
    deltas = {ord(b) - ord(a) for a, b in pairwise(text)}
    if len(deltas) == 1 and 0 not in deltas:
        return True
    return any(_steps_evenly(text, index) for index in _WALK_INDEXES)


def _steps_evenly(text: str, index: dict[str, int]) -> bool:
    positions = [index.get(char) for char in text]
    if None in positions:
        return False
    size = len(index)
    steps = {(b - a) % size for a, b in pairwise(positions)}
    return len(steps) == 1 and 0 not in steps
