"""Reading form fields strictly: a clear 400 for what no browser form would send."""

from __future__ import annotations

from flask import abort, request


def field(name: str, max_chars: int, *, required: bool = True) -> str:
    """The value of form field ``name``; 400 if missing (when required), repeated, too long,
    or containing NUL or bytes that were not valid UTF-8 (decoded as U+FFFD)."""
    values = request.form.getlist(name)
    if not values:
        if required:
            abort(400)
        return ""
    if len(values) > 1:
        abort(400)
    value = values[0]
    if len(value) > max_chars or "\x00" in value or "\ufffd" in value:
        abort(400)
    return value


def checkbox(name: str) -> bool:
    return request.form.get(name, "") in ("on", "1", "true", "yes")
