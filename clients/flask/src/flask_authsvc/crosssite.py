"""Did a POST come from this app's own pages? (cross-site sign-out, a building block of login CSRF)

The extension cannot count on a CSRF token: Flask-WTF's ``CSRFProtect`` adds one when the app has
it, but the extension must work without it. The browser says where a request comes from, in headers
no page can set: ``Sec-Fetch-Site`` (every current browser) and ``Origin`` (every browser on a POST).
:func:`cross_site_problem` reads them, the way authsvc's own ``authsvc.rules.sameorigin`` does; a
request with neither (curl, a test client, a browser too old to send ``Origin`` on a POST) passes,
and is left to the CSRF token when the app has one.

Reason codes (None: allowed):

* ``cross_site_fetch``: ``Sec-Fetch-Site`` is ``cross-site``, ``same-site`` (a sibling subdomain is
  another site's pages, and may be another tenant's) or any value a browser would not send.
* ``foreign_origin``: ``Origin`` names another origin: another host, port or scheme, another
  spelling (browsers send it lower-case, default port omitted), several values.
* ``opaque_origin``: ``Origin: null`` without ``Sec-Fetch-Site`` to vouch for it (sandboxed frames,
  ``data:`` pages and cross-origin redirects send it).
"""

from __future__ import annotations

from typing import Final

CROSS_SITE_FETCH: Final = "cross_site_fetch"
FOREIGN_ORIGIN: Final = "foreign_origin"
OPAQUE_ORIGIN: Final = "opaque_origin"

_FROM_HERE: Final = frozenset({"same-origin", "none"})   # "none": the user reloaded or resubmitted
_OWS: Final = " \t"   # RFC 9110 optional whitespace around a field value
_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def cross_site_problem(origin: str | None, sec_fetch_site: str | None, own_origin: str) -> str | None:
    """None when a POST with these raw header values (None when absent) may come from this app's
    pages at ``own_origin`` (as :func:`own_origin` writes it); else a reason code. Compared exactly:
    browsers serialize an origin one way, so any other spelling is not theirs."""
    if sec_fetch_site is not None:
        if sec_fetch_site.strip(_OWS) not in _FROM_HERE:
            return CROSS_SITE_FETCH
        # Same-origin fetches still send Origin; "null" is what a no-referrer policy makes of it.
        # Any other origin contradicts the fetch metadata.
        if origin is not None and origin.strip(_OWS) not in (own_origin, "null"):
            return FOREIGN_ORIGIN
        return None
    if origin is None:
        return None
    value = origin.strip(_OWS)
    if value == own_origin:
        return None
    return OPAQUE_ORIGIN if value == "null" else FOREIGN_ORIGIN


def own_origin(scheme: str, host: str) -> str:
    """This app's origin as a browser serializes it, from the request's scheme and ``Host`` (after
    Werkzeug's ``ProxyFix`` when the app runs behind a TLS-terminating proxy): lower-case, the
    default port dropped (``https://app.example.com``, ``http://127.0.0.1:5000``)."""
    scheme, host = scheme.lower(), host.lower()
    name, colon, port = host.rpartition(":")
    if colon and port == _DEFAULT_PORTS.get(scheme):   # "[::1]:443" too; "[::443]" has no port
        host = name
    return f"{scheme}://{host}"
