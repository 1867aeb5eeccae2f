"""The OIDC mode's redirect decisions: where the browser may go after signing in (a path on this
app, nothing else), and whether an authorization response came from the provider it was sent to."""

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


# Reason codes of :func:`authorization_response_iss_problem`.
ISS_MISSING: Final = "iss_missing"
ISS_REPEATED: Final = "iss_repeated"
ISS_WRONG: Final = "iss_wrong"


def authorization_response_iss_problem(values: list[str], *, issuer: str, required: bool) -> str | None:
    """RFC 9207: the ``iss`` parameters of an authorization response (every value the query
    carried), checked against the discovery document's ``issuer``. None when they are exactly that
    issuer, once (or absent while the provider does not advertise
    ``authorization_response_iss_parameter_supported``); else a reason code. Compared as exact
    strings: no case folding, no trailing-slash or percent-decoding leniency."""
    if not values:
        return ISS_MISSING if required else None
    if len(values) > 1:
        return ISS_REPEATED
    return None if values[0] == issuer else ISS_WRONG
