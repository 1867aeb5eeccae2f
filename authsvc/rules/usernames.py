"""Usernames: one normal form, so "Alice", "ＡＬＩＣＥ" and "alice" are one account.

NFKC folds full-width and compatibility look-alikes to ASCII, casefold removes case; what remains
must be ASCII letters, digits and ``._@+-``, so no two accounts can differ by a confusable
character (Cyrillic "а" vs Latin "a" is refused rather than folded).

That normal form is also the account's one name: what the CLI shows and what authsvc hands apps
(``X-Auth-User``, the API), whatever was typed at ``authsvc user add``: printable ASCII by
construction, so it always fits in a header.
"""

from __future__ import annotations

import re
import unicodedata

from authsvc.rules.streamsafe import MAX_NON_STARTERS, is_stream_safe

_ALLOWED = re.compile(r"[a-z0-9._@+-]+\Z")


def normalize_username(raw: str) -> str:
    """The form logins and throttles match on. Never raises; may return an invalid name."""
    return unicodedata.normalize("NFKC", raw.strip()).casefold()


def username_problem(raw: str, max_length: int) -> str | None:
    """Why ``raw`` cannot name a new account, or None."""
    if not is_stream_safe(raw):  # judged before NFKC, whose cost grows with the square of such a run
        return f"Username has more than {MAX_NON_STARTERS} combining marks in a row."
    key = normalize_username(raw)
    if not key:
        return "Username is empty."
    if len(key) > max_length:
        return f"Username is longer than {max_length} characters."
    if not _ALLOWED.match(key):
        return "Username may contain only letters a-z, digits and . _ @ + -"
    return None
