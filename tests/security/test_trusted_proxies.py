"""Control: forwarding headers count only from the proxies' own addresses (ASVS 5.0 V4.1.3, V15.3.4).

Attacks tried here:

- reaching authsvc's port directly (around nginx) while ``AUTHSVC_TRUSTED_PROXIES`` is 1, and
  sending ``X-Forwarded-For`` to pick a fresh address per attempt, or the victim's address,
  ``X-Forwarded-Proto: https`` to pass for TLS, ``X-Original-URL`` to describe a forward-auth request,
  ``X-Request-ID`` to forge the id in the audit log;
- a peer address dressed up to look trusted: IPv4-mapped IPv6, zone ids, whitespace, garbage,
  a Unix socket's empty address;
- a trusted-networks setting that cannot mean what the operator thinks: host bits set, a zone id,
  an IPv4-mapped network, not a network at all, an empty list; and a network so wide it holds
  clients too (``authsvc check`` warns), or the internet (wider than a /8 or /32: production refuses).
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from authsvc.server import cli

from authsvc.core import config
from authsvc.rules.proxy_networks import DEFAULT_NETWORKS, is_trusted_proxy, parse_networks, too_wide
from tests.conftest import build_app, csrf, make_env, new_client

WRONG = "not the password at all 1234"
DEFAULT = parse_networks(DEFAULT_NETWORKS)
SITE = parse_networks("10.0.0.0/24, fd00:1::/64")


# --- the decision: is this TCP peer one of our proxies? ------------------------------------------

@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("peer, networks, trusted", [
    ("127.0.0.1", DEFAULT, True),
    ("127.255.255.254", DEFAULT, True),
    ("::1", DEFAULT, True),
    ("0:0:0:0:0:0:0:1", DEFAULT, True),
    ("::ffff:127.0.0.1", DEFAULT, True),           # a dual-stack socket reports loopback v4 as mapped
    ("::ffff:7f00:1", DEFAULT, True),
    ("10.0.0.7", SITE, True),
    ("fd00:1::7", SITE, True),
    ("fd00:1::7%eth0", SITE, True),                # the zone says which interface, not which host
    ("::ffff:10.0.0.7", SITE, True),
    ("10.0.1.7", SITE, False),
    ("fd00:2::7", SITE, False),
    ("203.0.113.9", DEFAULT, False),
    ("::2", DEFAULT, False),
    ("::ffff:203.0.113.9", DEFAULT, False),         # mapped, but mapped from outside
    ("::127.0.0.1", DEFAULT, False),               # IPv4-compatible (deprecated) is not loopback
    ("128.0.0.1", DEFAULT, False),
    ("", DEFAULT, False),                          # a Unix socket: no address
    (None, DEFAULT, False),
    (" 127.0.0.1", DEFAULT, False),
    ("127.0.0.1 ", DEFAULT, False),
    ("127.0.0.1, 10.0.0.7", SITE, False),
    ("localhost", DEFAULT, False),
    ("127.1", DEFAULT, False),
    ("0x7f.0.0.1", DEFAULT, False),
    ("2130706433", DEFAULT, False),
    ("127.0.0.01", DEFAULT, False),
    ("\uff11\uff12\uff17.0.0.1", DEFAULT, False),  # fullwidth digits
    ("127.0.0.1\x00", DEFAULT, False),
    ("%eth0", DEFAULT, False),
    ("[::1]", DEFAULT, False),
    ("1" * 10_000, DEFAULT, False),
    ("127.0.0.1", (), False),                      # no networks: nobody
])
def test_only_a_peer_inside_the_trusted_networks_is_a_proxy(peer, networks, trusted):
    assert is_trusted_proxy(peer, networks) is trusted


@pytest.mark.parametrize("text, networks", [
    ("127.0.0.0/8,::1/128", ["127.0.0.0/8", "::1/128"]),
    ("  10.0.0.0/24 ,\tfd00::/64\n", ["10.0.0.0/24", "fd00::/64"]),
    ("10.0.0.5", ["10.0.0.5/32"]),
    ("10.0.0.0/255.255.255.0", ["10.0.0.0/24"]),
    ("10.0.0.0/24,", ["10.0.0.0/24"]),
    ("FD00::/64", ["fd00::/64"]),
])
def test_trusted_networks_parse_with_whitespace_and_canonical_forms(text, networks):
    assert [str(n) for n in parse_networks(text)] == networks


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("text, message", [
    ("10.0.0.1/24", "host bits set; write 10.0.0.0/24 for the network or 10.0.0.1 for one host"),
    ("fd00::1/64", "host bits set"),
    ("fe80::%eth0/64", "zone id"),
    ("fe80::1%eth0", "zone id"),
    ("::ffff:10.0.0.0/104", "IPv4-mapped"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("10.0.0.0/33", "not an IP network"),
    ("10.0.0.0/-1", "not an IP network"),
    ("localhost", "not an IP network"),
    ("10.0.0.0/8 10.1.0.0/16", "not an IP network"),
    ("10.0.0.0/8;::1/128", "not an IP network"),
    ("1\u0660.0.0.0/8", "not an IP network"),
    ("*", "not an IP network"),
    ("", "lists no network"),
    ("  ", "lists no network"),
    (",", "lists no network"),
    (" , ,", "lists no network"),
])
def test_a_trusted_networks_value_that_cannot_mean_what_was_meant_is_refused(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_networks(text)


@pytest.mark.parametrize("text", ["10.0.0.1/24", "", "not-a-network", "fe80::%eth0/64"])
def test_a_bad_trusted_networks_setting_stops_start_up_naming_the_variable(tmp_path, text):
    env = make_env(tmp_path, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_TRUSTED_PROXY_NETWORKS=text)
    with pytest.raises(config.ConfigError, match="^AUTHSVC_TRUSTED_PROXY_NETWORKS: "):
        config.from_env(env, instance_path=str(tmp_path))


def test_unset_trusted_networks_means_loopback_only(tmp_path):
    settings = config.from_env(make_env(tmp_path), instance_path=str(tmp_path))
    assert [str(n) for n in settings.trusted_proxy_networks] == ["127.0.0.0/8", "::1/128"]


@pytest.mark.parametrize("network, wide", [
    ("10.0.0.0/16", False), ("10.0.0.0/15", True), ("0.0.0.0/0", True), ("10.0.0.7/32", False),
    ("fd00::/48", False), ("fd00::/47", True), ("::/0", True), ("::1/128", False),
    ("127.0.0.0/8", False), ("126.0.0.0/7", True),
])
def test_wider_than_a_16_or_a_48_is_too_wide(network, wide):
    assert too_wide(ipaddress.ip_network(network)) is wide


@pytest.mark.asvs("V4.1.3")
def test_check_warns_about_a_trusted_network_that_holds_clients_too(tmp_path, monkeypatch, capsys):
    env = make_env(tmp_path, AUTHSVC_TRUSTED_PROXIES="1",
                   AUTHSVC_TRUSTED_PROXY_NETWORKS="10.0.0.0/24,172.16.0.0/12,fd00::/32")
    settings = config.from_env(env, instance_path=str(tmp_path))
    problems = [p for p in config.audit(settings) if p.setting == "AUTHSVC_TRUSTED_PROXY_NETWORKS"]
    assert [p.severity for p in problems] == ["warning", "warning"]
    assert "172.16.0.0/12" in problems[0].message and "fd00::/32" in problems[1].message
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AUTHSVC_INSTANCE_PATH", str(tmp_path))
    assert cli.main(["check"]) == 1
    assert "warning: AUTHSVC_TRUSTED_PROXY_NETWORKS lists 172.16.0.0/12" in capsys.readouterr().out


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("networks, refused", [
    ("0.0.0.0/0,::/0", ["0.0.0.0/0", "::/0"]), ("0.0.0.0/0", ["0.0.0.0/0"]), ("::/0", ["::/0"]),
    ("10.0.0.0/7", ["10.0.0.0/7"]), ("fd00::/31", ["fd00::/31"]), ("10.0.0.0/8,fd00::/32", []),
])
def test_production_refuses_a_trusted_network_wider_than_a_8_or_a_32(tmp_path, networks, refused):
    """``0.0.0.0/0,::/0`` was only a warning: any peer on the internet could then set its own client
    address (a fresh throttle bucket per attempt, a forged audit address) and scheme. Wider than a
    /8 or a /32 (the Flask extension's bound for the same setting) now refuses the start; up to that,
    wider than a /16 or /48 stays a warning."""
    from authsvc.web.app import StartupRefused, create_app

    settings = config.from_env(make_env(tmp_path, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_TRUSTED_PROXY_NETWORKS=networks),
                               instance_path=str(tmp_path))
    problems = [p for p in config.audit(settings) if p.setting == "AUTHSVC_TRUSTED_PROXY_NETWORKS"]
    errors = [p for p in problems if p.severity == "error"]
    assert [next(n for n in refused if f"lists {n}," in p.message) for p in errors] == refused
    assert all("Fix: list only the proxies' addresses" in p.message for p in problems)
    if refused:
        with pytest.raises(StartupRefused):
            create_app(settings)
    else:
        assert [p.severity for p in problems] == ["warning", "warning"]


def test_the_default_networks_raise_no_warning(tmp_path):
    settings = config.from_env(make_env(tmp_path, AUTHSVC_TRUSTED_PROXIES="1"), instance_path=str(tmp_path))
    assert not [p for p in config.audit(settings) if p.setting == "AUTHSVC_TRUSTED_PROXY_NETWORKS"]


# --- through HTTP: a client that reaches the port directly -----------------------------------------

FORGED = {"X-Forwarded-For": "192.0.2.200", "X-Forwarded-Proto": "https", "X-Request-ID": "forged-by-client",
          "X-Original-URL": "https://app.example.test/secret", "X-Real-IP": "192.0.2.201",
          "Forwarded": "for=192.0.2.202"}


def audit_events(out: str, name: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in out.splitlines() if line.startswith("{")) if e.get("event") == name]


def forged_login_from(tmp_path, capsys, peer: str):
    """A failed login with every forwarding header forged, from TCP peer ``peer``, to an app that
    trusts one hop from 10.0.0.0/24: its client, the response and the audit line."""
    app = build_app(tmp_path, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_TRUSTED_PROXY_NETWORKS="10.0.0.0/24")
    client = new_client(app)
    client.environ_base["REMOTE_ADDR"] = peer
    token = csrf(client)
    capsys.readouterr()
    resp = client.post("/login", data={"csrf_token": token, "username": "nobody", "password": WRONG},
                       headers=FORGED)
    assert resp.status_code == 401
    (line,) = audit_events(capsys.readouterr().out, "login_failure")
    return client, resp, line


@pytest.mark.asvs("V4.1.3", "V15.3.4")
@pytest.mark.parametrize("peer", ["203.0.113.9", "::ffff:203.0.113.9", "10.0.1.1"])
def test_forwarding_headers_from_a_peer_outside_the_networks_are_dropped(tmp_path, capsys, peer):
    client, resp, line = forged_login_from(tmp_path, capsys, peer)
    assert resp.headers["X-Request-ID"] != "forged-by-client"
    assert line["client_ip"] == peer and line["request_id"] == resp.headers["X-Request-ID"]
    # No original URL for a login redirect either: the request is described by nobody.
    verify = client.get("/auth/verify?redirect=401", headers=FORGED)
    assert verify.status_code == 401 and "secret" not in verify.headers.get("Location", "")


@pytest.mark.asvs("V4.1.3", "V15.3.4")
@pytest.mark.parametrize("peer", ["10.0.0.1", "::ffff:10.0.0.1"])
def test_forwarding_headers_from_a_proxy_inside_the_networks_are_believed(tmp_path, capsys, peer):
    _client, resp, line = forged_login_from(tmp_path, capsys, peer)
    assert resp.headers["X-Request-ID"] == "forged-by-client"
    assert line["client_ip"] == "192.0.2.200"


@pytest.mark.asvs("V15.3.4", "V6.3.1")
def test_a_direct_client_rotating_x_forwarded_for_gets_one_bucket(tmp_path):
    app = build_app(tmp_path, AUTHSVC_TRUSTED_PROXIES="1")  # default networks: loopback only
    client = new_client(app)
    client.environ_base["REMOTE_ADDR"] = "203.0.113.30"
    token = csrf(client)
    statuses = [client.post("/login", data={"csrf_token": token, "username": f"xff{n}", "password": WRONG},
                            headers={"X-Forwarded-For": f"198.18.0.{n + 1}"}).status_code for n in range(12)]
    assert statuses == [401] * 10 + [429] * 2
