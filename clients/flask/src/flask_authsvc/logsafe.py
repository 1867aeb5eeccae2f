"""Values from a request, made safe to put in a log line.

Whatever a client sent is escaped before it is logged: control characters (a newline would start a
forged log line, an escape sequence would rewrite a terminal) and everything outside printable
ASCII (bidirectional overrides, look-alikes) become ``\\x..``/``\\u....`` escapes, and the result is
cut short. Only the values the extension chooses are logged (identity headers, the peer address);
never a cookie or an ``Authorization`` header.
"""

from __future__ import annotations

from typing import Final

MAX_LOGGED: Final = 120


def escape(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as printable ASCII without quotes, at most ``limit`` characters of input, with
    ``...`` when cut."""
    text = value if isinstance(value, str) else repr(value)
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        if " " <= ch <= "~" and ch != "\\":
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + ("..." if cut else "")
