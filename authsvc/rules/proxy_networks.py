"""Trusted-proxy networks as plain values: parsing ``AUTHSVC_TRUSTED_PROXY_NETWORKS``, judging a
network too wide, and whether a TCP peer is one of the proxies (used by
:class:`authsvc.web.proxies.TrustedProxies`)."""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_NETWORKS = "127.0.0.0/8,::1/128"
# Wider than this, a trusted-proxy network likely holds hosts that are not proxies (`authsvc check`).
WIDEST_PREFIX = {4: 16, 6: 48}
# Wider than this it cannot name "the proxy" at all (0.0.0.0/0 is the internet): production refuses
# it, as the Flask extension (clients/flask, flask_authsvc.peers.MIN_PREFIX) refuses its own setting.
REFUSED_PREFIX = {4: 8, 6: 32}


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"10.0.0.0/24, ::1/128"`` -> networks. Raises ValueError saying what to write instead: for
    host bits set (``10.0.0.1/24`` is most likely a typo for a host or a network), zone ids,
    IPv4-mapped IPv6 networks (a mapped peer is compared as its IPv4), and an empty list."""
    networks = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "%" in item:
            raise ValueError(f"{item!r} has a zone id; write the network without '%...'")
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP network; write one like 10.0.0.0/24 or fd00::/64") from None
        address = ipaddress.ip_interface(item).ip
        if address != network.network_address:
            raise ValueError(f"{item!r} has host bits set; write {network} for the network or "
                             f"{address} for one host")
        if network.version == 6 and network.network_address.ipv4_mapped is not None:
            raise ValueError(f"{item!r} is an IPv4-mapped IPv6 network; write it as IPv4")
        networks.append(network)
    if not networks:
        raise ValueError(f"lists no network; write the proxies' networks (default {DEFAULT_NETWORKS}), "
                         "or set AUTHSVC_TRUSTED_PROXIES=0 to believe no forwarding header")
    return tuple(networks)


def too_wide(network: Network) -> bool:
    """Wider than a /16 (IPv4) or a /48 (IPv6): more than one site's proxies, likely clients too.
    Loopback (``127.0.0.0/8``) is never too wide: every address in it is this host."""
    return network.prefixlen < WIDEST_PREFIX[network.version] and not network.is_loopback


def far_too_wide(network: Network) -> bool:
    """Wider than a /8 (IPv4) or a /32 (IPv6), such as ``0.0.0.0/0``: it would trust whole swathes of
    the internet to say who the client is."""
    return network.prefixlen < REFUSED_PREFIX[network.version]


def is_trusted_proxy(peer: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether the TCP peer ``peer`` (``REMOTE_ADDR``) lies in one of ``networks``. An IPv4-mapped
    IPv6 peer (a dual-stack socket) counts as its IPv4; a zone id is ignored; anything that is not an
    address (a Unix socket gives ``""``) is not trusted."""
    if not isinstance(peer, str) or not peer:
        return False
    try:
        ip = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
