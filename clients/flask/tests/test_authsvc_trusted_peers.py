"""AUTHSVC_TRUSTED_PROXIES: which TCP peers may speak for authsvc. No setting trusts everyone."""

from __future__ import annotations

import ipaddress

import pytest
from flask_authsvc.peers import NetworkProblem, is_trusted, parse_networks


def test_addresses_and_networks_as_a_string_or_a_list():
    expected = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("::1/128"))
    assert parse_networks("127.0.0.1, 10.0.0.0/24 ,::1") == expected
    assert parse_networks(["127.0.0.1", "10.0.0.0/24", "::1"]) == expected


@pytest.mark.parametrize("value", ["0.0.0.0/0", "::/0", "10.0.0.0/7", "2001::/16", "127.0.0.1,0.0.0.0/0", ["::/0"]])
def test_networks_that_trust_the_world_are_refused(value):
    with pytest.raises(NetworkProblem, match="wider than"):
        parse_networks(value)


@pytest.mark.parametrize("value", ["", " , ", [], [""]])
def test_empty_list_is_refused(value):
    with pytest.raises(NetworkProblem, match="empty"):
        parse_networks(value)


@pytest.mark.parametrize("value", ["10.0.0.1/24", "localhost", "*", "any", "10.0.0.256", "10.0.0.0/33", "fe80::1%eth0",
                                   "127.0.0.1 10.0.0.1", "１２７.0.0.1", "127.0.0.1\n", "::ffff:zz"])
def test_unparsable_or_ambiguous_entries_are_refused(value):
    with pytest.raises(NetworkProblem):
        parse_networks(value)


def test_non_string_entries_are_refused():
    with pytest.raises(NetworkProblem):
        parse_networks([127001])
    with pytest.raises(NetworkProblem):
        parse_networks(5)  # type: ignore[arg-type]


NETS = parse_networks("10.0.0.5,192.168.1.0/24,::1")


@pytest.mark.parametrize("peer", ["10.0.0.5", "192.168.1.77", "::1", "::ffff:10.0.0.5", "::ffff:192.168.1.1"])
def test_peers_inside_are_trusted(peer):
    assert is_trusted(peer, NETS)


@pytest.mark.parametrize("peer", ["10.0.0.6", "192.168.2.1", "127.0.0.1", "::2", "::ffff:10.0.0.6", "", None, 5,
                                  "unix:/run/app.sock", "10.0.0.5, 10.0.0.6", " 10.0.0.5", "10.0.0.5 ", "010.000.000.005",
                                  "0xa.0.0.5", "fe80::1%eth0", "1" * 10_000, "10.0.0.5\x00"])
def test_other_peers_and_garbage_are_not_trusted(peer):
    assert not is_trusted(peer, NETS)
