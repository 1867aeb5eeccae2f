"""The OIDC mode's session cookie against cookie tossing: pure functions of plain values.

The sign-in lives in Flask's session cookie. Script on a sibling subdomain (or a page of this host
on plain http) can set a cookie of the same name for the shared domain, with a longer path
(``session=<the attacker's own signed sign-in>; Domain=example.com; Path=/private``): the browser
then sends both, the planted one first, Flask reads the first, and the victim works in the
attacker's account (login CSRF), or sends only the planted one when it has none of its own.

- :func:`session_cookie_problem`: an app served over https must name its session cookie
  ``__Host-...``: a browser takes such a cookie only from this very host, over https, with
  ``Path=/`` and no ``Domain``, so nothing else can set one (checked with ``Secure`` before a
  sign-in starts).
- :func:`stray_locations`: a request carrying two cookies of that name anyway (an app on plain
  http, or one configured before) is refused, and the answer deletes every copy the browser may
  hold. authsvc does the same for its own session cookie (``authsvc/web/cookieheader.py``).
"""

from __future__ import annotations

import re
from typing import Final

HOST_PREFIX: Final = "__Host-"
SUGGESTED_NAME: Final = "__Host-session"

_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_UNSAFE_IN_PATH = re.compile(r"[^A-Za-z0-9._~!$&'()*+=:@%/-]")
MAX_PATH_DEPTH: Final = 16    # deeper paths get no clean-up (the answer stays a sane size)


def session_cookie_problem(*, https: bool, name: str, secure: bool, domain: str | None, path: str) -> str | None:
    """None when the session cookie, as configured, can carry a sign-in on a request made over
    ``https`` (any cookie will do on plain http: loopback development); else what is wrong, naming
    the setting and the fix."""
    if not https:
        return None
    if not secure:
        return ("SESSION_COOKIE_SECURE is off while this app is served over https: the sign-in cookie would "
                "also go over plain http; set SESSION_COOKIE_SECURE = True")
    if not name.startswith(HOST_PREFIX):
        return (f"SESSION_COOKIE_NAME is {name!r}, not a __Host- name, while this app is served over https: a "
                f"sibling subdomain can plant a cookie of that name holding its own sign-in, which this app "
                f"would read first (login CSRF); set SESSION_COOKIE_NAME = {SUGGESTED_NAME!r}")
    if domain:
        return (f"SESSION_COOKIE_DOMAIN is {domain!r}: a browser refuses a __Host- cookie with a Domain; "
                f"unset SESSION_COOKIE_DOMAIN")
    if path != "/":
        return (f"SESSION_COOKIE_PATH (or APPLICATION_ROOT) is {path!r}: a browser refuses a __Host- cookie "
                f"whose Path is not /; set SESSION_COOKIE_PATH = '/'")
    return None


def path_prefixes(path: str) -> list[str]:
    """Every cookie path that matches request path ``path`` (RFC 6265 5.1.4), shortest first:
    ``/notes/7`` -> ``/``, ``/notes``, ``/notes/``, ``/notes/7``. Only up to the first character
    that has no place in a ``Path`` attribute (the path is the client's, and each prefix goes into
    a Set-Cookie). The same reading as authsvc's own (``authsvc.web.cookieheader.path_prefixes``),
    copied because the extension does not depend on authsvc; a test holds the two alike."""
    if not path.startswith("/"):
        return ["/"]
    path = _UNSAFE_IN_PATH.split(path, 1)[0]
    out = ["/"]
    segments = path.split("/")[1:]
    so_far = ""
    for index, segment in enumerate(segments[:MAX_PATH_DEPTH]):
        so_far += "/" + segment
        if segment:
            out.append(so_far)
        if index < len(segments) - 1 and so_far + "/" not in out:
            out.append(so_far + "/")
    return out


def stray_locations(host: str, path: str) -> list[tuple[str | None, str]]:
    """Every (Domain, Path) under which a cookie sent with a request to ``host`` + ``path`` can be
    stored (``None``: host-only). ``host`` is the Host header (a port is ignored, as browsers do).
    Domains are the host and its parents with at least two labels, for a plain DNS name only (the
    Host header is the client's: nothing else of it goes into a Set-Cookie)."""
    host = (host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]).lower().rstrip(".")
    labels = host.split(".")
    domains: list[str | None] = [None]
    if _DNS_NAME.fullmatch(host) and not host.replace(".", "").isdigit():
        domains += [".".join(labels[i:]) for i in range(len(labels) - 1)]
    return [(domain, prefix) for domain in domains for prefix in path_prefixes(path)]
