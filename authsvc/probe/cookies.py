"""Cookies the login service sets: parsed from ``Set-Cookie`` as a browser would (RFC 6265bis
section 5.6, without the public-suffix list), and judged: Secure, HttpOnly, SameSite, the
``__Host-``/``__Secure-`` prefixes, and how far a Domain shares them.

Remember-me and device cookies are long-lived credentials that no app needs: host-only. Only the
session cookie may carry a Domain, and then no wider than the closest parent of the login and app
hosts (issue 10: apps behind the proxy must never hold authsvc's credentials).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from authsvc.probe.model import Check, Finding, failed, not_applicable, passed, shown

SECURE = Check("cookie.secure", "every cookie of the login service is Secure",
               "Run authsvc in production mode (AUTHSVC_ENV unset) behind HTTPS, and let no proxy rewrite "
               "Set-Cookie (nginx proxy_cookie_flags, Traefik/Caddy header rewrites).", ("V3.3.1",))
HTTPONLY = Check("cookie.httponly", "every cookie of the login service is HttpOnly",
                 "Let no proxy rewrite authsvc's Set-Cookie headers; authsvc sets HttpOnly on every cookie.",
                 ("V3.3.4",))
SAMESITE = Check("cookie.samesite", "every cookie of the login service is SameSite=Lax or Strict",
                 "Let no proxy rewrite authsvc's Set-Cookie headers (SameSite=None opens cross-site requests "
                 "with the session).", ("V3.3.2",))
PREFIX = Check("cookie.prefix", "cookie names carry the __Host- or __Secure- prefix, and its rules hold",
               "Run authsvc in production mode behind HTTPS: host-only cookies are __Host- (Secure, Path=/, "
               "no Domain), the shared session cookie __Secure-.", ("V3.3.1",))
SCOPE = Check("cookie.scope", "only the session cookie has a Domain, no wider than the login and app hosts need",
              "Set AUTHSVC_COOKIE_DOMAIN to the closest domain covering both hosts (e.g. .example.com for "
              "auth.example.com and app.example.com), or leave it unset when they are one host; remember-me and "
              "device cookies must stay host-only (upgrade authsvc).", ("V3.3.1",))

CHECKS = (SECURE, HTTPONLY, SAMESITE, PREFIX, SCOPE)


@dataclass(frozen=True)
class SetCookie:
    """One ``Set-Cookie`` header, as a browser reads it (attribute names case-insensitive, the last
    of each wins)."""

    name: str
    value: str
    attributes: dict[str, str] = field(default_factory=dict)  # lower-case name -> value ("" if none)

    @property
    def secure(self) -> bool:
        return "secure" in self.attributes

    @property
    def httponly(self) -> bool:
        return "httponly" in self.attributes

    @property
    def samesite(self) -> str | None:
        value = self.attributes.get("samesite")
        return value.lower() if value is not None else None

    @property
    def domain(self) -> str | None:
        """The Domain attribute, lower case, without leading or trailing dots; None when absent or empty
        (both mean host-only)."""
        value = self.attributes.get("domain", "").strip().lower().strip(".")
        return value or None

    @property
    def path(self) -> str:
        value = self.attributes.get("path", "")
        return value if value.startswith("/") else "/"

    @property
    def deletes(self) -> bool:
        """True when the header removes the cookie (Max-Age zero or less, or an Expires in 1970)."""
        max_age = (self.attributes.get("max-age") or "").strip()
        if re.fullmatch(r"-?[0-9]+", max_age):  # anything else a browser ignores ("--1", "1e3")
            return int(max_age) <= 0
        return "1970" in self.attributes.get("expires", "")


def parse_set_cookie(raw: str) -> SetCookie | None:
    """A ``Set-Cookie`` value, or None for one a browser ignores (no ``=``, empty name and value,
    control characters)."""
    if any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in raw):
        return None
    pair, _, rest = raw.partition(";")
    if "=" not in pair:
        return None
    name, _, value = pair.partition("=")
    name, value = name.strip(" \t"), value.strip(" \t")
    if not name and not value:
        return None
    attributes: dict[str, str] = {}
    for part in rest.split(";"):
        key, _, attr = part.partition("=")
        key = key.strip(" \t").lower()
        if key:
            attributes[key] = attr.strip(" \t")
    return SetCookie(name, value, attributes)


def _names(cookies: list[SetCookie]) -> str:
    return ", ".join(sorted({shown(c.name, 60) for c in cookies}))


def _none_set(cookies: list[SetCookie]) -> Finding | None:
    return None if cookies else not_applicable("the login service set no cookie on the pages probed")


def judge_secure(cookies: list[SetCookie]) -> Finding:
    bad = [c for c in cookies if not c.secure]
    return _none_set(cookies) or (failed(f"not Secure: {_names(bad)}") if bad else
                                  passed(f"Secure: {_names(cookies)}"))


def judge_httponly(cookies: list[SetCookie]) -> Finding:
    bad = [c for c in cookies if not c.httponly]
    return _none_set(cookies) or (failed(f"not HttpOnly (scripts can read them): {_names(bad)}") if bad else
                                  passed(f"HttpOnly: {_names(cookies)}"))


def judge_samesite(cookies: list[SetCookie]) -> Finding:
    bad = [c for c in cookies if c.samesite not in ("lax", "strict")]
    if not cookies:
        return _none_set(cookies)
    if bad:
        return failed("SameSite missing or None: " + ", ".join(
            sorted({f"{shown(c.name, 60)} ({shown(c.attributes.get('samesite', 'missing'), 20)})" for c in bad})))
    return passed(f"SameSite=Lax/Strict: {_names(cookies)}")


def prefix_problem(cookie: SetCookie) -> str | None:
    """Why a browser would refuse ``cookie``'s prefix, or why it lacks one; None when sound.
    Prefixes match case-insensitively in browsers (RFC 6265bis), so ``__host-`` is held to the
    same rules."""
    lowered = cookie.name.lower()
    if lowered.startswith("__host-"):
        if not cookie.secure:
            return "__Host- without Secure"
        if cookie.domain is not None:
            return "__Host- with a Domain"
        if cookie.attributes.get("path") != "/":
            return "__Host- without Path=/"
        return None
    if lowered.startswith("__secure-"):
        return None if cookie.secure else "__Secure- without Secure"
    return "no __Host- or __Secure- prefix (a sibling subdomain or a plain-http page can overwrite it)"


def judge_prefix(cookies: list[SetCookie]) -> Finding:
    problems = sorted({f"{shown(c.name, 60)}: {p}" for c in cookies if (p := prefix_problem(c))})
    return _none_set(cookies) or (failed("; ".join(problems)) if problems else
                                  passed(f"prefixed: {_names(cookies)}"))


def _labels(host: str) -> list[str]:
    return host.lower().rstrip(".").split(".")


def domain_matches(host: str, domain: str) -> bool:
    """RFC 6265 domain-match: ``host`` is ``domain`` or a subdomain of it."""
    host, domain = host.lower().rstrip("."), domain.lower().rstrip(".")
    return host == domain or host.endswith("." + domain)


def closest_shared_domain(first: str, second: str) -> str:
    """The longest domain both hosts are in ("" when they share only the root)."""
    a, b = _labels(first)[::-1], _labels(second)[::-1]
    shared = []
    for x, y in zip(a, b):
        if x != y:
            break
        shared.append(x)
    return ".".join(shared[::-1])


def scope_problem(cookie: SetCookie, auth_host: str, app_host: str) -> str | None:
    domain = cookie.domain
    if domain is None:
        return None
    if "session" not in cookie.name.lower():
        return f"Domain={domain}: only the session cookie may be shared; a long-lived credential reaches every app"
    if len(domain.split(".")) < 2:
        return f"Domain={domain}: a top-level domain"
    if not domain_matches(auth_host, domain):
        return f"Domain={domain} does not cover the login host {auth_host} (browsers drop the cookie)"
    needed = closest_shared_domain(auth_host, app_host)
    if domain_matches(needed, domain) and domain != needed:
        return f"Domain={domain} is wider than {needed}, which covers both hosts"
    return None


def judge_scope(cookies: list[SetCookie], auth_host: str, app_host: str) -> Finding:
    problems = sorted({f"{shown(c.name, 60)}: {p}" for c in cookies if (p := scope_problem(c, auth_host, app_host))})
    if not cookies:
        return _none_set(cookies)
    if problems:
        return failed("; ".join(problems))
    shared = sorted({f"{shown(c.name, 60)} (Domain={c.domain})" for c in cookies if c.domain})
    return passed("shared: " + ", ".join(shared) if shared else "every cookie is host-only")
