"""The probe's judgement of where a redirect can send a browser (authsvc/probe/redirects.py,
``target_problem``) against a browser's own URL parser (ada-url, WHATWG): any target the probe
calls safe lands, resolved against the login page, on one of the deployment's origins. A probe
that called an open redirect safe would pass a broken deployment.
"""

from __future__ import annotations

import ada_url
from hypothesis import example, given
from hypothesis import strategies as st

from authsvc.probe.redirects import normal_origin, target_problem

AUTH = "https://auth.example.com"
APP = "https://app.example.com:8443"
TRUSTED = {AUTH, APP}

FRAGMENTS = ["https:", "HTTPS:", "http:", "javascript:", "//", "/", "\\", "///", "@", ":", "?", "#", ".", "..",
             "%2e", "%2f", "%5c", "%40", "%00", "auth.example.com", "app.example.com", "APP.example.com",
             "evil.example", "example.com", ":8443", ":443", ":0443", ":444", "\t", " ", "\n", "\x00",
             "\u3002", "\uff0f", "\u0430", "[::1]", "0x7f.1", "user:pass", "login", "notes"]
SCHEMES = ["", "https:", "HTTPS:", "http:", "javascript:", "data:", "ftp:"]
SEPARATORS = ["", "/", "//", "///", "\\", "/\\", "\\\\", "\t/", "/\t/", " //", "%2f%2f"]
HOSTS = ["", "auth.example.com", "app.example.com", "APP.EXAMPLE.COM", "evil.example", "app.example.com@evil.example",
         "evil.example@app.example.com", "app.example.com.evil.example", "auth.example.com.", "app%2eexample.com",
         "evil\u3002example", "[::1]", "0x7f.1", "app.example.com\\@evil.example"]
PORTS = ["", ":8443", ":443", ":0443", ":444", ":", ":99999"]
PATHS = ["", "/", "/notes/", "?next=//evil.example", "#@evil.example", "/..", "/%2f%2fevil.example", "\\evil"]
# Shaped like URLs (each part hostile), and free-form mixtures of the same pieces.
shaped = st.tuples(*(st.sampled_from(p) for p in (SCHEMES, SEPARATORS, HOSTS, PORTS, PATHS))).map("".join)
mixed = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=2)), max_size=10).map("".join)
targets = st.one_of(shaped, mixed)


def lands_on(target: str) -> str | None:
    """The origin a browser navigates to for ``target`` given on the login page; None if it cannot parse it."""
    try:
        return ada_url.URL(target, base=f"{AUTH}/login").origin
    except ValueError:
        return None


@given(targets)
@example("https://app.example.com:8443/notes/")
@example("https://auth.example.com./")
@example("https:app.example.com")
@example("https://app.example.com:8443?@evil.example")
@example("/%2f%2fevil.example")
@example("//evil.example")
@example("/\\evil.example")
def test_a_target_the_probe_calls_safe_lands_on_a_trusted_origin(target):
    if target and target_problem(target, TRUSTED) is None:
        assert lands_on(target) in TRUSTED | {None}, f"{target!r} lands on {lands_on(target)}"


@given(targets)
def test_an_absolute_target_the_probe_calls_safe_has_the_origin_the_browser_sees(target):
    if target_problem(target, TRUSTED) is None and normal_origin(target) is not None:
        assert normal_origin(target) == lands_on(target), target
