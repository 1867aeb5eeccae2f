"""Did a state-changing request come from the service's own pages? (login CSRF by cookie tossing)

The CSRF token alone cannot answer this in single sign-on mode: script on any sibling subdomain can
plant its own session cookie (and so know the token bound to it), then post a same-site form. The
browser says where a request comes from, in headers no page can set: ``Sec-Fetch-Site`` (every
current browser) and ``Origin``. :func:`check` reads them; a request with neither (curl, a test
client, a very old browser) is left to the CSRF token, which every form still needs.

Reason codes (``OriginDecision.reason``):

* ``safe_method``: GET, HEAD, OPTIONS or TRACE, which change nothing.
* ``same_origin``: ``Sec-Fetch-Site: same-origin``, or, without it, ``Origin`` equal to the service's.
* ``user_initiated``: ``Sec-Fetch-Site: none`` (typed, bookmarked or reloaded by the user).
* ``no_browser_headers``: neither header; the CSRF token decides.
* ``cross_site_fetch`` (refused): ``Sec-Fetch-Site`` is ``same-site``, ``cross-site`` or anything else.
* ``foreign_origin`` (refused): ``Origin`` names another origin (including a sibling subdomain,
  another port or scheme, several values, any spelling a browser would not send).
* ``opaque_origin`` (refused): ``Origin: null`` without ``Sec-Fetch-Site`` to vouch for it
  (sandboxed frames, ``data:`` pages and cross-origin redirects send it).
"""

from __future__ import annotations

from dataclasses import dataclass

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_FROM_HERE = frozenset({"same-origin", "none"})
_OWS = " \t"  # RFC 9110 optional whitespace around a field value


@dataclass(frozen=True)
class OriginDecision:
    allowed: bool
    reason: str


def check(method: str, origin: str | None, sec_fetch_site: str | None, own_origin: str) -> OriginDecision:
    """May this request change state? ``origin`` and ``sec_fetch_site`` are the raw header values
    (None when absent); ``own_origin`` is the service's canonical origin (``https://host[:port]``,
    as :func:`authsvc.rules.redirects.parse_origin` writes it, which is how browsers serialize one).

    Methods are case-sensitive (RFC 9110): ``post`` is not GET, so it is checked."""
    if method in SAFE_METHODS:
        return OriginDecision(True, "safe_method")
    if sec_fetch_site is not None:
        site = sec_fetch_site.strip(_OWS)
        if site not in _FROM_HERE:
            return OriginDecision(False, "cross_site_fetch")
        # A browser that says same-origin still sends Origin; "null" is what it sends under a
        # no-referrer policy. Any other origin contradicts the fetch metadata: refused.
        if origin is not None and origin.strip(_OWS) not in (own_origin, "null"):
            return OriginDecision(False, "foreign_origin")
        return OriginDecision(True, "same_origin" if site == "same-origin" else "user_initiated")
    if origin is None:
        return OriginDecision(True, "no_browser_headers")
    value = origin.strip(_OWS)
    if value == own_origin:
        return OriginDecision(True, "same_origin")
    if value == "null":
        return OriginDecision(False, "opaque_origin")
    return OriginDecision(False, "foreign_origin")
