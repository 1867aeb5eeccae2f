"""The OIDC mode's session cookie against cookie tossing (:mod:`flask_authsvc.cookies`): which
configurations a sibling subdomain could plant a cookie for, and where a request's planted copies
may live."""

from __future__ import annotations

import pytest
from flask_authsvc.cookies import path_prefixes, session_cookie_problem, stray_locations

SOUND = {"https": True, "name": "__Host-session", "secure": True, "domain": None, "path": "/"}


def problem(**changes):
    return session_cookie_problem(**{**SOUND, **changes})


def test_a_host_prefixed_secure_cookie_on_slash_passes():
    assert problem() is None
    assert problem(name="__Host-blog") is None


@pytest.mark.parametrize("changes", [{"name": "session"}, {"secure": False}, {"domain": "example.com"},
                                     {"path": "/blog"}, {"name": "x", "secure": False, "domain": "a.b", "path": "/x"}],
                         ids=repr)
def test_anything_goes_on_plain_http(changes):
    """Loopback development: no browser sends a Secure or __Host- cookie over http."""
    assert problem(https=False, **changes) is None


@pytest.mark.parametrize("name", ["session", "blog_session", "__Secure-session", "__host-session", "__HOST-session",
                                  " __Host-session", "__Host_session", "Host-session", "__Host", ""], ids=repr)
def test_any_name_a_sibling_can_set_is_refused_naming_the_setting(name):
    said = problem(name=name)
    assert said.startswith("SESSION_COOKIE_NAME") and "set SESSION_COOKIE_NAME = '__Host-session'" in said


def test_secure_is_named_first():
    assert problem(secure=False, name="session").startswith("SESSION_COOKIE_SECURE is off")
    assert "set SESSION_COOKIE_SECURE = True" in problem(secure=False)


@pytest.mark.parametrize("domain", ["example.com", ".example.com", "blog.example.com"])
def test_a_domain_is_refused_a_host_cookie_would_be_dropped(domain):
    assert problem(domain=domain).startswith("SESSION_COOKIE_DOMAIN") and "unset SESSION_COOKIE_DOMAIN" in problem(domain=domain)


@pytest.mark.parametrize("path", ["/blog", "/blog/", "", "//"])
def test_a_path_other_than_slash_is_refused(path):
    assert problem(path=path).startswith("SESSION_COOKIE_PATH") and "set SESSION_COOKIE_PATH = '/'" in problem(path=path)


@pytest.mark.parametrize("path, prefixes", [
    ("/", ["/"]),
    ("/private", ["/", "/private"]),
    ("/notes/7", ["/", "/notes", "/notes/", "/notes/7"]),
    ("/notes/", ["/", "/notes", "/notes/"]),
    ("//a", ["/", "//", "//a"]),
    ("/a;Domain=evil/b", ["/", "/a"]),                 # nothing after a character a Path cannot hold
    ("/caf\u00e9/x", ["/", "/caf"]),
    ("/a\r\nSet-Cookie: x=1", ["/", "/a"]),
    ("relative", ["/"]),
    ("", ["/"]),
], ids=repr)
def test_path_prefixes_are_every_cookie_path_that_matches(path, prefixes):
    assert path_prefixes(path) == prefixes


def test_a_deep_path_gets_a_bounded_clean_up():
    assert len(path_prefixes("/a" * 1000)) <= 2 * 16 + 1


def test_stray_locations_are_the_host_and_its_parents_on_every_path_prefix():
    assert stray_locations("blog.example.test:8443", "/private") == [
        (None, "/"), (None, "/private"), ("blog.example.test", "/"), ("blog.example.test", "/private"),
        ("example.test", "/"), ("example.test", "/private")]


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "[::1]:5000", "localhost", "blog.example.test;Domain=evil",
                                  "evil\r\nSet-Cookie:x", "-bad-.example.test", "a..b", ""], ids=repr)
def test_a_host_header_that_is_no_plain_dns_name_gets_host_only_deletions(host):
    """The Host header is the client's: nothing else of it goes into a Set-Cookie."""
    assert stray_locations(host, "/x") == [(None, "/"), (None, "/x")]


def test_a_host_is_read_without_case_port_or_trailing_dot():
    assert [d for d, _ in stray_locations("Blog.Example.Test.:80", "/")] == [None, "blog.example.test", "example.test"]
