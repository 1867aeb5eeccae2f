"""`authsvc probe`'s judging functions (authsvc/probe/), fed hostile answers: a deployment that
gets a cookie flag, a header or a redirect subtly wrong must fail the check, and one that gets it
right in an unusual spelling must pass. The probe's network runs are in
tests/integration/test_probe.py; here every judge is a pure function of plain values.
"""

from __future__ import annotations

import io
import json
import re

import pytest

from authsvc.probe import (
    access,
    cookies,
    forwarding,
    headers,
    identity,
    redirects,
    report,
    sessions,
    signin,
)
from authsvc.probe.access import Decision
from authsvc.probe.client import Jar, Response
from authsvc.probe.command import parse_resolve, url_problem
from authsvc.probe.model import FAIL, NOT_APPLICABLE, OK, Finding, Result, shown
from authsvc.probe.runner import CHECKS
from authsvc.server import cli

AUTH = "https://auth.example.com"
APP = "https://app.example.com/notes/"
TRUSTED = {AUTH, "https://app.example.com"}


def parse(raw: str) -> cookies.SetCookie:
    parsed = cookies.parse_set_cookie(raw)
    assert parsed is not None, raw
    return parsed


GOOD_SESSION = "__Secure-authsvc_session=v; Domain=.example.com; Secure; HttpOnly; Path=/; SameSite=Lax"
GOOD_DEVICE = "__Host-authsvc_device=v; Secure; HttpOnly; Path=/; SameSite=Lax; Max-Age=100"


# --- cookies -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    "no-equals-sign", "=", "a=b\x00c", "a=b\r\nSet-Cookie: x=y", "a=\x7f", "",
], ids=["no equals", "empty name and value", "NUL", "CRLF", "DEL", "empty"])
def test_set_cookie_a_browser_ignores_is_not_parsed(raw):
    assert cookies.parse_set_cookie(raw) is None


def test_set_cookie_attributes_are_read_as_a_browser_reads_them():
    c = parse("  name = value ; SECURE ; httponly=anything; SameSite=None; samesite=Strict; DOMAIN=.Example.COM.")
    assert (c.name, c.value) == ("name", "value")
    assert c.secure and c.httponly
    assert c.samesite == "strict"          # the last one wins
    assert c.domain == "example.com"


@pytest.mark.parametrize("raw", ["a=b; Max-Age=--1", "a=b; Max-Age=-", "a=b; Max-Age=1e3", "a=b; Max-Age=\u0661"],
                         ids=["double minus", "bare minus", "exponent", "arabic-indic digit"])
def test_a_max_age_a_browser_ignores_is_read_without_error(raw):
    """A hostile Set-Cookie must be judged, not end the run ('--1' passed the old digit check and
    crashed int())."""
    assert not parse(raw).deletes
    jar = Jar()
    jar.take(answer(AUTH + "/", raw))
    assert jar.header(AUTH + "/") == "a=b"


def test_empty_domain_means_host_only_and_past_expiry_or_zero_max_age_deletes():
    assert parse("a=b; Domain=").domain is None
    assert parse("a=; Max-Age=0").deletes and parse("a=; Max-Age=-1").deletes
    assert parse("a=; Expires=Thu, 01 Jan 1970 00:00:00 GMT").deletes
    assert not parse("a=b; Max-Age=60").deletes and not parse("a=b").deletes


@pytest.mark.asvs("V3.3.1")
@pytest.mark.parametrize(("raw", "judge"), [
    ("s=v; HttpOnly; SameSite=Lax", cookies.judge_secure),
    ("s=v; Secure=; SameSite=Lax", cookies.judge_httponly),
    ("s=v; Secure; HttpOnly", cookies.judge_samesite),
    ("s=v; Secure; HttpOnly; SameSite=None", cookies.judge_samesite),
    ("s=v; Secure; HttpOnly; SameSite=", cookies.judge_samesite),
    ("s=v; Secure; HttpOnly; SameSite=Lax,None", cookies.judge_samesite),
], ids=["not Secure", "not HttpOnly", "no SameSite", "SameSite=None", "empty SameSite", "SameSite list"])
def test_a_cookie_missing_a_flag_fails_its_check_even_beside_good_ones(raw, judge):
    finding = judge([parse(GOOD_SESSION), parse(raw), parse(GOOD_DEVICE)])
    assert finding.status == FAIL and "s" in finding.detail


def test_flags_in_any_case_pass():
    found = [parse("__Host-a=v; SECURE; HTTPONLY; SAMESITE=STRICT; PATH=/")]
    assert {cookies.judge_secure(found).status, cookies.judge_httponly(found).status,
            cookies.judge_samesite(found).status} == {OK}


def test_no_cookie_at_all_is_not_applicable_not_a_pass():
    for judge in (cookies.judge_secure, cookies.judge_httponly, cookies.judge_samesite, cookies.judge_prefix):
        assert judge([]).status == NOT_APPLICABLE
    assert cookies.judge_scope([], "auth.example.com", "app.example.com").status == NOT_APPLICABLE


@pytest.mark.asvs("V3.3.1")
@pytest.mark.parametrize(("raw", "problem"), [
    ("__Host-s=v; Path=/; HttpOnly", "__Host- without Secure"),
    ("__Host-s=v; Secure; Path=/; Domain=example.com", "__Host- with a Domain"),
    ("__Host-s=v; Secure", "__Host- without Path=/"),
    ("__Host-s=v; Secure; Path=/app", "__Host- without Path=/"),
    ("__host-s=v; Path=/", "__Host- without Secure"),
    ("__HOST-s=v; Secure; Domain=.example.com; Path=/", "__Host- with a Domain"),
    ("__Secure-s=v; HttpOnly", "__Secure- without Secure"),
    ("__secure-s=v", "__Secure- without Secure"),
    ("authsvc_session=v; Secure", "no __Host- or __Secure- prefix"),
    ("_Host-s=v; Secure; Path=/", "no __Host- or __Secure- prefix"),
    ("__Host_s=v; Secure; Path=/", "no __Host- or __Secure- prefix"),
], ids=["host no secure", "host domain", "host no path", "host other path", "lower-case host prefix",
        "upper-case host prefix with domain", "secure prefix no secure", "lower-case secure prefix",
        "no prefix", "one underscore", "underscore instead of hyphen"])
def test_cookie_prefix_rules_are_held_in_any_case(raw, problem):
    assert problem in (cookies.prefix_problem(parse(raw)) or "")
    assert cookies.judge_prefix([parse(GOOD_DEVICE), parse(raw)]).status == FAIL


def test_sound_prefixes_pass():
    assert cookies.judge_prefix([parse(GOOD_SESSION), parse(GOOD_DEVICE)]).status == OK


@pytest.mark.parametrize(("raw", "problem"), [
    ("__Secure-authsvc_session=v; Secure; Domain=com", "a top-level domain"),
    ("__Secure-authsvc_session=v; Secure; Domain=.com.", "a top-level domain"),
    ("__Secure-authsvc_session=v; Secure; Domain=example.com", "wider than corp.example.com"),
    ("__Secure-authsvc_session=v; Secure; Domain=other.org", "does not cover the login host"),
    ("__Secure-authsvc_session=v; Secure; Domain=xcorp.example.com", "does not cover the login host"),
    ("__Secure-authsvc_remember=v; Secure; Domain=corp.example.com", "only the session cookie may be shared"),
    ("__Secure-authsvc_device=v; Secure; Domain=.corp.example.com", "only the session cookie may be shared"),
], ids=["tld", "tld with dots", "wider than needed", "foreign domain", "suffix look-alike", "shared remember-me",
        "shared device cookie"])
def test_cookie_domain_wider_than_both_hosts_need_or_on_a_long_lived_cookie_fails(raw, problem):
    found = cookies.judge_scope([parse(raw)], "auth.corp.example.com", "wiki.corp.example.com")
    assert found.status == FAIL and problem in found.detail


@pytest.mark.parametrize(("domain", "auth", "app"), [
    (".corp.example.com", "auth.corp.example.com", "wiki.corp.example.com"),
    ("CORP.EXAMPLE.COM", "auth.corp.example.com", "wiki.corp.example.com"),
    ("example.com", "login.example.com", "app.corp.example.com"),
])
def test_cookie_domain_that_is_the_closest_shared_parent_passes(domain, auth, app):
    found = cookies.judge_scope([parse(f"__Secure-authsvc_session=v; Secure; Domain={domain}"), parse(GOOD_DEVICE)],
                                auth, app)
    assert found.status == OK, found


def test_domain_match_is_on_label_boundaries():
    assert cookies.domain_matches("app.example.com", "example.com")
    assert cookies.domain_matches("EXAMPLE.com.", "example.com")
    assert not cookies.domain_matches("evilexample.com", "example.com")
    assert not cookies.domain_matches("example.com", "app.example.com")
    assert cookies.closest_shared_domain("a.b.example.com", "c.b.example.com") == "b.example.com"
    assert cookies.closest_shared_domain("auth.example.com", "app.example.org") == ""


# --- the probe's cookie jar behaves like a browser's -----------------------------------------------------


def answer(url: str, *set_cookies: str, status: int = 200, **more: str) -> Response:
    return Response(status, tuple(("Set-Cookie", c) for c in set_cookies) + tuple(more.items()), b"", url)


def test_jar_sends_host_only_cookies_to_their_host_only_and_domain_cookies_to_siblings():
    jar = Jar()
    jar.take(answer(f"{AUTH}/login", GOOD_SESSION, GOOD_DEVICE, "evil=1; Domain=evil.example"))
    assert jar.header(f"{AUTH}/") == "__Secure-authsvc_session=v; __Host-authsvc_device=v"
    assert jar.header(APP) == "__Secure-authsvc_session=v"
    assert jar.header("https://example.org/") is None
    jar.take(answer(f"{AUTH}/logout", "__Secure-authsvc_session=; Domain=.example.com; Max-Age=0; Path=/"))
    assert jar.header(APP) is None


def test_jar_keeps_paths_apart():
    jar = Jar()
    jar.take(answer(f"{AUTH}/login", "a=1; Path=/account", "b=2; Path=/"))
    assert jar.header(f"{AUTH}/accounting") == "b=2"
    assert jar.header(f"{AUTH}/account/x") == "a=1; b=2"


# --- security headers ------------------------------------------------------------------------------------

HSTS = "Strict-Transport-Security"


@pytest.mark.asvs("V3.4.1")
@pytest.mark.parametrize("found", [
    [], [(HSTS, "max-age=0")], [(HSTS, "max-age=86400; includeSubDomains")], [(HSTS, "max-age=31535999")],
    [(HSTS, "max-age=31536000; max-age=63072000")], [(HSTS, "max-age=one-year")], [(HSTS, "includeSubDomains")],
    [(HSTS, "max-age=\uff13\uff11\uff15\uff13\uff16\uff10\uff10\uff10")], [(HSTS, "max-age=-31536000")],
    [(HSTS, "max-age=3600"), (HSTS, "max-age=63072000")],
], ids=["missing", "zero", "a day", "a second short", "directive twice", "not a number", "no max-age",
        "full-width digits", "negative", "the first of two counts"])
def test_hsts_missing_short_or_malformed_fails(found):
    assert headers.judge_hsts(found).status == FAIL


@pytest.mark.parametrize("value", ["max-age=31536000", 'max-age="63072000"; includeSubDomains; preload',
                                   " MAX-AGE=31536000 ;INCLUDESUBDOMAINS"])
def test_hsts_of_a_year_or_more_passes(value):
    assert headers.judge_hsts([("strict-transport-security", value)]).status == OK


GOOD_CSP = "default-src 'none'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
CSP = "Content-Security-Policy"


@pytest.mark.asvs("V3.4.3")
@pytest.mark.parametrize("found", [
    [],
    [("Content-Security-Policy-Report-Only", GOOD_CSP)],
    [(CSP, "default-src 'self'; script-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'")],
    [(CSP, "default-src 'self'; script-src 'self' 'unsafe-eval'; object-src 'none'; base-uri 'none'")],
    [(CSP, "default-src *; object-src 'none'; base-uri 'none'")],
    [(CSP, "script-src https:; object-src 'none'; base-uri 'self'")],
    [(CSP, "script-src 'self' data:; object-src 'none'; base-uri 'self'")],
    [(CSP, "script-src 'self' *.cdn.example; object-src 'none'; base-uri 'self'")],
    [(CSP, "default-src 'self'; script-src 'self' https://cdnjs.cloudflare.com; object-src 'none'; base-uri 'none'")],
    [(CSP, "script-src 'self' www.google.com; object-src 'none'; base-uri 'none'")],
    [(CSP, "script-src 'nonce-abc' https://cdn.example; object-src 'none'; base-uri 'none'")],
    [(CSP, "script-src 'self' wss:; object-src 'none'; base-uri 'none'")],
    [(CSP, "img-src 'self'; object-src 'none'; base-uri 'self'")],
    [(CSP, "default-src 'self'; base-uri 'self'")],
    [(CSP, "default-src 'none'")],
    [(CSP, "default-src 'none'; base-uri *")],
    [(CSP, "frame-ancestors 'none'")],
    [(CSP, "script-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'")],
    [(CSP, "default-src 'self'; script-src 'self'; script-src-elem 'self' 'unsafe-inline' *; object-src 'none'; "
           "base-uri 'none'")],
    [(CSP, "default-src 'self'; script-src 'self'; script-src-attr 'unsafe-inline'; object-src 'none'; "
           "base-uri 'none'")],
], ids=["missing", "report-only", "unsafe-inline", "unsafe-eval", "default star", "scheme source",
        "data script", "wildcard host", "named CDN host", "bare host", "host beside a nonce", "other scheme",
        "no script-src or default-src", "plugins allowed", "no base-uri",
        "base-uri star", "only frame-ancestors", "the first of a repeated directive wins",
        "script-src-elem overrides for script elements", "script-src-attr overrides for event handlers"])
def test_csp_that_allows_inline_or_foreign_script_plugins_or_base_fails(found):
    assert headers.judge_csp(found).status == FAIL


@pytest.mark.parametrize("found", [
    [(CSP, GOOD_CSP)],
    [(CSP, "DEFAULT-SRC 'NONE'; SCRIPT-SRC 'SELF'; BASE-URI 'SELF'")],
    [(CSP, "script-src 'nonce-abc' 'unsafe-inline'; object-src 'none'; base-uri 'none'")],
    [(CSP, "script-src *"), (CSP, GOOD_CSP)],
    [(CSP, "script-src *, " + GOOD_CSP)],
    [(CSP, GOOD_CSP.replace("script-src", "script-src-attr 'none'; script-src", 1))],
], ids=["authsvc's", "upper case", "unsafe-inline ignored beside a nonce", "a second strict policy",
        "two policies in one header", "a strict script-src-attr beside it"])
def test_csp_that_restricts_script_plugins_and_base_passes(found):
    assert headers.judge_csp(found).status == OK


@pytest.mark.parametrize(("found", "status"), [
    ([("X-Content-Type-Options", "nosniff")], OK),
    ([("x-content-type-options", " NoSniff ")], OK),
    ([("X-Content-Type-Options", "nosniff, nosniff")], OK),
    ([("X-Content-Type-Options", "sniff")], FAIL),
    ([("X-Content-Type-Options", "")], FAIL),
    ([], FAIL),
])
def test_nosniff(found, status):
    assert headers.judge_nosniff(found).status == status


@pytest.mark.asvs("V3.4.6")
@pytest.mark.parametrize(("found", "status"), [
    ([(CSP, "frame-ancestors 'none'")], OK),
    ([(CSP, "frame-ancestors 'self'"), ("X-Frame-Options", "ALLOWALL")], OK),
    ([("X-Frame-Options", "DENY")], OK),
    ([("X-Frame-Options", " sameorigin ")], OK),
    ([(CSP, "frame-ancestors *"), ("X-Frame-Options", "DENY")], FAIL),
    ([(CSP, "frame-ancestors https:")], FAIL),
    ([(CSP, "frame-ancestors https://*.example.com")], FAIL),
    ([(CSP, "frame-ancestors https://evil.example"), ("X-Frame-Options", "DENY")], FAIL),
    ([(CSP, "frame-ancestors 'self' partner.example")], FAIL),
    ([("X-Frame-Options", "ALLOW-FROM https://evil.example")], FAIL),
    ([("X-Frame-Options", "DENY"), ("X-Frame-Options", "SAMEORIGIN")], FAIL),
    ([(CSP, "default-src 'none'")], FAIL),
    ([], FAIL),
], ids=["frame-ancestors none", "frame-ancestors beats a bad XFO", "XFO deny", "XFO sameorigin spaced",
        "frame-ancestors star beats XFO", "scheme source", "wildcard host", "named foreign origin beats XFO",
        "bare host beside self", "allow-from", "XFO twice",
        "default-src does not cover framing", "nothing"])
def test_framing(found, status):
    assert headers.judge_framing(found).status == status


@pytest.mark.asvs("V3.4.5")
@pytest.mark.parametrize(("value", "status"), [
    ("same-origin", OK), ("no-referrer", OK), ("strict-origin-when-cross-origin", OK), ("STRICT-ORIGIN", OK),
    ("unsafe-url", FAIL), ("no-referrer-when-downgrade", FAIL), ("origin", FAIL),
    ("no-referrer, unsafe-url", FAIL), ("unsafe-url, same-origin", OK), ("same-origin, made-up", OK),
    ("made-up", FAIL), ("", FAIL),
])
def test_referrer_policy_last_known_token_wins(value, status):
    assert headers.judge_referrer([("Referrer-Policy", value)]).status == status


@pytest.mark.asvs("V14.3.2")
@pytest.mark.parametrize(("found", "status"), [
    ([("Cache-Control", "no-store")], OK), ([("cache-control", "private, NO-STORE, max-age=0")], OK),
    ([("Cache-Control", "private"), ("Cache-Control", "no-store")], OK),
    ([("Cache-Control", "private, max-age=0")], FAIL), ([("Cache-Control", "no-cache")], FAIL),
    ([("Cache-Control", "public, max-age=600")], FAIL), ([("Pragma", "no-cache")], FAIL), ([], FAIL),
])
def test_login_page_must_not_be_stored(found, status):
    assert headers.judge_cache(found).status == status


# --- what the proxy decided ----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "location", "kind", "next_value"), [
    (200, None, access.LET_THROUGH, None),
    (204, None, access.LET_THROUGH, None),
    (302, f"{AUTH}/login?next=https%3A%2F%2Fapp.example.com%2Fnotes%2F", access.TO_LOGIN, APP),
    (302, f"{AUTH}:443/login", access.TO_LOGIN, None),
    (303, "/login?next=/x", access.ELSEWHERE, None),         # the app's own login page
    (302, "https://app.example.com/login?next=x", access.ELSEWHERE, None),
    (302, "login", access.ELSEWHERE, None),
    (302, "/\\auth.example.com/login", access.ELSEWHERE, None),
    (302, "//auth.example.com/login?next=a", access.TO_LOGIN, "a"),
    (401, f"{AUTH}/login?next=a", access.TO_LOGIN, "a"),
    (302, f"{AUTH}/login?next=a&next=b", access.TO_LOGIN, None),
    (302, "https://evil.example/login?next=x", access.ELSEWHERE, None),
    (302, "//evil.example/login", access.ELSEWHERE, None),
    (302, f"{AUTH}/loginx", access.ELSEWHERE, None),
    (302, "https://app.example.com/notes/", access.ELSEWHERE, None),
    (307, "/notes/home", access.ELSEWHERE, None),
    (401, None, access.REFUSED, None),
    (403, None, access.REFUSED, None),
    (400, None, access.OTHER, None),
    (502, None, access.OTHER, None),
    (302, "https://[x/login", access.ELSEWHERE, None),          # no URL parser reads it: no login page
    (401, "https://[::1/login?next=x", access.REFUSED, None),
    (302, f"{AUTH}:99999999/login", access.ELSEWHERE, None),
])
def test_the_proxys_decision_is_read_from_its_answer(status, location, kind, next_value):
    decided = access.decision(status, location, AUTH, APP)
    assert (decided.kind, decided.next) == (kind, next_value)
    assert access.kept_out(decided) == (kind not in (access.LET_THROUGH, access.ELSEWHERE))


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize(("location", "url", "kind"), [
    ("/login", APP, access.ELSEWHERE),
    ("/login?next=https%3A%2F%2Fapp.example.com%2Fnotes%2F", APP, access.ELSEWHERE),
    ("../login", APP, access.ELSEWHERE),
    ("/login", f"{AUTH}/auth/verify", access.TO_LOGIN),
    ("login", f"{AUTH}/", access.TO_LOGIN),
    ("https://AUTH.example.com:443/login", APP, access.TO_LOGIN),
    ("https://auth.example.com.evil.example/login", APP, access.ELSEWHERE),
    ("http://auth.example.com/login", APP, access.ELSEWHERE),
    ("/login\t", f"{AUTH}/", access.ELSEWHERE),
], ids=["app's own /login", "app's own /login with next", "app's own ../login", "relative on the login host",
        "path-relative on the login host", "absolute, any case, default port", "look-alike host", "http",
        "tab"])
def test_a_location_is_the_login_page_only_where_a_browser_lands_on_the_login_host(location, url, kind):
    """An app without forward auth that redirects to its own /login is the app answering, not
    authsvc's login page: the Location is resolved against the URL asked, as a browser does."""
    assert access.decision(302, location, AUTH, url).kind == kind


@pytest.mark.parametrize(("decided", "status"), [
    (Decision(access.LET_THROUGH, 200), FAIL),
    (Decision(access.TO_LOGIN, 302, APP), OK),
    (Decision(access.TO_LOGIN, 302, None), OK),
    (Decision(access.TO_LOGIN, 302, "https://app.example.com/elsewhere"), FAIL),
    (Decision(access.REFUSED, 401), OK),
    (Decision(access.ELSEWHERE, 302, location="https://evil.example/"), FAIL),
    (Decision(access.ELSEWHERE, 302, location="/notes/home"), FAIL),
])
def test_anonymous_access(decided, status):
    assert access.judge_anonymous(decided, APP).status == status


# --- identity headers ----------------------------------------------------------------------------------

KEPT_OUT = Decision(access.TO_LOGIN, 302, APP)
THROUGH = Decision(access.LET_THROUGH, 200)
PROXY_400 = Decision(access.OTHER, 400)      # a proxy's own "Bad Request": no Location
DROPPED = Decision(access.REFUSED, 0)         # the proxy closed the connection


def test_forged_identity_covers_every_spelling_with_distinct_canaries():
    made = identity.forgeries()
    sent = [name for f in made for name, _ in f.headers]
    for name in ("X-Auth-User", "x-auth-user", "X-AUTH-USER", "X_Auth_User", "x_auth_user", "X_Auth_Groups",
                 "x_auth_methods", "X-AUTH-USER-ID", "X.Auth.User", "X_Auth-User", "X_Auth-User_Id", "X.Auth_User",
                 "X-Auth-User "):
        assert name in sent
    canaries = [value for f in made for _, value in f.headers]
    assert len(set(canaries)) == len(canaries)
    assert all(v.isdigit() for f in made for n, v in f.headers if n.lower().replace("_", "-").endswith("-id"))


def test_every_alias_family_is_one_request_with_each_name_spelled_its_way():
    """Dots, mixed separators, whitespace before the colon and a header sent twice (in one case or
    two) each get a request of their own, so a finding names the family a proxy let through."""
    by_spelling = {f.spelling: [name for name, _ in f.headers] for f in identity.forgeries()}
    assert by_spelling["dots"][:2] == ["X.Auth.User", "X.Auth.User.Id"]
    assert by_spelling["underscores and dashes mixed"][:2] == ["X_Auth-User", "X_Auth-User_Id"]
    assert by_spelling["dots and underscores mixed"][:2] == ["X.Auth_User", "X.Auth_User.Id"]
    assert by_spelling["whitespace before the colon"][0] == "X-Auth-User "
    assert by_spelling["twice"][:2] == ["X-Auth-User", "X-Auth-User"]
    assert by_spelling["twice, in two cases"][:2] == ["X-Auth-User", "x-auth-user"]
    assert all(len(names) == 2 * len(identity.NAMES) for spelling, names in by_spelling.items()
               if spelling.startswith("twice"))


@pytest.mark.asvs("V8.3.1", "V4.1.3")
@pytest.mark.parametrize("copy", [0, 1], ids=["first copy", "second copy"])
@pytest.mark.parametrize("spelling", ["twice", "twice, in two cases"])
def test_signed_in_app_that_shows_either_copy_of_a_header_sent_twice_fails(spelling, copy):
    """A proxy that replaces only one of two X-Auth-User lines lets the app choose the client's."""
    made = identity.forgeries()
    forgery = next(f for f in made if f.spelling == spelling)
    canary = forgery.headers[copy][1]
    outcomes = [(f, THROUGH, '{"user": ["alice"]}') for f in made if f is not forgery]
    outcomes.append((forgery, THROUGH, f'{{"user": ["alice", "{canary}"]}}'))
    found = identity.judge_signed_in('{"user": ["alice"]}', THROUGH, outcomes, "alice")
    assert found.status == FAIL and spelling in found.detail and forgery.headers[copy][0] in found.detail


@pytest.mark.asvs("V8.3.1")
def test_a_proxy_that_refuses_whitespace_before_the_colon_passes():
    """nginx, Traefik, Caddy and Envoy answer 400 to "X-Auth-User :": refused is kept out."""
    made = identity.forgeries()
    assert "whitespace before the colon" in {f.spelling for f in made}
    refused = Decision(access.REFUSED, 400)
    outcomes = [(f, refused if f.spelling == "whitespace before the colon" else THROUGH, "alice") for f in made]
    assert identity.judge_signed_in("alice", THROUGH, outcomes, "alice").status == OK
    assert identity.judge_anonymous(KEPT_OUT, [(f, refused if f.spelling == "whitespace before the colon" else KEPT_OUT, "")
                                     for f in made]).status == OK


@pytest.mark.asvs("V8.3.1")
def test_anonymous_forged_identity_let_through_or_echoed_fails():
    made = identity.forgeries()
    assert identity.judge_anonymous(KEPT_OUT, [(f, KEPT_OUT, "") for f in made]).status == OK
    assert identity.judge_anonymous(KEPT_OUT, [(made[0], THROUGH, "")] + [(f, KEPT_OUT, "") for f in made[1:]]).status == FAIL
    echoed = next(iter(made[3].canaries))
    assert identity.judge_anonymous(KEPT_OUT, [(f, KEPT_OUT, f"<p>{echoed}</p>") for f in made]).status == FAIL


@pytest.mark.asvs("V8.3.1", "V4.1.3")
def test_signed_in_app_that_shows_a_forged_value_in_any_spelling_fails():
    made = identity.forgeries()
    for forgery in made:
        canary, name = next(iter(forgery.canaries.items()))
        outcomes = [(f, THROUGH, '{"user": ["alice"]}') for f in made if f is not forgery]
        outcomes.append((forgery, THROUGH, f'{{"user": ["alice", "{canary}"]}}'))
        found = identity.judge_signed_in('{"user": ["alice"]}', THROUGH, outcomes, "alice")
        assert found.status == FAIL and name in found.detail, forgery.spelling


OTHER_PROXIES_HEADERS = ("Remote-User", "X-Remote-User", "X-Forwarded-User", "X-Auth-Request-User",
                         "X-Forwarded-Email", "X-Auth-Request-Email", "Remote-Groups", "Remote-Email", "Remote-Name",
                         "X-Forwarded-Preferred-Username", "X-Forwarded-Groups")


def test_other_login_proxies_identity_headers_are_forged_in_every_spelling():
    """oauth2-proxy's, Authelia's and Remote-User: authsvc never sends them, so every family of
    spellings of each is one more header a proxy must remove, and the probe sends each."""
    by_spelling = {f.spelling: [name for name, _ in f.headers] for f in identity.forgeries()}
    for name in OTHER_PROXIES_HEADERS:
        for spelling, spelled in {"as documented": name, "lower case": name.lower(), "upper case": name.upper(),
                                  "underscores": name.replace("-", "_"), "dots": name.replace("-", "."),
                                  "whitespace before the colon": f"{name} "}.items():
            assert spelled in by_spelling[spelling], (name, spelling)
        assert by_spelling["twice"].count(name) == 2 and name.lower() in by_spelling["twice, in two cases"]


@pytest.mark.parametrize(("name", "foreign"), [
    ("Remote-User", True), ("remote_user", True), ("REMOTE.USER", True), (" Remote-User ", True),
    ("x_forwarded.preferred-username", True), ("X-Auth-Request_Email", True), ("Remote-Groups", True),
    ("X-Auth-User", False), ("x_auth_user", False), ("Remote-Users", False), ("Remote-User-Id", False),
    ("X-Forwarded-For", False), ("X-Forwarded-Host", False), ("Remote", False), ("RemoteUser", False), ("", False),
])
def test_only_other_login_proxies_identity_headers_are_called_foreign(name, foreign):
    assert identity.is_foreign(name) is foreign


@pytest.mark.asvs("V8.3.1", "V4.1.3")
@pytest.mark.parametrize("name", OTHER_PROXIES_HEADERS)
def test_a_proxy_that_passes_remote_user_or_another_login_proxys_header_fails_the_probe(name):
    """The app shows the real user beside a client's Remote-User (or X-Forwarded-Email, ...): an
    app moved from behind oauth2-proxy or Authelia, or Django's RemoteUserMiddleware, would believe
    it. In any spelling, signed in or not, the check fails, names the header and says the proxy
    must remove it (authsvc never sends it, so copying authsvc's answer does not replace it)."""
    made = identity.forgeries()
    for forgery in made:
        canary, spelled = next((c, n) for c, n in forgery.canaries.items()
                               if re.sub(r"[_.]", "-", n.strip().lower()) == name.lower())
        outcomes = [(f, THROUGH, '{"user": ["alice"]}') for f in made if f is not forgery]
        outcomes.append((forgery, THROUGH, f'{{"user": ["alice"], "identity_fields": [["{spelled}", "{canary}"]]}}'))
        found = identity.judge_signed_in('{"user": ["alice"]}', THROUGH, outcomes, "alice")
        assert found.status == FAIL and spelled in found.detail, (forgery.spelling, found.detail)
        assert "authsvc never sends" in found.detail and "remove" in found.detail, found.detail
        anonymous = [(f, KEPT_OUT, f"<p>{canary}</p>" if f is forgery else "") for f in made]
        echoed = identity.judge_anonymous(KEPT_OUT, anonymous)
        assert echoed.status == FAIL and spelled in echoed.detail and "authsvc never sends" in echoed.detail


def test_a_forged_x_auth_user_is_not_called_another_proxys_header():
    made = identity.forgeries()
    forgery = made[0]
    canary = next(c for c, n in forgery.canaries.items() if n == "X-Auth-User")
    outcomes = [(f, THROUGH, f'{{"user": ["alice", "{canary}"]}}' if f is forgery else "alice") for f in made]
    found = identity.judge_signed_in("alice", THROUGH, outcomes, "alice")
    assert found.status == FAIL and "X-Auth-User" in found.detail and "never sends" not in found.detail


def test_signed_in_app_whose_user_vanishes_under_forged_headers_fails():
    made = identity.forgeries()
    outcomes = [(f, THROUGH, '{"user": []}') for f in made]
    assert identity.judge_signed_in('{"user": ["Alice"]}', THROUGH, outcomes, "alice").status == FAIL


def test_signed_in_app_that_keeps_showing_the_real_user_passes_and_a_proxys_bare_400_is_fine():
    made = identity.forgeries()
    outcomes = [(made[0], PROXY_400, "")] + [(f, THROUGH, "Signed in as ALICE") for f in made[1:]]
    assert identity.judge_signed_in("Signed in as alice", THROUGH, outcomes, "alice").status == OK


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("answer", [
    Decision(access.REFUSED, 403), Decision(access.REFUSED, 401), KEPT_OUT, Decision(access.OTHER, 500),
    Decision(access.ELSEWHERE, 302, location="/notes/home"),
], ids=["403", "401", "sent to the login page", "500", "the app's own redirect"])
def test_a_signed_in_user_answered_otherwise_with_forged_identity_headers_fails(answer):
    """A proxy that hands the client's X-Auth-User to the app instead of the session's: the app
    refuses a made-up name (403), which is not the proxy keeping anyone out. Only a bare 400 or a
    closed connection is the proxy refusing the header itself."""
    made = identity.forgeries()
    outcomes = [(made[1], answer, "forbidden")] + [(f, THROUGH, "alice") for f in made if f is not made[1]]
    found = identity.judge_signed_in("alice", THROUGH, outcomes, "alice")
    assert found.status == FAIL and made[1].spelling in found.detail, found.detail


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("answer", [
    Decision(access.REFUSED, 403), Decision(access.REFUSED, 401), Decision(access.TO_LOGIN, 302, None),
    Decision(access.TO_LOGIN, 401, APP), Decision(access.OTHER, 500), THROUGH,
], ids=["403", "401", "next dropped", "other status", "500", "let through"])
def test_an_anonymous_forgery_answered_otherwise_than_the_plain_request_fails(answer):
    made = identity.forgeries() + identity.impersonations("alice")
    forgery = made[-3]
    outcomes = [(f, answer if f is forgery else KEPT_OUT, "") for f in made]
    found = identity.judge_anonymous(KEPT_OUT, outcomes)
    assert found.status == FAIL and forgery.spelling in found.detail, found.detail


@pytest.mark.parametrize("refusal", [PROXY_400, DROPPED], ids=["400", "connection closed"])
def test_an_anonymous_forgery_the_proxy_refuses_outright_passes(refusal):
    made = identity.forgeries() + identity.impersonations("alice")
    outcomes = [(f, refusal if f.spelling.startswith("whitespace") else KEPT_OUT, "") for f in made]
    assert identity.judge_anonymous(KEPT_OUT, outcomes).status == OK


def test_impersonations_name_the_real_user_in_every_spelling_of_every_user_name_header():
    made = identity.impersonations("alice")
    assert [f.spelling.split(", naming")[0] for f in made] == list(identity.SPELLINGS)
    sent = {name for f in made for name, value in f.headers if value == "alice"}
    assert {"X-Auth-User", "x_auth_user", "Remote-User", "REMOTE-USER", "X.Forwarded.User", "X-Auth-User "} <= sent
    assert all(value == "alice" for f in made for _, value in f.headers)


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("page", [
    "<html><a href='/admin/settings'>Settings</a> Dashboard</html>",
    "<p>Administrators only</p>", "<p>see /admin/x</p>", "<p>mail admin@example.com</p>",
    "<p>admin.example.com</p>", "<script>var role = 'admin';</script><p>Notes</p>",
    '<img alt="admin">', "<p>sysadmin</p>",
], ids=["in a link", "longer word", "path", "address", "host", "in a script", "in an attribute", "suffix"])
def test_an_app_that_shows_the_username_only_inside_markup_or_another_word_cannot_prove_anything(page):
    """The check's proof is that the app shows who is signed in: "admin" in a link or a longer word
    is not that, and the forged headers' absence would prove nothing."""
    made = identity.forgeries()
    found = identity.judge_signed_in(page, THROUGH, [(f, THROUGH, page) for f in made], "admin")
    assert found.status == NOT_APPLICABLE, found.detail


@pytest.mark.parametrize("page", [
    "<p>Signed in as admin</p>", '{"user": ["admin"]}', "X-Auth-User: admin\n\nok", "<b>ADMIN</b>.",
    "Hello, admin!", "user=admin&x=1",
], ids=["text", "json", "echoed header", "markup around, full stop", "punctuation", "query"])
def test_the_username_as_a_word_of_the_visible_text_shows_the_user(page):
    assert identity.shows("admin", page)


def test_an_app_that_does_not_show_the_user_cannot_prove_anything():
    made = identity.forgeries()
    assert identity.judge_signed_in("<h1>Notes</h1>", THROUGH, [(f, THROUGH, "<h1>Notes</h1>") for f in made],
                                    "alice").status == NOT_APPLICABLE


# --- forwarding headers -----------------------------------------------------------------------------------


def test_forwarding_forgeries_aim_inside_the_app_and_name_themselves_hop_by_hop():
    made = forwarding.forgeries(APP, "t0k3n")
    sent = {name.lower(): value for f in made for name, value in f.headers if value}
    assert sent["x-original-url"].startswith(APP) and "t0k3n" in sent["x-original-url"]
    assert sent["x-forwarded-uri"] == "/notes/probe-forged-t0k3n"
    assert "x-original-url" in sent["connection"].lower()
    assert any(all(v == "" for _, v in f.headers) for f in made)  # empty ones too
    assert any("_" in name for f in made for name, _ in f.headers)


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("changed", [
    Decision(access.TO_LOGIN, 302, "https://app.example.com/notes/probe-forged-x"),
    Decision(access.TO_LOGIN, 302, None),
    Decision(access.LET_THROUGH, 200),
    Decision(access.REFUSED, 403),
    Decision(access.TO_LOGIN, 401, APP),
], ids=["other next", "next dropped", "let through", "refused instead", "other status"])
def test_a_forged_forwarding_header_that_changes_the_decision_or_next_fails(changed):
    made = forwarding.forgeries(APP, "x")
    outcomes = [(f, KEPT_OUT) for f in made[:-1]] + [(made[-1], changed)]
    found = forwarding.judge_anonymous(KEPT_OUT, outcomes)
    assert found.status == FAIL and made[-1].label in found.detail
    assert forwarding.judge_anonymous(KEPT_OUT, [(f, KEPT_OUT) for f in made]).status == OK


def test_signed_in_forwarding():
    made = forwarding.forgeries(APP, "x")
    assert forwarding.judge_signed_in(THROUGH, [(f, THROUGH) for f in made]).status == OK
    assert forwarding.judge_signed_in(THROUGH, [(made[0], KEPT_OUT)]).status == FAIL
    assert forwarding.judge_signed_in(KEPT_OUT, []).status == NOT_APPLICABLE


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("refusal", [PROXY_400, DROPPED], ids=["400", "connection closed"])
def test_a_proxy_refusing_a_connection_header_that_names_forwarding_headers_is_not_a_changed_decision(refusal):
    """Envoy answers 400 itself when Connection names X-Forwarded-For/-Host/-Proto: the hop-by-hop
    trick (Traefik CVE-2024-45410) never reaches authsvc, anonymous or signed in."""
    made = forwarding.forgeries(APP, "x")
    hop = [f for f in made if f.hop_by_hop]
    assert len(hop) == 2 and all(any(n == "Connection" for n, _ in f.headers) for f in hop)
    anonymous = forwarding.judge_anonymous(KEPT_OUT, [(f, refusal if f.hop_by_hop else KEPT_OUT) for f in made])
    assert anonymous.status == OK and "refused by the proxy itself" in anonymous.detail
    assert hop[0].label in anonymous.detail
    signed = forwarding.judge_signed_in(THROUGH, [(f, refusal if f.hop_by_hop else THROUGH) for f in made])
    assert signed.status == OK and "refused by the proxy itself" in signed.detail


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("answer", [
    Decision(access.OTHER, 400, location="https://evil.example/"),
    Decision(access.REFUSED, 400, location=f"{AUTH}/login"),
    Decision(access.OTHER, 500),
    Decision(access.OTHER, 502),
    Decision(access.OTHER, 404),
    Decision(access.REFUSED, 403),
    Decision(access.REFUSED, 401),
    Decision(access.TO_LOGIN, 302, None),
    Decision(access.TO_LOGIN, 302, "https://app.example.com/notes/probe-forged-x"),
    Decision(access.LET_THROUGH, 200),
], ids=["400 with Location", "400 to login", "500", "502", "404", "403", "401", "next dropped", "other next",
        "let through"])
def test_only_a_bare_400_or_a_closed_connection_counts_as_the_proxy_refusing_a_hop_by_hop_forgery(answer):
    made = forwarding.forgeries(APP, "x")
    hop = next(f for f in made if f.hop_by_hop)
    outcomes = [(f, answer if f is hop else KEPT_OUT) for f in made]
    found = forwarding.judge_anonymous(KEPT_OUT, outcomes)
    assert found.status == FAIL and hop.label in found.detail
    if answer.kind != access.LET_THROUGH:
        signed = forwarding.judge_signed_in(THROUGH, [(f, answer if f is hop else THROUGH) for f in made])
        assert signed.status == FAIL and hop.label in signed.detail


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("refusal", [PROXY_400, DROPPED], ids=["400", "connection closed"])
def test_a_bare_400_to_a_forwarding_forgery_without_a_connection_header_still_fails(refusal):
    """Refusing a forged X-Original-URL is not what a proxy does with the header: it may mean authsvc
    or the app read it. Only the hop-by-hop forgeries may be refused."""
    made = forwarding.forgeries(APP, "x")
    plain = [f for f in made if not f.hop_by_hop]
    assert plain and not any(n.lower() == "connection" for f in plain for n, _ in f.headers)
    for forgery in plain:
        outcomes = [(f, refusal if f is forgery else KEPT_OUT) for f in made]
        assert forwarding.judge_anonymous(KEPT_OUT, outcomes).status == FAIL, forgery.label
        signed = [(f, refusal if f is forgery else THROUGH) for f in made]
        assert forwarding.judge_signed_in(THROUGH, signed).status == FAIL, forgery.label


def test_login_host_forgery_shows_in_the_location():
    assert forwarding.judge_login_host(302, f"{AUTH}/login?next=https%3A//app/probe-forged-tok", "tok",
                                       KEPT_OUT).status == FAIL
    assert forwarding.judge_login_host(302, f"{AUTH}/login", "tok", KEPT_OUT).status == OK
    assert forwarding.judge_login_host(404, None, "tok", KEPT_OUT).status == OK


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("baseline", [
    Decision(access.TO_LOGIN, 302, None), Decision(access.REFUSED, 401), THROUGH,
], ids=["login redirect without next", "401 without a redirect", "let through"])
def test_forwarding_checks_that_cannot_see_a_made_up_url_are_not_applicable_not_passed(baseline):
    """Without a next in the plain request's login redirect, a forged X-Original-URL that authsvc
    reads changes nothing visible: an unchanged answer is no pass."""
    made = forwarding.forgeries(APP, "x")
    assert forwarding.judge_anonymous(baseline, [(f, baseline) for f in made]).status == NOT_APPLICABLE
    assert forwarding.judge_login_host(302, f"{AUTH}/login", "x", baseline).status == NOT_APPLICABLE
    assert forwarding.judge_login_host(0, None, "x", KEPT_OUT).status == NOT_APPLICABLE
    changed = [(f, Decision(access.LET_THROUGH, 200) if f is made[0] else baseline) for f in made]
    if baseline.kind != access.LET_THROUGH:
        assert forwarding.judge_anonymous(baseline, changed).status == FAIL


# --- session cookies that are not sessions ------------------------------------------------------------------


def test_malformed_values_derive_from_an_issued_cookie_without_naming_it():
    issued = "eyJjc3JmIjoiU0VDUkVUIn0.Zx9aBQ.s1gn4tur3-SECRET"
    made = sessions.malformed_values(issued)
    assert all(issued not in label and "SECRET" not in label for label, _ in made)
    derived = [v for label, v in made if label.startswith("issued")]
    assert 5 <= len(derived) <= 6 and issued not in derived  # its half may be its first part
    assert len({v for _, v in made}) == len(made)
    assert any(v == "" for _, v in made) and any(len(v) >= 4096 for _, v in made)


def test_name_variants_are_the_other_prefixes_and_cases():
    assert sessions.name_variants("__Secure-authsvc_session") == [
        "__Host-authsvc_session", "__SECURE-AUTHSVC_SESSION", "__secure-authsvc_session",
        "authsvc_session"]


@pytest.mark.asvs("V7.2.1")
def test_any_malformed_cookie_let_through_or_a_server_error_fails():
    kept = [(f"c{i}", KEPT_OUT) for i in range(5)]
    assert sessions.judge_malformed(KEPT_OUT, kept).status == OK
    assert sessions.judge_malformed(KEPT_OUT, kept + [("truncated", THROUGH)]).status == FAIL
    # The app's own redirect is the app answering: the cookie got through.
    assert sessions.judge_malformed(KEPT_OUT, kept + [("renamed", Decision(access.ELSEWHERE, 302, location="/home"))]).status == FAIL
    assert sessions.judge_malformed(KEPT_OUT, kept + [("4 KiB", Decision(access.OTHER, 400))]).status == OK
    assert sessions.judge_malformed(KEPT_OUT, kept + [("huge", Decision(access.OTHER, 500))]).status == FAIL
    assert sessions.judge_health_check(KEPT_OUT, [("kube-probe/1.31", THROUGH)]).status == FAIL
    assert sessions.judge_health_check(KEPT_OUT, [(a, KEPT_OUT) for a in sessions.HEALTH_CHECK_AGENTS]).status == OK


@pytest.mark.asvs("V7.2.1", "V8.3.1")
@pytest.mark.parametrize("answer", [
    Decision(access.REFUSED, 401), Decision(access.REFUSED, 403), Decision(access.OTHER, 502),
    Decision(access.TO_LOGIN, 302, None), Decision(access.REFUSED, 401, location=f"{AUTH}/login"),
], ids=["401", "403", "502", "login without next", "401 with a login Location"])
def test_a_cookie_or_user_agent_answered_otherwise_than_the_plain_request_fails(answer):
    """A proxy that fails open passes the request on with no identity; the app refusing it (401,
    403) is not the proxy keeping the client out (authentik CVE-2026-25748, oauth2-proxy
    CVE-2026-34457)."""
    kept = [(f"c{i}", KEPT_OUT) for i in range(5)]
    found = sessions.judge_malformed(KEPT_OUT, kept + [("truncated", answer)])
    assert found.status == FAIL and "truncated" in found.detail
    found = sessions.judge_health_check(KEPT_OUT, [("kube-probe/1.31", answer), ("Traefik", KEPT_OUT)])
    assert found.status == FAIL and "kube-probe" in found.detail


@pytest.mark.parametrize("refusal", [PROXY_400, DROPPED], ids=["400", "connection closed"])
def test_a_cookie_the_proxy_or_authsvc_refuses_outright_passes(refusal):
    """authsvc answers two session cookies on its own host with a bare 400; a proxy may refuse a
    cookie header it cannot read the same way."""
    assert sessions.judge_malformed(KEPT_OUT, [("two session cookies", refusal), ("x", KEPT_OUT)]).status == OK


def test_a_deployment_that_refuses_anonymous_requests_with_401_passes_when_every_cookie_gets_401():
    refused = Decision(access.REFUSED, 401)
    assert sessions.judge_malformed(refused, [("x", refused), ("y", refused)]).status == OK
    assert sessions.judge_health_check(refused, [("kube-probe/1.31", refused)]).status == OK


# --- hostile next ------------------------------------------------------------------------------------------


@pytest.mark.asvs("V3.7.2", "V3.7.3")
@pytest.mark.parametrize("target", [
    "//evil.example", "///evil.example", "/\\evil.example", "\\\\evil.example", "/\t/evil.example",
    " /notes/", "/notes/ ", "https://evil.example/", "https://app.example.com@evil.example/",
    "https://app.example.com.evil.example/", "https://app.example.com:444/", "http://app.example.com/",
    "javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x", "https:evil.example",
    "https://evil\u3002example/", "/\uff0f\uff0fevil.example", "https://app.example.com\\@evil.example",
    "evil.example", "https://", "https://[::1]/", "/\r\nSet-Cookie: a=b", "ftp://app.example.com/",
    "https://auth.example.com./", "https://app.example.com:99999/",
], ids=repr)
def test_a_target_that_can_leave_the_deployment_is_a_problem(target):
    assert redirects.target_problem(target, TRUSTED) is not None


@pytest.mark.parametrize("target", [
    None, "", "/", "/notes/page?x=1", "/%2f%2fevil.example", "https://app.example.com/notes/",
    "HTTPS://APP.EXAMPLE.COM/notes/", "https://app.example.com:443/notes/", f"{AUTH}/account",
])
def test_a_target_on_the_deployment_is_fine(target):
    assert redirects.target_problem(target, TRUSTED) is None


def test_every_hostile_next_sample_is_off_the_deployment_or_tests_encoding_and_markup():
    path_shaped = {"encoded slashes", "encoded backslash", "encoded CRLF header injection", "markup in next",
                   "oversized"}
    for label, value in redirects.samples("auth.example.com", "app.example.com"):
        assert "{" not in value
        assert (redirects.target_problem(value, TRUSTED) is not None) != (label in path_shaped), label


@pytest.mark.parametrize(("page", "found"), [
    ('<input type="hidden" name="next" value="https://app.example.com/a?b=1&amp;c=2">',
     "https://app.example.com/a?b=1&c=2"),
    ("<INPUT value='//evil.example' NAME='next' type=hidden>", "//evil.example"),
    ("<input name=next value=/x>", "/x"),
    ('<input name="next">', ""),
    ('<input name="nextish" value="//evil">', None),
    ("<p>no form</p>", None),
])
def test_hidden_next_is_read_in_any_markup(page, found):
    assert redirects.hidden_next(page) == found


@pytest.mark.parametrize(("status", "location", "page", "cookies_set"), [
    (303, "https://evil.example/", "", []),
    (303, "//evil.example", "", []),
    (302, "/\\evil.example", "", []),
    (200, None, '<input name="next" value="https://evil.example/">', []),
    (200, None, '<input name="next" value="javascript:alert(1)">', []),
    (200, None, "<form>", ["probe_injected"]),
    (200, None, "<p><script>alert(1)</script></p>", []),
    (500, None, "", []),
], ids=["redirect off-site", "redirect scheme-relative", "redirect backslash", "form off-site",
        "form javascript", "header injected", "markup reflected", "server error"])
def test_a_login_page_answer_that_lets_a_hostile_next_through_is_a_problem(status, location, page, cookies_set):
    value = "/\"><script>alert(1)</script>" if "script" in page else "https://evil.example/"
    assert redirects.judge_answer("x", value, status, location, page, cookies_set, TRUSTED)


@pytest.mark.parametrize(("location", "page"), [
    ("https://[::1", ""), ("https://[x/login", ""), (None, '<input type="hidden" name="next" value="https://[::1">'),
], ids=["Location", "Location with a path", "form field"])
def test_an_unparsable_target_in_an_answer_is_a_problem_not_a_crash(location, page):
    status = 303 if location else 200
    assert "unparsable" in (redirects.judge_answer("x", "https://[::1", status, location, page, [], TRUSTED) or "")


@pytest.mark.parametrize(("status", "location", "page"), [
    (200, None, '<form><input type="hidden" name="csrf_token" value="t"></form>'),
    (200, None, "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"),
    (303, f"{AUTH}/", ""), (303, "/", ""), (400, None, ""), (414, None, ""),
])
def test_a_login_page_that_drops_or_neutralises_next_is_fine(status, location, page):
    assert redirects.judge_answer("x", "/\"><script>alert(1)</script>", status, location, page, [], TRUSTED) is None


@pytest.mark.asvs("V3.7.2")
def test_a_hostile_next_the_login_page_does_not_answer_is_a_problem():
    found = redirects.judge_next([None, redirects.no_answer("oversized")], 2, False)
    assert found.status == FAIL and "oversized" in found.detail and "no answer" in found.detail


def test_judge_next_counts():
    assert redirects.judge_next([None, None], 2, False).status == OK
    assert redirects.judge_next([None, "x: bad"], 2, True).status == FAIL
    assert redirects.judge_next([], 0, False).status == NOT_APPLICABLE


# --- sign-in and logout --------------------------------------------------------------------------------------

LOGIN_PAGE = """<html><form method="post" action="/search"><input name="q"></form>
<FORM METHOD="POST" ACTION="/login?next=x"><input type="hidden" name="csrf_token" value="tok&amp;1">
<input type="hidden" name="next" value="https://app.example.com/"><input id=u name=username type=text>
<input name=password type=password><input name=remember type=checkbox value=on></FORM>"""


def test_the_login_form_is_found_among_others_with_its_hidden_fields():
    form = signin.login_form(LOGIN_PAGE)
    assert form is not None and form.action == "/login?next=x"
    assert form.fields == {"csrf_token": "tok&1", "next": "https://app.example.com/"}
    assert form.types["remember"] == "checkbox"
    assert signin.logout_form(LOGIN_PAGE) is None
    logout = signin.logout_form('<form method=post action="/logout"><input type=hidden name=csrf_token value=t>')
    assert logout is not None and logout.fields == {"csrf_token": "t"}


@pytest.mark.parametrize("page", [
    "", "<form", "<<form method=post>>", "<form method=post><input name=password type=password",
    "<![CDATA[<form>", "<form method=get><input type=password name=p></form>", "\x00" * 100, "<" * 10000,
])
def test_hostile_markup_never_breaks_the_form_reader(page):
    signin.forms(page)
    found = signin.login_form(page)
    assert found is None or found.method == "post"


@pytest.mark.asvs("V6.3.1")
@pytest.mark.parametrize("action", [
    "https://evil.example/collect", "//evil.example/collect", "https://auth.example.com.evil.example/login",
    "http://auth.example.com/login", "https://auth.example.com:444/login", "/\\evil.example/login",
    "/l\u00f6gin", "/login\x00", "https://[::1/login", "https://auth.example.com:99999/login",
    "javascript:alert(1)",
], ids=repr)
def test_a_form_posting_anywhere_but_the_login_host_gets_no_password(action):
    assert signin.action_problem(action, f"{AUTH}/login?next=x", AUTH)


@pytest.mark.parametrize("action", ["/login", "", "?next=x", "login", " /login ", f"{AUTH}/login",
                                    "https://AUTH.example.com:443/logout"], ids=repr)
def test_a_form_posting_to_the_login_host_may_be_posted(action):
    assert signin.action_problem(action, f"{AUTH}/login?next=x", AUTH) is None


@pytest.mark.parametrize(("status", "location", "arrived", "text"), [
    (401, None, None, "not correct"), (429, None, None, "throttled"), (400, None, None, "refused"),
    (403, None, None, "refused"), (200, None, None, "not a redirect"),
    (303, "/login/mfa?next=x", None, "second step"),
    (303, APP, KEPT_OUT, "does not reach the app"),
])
def test_a_sign_in_that_does_not_reach_the_app_fails_and_says_why(status, location, arrived, text):
    found = signin.judge_sign_in(status, location, arrived)
    assert found.status == FAIL and text in found.detail


@pytest.mark.asvs("V7.4.1")
@pytest.mark.parametrize(("attempts", "status"), [
    ([(0.0, KEPT_OUT), (1.1, KEPT_OUT)], OK),
    ([(0.0, THROUGH), (0.5, THROUGH), (0.9, KEPT_OUT), (1.1, KEPT_OUT), (1.5, KEPT_OUT)], OK),
    ([(0.0, KEPT_OUT)], NOT_APPLICABLE),
    ([(0.0, KEPT_OUT), (1.1, KEPT_OUT), (1.2, THROUGH), (1.3, KEPT_OUT)], FAIL),
    ([(0.0, THROUGH), (1.05, THROUGH)], FAIL),
    ([(0.0, THROUGH), (0.5, THROUGH)], FAIL),
    ([(0.0, THROUGH), (1.2, KEPT_OUT)], OK),
    ([(0.0, THROUGH), (1.1, Decision(access.ELSEWHERE, 302, location="/notes/home"))], FAIL),
    ([], NOT_APPLICABLE),
])
def test_logout_must_end_access_within_a_second(attempts, status):
    assert signin.judge_logout(303, attempts).status == status


@pytest.mark.asvs("V7.4.1")
def test_old_cookies_signing_in_at_the_login_page_on_any_asking_fail_replay():
    assert signin.judge_replays([(200, LOGIN_PAGE)] * 3).status == OK
    found = signin.judge_replays([(200, LOGIN_PAGE), (303, ""), (200, LOGIN_PAGE)])
    assert found.status == FAIL and "request 2 of 3" in found.detail
    assert signin.judge_replays([]).status == NOT_APPLICABLE


def test_a_failed_logout_post_and_a_surviving_session_fail():
    assert signin.judge_logout(500, [(0.0, KEPT_OUT)]).status == FAIL
    assert signin.judge_replay(303, "").status == FAIL
    assert signin.judge_replay(200, "<p>Welcome back</p>").status == FAIL
    assert signin.judge_replay(200, LOGIN_PAGE).status == OK


# --- reports --------------------------------------------------------------------------------------------------


def results_of(*statuses: str) -> list[Result]:
    return [Result(check, Finding(status, f"detail \x1b[31m{check.id}\r\nforged line"), APP)
            for check, status in zip(CHECKS, statuses)]


def test_the_table_escapes_what_the_deployment_said_and_gives_a_fix_for_each_failure():
    shown_table = report.table(results_of(OK, FAIL, NOT_APPLICABLE, FAIL), AUTH, APP)
    assert "\x1b" not in shown_table and "\r" not in shown_table
    assert "\\x1b[31m" in shown_table
    assert shown_table.count("fix: ") == 2
    assert re.search(r"^FAIL\s+header\.hsts\s", shown_table, re.MULTILINE)
    assert shown_table.splitlines()[-1] == "1 passed, 2 failed, 1 not applicable"
    assert "\n" not in shown("a\nb") and len(shown("x" * 500)) < 200


def test_json_report_lists_every_result_with_a_fix_for_failures():
    data = report.to_json(results_of(OK, FAIL, NOT_APPLICABLE), AUTH, APP)
    assert data["summary"] == {"pass": 1, "fail": 1, "not_applicable": 1}
    assert [("fix" in r) for r in data["results"]] == [False, True, False]
    json.dumps(data)


def test_sarif_report_is_sarif_2_1_0_with_every_check_as_a_rule():
    log = report.to_sarif(results_of(OK, FAIL, NOT_APPLICABLE), CHECKS)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    run = log["runs"][0]
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rules == [c.id for c in CHECKS] and len(set(rules)) == len(rules)
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert (result["level"] == "error") == (result["kind"] == "fail")
        assert result["level"] in {"none", "error"} and result["message"]["text"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == APP
    assert [r["kind"] for r in run["results"]] == ["pass", "fail", "notApplicable"]


def test_every_check_has_a_unique_id_a_title_and_a_fix():
    ids = [c.id for c in CHECKS]
    assert len(ids) == len(set(ids)) and len(ids) >= 20
    assert all(re.fullmatch(r"[a-z]+\.[a-z_]+", i) for i in ids)
    assert all(c.title and c.fix.endswith(".") for c in CHECKS)


# --- the command ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://auth.example.com", "auth.example.com", "https://", "https://u:p@auth.example.com",
                                 "https://auth.example.com/#x", "javascript:alert(1)"])
def test_only_plain_https_urls_are_probed(url):
    assert url_problem("--auth-url", url)


def test_resolve_pins_are_parsed_like_curls():
    assert parse_resolve(["Auth.Example.com:8443:127.0.0.1", "app.example.com:443:[::1]"]) == {
        ("auth.example.com", 8443): "127.0.0.1", ("app.example.com", 443): "::1"}
    for bad in ("auth.example.com:127.0.0.1", "auth.example.com:x:1.2.3.4", ":443:1.2.3.4", "a:443:"):
        with pytest.raises(ValueError):
            parse_resolve([bad])


def test_probe_command_refuses_bad_usage_and_an_unreachable_deployment_with_exit_2(capsys, tmp_path, monkeypatch):
    assert cli.main(["probe", "--auth-url", "http://auth.example.com", "--app-url", APP]) == 2
    assert cli.main(["probe", "--auth-url", AUTH, "--app-url", APP, "--password-stdin"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert cli.main(["probe", "--auth-url", AUTH, "--app-url", APP, "--user", "probe", "--password-stdin"]) == 2
    assert "no password" in capsys.readouterr().err
    # Nothing listens on port 9 of loopback: the probe says it checked nothing, and writes no report.
    assert cli.main(["probe", "--auth-url", "https://auth.example.com:9", "--app-url", "https://app.example.com:9/",
                     "--resolve", "auth.example.com:9:127.0.0.1", "--resolve", "app.example.com:9:127.0.0.1",
                     "--timeout", "2", "--json", str(tmp_path / "r.json")]) == 2
    assert "nothing was checked" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
