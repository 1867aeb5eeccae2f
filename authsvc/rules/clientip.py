"""Client identity for rate limits and session binding: the address, with IPv6 grouped by /64.

An IPv6 user typically controls a whole /64, so counting single addresses would give an attacker
2^64 fresh buckets, and binding a session to one would sign a user out whenever the system picks a
new privacy address (RFC 8981) inside it. The address itself comes from ``request.remote_addr`` after Werkzeug's ProxyFix
has applied exactly ``AUTHSVC_TRUSTED_PROXIES`` hops, so a client-sent X-Forwarded-For is ignored
unless a trusted proxy put it there.
"""

from __future__ import annotations

import functools
import ipaddress


def _client_group(remote_addr: str | None) -> str | None:
    """What one client holds: ``"1.2.3.4"`` (an IPv4-mapped IPv6 address as its IPv4) or
    ``"2001:db8:1:2::/64"`` (a zone id dropped); ``None`` when ``remote_addr`` is no address."""
    if not remote_addr:
        return None
    try:
        ip = ipaddress.ip_address(remote_addr.strip().split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


# Every request asks, mostly for the same few addresses. Wrapped here rather than decorated, so
# that scripts/mutation (mutmut leaves decorated functions alone) mutates the decision itself.
client_group = functools.lru_cache(maxsize=4096)(_client_group)


def client_key(remote_addr: str | None) -> str:
    """A stable bucket name for ``remote_addr``: ``"v4:1.2.3.4"``, ``"v6:2001:db8:1:2::/64"``."""
    if not remote_addr:
        return "unknown"
    group = client_group(remote_addr)
    if group is None:
        return "invalid"
    return f"v6:{group}" if "/" in group else f"v4:{group}"
