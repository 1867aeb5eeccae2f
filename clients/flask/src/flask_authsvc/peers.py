"""Which TCP peers may speak for authsvc: ``AUTHSVC_TRUSTED_PROXIES`` parsed, and the check.

Pure functions of plain values. Only the TCP peer counts (``REMOTE_ADDR`` as the WSGI server saw
it, before any ``ProxyFix``): an ``X-Forwarded-For`` is written by whoever sent the request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Networks this wide cannot name "the proxy": they are refused, not warned about.
MIN_PREFIX: Final = {4: 8, 6: 32}


class NetworkProblem(ValueError):
    """Why a value of ``AUTHSVC_TRUSTED_PROXIES`` is refused (the message says how to fix it)."""


def parse_networks(value: str | Iterable[str]) -> tuple[Network, ...]:
    """Addresses (``10.0.0.5``, ``::1``) and networks (``10.0.0.0/24``), as a comma-separated string
    or a list of strings. Raises :class:`NetworkProblem` for an empty list, an unparsable entry,
    host bits set (``10.0.0.1/24``: which was meant?), a zone id, or a network wider than a /8
    (IPv4) or /32 (IPv6), such as ``0.0.0.0/0``, which would trust everyone."""
    if isinstance(value, str):
        entries = [entry.strip(" ") for entry in value.split(",")]
    else:
        try:
            entries = [entry.strip(" ") if isinstance(entry, str) else entry for entry in value]
        except TypeError:
            raise NetworkProblem("must be a comma-separated string or a list of addresses/networks") from None
    entries = [entry for entry in entries if entry != ""]
    if not entries:
        raise NetworkProblem("is empty: name the address or network of your reverse proxy "
                             "(for example 127.0.0.1, or 10.0.0.0/24)")
    networks: list[Network] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise NetworkProblem(f"has an entry that is not a string: {type(entry).__name__}")
        if "%" in entry:
            raise NetworkProblem(f"{entry!r}: zone ids are not supported")
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError as error:
            raise NetworkProblem(f"{entry!r} is not an address or network ({error})") from None
        if network.prefixlen < MIN_PREFIX[network.version]:
            raise NetworkProblem(f"{entry!r} is wider than a /{MIN_PREFIX[network.version]}: it would trust "
                                 "identity headers from far more than your proxy")
        networks.append(network)
    return tuple(networks)


def is_trusted(peer: object, networks: tuple[Network, ...]) -> bool:
    """Whether the TCP peer address ``peer`` is inside one of ``networks``. Anything that is not an
    address (None, empty: a Unix socket, garbage) is not trusted. An IPv4-mapped IPv6 address
    (``::ffff:127.0.0.1``) counts as its IPv4 address."""
    if not isinstance(peer, str) or not peer or len(peer) > 64:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in networks)
