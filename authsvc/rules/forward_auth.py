"""Forward auth: which request a proxy is asking about, and where an anonymous browser should go.

Pure functions of plain values (header values, the trusted-proxy count, the redirect rules), so a
test can feed them hostile input without Flask; :mod:`authsvc.web.views.verify` only reads the request
and calls them.

Proxies describe the original request in one of two ways:

* nginx ``auth_request``: ``X-Original-URL: https://app.example.com/path?q`` and
  ``X-Original-Method``;
* Traefik ``ForwardAuth`` and Caddy ``forward_auth``: ``X-Forwarded-Proto``, ``X-Forwarded-Host``,
  ``X-Forwarded-Uri`` and ``X-Forwarded-Method``. ``X-Forwarded-Proto`` reaches this module as the
  request scheme, already taken from the trusted hop by ProxyFix (:mod:`authsvc.web.proxies`).

A client can send all of these headers itself, so they count only when ``AUTHSVC_TRUSTED_PROXIES``
is above 0 (``proxies`` deletes them otherwise; :func:`original_request` checks again so it is
safe on its own). Even then the URL is never trusted: it becomes the login page's ``next`` only
after :func:`authsvc.rules.redirects.validate_next` accepts it, re-serialised; anything else sends the
browser to the login page without ``next``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

from authsvc.rules.redirects import RedirectDecision, RedirectRules, validate_next

__all__ = ["METHOD_OVERRIDE_HEADERS", "LoginRedirect", "OriginalRequest", "login_location", "login_url",
           "method_overridden", "original_request", "request_parts", "step_up_location"]

# Only the shapes a proxy produces; validate_next still judges whatever passes these.
_ABSOLUTE = re.compile(r"https?://[\x21-\x7e]+\Z", re.IGNORECASE)
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_URI = re.compile(r"/[\x21-\x7e]*\Z")
_METHOD = re.compile(r"[A-Z]{1,16}\Z")
_PARTS = re.compile(r"[A-Za-z]+://([^/?#]*)(.*)\Z", re.DOTALL)  # authority, then path, query and fragment
# Where some frameworks read the method instead of the request line: these headers (Express's
# method-override, Symfony and Laravel with overrides on, ASP.NET, Google's APIs), and a "_method"
# query parameter (Symfony and Laravel read it for a POST; PHP reads ".method" and " method" as
# "_method" too). With one present the app may act on a method the proxy did not describe.
METHOD_OVERRIDE_HEADERS = ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override")
# The browser repeats the original request as a GET after login: only safe methods get a `next`.
_RESUMABLE = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class OriginalRequest:
    url: str | None  # absolute URL as the proxy described it, or None when it did not (usably)
    method: str      # upper case; "GET" when the proxy did not say, "" when it said nonsense


@dataclass(frozen=True)
class LoginRedirect:
    """Built once at start-up: where anonymous browsers go, and what ``next`` may be."""

    login_url: str           # absolute on AUTHSVC_PUBLIC_URL when that is set
    rules: RedirectRules
    trusted_proxies: int


def login_url(public_url: str | None) -> str:
    """The login page's URL: absolute when the public URL is known, so a proxy in front of another
    host (Traefik, Caddy, nginx ``error_page``) sends the browser to the login service itself."""
    return f"{public_url}/login" if public_url else "/login"


def original_request(headers: Mapping[str, str], scheme: str, trusted_proxies: int,
                     own_method: str = "GET") -> OriginalRequest:
    """The request the proxy is asking about, read from its headers.

    ``X-Original-URL`` (nginx) wins over ``X-Forwarded-Host``/``-Uri`` (Traefik, Caddy); ``scheme``
    is the request scheme after ProxyFix (the trusted hop's ``X-Forwarded-Proto``). A list of hosts
    (several proxies appended) or any part outside printable ASCII gives ``url=None``: refused, not
    guessed. The method is ``X-Original-Method`` or ``X-Forwarded-Method``; without either, the
    method of the proxy's own request (``own_method``: Envoy's ``ext_authz`` asks with the
    original request's method). A method the app may take from elsewhere
    (:func:`method_overridden`) is nonsense, ``""``: denied on a host with method rules.
    """
    if trusted_proxies < 1:
        return OriginalRequest(None, "GET")
    raw_method = headers.get("X-Original-Method") or headers.get("X-Forwarded-Method") or own_method
    method = raw_method.strip().upper()
    method = method if _METHOD.match(method) else ""
    original = headers.get("X-Original-URL")
    if original is not None:
        url = original if well_formed_original_url(original) else None
    else:
        host, uri = headers.get("X-Forwarded-Host"), headers.get("X-Forwarded-Uri")
        well_formed = scheme in ("http", "https") and host and uri and _HOST.match(host) and _URI.match(uri)
        url = f"{scheme}://{host}{uri}" if well_formed else None
    return OriginalRequest(url, "" if method_overridden(headers, url or original or "") else method)


def method_overridden(headers: Mapping[str, str], url: str) -> bool:
    """Does the request carry a method an app may act on instead of the described one: a method
    override header (any value: an empty one is still read by some), or a ``_method`` parameter in
    the query of ``url`` (all of it: a server may keep a ``#`` in the query), however its name is
    escaped or spelled for PHP (:func:`php_name`)?"""
    if any(headers.get(name) is not None for name in METHOD_OVERRIDE_HEADERS):
        return True
    query = url.partition("?")[2]
    if "method" not in query.lower() and "%" not in query:
        return False  # the common case, decided without parsing
    return any(php_name(name).lower() == "_method" for name, _ in parse_qsl(query, keep_blank_values=True))


def php_name(name: str) -> str:
    """The variable PHP files a query parameter under: leading spaces dropped, cut at a NUL (a C
    string), spaces and dots as ``_``, and cut at a ``[`` (``_method[x]`` is an array under
    ``_method``; without a ``]`` PHP would say ``_method_``, taken alike here, on the safe side)."""
    name = name.lstrip(" ").partition("\x00")[0]
    return name.split("[", 1)[0].replace(" ", "_").replace(".", "_")


def well_formed_original_url(value: str) -> bool:
    """An ``X-Original-URL`` to believe: ``http(s)://`` a host (port allowed) and a target that
    starts with ``/``, in printable ASCII. Anything else is refused, not mended: nginx builds the
    value from the request, and a Host header such as ``app:443?/x`` or ``app#`` (which nginx routes
    by the name before the colon) would otherwise move the path the rules judge (to ``/``), while
    the app gets the real one."""
    if not _ABSOLUTE.match(value):
        return False
    parts = _PARTS.match(value)
    return parts is not None and bool(_HOST.match(parts.group(1))) and bool(_URI.match(parts.group(2)))


def login_location(redirect: LoginRedirect, original: OriginalRequest) -> tuple[str, RedirectDecision | None]:
    """``Location`` for an anonymous browser: the login page, with ``next`` when the original URL
    is an allowed target and safe to repeat. Also returns the decision (None if none was made) so
    the caller can record a rejection."""
    if original.url is None or original.method not in _RESUMABLE:
        return redirect.login_url, None
    decision = validate_next(original.url, redirect.rules)
    if not decision.accepted:
        return redirect.login_url, decision
    # The target is already printable ASCII; quote what would end or split the query value.
    return f"{redirect.login_url}?next={quote(decision.target, safe=':/')}", decision


def request_parts(original: OriginalRequest) -> tuple[str | None, str | None]:
    """The host (port included) and the request target (path, query) of the original URL, for
    the access rules (:func:`authsvc.rules.access.decide`); ``(None, None)`` without a URL."""
    if original.url is None:
        return None, None
    parts = _PARTS.match(original.url)
    if parts is None:  # pragma: no cover - original_request's shapes always split
        return None, None
    host, target = parts.groups()
    return host, target


def step_up_location(redirect: LoginRedirect, original: OriginalRequest) -> tuple[str, RedirectDecision | None]:
    """``Location`` for a signed-in browser whose session has one factor where a rule asks two: the
    login page with ``step_up=1`` (it then signs in again, password and second step, instead of
    going straight back) and ``next`` as :func:`login_location` gives it."""
    location, decision = login_location(redirect, original)
    return location + ("&" if "?" in location else "?") + "step_up=1", decision
