"""Which ``redirect_uri`` an OpenID Connect client may be sent back to, and which it may register.

Contract
--------
``redirect_uri_verdict(requested, registered, public=...)`` is a pure function returning a reason
code. A requested ``redirect_uri`` is accepted only when it is **exactly** (byte for byte) one of
the client's registered strings, with the one exception RFC 8252 section 7.3 makes for native
apps: a **public** client that registered ``http://127.0.0.1/...`` or ``http://[::1]/...`` may
come back on any port of that same loopback literal, with the same path and query. Nothing is
normalised, decoded or repaired: case, a trailing slash, a percent-encoding, a default port
written out, a fragment, whitespace are all different strings, so all refused. ``localhost`` gets
no port exception (RFC 8252 section 8.3: it may resolve elsewhere).

Most OpenID providers' redirect advisories are a matcher that was cleverer than this (prefix
matching, host-only matching, a parser that disagreed with the browser): the threat list is
tests/security/test_oidc_redirect_rules.py.

``registration_problem(uri, public=...)`` says why an operator may not register ``uri`` (None when
it may): https anywhere; http only to a loopback literal; a private-use scheme (reverse domain
name, RFC 8252 section 7.1) for public clients only; never a fragment, userinfo, whitespace,
control or non-ASCII characters, or a script scheme.

An unknown client or a refused ``redirect_uri`` gets an error page, never a redirect (RFC 6749
section 4.1.2.1): the views never build a Location from a URI this module did not accept.

Reason codes (a fixed set, for audit fields and metric labels):

=================== =================================================================
``ok``              an exact match, or the loopback port exception
``missing``         None, not a string, or empty (OIDC requires redirect_uri)
``too_long``        longer than :data:`MAX_LENGTH`
``bad_character``   anything outside printable ASCII (space, controls, DEL, non-ASCII)
``fragment``        contains ``#`` (RFC 6749 section 3.1.2: no fragment)
``not_registered``  not one of the client's registered strings
=================== =================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlencode

__all__ = ["MAX_LENGTH", "loopback_parts", "redirect_uri_verdict", "registration_problem", "response_location", "with_params", "csp_source"]

OK = "ok"
MISSING = "missing"
TOO_LONG = "too_long"
BAD_CHARACTER = "bad_character"
FRAGMENT = "fragment"
NOT_REGISTERED = "not_registered"

MAX_LENGTH = 2048

_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+\Z")
# http://127.0.0.1[:port][/path][?query] or http://[::1][:port]...: lowercase scheme, exactly
# these two literals, a port of 1 to 5 digits without a leading zero. No userinfo can fit: the
# literal must follow "//" directly.
_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::([1-9][0-9]{0,4}))?((?:/[^?#]*)?(?:\?[^#]*)?)\Z")
# A private-use scheme for a native app: a reverse domain name (at least one dot), RFC 8252 7.1.
_PRIVATE_SCHEME = re.compile(r"([a-z][a-z0-9+-]*(?:\.[a-z0-9+-]+)+):/[^/]")
_HTTPS = re.compile(r"https://([a-z0-9.-]+)(?::([1-9][0-9]{0,4}))?(/[^?#]*)?(\?[^#]*)?\Z")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


def loopback_parts(uri: str) -> tuple[str, int | None, str] | None:
    """``(host literal, port or None, path and query)`` of an ``http`` loopback-literal URI, else None."""
    match = _LOOPBACK.match(uri)
    if match is None:
        return None
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and port > 65535:
        return None
    return match.group(1), port, match.group(3)


def _shape(requested: object) -> str:
    if not isinstance(requested, str) or not requested:
        return MISSING
    if len(requested) > MAX_LENGTH:
        return TOO_LONG
    if not _PRINTABLE_ASCII.match(requested):
        return BAD_CHARACTER
    if "#" in requested:
        return FRAGMENT
    return OK


def redirect_uri_verdict(requested: object, registered: Iterable[str], *, public: bool) -> str:
    """``"ok"`` when ``requested`` may receive this client's authorization response, else why not."""
    shape = _shape(requested)
    if shape != OK or not isinstance(requested, str):  # (the second only for the type checker)
        return shape
    registered = tuple(registered)
    if requested in registered:
        return OK
    if public:  # RFC 8252 7.3: the port of a loopback redirect is chosen by the app at run time
        asked = loopback_parts(requested)
        if asked is not None and asked[1] is not None:
            for uri in registered:
                known = loopback_parts(uri)
                if known is not None and known[0] == asked[0] and known[2] == asked[2]:
                    return OK
    return NOT_REGISTERED


def registration_problem(uri: object, *, public: bool) -> str | None:
    """Why ``uri`` may not be registered as a redirect URI (a sentence for the operator), or None."""
    shape = _shape(uri)
    if shape == MISSING:
        return "a redirect URI is empty"
    if shape == TOO_LONG:
        return f"a redirect URI is longer than {MAX_LENGTH} characters"
    if shape == BAD_CHARACTER:
        return "a redirect URI may hold only printable ASCII (no spaces, controls or other scripts: percent-encode)"
    if shape == FRAGMENT:
        return "a redirect URI may not have a fragment (#...)"
    uri = str(uri)
    if uri.startswith("http://"):
        if loopback_parts(uri) is None:
            return ("http is allowed only to the loopback literals http://127.0.0.1 and http://[::1] "
                    "(not localhost: RFC 8252 8.3); use https")
        return None
    if uri.startswith("https://"):
        match = _HTTPS.match(uri)
        if match is None:
            return ("an https redirect URI needs a lowercase host name, an optional port and no userinfo "
                    "(https://app.example.com/callback)")
        host = match.group(1)
        if not all(_DNS_LABEL.match(label) for label in host.split(".")):
            return f"{host!r} is not a host name"
        if match.group(2) and int(match.group(2)) > 65535:
            return "the port is out of range"
        return None
    # A private-use scheme has a dot in it, so javascript:, data:, vbscript:, file:, blob: and about:
    # never match here; they get the last answer below.
    if _PRIVATE_SCHEME.match(uri):
        if not public:
            return "a private-use scheme (com.example.app:/callback) is for public (native) clients: add --public"
        return None
    return ("a redirect URI must be https://..., http://127.0.0.1 or http://[::1] (native apps), or a "
            "reverse-domain private-use scheme like com.example.app:/callback (public clients)")


def response_location(requested: str, registered: Iterable[str], *, public: bool,
                      params: list[tuple[str, str]]) -> str:
    """The Location of an authorization response: ``requested`` with ``params``, only when
    :func:`redirect_uri_verdict` accepts it for this client (else ValueError: the caller shows an
    error page). The one way the views build a redirect to a client (tests/security/astrules.py)."""
    if redirect_uri_verdict(requested, registered, public=public) != OK:
        raise ValueError("redirect_uri not accepted for this client")
    return with_params(requested, params)


def with_params(uri: str, params: list[tuple[str, str]]) -> str:
    """``uri`` (an accepted redirect URI: no fragment) with ``params`` added to its query,
    form-encoded; the registered query, if any, is kept as it was."""
    query = urlencode(params)
    if not query:
        return uri
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


def csp_source(uri: str) -> str | None:
    """The CSP source expression a page's ``form-action`` needs so that a form posted on it may end
    in a redirect to ``uri`` (an accepted redirect URI): its origin (``https://host[:port]``), or
    ``scheme:`` for a private-use scheme. Browsers apply ``form-action`` to the redirects that follow
    a form post, so the login, second-step and consent pages of an OpenID sign-in need the client's."""
    if _shape(uri) != OK:
        return None
    match = _HTTPS.match(uri)
    if match:
        return f"https://{match.group(1)}" + (f":{match.group(2)}" if match.group(2) else "")
    parts = loopback_parts(uri)
    if parts:
        return f"http://{parts[0]}" + (f":{parts[1]}" if parts[1] else "")
    if _PRIVATE_SCHEME.match(uri):
        return uri.split(":", 1)[0] + ":"
    return None
