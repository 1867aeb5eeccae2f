"""Group names: one normal form, so "Admins", "ＡＤＭＩＮＳ" and "admins" are one group.

The rule usernames follow (:mod:`authsvc.rules.usernames`): NFKC folds full-width and compatibility
look-alikes to ASCII, casefold removes case, and what remains must be ASCII letters, digits and
``._-``, starting with a letter or digit. So no two groups differ by a confusable character (a
Cyrillic "а" is refused, not folded), and a name never holds what separates names in
``X-Auth-Groups`` (a comma) or what a header or a terminal would read differently (whitespace,
control characters).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from authsvc.rules.streamsafe import MAX_NON_STARTERS, is_stream_safe

MAX_LENGTH: Final = 64
_ALLOWED = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")


def normalize_group(raw: str) -> str:
    """The form groups are stored, matched and sent in. Never raises; may return an invalid name."""
    return unicodedata.normalize("NFKC", raw.strip()).casefold()


def group_problem(raw: str) -> str | None:
    """Why ``raw`` cannot name a group, or None."""
    if not is_stream_safe(raw):
        return f"Group name has more than {MAX_NON_STARTERS} combining marks in a row."
    key = normalize_group(raw)
    if not key:
        return "Group name is empty."
    if len(key) > MAX_LENGTH:
        return f"Group name is longer than {MAX_LENGTH} characters."
    if not _ALLOWED.match(key):
        return "Group name may contain only letters a-z, digits and . _ - (starting with a letter or digit)"
    return None


def format_groups(names) -> str:
    """As sent in ``X-Auth-Groups``: sorted, comma-separated, no spaces."""
    return ",".join(sorted(names))
