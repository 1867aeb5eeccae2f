"""Validate the ``next`` / return URL a login hands back to the browser.

Contract
--------
``validate_next(raw, rules)`` is a pure function: same arguments, same answer; no Flask, no I/O,
no logging. It accepts only

* a path on the service's own origin: one ``/`` then anything but ``/`` or ``\\`` (or just ``/``);
* an absolute ``https://`` URL whose origin (lowercase host, default port dropped) equals an
  allowed app's origin exactly and whose path lies inside that app's ``path_prefix`` on a segment
  boundary (``/wiki`` admits ``/wiki``, ``/wiki/x``, ``/wiki?x``, never ``/wiki-evil``);
* an absolute URL on ``own_origin`` itself (which may be ``http`` in development).

Everything else is rejected, never repaired, and the decision's ``target`` is ``rules.default``.
An accepted ``target`` is rebuilt from the parsed parts and percent-encoded to printable ASCII
(no space, quote, ``<``, ``>`` or backslash: one in the query leaves as ``%5C``); the raw input is
never echoed. Validating an accepted target again gives the same target.

Why so strict: browsers parse ``Location`` with the WHATWG URL rules, which silently drop TAB,
CR and LF, trim leading C0 controls and spaces, treat ``\\`` as ``/`` (up to the query, where it is
data), map ``。`` and full-width dots in hosts to ``.``, and read ``https:evil.com`` or
``https:///evil.com`` as ``https://evil.com``. Each of those broke a real validator (CVE-2020-5233, CVE-2020-11053,
CVE-2021-32618, CVE-2015-2317, CVE-2019-13038). Rejecting such characters and shapes outright is
simpler to reason about than predicting every parser. The threat list is
tests/security/test_redirects.py; tests/property/test_redirects_property.py checks every accepted
target against a WHATWG parser (ada-url).

Reason codes (``RedirectDecision.reason``), a fixed set meant for metric labels:

==================== ==========================================================================
``ok``               accepted
``empty``            None, empty, or not a string
``too_long``         longer than ``rules.max_length`` (raw input or re-encoded target)
``control_char``     C0/C1 control, DEL, any Unicode category C char, or ``%00``-``%1F``/``%7F``
                     in the path
``whitespace``       space or any Unicode category Z char
``backslash``        ``\\`` anywhere but the query (after the first ``?``, before any ``#``)
``lookalike``        a non-ASCII char in the path (raw or percent-encoded) whose NFKC form is
                     ``/ \\ . % @ : ? #``
``malformed``        neither a ``/path`` nor ``scheme:...``; bad port syntax; unclosed ``[``;
                     a ``%`` in the path not followed by two hex digits; a path whose escapes
                     are not UTF-8 (overlong ``%c0%ae``)
``scheme``           a scheme other than https (``javascript:``, ``data:``, ...) or ``http``
                     to anything but the service's own origin
``scheme_relative``  ``//host`` (a path must start with exactly one slash)
``no_authority``     a scheme not followed by exactly ``//`` and a non-empty host
``userinfo``         ``@`` or ``%40`` in the authority
``non_ascii_host``   host contains non-ASCII characters (IDN, full-width look-alikes)
``encoded_host``     host contains ``%``
``host_not_allowed`` host matches no allowed origin
``port_not_allowed`` host is allowed, but not with this port
``path_not_allowed`` origin is an allowed app's, but the path is outside its prefix
``empty_segment``    ``//`` inside the path
``encoded_separator`` ``%2F %5C %2E %25`` (any case) in the path
``dot_segment``      a ``.`` or ``..`` path segment (also ``..;param``)
==================== ==========================================================================
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "AllowedApp",
    "RedirectDecision",
    "RedirectRules",
    "build_rules",
    "parse_origin",
    "validate_next",
]


@dataclass(frozen=True)
class AllowedApp:
    origin: str  # canonical origin, e.g. "https://app.example.com"
    path_prefix: str = "/"  # matched on a segment boundary
    name: str | None = None  # display name, e.g. "Wiki"


@dataclass(frozen=True)
class RedirectRules:
    own_origin: str
    apps: tuple[AllowedApp, ...] = ()
    default: str = "/"
    max_length: int = 2048


@dataclass(frozen=True)
class RedirectDecision:
    target: str
    accepted: bool
    reason: str
    app: AllowedApp | None = None


# Compiled once; validate_next compiles nothing.
_ASCII_BAD = re.compile(r"[\x00-\x20\x7f\\]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_AUTHORITY_END = re.compile(r"[/?#]")
_PORT = re.compile(r"[0-9]{1,5}")
_ENCODED_SEPARATOR = re.compile(r"%(?:2[FfEe5]|5[Cc])")
_ENCODED_CONTROL = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_LOOKALIKE_TARGETS = frozenset("/\\.%@:?#")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 pchar minus "'" (quotes never reach a Location); quote() adds letters, digits, "_.-~".
# "%" stays because escapes were checked (path) or repaired to %25 (query, fragment) first.
_PATH_SAFE = "/!$&()*+,;=:@%"
_QUERY_SAFE = _PATH_SAFE + "?"
_PREFIX = re.compile(r"(?:/[A-Za-z0-9\-._~!$&()*+,;=:@]+)+|/")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")  # WHATWG "ends in a number" -> IPv4 parser


def validate_next(raw: str | None, rules: RedirectRules) -> RedirectDecision:
    """Decide whether ``raw`` may be sent as ``Location``; see the module docstring."""
    try:
        target, app = _check(raw, rules)
    except _Rejected as rejected:
        return RedirectDecision(target=rules.default, accepted=False, reason=rejected.reason)
    return RedirectDecision(target=target, accepted=True, reason="ok", app=app)


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def loggable(raw: str) -> str:
    """What an audit line keeps of a refused URL: at most 200 characters before its query and
    fragment, which can carry a reset token, a code or a session id of whoever followed the link."""
    return re.split(r"[?#]", raw, maxsplit=1)[0][:200]


def _check(raw: str | None, rules: RedirectRules) -> tuple[str, AllowedApp | None]:
    if not isinstance(raw, str) or not raw:
        raise _Rejected("empty")
    if len(raw) > rules.max_length:  # first: a DoS guard must not do the expensive work
        raise _Rejected("too_long")
    _check_chars(raw)
    if raw[0] == "/":
        if raw[1:2] == "/":
            raise _Rejected("scheme_relative")
        return _rebuild(rules, "", raw, None)

    scheme_match = _SCHEME.match(raw)
    if not scheme_match:
        raise _Rejected("malformed")
    scheme = scheme_match.group()[:-1].lower()
    if scheme not in _DEFAULT_PORTS:
        raise _Rejected("scheme")
    rest = raw[scheme_match.end() :]
    # Exactly "//" then a host: browsers read "https:x", "https:/x" and "https:///x" as https://x.
    if not rest.startswith("//") or rest[2:3] in ("", "/", "?", "#"):
        raise _Rejected("no_authority")
    end = _AUTHORITY_END.search(rest, 2)
    split = end.start() if end else len(rest)
    scheme_host, port_suffix = _parse_authority(scheme, rest[2:split])
    origin = scheme_host + port_suffix
    if origin == rules.own_origin:
        return _rebuild(rules, origin, rest[split:], None)
    if scheme != "https":
        raise _Rejected("scheme")  # http anywhere but our own origin is a downgrade
    apps = tuple(app for app in rules.apps if app.origin == origin)
    if not apps:
        known = (rules.own_origin, *(app.origin for app in rules.apps))
        same_host = any(o == scheme_host or o.startswith(scheme_host + ":") for o in known)
        raise _Rejected("port_not_allowed" if same_host else "host_not_allowed")
    return _rebuild(rules, origin, rest[split:], apps)


def _check_chars(raw: str) -> None:
    query = _query_span(raw)
    for bad in _ASCII_BAD.finditer(raw):
        char = bad.group()
        if char == "\\" and query[0] <= bad.start() < query[1]:
            continue  # data in the query: it cannot move the browser, and leaves re-encoded as %5C
        raise _Rejected("backslash" if char == "\\" else "whitespace" if char == " " else "control_char")
    if raw.isascii():
        return
    categories = {unicodedata.category(char)[0] for char in set(raw)}
    if "C" in categories:  # Cc, Cf (zero-width, bidi overrides), Cs (lone surrogates), Co, Cn
        raise _Rejected("control_char")
    if "Z" in categories:
        raise _Rejected("whitespace")


def _query_span(raw: str) -> tuple[int, int]:
    """Where the query lies in ``raw``: after the first ``?``, up to the first ``#`` (WHATWG: once in
    the query, only ``#`` leaves it); ``(0, 0)`` when there is none."""
    fragment = raw.find("#")
    end = fragment if fragment >= 0 else len(raw)
    start = raw.find("?", 0, end)
    return (start + 1, end) if start >= 0 else (0, 0)


def _parse_authority(scheme: str, authority: str) -> tuple[str, str]:
    """Return ``("scheme://host", ":port" or "")`` in canonical form."""
    if "@" in authority or "%40" in authority.lower():
        raise _Rejected("userinfo")
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise _Rejected("malformed")
        host, after = authority[: close + 1], authority[close + 1 :]
        if after and after[0] != ":":
            raise _Rejected("malformed")
        port = after[1:] if after else None
    else:
        host, colon, port = authority.partition(":")
        port = port if colon else None
    if not host:
        raise _Rejected("no_authority")
    if not host.isascii():  # before lower(): "\u212a" (Kelvin sign) lowercases to ASCII "k"
        raise _Rejected("non_ascii_host")
    if "%" in host:
        raise _Rejected("encoded_host")
    if port is not None and not _PORT.fullmatch(port):
        raise _Rejected("malformed")
    number = int(port) if port is not None else _DEFAULT_PORTS[scheme]
    suffix = "" if number == _DEFAULT_PORTS[scheme] else f":{number}"
    return f"{scheme}://{host.lower()}", suffix


def _rebuild(
    rules: RedirectRules, origin: str, reference: str, apps: tuple[AllowedApp, ...] | None
) -> tuple[str, AllowedApp | None]:
    """Check the path of ``reference`` (path[?query][#fragment]) and rebuild the target."""
    before_fragment, hash_mark, fragment = reference.partition("#")
    path, question_mark, query = before_fragment.partition("?")
    _check_path(path)
    path = quote(path, safe=_PATH_SAFE) or "/"
    app = None
    if apps is not None:
        app = _best_app(apps, path)
        if app is None:
            raise _Rejected("path_not_allowed")
    target = origin + path
    if question_mark:
        target += "?" + quote(_LONE_PERCENT.sub("%25", query), safe=_QUERY_SAFE)
    if hash_mark:
        target += "#" + quote(_LONE_PERCENT.sub("%25", fragment), safe=_QUERY_SAFE)
    if len(target) > rules.max_length:  # encoding grew it; keeps validation idempotent
        raise _Rejected("too_long")
    return target, app


def _check_path(path: str) -> None:
    if "//" in path:
        raise _Rejected("empty_segment")
    if _ENCODED_SEPARATOR.search(path):
        raise _Rejected("encoded_separator")
    if _ENCODED_CONTROL.search(path):
        raise _Rejected("control_char")
    if _LONE_PERCENT.search(path):
        raise _Rejected("malformed")
    try:  # what a server sees after decoding once; overlong "%c0%ae" is "." to some old ones
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise _Rejected("malformed") from None
    if not decoded.isascii() and any(
        not _LOOKALIKE_TARGETS.isdisjoint(unicodedata.normalize("NFKC", char))
        for char in set(decoded)
        if not char.isascii()
    ):
        raise _Rejected("lookalike")  # "\uff0f", "\u2025": harmless to browsers, not to every server
    # ";" starts path parameters that some servers strip (Tomcat "/..;/"): check what precedes it.
    if any(segment.partition(";")[0] in (".", "..") for segment in path.split("/")):
        raise _Rejected("dot_segment")


def _best_app(apps: tuple[AllowedApp, ...], path: str) -> AllowedApp | None:
    best = None
    for app in apps:
        prefix = app.path_prefix
        inside = prefix == "/" or path == prefix or path.startswith(prefix + "/")
        if inside and (best is None or len(prefix) > len(best.path_prefix)):
            best = app
    return best


# --- start-up: configuration parsing -----------------------------------------------------------


def parse_origin(text: str) -> str:
    """Canonicalize a configured origin: ``'HTTPS://App.Example.com:443/'`` -> ``'https://app.example.com'``.

    Raises ValueError for anything but a bare ``http(s)://host[:port]`` (an optional single
    trailing ``/`` is allowed). The result is what a WHATWG parser would serialize, so
    validate_next can compare origins as plain strings.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("origin is empty; expected scheme://host[:port], e.g. https://app.example.com")
    if not text.isascii():
        raise ValueError(f"origin {text!r} contains non-ASCII characters; write IDN hosts in punycode (xn--...)")
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError(f"origin {text!r} contains whitespace or control characters")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS:
        raise ValueError(f"origin {text!r} must start with https:// (or http:// for local development)")
    rest = rest.removesuffix("/")
    if any(char in rest for char in "/?#\\"):
        raise ValueError(f"origin {text!r} must not have a path, query or fragment; put the path in path_prefix")
    if "@" in rest:
        raise ValueError(f"origin {text!r} must not contain userinfo (user@)")
    if "*" in rest:
        raise ValueError(f"origin {text!r} contains a wildcard; list each origin explicitly")
    if "%" in rest:
        raise ValueError(f"origin {text!r} must not be percent-encoded")
    if rest.startswith("["):
        host, bracket, port = rest.partition("]")
        host += bracket
        if not bracket or (port and not port.startswith(":")):
            raise ValueError(f"origin {text!r}: expected ':port' after the IPv6 literal")
        port = port[1:] if port else None
    else:
        host, colon, port = rest.partition(":")
        port = port if colon else None
    host = _canonical_host(host.lower(), text)
    number = _DEFAULT_PORTS[scheme]
    if port is not None:
        if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
            raise ValueError(f"origin {text!r} has an invalid port; use 1-65535")
        number = int(port)
    suffix = "" if number == _DEFAULT_PORTS[scheme] else f":{number}"
    return f"{scheme}://{host}{suffix}"


def _canonical_host(host: str, text: str) -> str:
    if not host:
        raise ValueError(f"origin {text!r} has an empty host")
    if host.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise ValueError(f"origin {text!r} has an invalid IPv6 literal") from None
    if host.endswith("."):
        raise ValueError(f"origin {text!r}: drop the trailing dot from the host")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # Browsers parse this as IPv4 ("0x7f.1", "3627734734"), so only the dotted-decimal form
        # is allowed: it is the one they serialize back.
        try:
            if str(ipaddress.IPv4Address(host)) == host:
                return host
        except ValueError:
            pass
        raise ValueError(f"origin {text!r}: write an IPv4 host as four decimal numbers, e.g. 192.0.2.10")
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            f"origin {text!r} has an invalid host; use letters, digits and '-' in dot-separated labels"
        )
    return host


def _canonical_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"path_prefix {prefix!r} must start with '/'")
    if "*" in prefix:
        raise ValueError(f"path_prefix {prefix!r} is a literal prefix matched on '/' boundaries; drop the '*'")
    trimmed = prefix[:-1] if len(prefix) > 1 and prefix.endswith("/") else prefix
    # "//" before trimming too: trimmed, "//" would silently become "/", the whole origin.
    if "//" in prefix or not _PREFIX.fullmatch(trimmed) or any(seg in (".", "..") for seg in trimmed.split("/")):
        raise ValueError(
            f"path_prefix {prefix!r} must be plain path segments (letters, digits, '-._~' and "
            "sub-delimiters), without '//', dot segments, percent-encoding, query or fragment"
        )
    return trimmed


def build_rules(own_origin: str, apps: Iterable[AllowedApp] = (), default: str = "/",
                max_length: int = 2048) -> RedirectRules:
    """Canonicalize configuration once at start-up; raises ValueError with a fix-it message."""
    canonical_apps = []
    for app in apps:
        if not isinstance(app, AllowedApp):
            raise TypeError(f"apps must be AllowedApp instances, got {type(app).__name__}")
        canonical_apps.append(
            AllowedApp(parse_origin(app.origin), _canonical_prefix(app.path_prefix), app.name)
        )
    rules = RedirectRules(parse_origin(own_origin), tuple(canonical_apps), default, max_length)
    decision = validate_next(default, rules)
    if not decision.accepted or decision.target != default:
        raise ValueError(
            f"default redirect {default!r} is not a safe target under these rules "
            f"({decision.reason}); use a plain path such as '/'"
        )
    return rules
