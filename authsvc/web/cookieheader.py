"""Two cookies of one name in a request: one of them was planted (cookie tossing).

A browser keeps cookies by (name, domain, path). Script on a sibling subdomain can add a second
session cookie under the shared cookie domain with a longer path (``Path=/login``); the browser
then sends both, the planted one first, and the server would read the attacker's. authsvc refuses
such a request (:func:`count`) and tells the browser to drop every copy it may hold except its own
(:func:`stray_locations`), so the next request works again.
"""

from __future__ import annotations

import re

from werkzeug.sansio.http import parse_cookie

_DNS_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_UNSAFE_IN_PATH = re.compile(r"[^A-Za-z0-9._~!$&'()*+=:@%/-]")
MAX_PATH_DEPTH = 16  # authsvc's own paths are a few segments deep; deeper ones need no clean-up
# Every name authsvc has given a cookie, in production, SSO and development spellings: none of
# them is for an app (deploy/nginx/authsvc.conf and deploy/caddy/Caddyfile strip the same set).
AUTHSVC_NAMES = frozenset(prefix + "authsvc_" + kind for prefix in ("", "__Host-", "__Secure-")
                          for kind in ("session", "remember", "device"))


def count(header: str | None, name: str) -> int:
    """How many cookies named ``name`` the raw ``Cookie`` header carries, parsed exactly as the
    request's cookies are (Werkzeug), so this counts what the views could read."""
    if not header:
        return 0
    return len(parse_cookie(header).getlist(name))


def without(header: str | None, names: frozenset[str] = AUTHSVC_NAMES) -> str:
    """The ``Cookie`` header an app behind the proxy should get: every cookie named in ``names``
    removed (names read as Werkzeug reads them: spaces around a name ignored), the rest as sent,
    joined by ``"; "``. ``""`` when nothing is left.

    A request with several ``Cookie`` lines reaches the WSGI server joined by ``","`` (gunicorn),
    so ``app=1,__Secure-authsvc_session=...`` is one part: a part naming one of ``names`` after
    any comma goes whole (the app loses its own cookie beside it; a browser never sends that)."""
    if not header:
        return ""
    kept = [part.strip() for part in header.split(";")]
    return "; ".join(part for part in kept if part and not any(
        piece.partition("=")[0].strip() in names for piece in part.split(",")))


def path_prefixes(path: str) -> list[str]:
    """Every cookie path that matches request path ``path`` (RFC 6265 5.1.4), shortest first:
    ``/account/password`` -> ``/``, ``/account``, ``/account/``, ``/account/password``. Only up
    to the first character that has no place in a ``Path`` attribute (``;``, controls, non-ASCII:
    the path is the client's, and each prefix goes into a Set-Cookie)."""
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


def stray_locations(host: str, path: str, cookie_domain: str | None) -> list[tuple[str | None, str]]:
    """Every (Domain, Path) under which a cookie sent with a request to ``host`` + ``path`` can be
    stored, except the one authsvc itself uses (``cookie_domain`` or host-only, ``Path=/``).
    ``host`` is the Host header (a port is ignored, as browsers ignore it for cookies).
    ``None`` is host-only. Domains are ``host`` and its parents with at least two labels (a
    browser refuses a cookie for a bare top-level domain)."""
    own_domain = cookie_domain.lstrip(".").lower() if cookie_domain else None
    host = _hostname(host).lower().rstrip(".")
    labels = host.split(".")
    domains: list[str | None] = [None]
    # Only a plain DNS name has parent domains worth a Domain attribute (the Host header is the
    # client's: nothing else of it goes into a Set-Cookie). IP literals have none.
    if _DNS_NAME.fullmatch(host) and not host.replace(".", "").isdigit():
        domains += [".".join(labels[i:]) for i in range(len(labels) - 1)]
    elif own_domain is not None:
        domains.append(own_domain)
    out = []
    for domain in domains:
        for prefix in path_prefixes(path):
            if domain == own_domain and prefix == "/":
                continue
            out.append((domain, prefix))
    return out


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]
