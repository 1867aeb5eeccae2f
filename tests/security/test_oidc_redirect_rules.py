"""Threat list for authsvc.rules.oidc_redirects: the redirect_uri an authorization response may go to.

Exact string match against the client's registered list; the only exception is RFC 8252's loopback
port rule, for public clients with an http://127.0.0.1 or http://[::1] redirect, never localhost.
Every near miss below is an attack some OpenID provider once let through (prefix and suffix
matching, case folding, decoding, a parser that disagreed with the browser).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsvc.rules.oidc_redirects import (
    loopback_parts,
    redirect_uri_verdict,
    registration_problem,
)

WEB = "https://app.example.com/callback"
WEB_Q = "https://app.example.com/cb?tenant=a"
NATIVE4 = "http://127.0.0.1/oauth/callback"
NATIVE6 = "http://[::1]/oauth/callback"
NATIVE_PORT = "http://127.0.0.1:7000/cb"
REGISTERED = (WEB, WEB_Q, NATIVE4, NATIVE6, NATIVE_PORT, "com.example.app:/oauth2redirect")


def P(value, id: str):
    return pytest.param(value, id=id)


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", [WEB, WEB_Q, NATIVE4, NATIVE6, NATIVE_PORT, "com.example.app:/oauth2redirect"])
@pytest.mark.parametrize("public", [True, False])
def test_a_registered_uri_matches_exactly(uri, public):
    assert redirect_uri_verdict(uri, REGISTERED, public=public) == "ok"


HOSTILE = [
    # prefix / suffix / path games
    P("https://app.example.com/callback/../evil", "dot_segments_after"),
    P("https://app.example.com/callback/evil", "suffix_path"),
    P("https://app.example.com/callbackx", "suffix_chars"),
    P("https://app.example.com/callback?x=1", "added_query"),
    P("https://app.example.com/cb?tenant=a&tenant=b", "query_appended"),
    P("https://app.example.com/cb?tenant=b", "query_changed"),
    P("https://app.example.com/callback/", "trailing_slash"),
    P("https://app.example.com/", "prefix_of_registered"),
    P("https://app.example.com", "origin_only"),
    P("https://app.example.com/CALLBACK", "path_case"),
    P("https://app.example.com.evil.com/callback", "host_suffix"),
    P("https://evil.com/app.example.com/callback", "host_in_path"),
    P("https://evilapp.example.com/callback", "host_prefix"),
    P("https://sub.app.example.com/callback", "subdomain"),
    P("https://example.com/callback", "parent_domain"),
    # case and encodings
    P("HTTPS://app.example.com/callback", "scheme_case"),
    P("https://APP.example.com/callback", "host_case"),
    P("https://app.example.com/%63allback", "percent_encoded_path_char"),
    P("https://app.example.com%2Fcallback", "encoded_slash"),
    P("https://app%2eexample.com/callback", "encoded_dot_in_host"),
    P("https://app.example.com/callback%23evil", "encoded_fragment"),
    P("https://app.example.com/callback%00", "encoded_nul"),
    P("https://app.example.com/callback%0d%0aSet-Cookie:x", "encoded_crlf"),
    P("https://app.example.com\\@evil.com/callback", "backslash_userinfo"),
    # userinfo / ports / scheme
    P("https://evil.com@app.example.com/callback", "userinfo"),
    P("https://app.example.com@evil.com/callback", "userinfo_host_swap"),
    P("https://app.example.com:443/callback", "default_port_written"),
    P("https://app.example.com:8443/callback", "another_port"),
    P("http://app.example.com/callback", "http_for_https"),
    P("javascript:alert(1)//https://app.example.com/callback", "javascript"),
    P("data:text/html,https://app.example.com/callback", "data"),
    P("//app.example.com/callback", "scheme_relative"),
    P("/callback", "relative"),
    # fragment, whitespace, controls, unicode
    P("https://app.example.com/callback#", "empty_fragment"),
    P("https://app.example.com/callback#x", "fragment"),
    P(" https://app.example.com/callback", "leading_space"),
    P("https://app.example.com/callback ", "trailing_space"),
    P("https://app.example.com/callback\t", "tab"),
    P("https://app.example.com/callback\n", "newline"),
    P("https://app.example.com/call\x00back", "nul"),
    P("https://app.example.com/callback\x7f", "del"),
    P("https://app.example.com/callback\u200b", "zero_width_space"),
    P("https://app.example.com/callback\u00a0", "nbsp"),
    P("https://аpp.example.com/callback", "cyrillic_a_lookalike"),
    P("https://app.example.com\uff0fcallback", "fullwidth_solidus"),
    P("https://app。example.com/callback", "ideographic_full_stop"),
    P("https://app.example.com/callbac\u212a", "kelvin_sign"),
    # empty / wrong types / size
    P("", "empty"),
    P(None, "none"),
    P(b"https://app.example.com/callback", "bytes"),
    P(["https://app.example.com/callback"], "list"),
    P(WEB + "/" + "a" * 5000, "huge"),
]


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", HOSTILE)
@pytest.mark.parametrize("public", [True, False])
def test_near_misses_are_refused(uri, public):
    assert redirect_uri_verdict(uri, REGISTERED, public=public) != "ok"


@pytest.mark.parametrize("uri, reason", [
    (None, "missing"), ("", "missing"), ("x" * 2049, "too_long"), ("https://a.example/ x", "bad_character"),
    ("https://a.example/é", "bad_character"), ("https://app.example.com/callback#x", "fragment"),
    ("https://app.example.com/other", "not_registered"),
])
def test_reason_codes(uri, reason):
    assert redirect_uri_verdict(uri, REGISTERED, public=False) == reason


# --- RFC 8252 loopback ----------------------------------------------------------------------------

@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:51004/oauth/callback", "http://127.0.0.1:1/oauth/callback",
    "http://127.0.0.1:65535/oauth/callback", "http://[::1]:8080/oauth/callback",
    "http://127.0.0.1:7001/cb",  # registered with a port: any port of the same literal and path
])
def test_a_public_native_client_may_come_back_on_any_loopback_port(uri):
    assert redirect_uri_verdict(uri, REGISTERED, public=True) == "ok"


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:51004/oauth/callback", "http://[::1]:8080/oauth/callback",
])
def test_a_confidential_client_gets_no_loopback_port_exception(uri):
    assert redirect_uri_verdict(uri, REGISTERED, public=False) == "not_registered"


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", [
    P("http://localhost:51004/oauth/callback", "localhost"),
    P("http://LOCALHOST:51004/oauth/callback", "localhost_upper"),
    P("http://127.0.0.2:51004/oauth/callback", "other_loopback_address"),
    P("http://127.1:51004/oauth/callback", "short_ipv4"),
    P("http://2130706433:51004/oauth/callback", "decimal_ipv4"),
    P("http://0x7f.0.0.1:51004/oauth/callback", "hex_ipv4"),
    P("http://[::ffff:127.0.0.1]:51004/oauth/callback", "mapped_ipv6"),
    P("http://[0:0:0:0:0:0:0:1]:51004/oauth/callback", "long_ipv6"),
    P("http://[::1]:51004/oauth/callback", "other_literal_than_registered_for_v4_only"),
    P("http://127.0.0.1:51004/oauth/callback/x", "longer_path"),
    P("http://127.0.0.1:51004/oauth/Callback", "path_case"),
    P("http://127.0.0.1:51004/oauth/callback?x=1", "added_query"),
    P("http://127.0.0.1:051004/oauth/callback", "leading_zero_port"),
    P("http://127.0.0.1:0/oauth/callback", "port_zero"),
    P("http://127.0.0.1:65536/oauth/callback", "port_too_big"),
    P("http://127.0.0.1:99999/oauth/callback", "port_five_nines"),
    P("http://127.0.0.1:/oauth/callback", "empty_port"),
    P("http://127.0.0.1:80x/oauth/callback", "port_garbage"),
    P("http://evil@127.0.0.1:51004/oauth/callback", "userinfo"),
    P("http://127.0.0.1:51004@evil.com/oauth/callback", "port_then_userinfo"),
    P("https://127.0.0.1:51004/oauth/callback", "https_for_http"),
    P("HTTP://127.0.0.1:51004/oauth/callback", "scheme_case"),
    P("http://127.0.0.1.evil.com:51004/oauth/callback", "loopback_as_subdomain"),
    P("http://127.0.0.1:51004/oauth/callback#x", "fragment"),
    P("http://127.0.0.1:51004/oauth/callback ", "trailing_space"),
])
def test_the_loopback_exception_is_only_the_port(uri):
    registered = ("http://127.0.0.1/oauth/callback",)
    assert redirect_uri_verdict(uri, registered, public=True) != "ok"


def test_a_registered_localhost_uri_matches_only_exactly():
    registered = ("http://localhost/cb",)
    assert redirect_uri_verdict("http://localhost/cb", registered, public=True) == "ok"
    assert redirect_uri_verdict("http://localhost:8080/cb", registered, public=True) == "not_registered"


def test_an_https_loopback_registration_gets_no_port_exception():
    registered = ("https://127.0.0.1/cb",)
    assert redirect_uri_verdict("https://127.0.0.1:8443/cb", registered, public=True) == "not_registered"


def test_loopback_parts():
    assert loopback_parts("http://127.0.0.1:80/a?b") == ("127.0.0.1", 80, "/a?b")
    assert loopback_parts("http://[::1]/") == ("[::1]", None, "/")
    assert loopback_parts("http://localhost/") is None


@given(st.text(max_size=80))
def test_nothing_but_a_registered_string_or_a_loopback_port_variant_is_accepted(uri):
    verdict = redirect_uri_verdict(uri, REGISTERED, public=True)
    if verdict == "ok":
        parts = loopback_parts(uri)
        assert uri in REGISTERED or (parts is not None and parts[1] is not None)


@given(st.sampled_from(REGISTERED), st.text(min_size=1, max_size=5))
def test_any_suffix_of_a_registered_uri_is_refused_unless_registered(uri, suffix):
    longer = uri + suffix
    if longer not in REGISTERED:
        assert redirect_uri_verdict(longer, REGISTERED, public=False) != "ok"


# --- registration ---------------------------------------------------------------------------------

@pytest.mark.parametrize("uri, public", [
    ("https://app.example.com/callback", False), ("https://app.example.com:8443/cb?x=1", False),
    ("http://127.0.0.1/callback", True), ("http://[::1]:8080/cb", True), ("http://127.0.0.1:3000/cb", False),
    ("com.example.app:/oauth2redirect", True),
])
def test_sound_redirect_uris_may_be_registered(uri, public):
    assert registration_problem(uri, public=public) is None


@pytest.mark.parametrize("uri, public", [
    pytest.param("http://app.example.com/callback", False, id="http_non_loopback"),
    pytest.param("http://localhost:8080/cb", True, id="http_localhost"),
    pytest.param("https://app.example.com/callback#x", False, id="fragment"),
    pytest.param("https://user@app.example.com/cb", False, id="userinfo"),
    pytest.param("https://APP.example.com/cb", False, id="uppercase_host"),
    pytest.param("https://app.example.com/c b", False, id="space"),
    pytest.param("https://app.example.com/é", False, id="non_ascii"),
    pytest.param("javascript:alert(1)", True, id="javascript"),
    pytest.param("data:text/html,x", True, id="data"),
    pytest.param("com.example.app:/cb", False, id="private_scheme_confidential"),
    pytest.param("myapp:/cb", True, id="private_scheme_without_dot"),
    pytest.param("/callback", False, id="relative"),
    pytest.param("", False, id="empty"),
    pytest.param("https://-bad.example.com/cb", False, id="bad_label"),
    pytest.param("https://app.example.com:70000/cb", False, id="port_range"),
])
def test_unsound_redirect_uris_cannot_be_registered(uri, public):
    assert registration_problem(uri, public=public)


def test_module_depends_only_on_the_standard_library():
    import ast
    import inspect

    from authsvc.rules import oidc_redirects

    tree = ast.parse(inspect.getsource(oidc_redirects))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "re", "collections", "urllib"}


@pytest.mark.parametrize("uri, source", [
    ("https://app.example.com/callback", "https://app.example.com"),
    ("https://app.example.com:8443/cb?x=1", "https://app.example.com:8443"),
    ("http://127.0.0.1:53682/cb", "http://127.0.0.1:53682"),
    ("http://[::1]/cb", "http://[::1]"),
    ("com.example.app:/oauth2redirect", "com.example.app:"),
    ("javascript:alert(1)", None), ("https://app.example.com/a b", None), ("http://evil.com/cb", None),
    ("https://x.example.com; script-src *", None),
])
def test_the_form_action_source_of_a_redirect_uri_is_its_origin_and_nothing_else(uri, source):
    from authsvc.rules.oidc_redirects import csp_source

    assert csp_source(uri) == source


# --- boundaries pinned by mutation testing (docs/mutation.md) -------------------------------------

def test_the_length_cap_is_2048_exactly():
    from authsvc.rules.oidc_redirects import MAX_LENGTH

    at_cap = "https://app.example.com/" + "a" * (MAX_LENGTH - len("https://app.example.com/"))
    assert len(at_cap) == MAX_LENGTH == 2048
    assert redirect_uri_verdict(at_cap, (at_cap,), public=False) == "ok"
    assert registration_problem(at_cap, public=False) is None
    assert redirect_uri_verdict(at_cap + "a", (at_cap + "a",), public=False) == "too_long"


@pytest.mark.asvs("V10.4.1")
def test_a_loopback_request_without_a_port_gets_no_port_exception():
    """The exception is for the port the app picked at run time: a request that names none must
    match a registered string exactly, even for a public client."""
    assert redirect_uri_verdict("http://127.0.0.1/cb", ("http://127.0.0.1:8080/cb",), public=True) == "not_registered"
    assert redirect_uri_verdict("http://127.0.0.1:9/cb", ("http://127.0.0.1:8080/cb",), public=True) == "ok"


@pytest.mark.parametrize("port, problem", [("65535", None), ("65536", "the port is out of range"),
                                           ("99999", "the port is out of range"), ("1", None)])
def test_an_https_port_must_be_in_range(port, problem):
    assert registration_problem(f"https://app.example.com:{port}/cb", public=False) == problem


# The operator reads these (authsvc oidc client add): each says what is wrong and what to do.
@pytest.mark.parametrize("uri, public, message", [
    ("", False, "a redirect URI is empty"),
    ("https://app.example.com/" + "a" * 2048, False, "a redirect URI is longer than 2048 characters"),
    ("https://app.example.com/a b", False,
     "a redirect URI may hold only printable ASCII (no spaces, controls or other scripts: percent-encode)"),
    ("https://app.example.com/cb#x", False, "a redirect URI may not have a fragment (#...)"),
    ("http://localhost/cb", True, "http is allowed only to the loopback literals http://127.0.0.1 and http://[::1] "
                                  "(not localhost: RFC 8252 8.3); use https"),
    ("https://user@app.example.com/cb", False, "an https redirect URI needs a lowercase host name, an optional "
                                               "port and no userinfo (https://app.example.com/callback)"),
    ("https://a..b/cb", False, "'a..b' is not a host name"),
    ("com.example.app:/cb", False,
     "a private-use scheme (com.example.app:/callback) is for public (native) clients: add --public"),
    ("javascript:alert(1)", True, "a redirect URI must be https://..., http://127.0.0.1 or http://[::1] (native "
                                  "apps), or a reverse-domain private-use scheme like com.example.app:/callback "
                                  "(public clients)"),
])
def test_registration_problems_say_what_to_do(uri, public, message):
    assert registration_problem(uri, public=public) == message


@pytest.mark.parametrize("uri", ["javascript:alert(1)", "data:text/html,x", "vbscript:x", "file:///etc/passwd",
                                 "blob:https://app.example.com/x", "about:blank", "javascript://x.y/%0aalert(1)",
                                 "JavaScript:alert(1)"])
@pytest.mark.parametrize("public", [True, False])
def test_script_and_local_schemes_can_never_be_registered(uri, public):
    assert registration_problem(uri, public=public)


def test_the_response_location_is_built_only_on_an_accepted_redirect_uri():
    from authsvc.rules.oidc_redirects import response_location

    registered = ("https://app.example.com/cb", "http://127.0.0.1/native")
    assert response_location("https://app.example.com/cb", registered, public=False,
                             params=[("code", "c"), ("state", "a b&c")]) == \
        "https://app.example.com/cb?code=c&state=a+b%26c"
    assert response_location("http://127.0.0.1:5000/native", registered, public=True, params=[("code", "c")]) == \
        "http://127.0.0.1:5000/native?code=c"
    for requested, public in [("http://127.0.0.1:5000/native", False), ("https://evil.example.com/cb", True),
                              ("https://app.example.com/cb/", False), ("", False)]:
        with pytest.raises(ValueError, match=r"^redirect_uri not accepted for this client$"):
            response_location(requested, registered, public=public, params=[("code", "c")])


@pytest.mark.parametrize("uri, params, location", [
    ("https://a.example.com/cb", [], "https://a.example.com/cb"),
    ("https://a.example.com/cb", [("code", "x")], "https://a.example.com/cb?code=x"),
    ("https://a.example.com/cb?tenant=1", [("code", "x")], "https://a.example.com/cb?tenant=1&code=x"),
    ("https://a.example.com/cb?", [("code", "x")], "https://a.example.com/cb?&code=x"),
    ("https://a.example.com/cb", [("error", "a=b?c#d")], "https://a.example.com/cb?error=a%3Db%3Fc%23d"),
])
def test_parameters_are_added_to_the_registered_query_form_encoded(uri, params, location):
    from authsvc.rules.oidc_redirects import with_params

    assert with_params(uri, params) == location


def test_the_form_action_source_of_a_private_scheme_is_the_scheme_alone():
    from authsvc.rules.oidc_redirects import csp_source

    assert csp_source("com.example.app:/cb?next=a:b") == "com.example.app:"


def single_edits(uri: str):
    """Every string one edit away from ``uri``: each character replaced by one of a few that a
    pattern would treat specially or a parser would read as another part, deleted, or one inserted."""
    for i in range(len(uri) + 1):
        for c in "x-./?*\\":
            yield uri[:i] + c + uri[i:]
        if i < len(uri):
            yield uri[:i] + uri[i + 1:]
            for c in "x-./?*\\":
                yield uri[:i] + c + uri[i + 1:]


@pytest.mark.asvs("V10.4.1")
@pytest.mark.parametrize("uri", REGISTERED)
def test_authentik_cve_2024_52289_no_single_edit_of_a_registered_uri_is_accepted(uri):
    """authentik CVE-2024-52289's class: a registered redirect URI used as a pattern (an unescaped
    '.' matched any character, so app-example.com passed for app.example.com). Every string one edit
    away from a registered URI is refused, unless it is itself registered (for a confidential
    client: no loopback port exception)."""
    accepted = [e for e in set(single_edits(uri)) - set(REGISTERED)
                if redirect_uri_verdict(e, REGISTERED, public=False) == "ok"]
    assert accepted == []


@pytest.mark.parametrize("requested, registered", [
    pytest.param("https://app-example.com/callback", "https://app.example.com/callback", id="dot-as-any-char"),
    pytest.param("https://appxexample.com/callback", "https://app.example.com/callback", id="dot-as-any-char-x"),
    pytest.param("https://app.example.com/ctenant=a", "https://app.example.com/cb?tenant=a", id="question-mark-as-optional"),
    pytest.param("https://app.example.com/cbanything", "https://app.example.com/cb*", id="star-as-wildcard"),
    pytest.param("https://app.example.com/cb", "https://app.example.com/cb*", id="star-as-zero-or-more"),
    pytest.param("https://app.example.com/callbackk", "https://app.example.com/callback+", id="plus-as-repeat"),
    pytest.param("https://app.example.com/a", "https://app.example.com/[a-z]", id="character-class"),
    pytest.param("https://evil.example/x", "https://app.example.com/cb|https://evil.example/x", id="alternation"),
])
def test_a_registered_uri_is_never_read_as_a_pattern(requested, registered):
    assert redirect_uri_verdict(requested, (registered,), public=False) != "ok"
    assert redirect_uri_verdict(requested, (registered,), public=True) != "ok"
