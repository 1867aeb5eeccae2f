"""Forwarding headers a client makes up: ``X-Original-URL``, ``X-Forwarded-Uri/Host/Method/Proto``
and the like, empty ones, and ``Connection:`` naming them (a hop-by-hop header makes some proxies
drop the headers they set themselves: Traefik CVE-2024-45410). None may change the proxy's decision
or the ``next`` the login page gets (authentik GHSA-5wcc-hf24-rf5h, tinyauth CVE-2026-137182,
oauth2-proxy CVE-2026-40575, tinyauth GHSA-xg2q-62g2-cvcm).

A made-up URL shows only in the ``next`` of a login redirect: when the plain request's redirect
carries none (the app's origin is not allow-listed, or the proxy answers 401 without a redirect),
an unchanged answer proves nothing about it, and the checks say they cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from authsvc.probe.access import LET_THROUGH, TO_LOGIN, Decision, refused_outright
from authsvc.probe.model import Check, Finding, failed, not_applicable, passed

FIX = ("Make the proxy describe the original request itself and overwrite whatever the client sent: nginx "
       "proxy_set_header X-Original-URL $scheme://$http_host$request_uri and X-Forwarded-Host/Uri/Method \"\" "
       "in the auth subrequest; Traefik trustForwardHeader=false; Caddy and Envoy set them from the request. "
       "authsvc must trust exactly one hop (AUTHSVC_TRUSTED_PROXIES=1, AUTHSVC_TRUSTED_PROXY_NETWORKS the proxy).")
NEXT = Check("forwarding.next", "made-up forwarding headers change neither the decision nor the next", FIX,
             ("V4.1.3",))
SIGNED_IN = Check("forwarding.signed_in", "made-up forwarding headers do not change a signed-in user's access", FIX,
                  ("V4.1.3",))
LOGIN_HOST = Check("forwarding.login_host", "a client cannot describe a forward-auth request to the login host",
                   "In the login host's server block, blank the forward-auth headers (nginx: proxy_set_header "
                   "X-Original-URL \"\" and the X-Forwarded-Host/Uri/Method likewise).", ("V4.1.3",))
CHECKS = (NEXT, SIGNED_IN, LOGIN_HOST)

MARK = "probe-forged"


@dataclass(frozen=True)
class Forgery:
    label: str
    headers: tuple[tuple[str, str], ...]

    @property
    def hop_by_hop(self) -> bool:
        """Does it send a ``Connection`` header (naming the forwarding headers)?"""
        return any(name.lower() == "connection" for name, _ in self.headers)


def refused_by_proxy(forgery: Forgery, d: Decision) -> bool:
    """The proxy refused a request whose ``Connection`` header names forwarding headers, before
    anyone was asked: a 400 with no ``Location``, or the connection closed (Envoy answers 400 when
    ``Connection`` names X-Forwarded-For, -Host or -Proto). The trick that makes a proxy drop the
    headers it sets itself never reached authsvc or the app, which is what hop-by-hop stripping is
    for. Only these forgeries and only these answers: authsvc answers such a forward-auth request
    with 200, 401, 403 or a redirect, never a bare 400, so every other change still counts."""
    return forgery.hop_by_hop and refused_outright(d)


def _refusals(outcomes: list[tuple[Forgery, Decision]]) -> str:
    refused = [f.label for f, d in outcomes if refused_by_proxy(f, d)]
    return f"; refused by the proxy itself: {', '.join(refused)}" if refused else ""


def forgeries(app_url: str, token: str) -> list[Forgery]:
    """Made-up descriptions of the request, aimed where they would change something: another page
    of the same app (a ``next`` the allow-list accepts), another host, another method."""
    elsewhere = urljoin(app_url, f"{MARK}-{token}")
    path = urlsplit(elsewhere).path
    hop_by_hop = "X-Original-URL, X-Original-Method, X-Forwarded-Uri, X-Forwarded-Host, X-Forwarded-Method, " \
                 "X-Forwarded-Proto, X-Forwarded-For, X-Real-IP"
    made = [
        Forgery("X-Original-URL to another page", (("X-Original-URL", elsewhere),)),
        Forgery("X-Original-URL to another host", (("X-Original-URL", f"https://evil.example/{MARK}-{token}"),)),
        Forgery("X-Original-URI", (("X-Original-URI", path),)),
        Forgery("X-Forwarded-Uri", (("X-Forwarded-Uri", path),)),
        Forgery("X-Forwarded-Host", (("X-Forwarded-Host", "evil.example"),)),
        Forgery("X-Forwarded-Uri and -Host", (("X-Forwarded-Host", urlsplit(app_url).netloc),
                                              ("X-Forwarded-Uri", path), ("X-Forwarded-Proto", "https"))),
        Forgery("X-Forwarded-Method", (("X-Forwarded-Method", "POST"),)),
        Forgery("X-Original-Method", (("X-Original-Method", "POST"),)),
        Forgery("X-Forwarded-Proto http", (("X-Forwarded-Proto", "http"),)),
        Forgery("X-Rewrite-URL", (("X-Rewrite-URL", path),)),
        Forgery("underscores", (("X_Original_URL", elsewhere), ("X_Forwarded_Uri", path))),
        Forgery("empty headers", (("X-Original-URL", ""), ("X-Forwarded-Host", ""), ("X-Forwarded-Uri", ""),
                                  ("X-Forwarded-Method", ""), ("X-Forwarded-Proto", ""))),
        Forgery("Connection naming them", (("Connection", hop_by_hop),)),
        Forgery("Connection naming them, with forged values", (("Connection", hop_by_hop),
                                                               ("X-Original-URL", elsewhere),
                                                               ("X-Forwarded-Uri", path))),
    ]
    return made


def shows_next(baseline: Decision) -> bool:
    """Whether the plain anonymous request's answer would show a made-up URL: a login redirect
    with a next."""
    return baseline.kind == TO_LOGIN and baseline.next is not None


def judge_anonymous(baseline: Decision, outcomes: list[tuple[Forgery, Decision]]) -> Finding:
    changed = [f"{f.label}: {d.describe()}" for f, d in outcomes
               if (d.kind, d.status, d.next) != (baseline.kind, baseline.status, baseline.next)
               and not refused_by_proxy(f, d)]
    if changed:
        return failed(f"without them: {baseline.describe()}; with " + "; ".join(changed[:4])
                      + (" ..." if len(changed) > 4 else ""))
    if not shows_next(baseline):
        return not_applicable(f"{len(outcomes)} forgeries answered as without them ({baseline.describe()}), but "
                              "with no next in the login redirect a made-up URL cannot show: allow-list the app's "
                              "origin (AUTHSVC_REDIRECT_ALLOWED_ORIGINS or [[redirects.apps]]) to check it")
    return passed(f"{len(outcomes)} forgeries, each answered as without them ({baseline.describe()})"
                  + _refusals(outcomes))


def judge_signed_in(baseline: Decision, outcomes: list[tuple[Forgery, Decision]]) -> Finding:
    if baseline.kind != LET_THROUGH:
        return not_applicable(f"the signed-in user does not reach the app ({baseline.describe()})")
    changed = [f"{f.label}: {d.describe()}" for f, d in outcomes
               if d.kind != baseline.kind and not refused_by_proxy(f, d)]
    if changed:
        return failed("the decision changed: " + "; ".join(changed[:4]))
    return passed(f"{len(outcomes)} forgeries, each let through as without them" + _refusals(outcomes))


def judge_login_host(status: int, location: str | None, token: str, baseline: Decision) -> Finding:
    """The login host's /auth/verify asked with a made-up X-Original-URL (status 0: no answer): the
    made-up URL must not come back as a ``next``. ``baseline``: the app's plain anonymous answer;
    without a next there, authsvc drops the app's URLs anyway and the made-up one cannot show."""
    if location and f"{MARK}-{token}" in location:
        return failed(f"{status} with the made-up URL in Location: the proxy passes the client's X-Original-URL "
                      "to authsvc on the login host")
    if status == 0:
        return not_applicable("the login host gave no answer to the made-up forward-auth request")
    if not shows_next(baseline):
        return not_applicable(f"{status}, but the app's login redirect carries no next, so a made-up URL of the "
                              "app would not show either")
    return passed(f"{status}, the made-up URL is not used")
