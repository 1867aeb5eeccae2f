"""The sign-out's cross-site check (:mod:`flask_authsvc.crosssite`) as a pure function: hostile
``Origin`` and ``Sec-Fetch-Site`` values grouped by attack, and how the app's own origin is written."""

from __future__ import annotations

import pytest
from flask_authsvc.crosssite import (
    CROSS_SITE_FETCH,
    FOREIGN_ORIGIN,
    OPAQUE_ORIGIN,
    cross_site_problem,
    own_origin,
)

OWN = "https://app.example.test"


# --- what passes ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("origin", "site"), [
    (OWN, "same-origin"),          # the app's own form, every current browser
    (OWN, None),                   # a browser without fetch metadata (older Safari)
    (None, "same-origin"),         # fetch metadata without Origin
    ("null", "same-origin"),       # the app's own form under Referrer-Policy: no-referrer
    (OWN, "none"),                 # the user resubmitted the form (reload)
    (None, "none"),
    (f" {OWN}\t", " same-origin "),  # optional whitespace around field values (RFC 9110)
    (None, None),                  # no browser headers: curl, a test client; CSRFProtect's token decides
])
def test_a_post_from_the_apps_own_page_or_without_browser_headers_passes(origin, site):
    assert cross_site_problem(origin, site, OWN) is None


# --- another site: the <img>/<form> sign-out ------------------------------------------------------------

@pytest.mark.parametrize(("origin", "site"), [
    ("https://evil.example", "cross-site"),
    (None, "cross-site"),                       # without Origin: fetch metadata alone refuses it
    (OWN, "cross-site"),                        # a forged-looking Origin does not outvote the browser
    ("null", "cross-site"),
    ("https://blog.example.test", "same-site"),  # a sibling subdomain is another app
    (None, "same-site"),                        # a same-site POST without Origin
    (OWN, "same-site"),
    (None, "Same-Origin"),                      # tokens are lower-case; any other spelling is not a browser's
    (None, "same-origin, cross-site"),          # two values
    (None, ""),
    (None, "sameorigin"),
    (None, "same-origin\x00"),
])
def test_fetch_metadata_other_than_same_origin_is_refused(origin, site):
    assert cross_site_problem(origin, site, OWN) == CROSS_SITE_FETCH


LOOK_ALIKE_ORIGINS = [
    "https://evil.example",
    "http://app.example.test",                  # another scheme
    "https://app.example.test:443",             # a browser never writes the default port
    "https://app.example.test:8443",            # another port
    "https://APP.example.test",                 # another case: browsers serialize lower-case
    "HTTPS://app.example.test",
    "https://app.example.test.",                # trailing dot: another host to a browser
    "https://app.example.test/",                # a URL, not an origin
    "https://app.example.test.evil.example",
    "https://evil.example.test",                # a sibling
    "https://example.test",                     # the parent domain
    "https://user@app.example.test",
    f"{OWN}, https://evil.example",              # two Origin headers, joined by the server
    f"https://evil.example, {OWN}",
    f"{OWN} {OWN}",
    "",
    "app.example.test",
    "//app.example.test",
    "https://app.example.test\x00",
    "https://xn--pp-5ka.example.test",
]


@pytest.mark.parametrize("origin", LOOK_ALIKE_ORIGINS)
def test_an_origin_other_than_the_apps_own_is_refused(origin):
    assert cross_site_problem(origin, None, OWN) == FOREIGN_ORIGIN


@pytest.mark.parametrize("origin", LOOK_ALIKE_ORIGINS)
def test_an_origin_contradicting_same_origin_fetch_metadata_is_refused(origin):
    assert cross_site_problem(origin, "same-origin", OWN) == FOREIGN_ORIGIN
    assert cross_site_problem(origin, "none", OWN) == FOREIGN_ORIGIN


@pytest.mark.parametrize("origin", ["null", " null", "null\t"])
def test_an_opaque_origin_without_fetch_metadata_is_refused(origin):
    """Sandboxed frames, data: pages and cross-origin redirects send ``Origin: null``."""
    assert cross_site_problem(origin, None, OWN) == OPAQUE_ORIGIN


@pytest.mark.parametrize("origin", ["NULL", "Null", "null, null"])
def test_a_null_origin_spelled_otherwise_is_foreign(origin):
    assert cross_site_problem(origin, None, OWN) == FOREIGN_ORIGIN
    assert cross_site_problem(origin, "same-origin", OWN) == FOREIGN_ORIGIN


def test_the_own_origin_is_not_a_prefix_or_pattern():
    assert cross_site_problem("https://app.example.test", None, "https://app.example.test:8443") == FOREIGN_ORIGIN
    assert cross_site_problem("https://app.example.test:8443", None, "https://app.example.test") == FOREIGN_ORIGIN
    assert cross_site_problem("http://127.0.0.1:5000", None, "http://127.0.0.1:5000") is None
    assert cross_site_problem("http://127.0.0.1:5001", None, "http://127.0.0.1:5000") == FOREIGN_ORIGIN


# --- the app's own origin, from the request ------------------------------------------------------------

@pytest.mark.parametrize(("scheme", "host", "expected"), [
    ("https", "app.example.test", "https://app.example.test"),
    ("https", "app.example.test:443", "https://app.example.test"),   # default port dropped, as browsers do
    ("http", "app.example.test:80", "http://app.example.test"),
    ("https", "app.example.test:80", "https://app.example.test:80"),  # not https's default
    ("http", "app.example.test:443", "http://app.example.test:443"),
    ("https", "app.example.test:8443", "https://app.example.test:8443"),
    ("HTTPS", "App.Example.TEST", "https://app.example.test"),     # Host is case-insensitive
    ("http", "127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https", "[::1]:443", "https://[::1]"),
    ("https", "[::1]", "https://[::1]"),
    ("https", "[::443]", "https://[::443]"),                           # an address ending in 443 is no port
    ("http", "[::1]:8080", "http://[::1]:8080"),
])
def test_own_origin_is_written_as_a_browser_serializes_it(scheme, host, expected):
    assert own_origin(scheme, host) == expected


def test_the_browsers_origin_for_a_default_port_host_matches():
    assert cross_site_problem("https://app.example.test", "same-origin",
                              own_origin("https", "app.example.test:443")) is None
