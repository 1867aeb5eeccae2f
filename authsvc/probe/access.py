"""What the proxy decided about a request to the app, read from its answer: let through (2xx),
sent to the login page (a redirect to the login host, with or without ``next``), refused (401,
403) or something else. The other families compare these decisions.

The login page is authsvc's only when the ``Location``, resolved against the URL asked as a
browser does, lands on the login host: an app without forward auth that sends its visitors to its
own ``/login`` is the app answering.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urljoin, urlsplit

from authsvc.probe.model import Check, Finding, failed, passed, shown
from authsvc.probe.redirects import normal_origin

ANONYMOUS = Check("access.anonymous", "an anonymous request to the app is sent to the login page, with next",
                  "Put the app URL behind forward auth (nginx auth_request, Traefik ForwardAuth, Caddy forward_auth, "
                  "Envoy ext_authz) and point --app-url at a protected page, not a bypass path.", ("V8.3.1",))
CHECKS = (ANONYMOUS,)

LET_THROUGH = "let through"
TO_LOGIN = "sent to the login page"
REFUSED = "refused"
ELSEWHERE = "redirected elsewhere"   # a redirect not to the login page: the app's own, as a rule
OTHER = "other"                      # a 4xx other than 401/403, or a 5xx


@dataclass(frozen=True)
class Decision:
    kind: str
    status: int
    next: str | None = None       # the login URL's next, when sent to the login page
    location: str | None = None

    def describe(self) -> str:
        shown_next = f", next={shown(self.next, 100)!r}" if self.next is not None else ""
        return f"{self.status} {self.kind}{shown_next}"


def login_next(location: str) -> tuple[bool, str | None]:
    """(whether a Location names a login page, its single next value or None)."""
    parts = urlsplit(location)
    query = parse_qs(parts.query, keep_blank_values=True)
    values = query.get("next", [])
    return parts.path.rstrip("/").endswith("/login"), (values[0] if len(values) == 1 else None)


def resolved(location: str, url: str) -> str | None:
    """Where a browser sent from ``url`` to ``location`` arrives, or None when a browser may read
    it otherwise than urljoin (a backslash, whitespace, a control character) or no URL parser
    reads it ("https://[x/login")."""
    if "\\" in location or any(ord(c) <= 0x20 or ord(c) == 0x7f for c in location):
        return None
    try:
        return urljoin(url, location)
    except ValueError:
        return None


def decision(status: int, location: str | None, auth_origin: str, url: str) -> Decision:
    """The proxy's decision on a request for ``url``, from its answer's status and ``Location``."""
    if 200 <= status < 300:
        return Decision(LET_THROUGH, status)
    if status in (401, 403) and not location:
        return Decision(REFUSED, status)
    target = resolved(location, url) if location else None
    if target and (300 <= status < 400 or status == 401) and normal_origin(target) == auth_origin:
        is_login, next_value = login_next(target)
        if is_login:
            return Decision(TO_LOGIN, status, next_value, location)
    if status in (401, 403):
        return Decision(REFUSED, status, location=location)
    if 300 <= status < 400:
        return Decision(ELSEWHERE, status, location=location)
    return Decision(OTHER, status, location=location)


def kept_out(d: Decision) -> bool:
    """Was the request kept away from the app? A 2xx reached it, and so, as a rule, did a redirect
    that is not to the login page (the app's own: "/" to "/home"). A 4xx (a proxy refusing a
    malformed request) and a 5xx did not; the judges flag a 5xx on their own."""
    return d.kind not in (LET_THROUGH, ELSEWHERE)


def same(a: Decision, b: Decision) -> bool:
    """Whether two answers are the same decision: kind, status and the login page's next."""
    return (a.kind, a.status, a.next) == (b.kind, b.status, b.next)


def refused_outright(d: Decision) -> bool:
    """The proxy refused a request before anyone was asked: a 400 without ``Location`` (nginx on
    "X-Auth-User :", Envoy on a Connection header naming its own), or the connection closed
    (status 0). authsvc answers a forward-auth request with 200, 401, 403 or a redirect, never a
    bare 400, so any other difference from the plain request is someone acting on the request."""
    return not d.location and d.status in (0, 400)


def judge_anonymous(d: Decision, app_url: str) -> Finding:
    if d.kind == LET_THROUGH:
        return failed(f"{d.status}: the app answered an anonymous request")
    if d.kind == TO_LOGIN:
        if d.next == app_url:
            return passed(f"{d.status} to the login page with next = the app URL")
        if d.next is None:
            return passed(f"{d.status} to the login page, without next (is the app's origin allow-listed: "
                          "AUTHSVC_REDIRECT_ALLOWED_ORIGINS or [[redirects.apps]]?)")
        return failed(f"{d.status} to the login page with next={shown(d.next, 100)!r}, not the URL asked for")
    if d.kind == REFUSED:
        return passed(f"{d.status} refused (no login redirect)")
    if d.kind == ELSEWHERE:
        return failed(f"{d.status} to {shown(d.location or '', 100)!r}, not the login page: the app answered, or "
                      "--app-url is not the page itself (give the URL it redirects to)")
    return failed(f"{d.status}: neither the app nor the login page (Location {shown(d.location or '', 100)!r})")
