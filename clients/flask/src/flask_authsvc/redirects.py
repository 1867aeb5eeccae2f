"""Where the OIDC mode may send the browser after signing in: a path on this app, nothing else."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

MAX_NEXT: Final = 2048


def local_next(value: object, default: str = "/") -> str:
    """``value`` when it is a path on this app (``/notes?x=1``), else ``default``. Refused: absolute
    and scheme-relative URLs (``//evil``, ``/\\evil``, which browsers read as ``//evil``), control
    and non-ASCII characters, over-long values. Rejected, never repaired."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT:
        return default
    if not value.isascii() or any(ch <= " " or ch == "\x7f" for ch in value):
        return default
    if not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value
