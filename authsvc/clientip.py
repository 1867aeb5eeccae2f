"""Client identity for rate limits: the address, with IPv6 grouped by /64.

An IPv6 user typically controls a whole /64, so counting single addresses would give an attacker
2^64 fresh buckets. The address itself comes from ``request.remote_addr`` after Werkzeug's ProxyFix
has applied exactly ``AUTHSVC_TRUSTED_PROXIES`` hops, so a client-sent X-Forwarded-For is ignored
unless a trusted proxy put it there.
"""

from __future__ import annotations

import ipaddress


def client_key(remote_addr: str | None) -> str:
    """A stable bucket name for ``remote_addr``: ``"v4:1.2.3.4"``, ``"v6:2001:db8:1:2::/64"``."""
    if not remote_addr:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote_addr.strip().split("%", 1)[0])
    except ValueError:
        return "invalid"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"v4:{ip.ipv4_mapped}"
        return f"v6:{ipaddress.IPv6Network((int(ip) >> 64 << 64, 64))}"
    return f"v4:{ip}"
