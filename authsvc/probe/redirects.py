"""Hostile ``next`` values on the login page: none may send the browser off the deployment's own
origins, inject a header, or reach the page unescaped.

The sample is a cut of the attack lists of tests/security/test_redirects.py (whose ids name the
advisory each comes from), kept here because the probe ships without the tests. ``{app}`` stands
for the app's host[:port] and ``{auth}`` for the login host's, so the look-alikes wrap the real
names; every target is off the deployment (evil.example, another scheme) or a downgrade.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from authsvc.probe.model import Check, Finding, failed, not_applicable, passed, shown

NEXT = Check("redirect.next", "hostile next values never lead off the deployment, inject headers or reach the page",
             "Upgrade authsvc and let the proxy pass the login page's query unchanged; never validate or rewrite "
             "next in the proxy.", ("V3.7.2", "V3.7.3"))
CHECKS = (NEXT,)

EVIL = "evil.example"
INJECTED_COOKIE = "probe_injected"

# (id, value): the id says where the attack comes from.
HOSTILE_NEXT: tuple[tuple[str, str], ...] = (
    ("plain foreign host", "https://evil.example/"),
    ("scheme-relative //host", "//evil.example/"),
    ("triple slash", "///evil.example/"),
    ("oauth2-proxy CVE-2020-5233 /\\host", "/\\evil.example"),
    ("django \\\\host", "\\\\evil.example"),
    ("flask-security CVE-2023-49438 \\/", "\\/evil.example"),
    ("oauth2-proxy CVE-2020-4037 /./../../\\", "/./../../\\evil.example"),
    ("oauth2-proxy CVE-2020-11053 tab", "/\t/evil.example"),
    ("leading space", " //evil.example"),
    ("django CVE-2015-2317 leading backspace", "\x08//evil.example"),
    ("encoded slashes", "/%2f%2fevil.example"),
    ("encoded backslash", "/%5cevil.example"),
    ("scheme without slashes", "https:evil.example"),
    ("mod_auth_mellon CVE-2019-13038", "http:evil.example"),
    ("app host as username", "https://{app}@evil.example/"),
    ("app host as prefix", "https://{app}.evil.example/"),
    ("encoded at sign", "https://{app}%40evil.example/"),
    ("django CVE-2016-2512 host\\@", "https://{app}\\@evil.example/"),
    ("keycloak CVE-2024-8883", "http://localhost:80@evil.example"),
    ("downgrade to http", "http://{app}/"),
    ("downgrade of the login host", "http://{auth}/"),
    ("ideographic full stop", "https://evil\u3002example/"),
    ("full-width solidus", "\uff0f\uff0fevil.example"),
    ("hex IPv4", "https://0x7f.1/"),
    ("authentik CVE-2024-21637 javascript:", "javascript:alert(document.domain)"),
    ("javascript mixed case", "JaVaScRiPt:alert(1)"),
    ("javascript with tab", "java\tscript:alert(1)"),
    ("javascript wrapping the app", "javascript://{app}/%0aalert(1)"),
    ("data html", "data:text/html,<script>alert(1)</script>"),
    ("raw CRLF header injection", f"/\r\nSet-Cookie: {INJECTED_COOKIE}=1"),
    ("encoded CRLF header injection", f"/%0d%0aSet-Cookie:%20{INJECTED_COOKIE}=1"),
    ("markup in next", "/\"><script>alert(1)</script>"),
    ("oversized", "/" + "a" * 9000),
)

_HIDDEN_NEXT = re.compile(r"""<input\b[^>]*\bname=(?:"next"|'next'|next(?=[\s/>]))[^>]*>""", re.IGNORECASE)
_VALUE = re.compile(r"""\bvalue=(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.IGNORECASE)


def samples(auth_netloc: str, app_netloc: str) -> list[tuple[str, str]]:
    return [(label, value.replace("{app}", app_netloc).replace("{auth}", auth_netloc)) for label, value in HOSTILE_NEXT]


def hidden_next(page: str) -> str | None:
    """The value of the login form's hidden ``next`` field, unescaped; None without one."""
    match = _HIDDEN_NEXT.search(page)
    if match is None:
        return None
    value = _VALUE.search(match.group(0))
    return html.unescape(next(g for g in value.groups() if g is not None)) if value else ""


def normal_origin(url: str) -> str | None:
    """``https://host[:port]`` of an absolute https URL, lower case, default port dropped."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname:
        return None
    port_part = f":{port}" if port not in (None, 443) else ""
    # A trailing dot stays: to a browser "host." is another origin.
    return f"https://{parts.hostname.lower()}{port_part}"


def target_problem(target: str | None, trusted_origins: set[str]) -> str | None:
    """Why a browser sent to ``target`` (a Location, or a form's next) could leave the trusted
    origins, or None when it cannot. Conservative: what a browser would strip or turn into a slash
    (whitespace, controls, backslashes) and anything not ASCII is a problem on its own."""
    if not target:
        return None
    if any(ord(c) <= 0x20 or ord(c) >= 0x7f for c in target):
        return "whitespace, a control or a non-ASCII character"
    if "\\" in target:
        return "a backslash (browsers read it as a slash)"
    if target.startswith("/"):
        return "scheme-relative (another host)" if target.startswith("//") else None
    try:
        parts = urlsplit(target)
    except ValueError:  # "https://[::1": no URL parser reads it, and a browser may read it its own way
        return "unparsable"
    if parts.scheme.lower() != "https":
        return f"scheme {parts.scheme or 'missing'}"
    if "@" in parts.netloc:
        return "userinfo (the real host follows @)"
    origin = normal_origin(target)
    if origin is None or origin not in trusted_origins:
        return f"another origin ({origin or 'unparsable'})"
    return None


def judge_answer(label: str, value: str, status: int, location: str | None, page: str,
                 cookie_names: list[str], trusted_origins: set[str]) -> str | None:
    """What is wrong with the login service's answer to one hostile ``next`` (anonymous: the form;
    signed in: the redirect), or None."""
    if INJECTED_COOKIE in [n.lower() for n in cookie_names]:
        return f"{label}: a header was injected (Set-Cookie {INJECTED_COOKIE})"
    if 300 <= status < 400:
        problem = target_problem(location, trusted_origins)
        if problem:
            return f"{label}: redirected to {shown(location or '', 80)!r}: {problem}"
    if status == 200:
        problem = target_problem(hidden_next(page), trusted_origins)
        if problem:
            return f"{label}: the form carries next={shown(hidden_next(page) or '', 80)!r}: {problem}"
        if "<script>alert(1)</script>" in value and "<script>alert(1)</script>" in page:
            return f"{label}: the value reached the page unescaped"
    if status >= 500:
        return f"{label}: answered {status} (bad input must get a 4xx)"
    return None


def no_answer(label: str) -> str:
    """The problem of a hostile ``next`` the login page did not answer (timed out, or the
    connection dropped): a validator that hangs on it (catastrophic backtracking) or crashes is a
    denial of service, whereas a page that refuses it answers 4xx."""
    return f"{label}: no answer (timed out or the connection dropped; a refusal is a 4xx)"


def judge_next(problems: list[str | None], tried: int, signed_in: bool) -> Finding:
    if tried == 0:
        return not_applicable("no hostile next was sent")
    found = [p for p in problems if p]
    where = "signed in and anonymous" if signed_in else "anonymous (sign in with --user for the redirects)"
    if found:
        return failed(f"{len(found)} of {tried}: " + "; ".join(found[:5]) + (" ..." if len(found) > 5 else ""))
    return passed(f"{tried} hostile values, {where}")
