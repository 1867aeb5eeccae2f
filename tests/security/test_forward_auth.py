"""Forward-auth threat list: what a client can make /auth/verify say about a request it proxies.

A proxy describes the original request in headers (nginx: X-Original-URL/-Method; Traefik and Caddy:
X-Forwarded-Proto/-Host/-Uri/-Method). A client can send the same headers, so they count only
behind a trusted proxy (oauth2-proxy trusted them from anyone: X-Forwarded-Uri spoofing,
CVE-2026-40575), and even then the URL becomes the login page's next only through validate_next:
no value may put a Location outside the allow-list. Also here: redirect mode only for anonymous
requests, verify never sets a cookie, the login page a forwarded browser lands on, and the shared
(SSO) cookie domain.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authsvc.core import config
from authsvc.rules.forward_auth import (
    LoginRedirect,
    OriginalRequest,
    login_location,
    login_url,
    original_request,
)
from authsvc.rules.redirects import AllowedApp, build_rules, validate_next
from tests.conftest import (
    HTTPS,
    TEST_POLICY,
    add_user,
    build_app,
    login,
    new_client,
    set_cookie_headers,
)

PUBLIC = "https://auth.example.test"
LOGIN = f"{PUBLIC}/login"
NOTES = "https://app.example.test/notes"
APPS = [AllowedApp("https://app.example.test", "/notes", "Notes"), AllowedApp("https://grafana.example.test")]
RULES = build_rules(PUBLIC, APPS)
REDIRECT = LoginRedirect(LOGIN, RULES, trusted_proxies=1)


def policy_with_apps(tmp_path) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(Path(TEST_POLICY).read_text() + "".join(
        f'\n[[redirects.apps]]\norigin = "{a.origin}"\npath_prefix = "{a.path_prefix}"\n'
        + (f'name = "{a.name}"\n' if a.name else "") for a in APPS))
    return str(path)


@pytest.fixture
def proxied(tmp_path, clock):
    """authsvc behind one trusted proxy, apps from the policy (the env list is unset)."""
    return build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_POLICY=policy_with_apps(tmp_path),
                     AUTHSVC_REDIRECT_ALLOWED_ORIGINS=None)


@pytest.fixture
def direct(tmp_path, clock):
    """authsvc reachable without a proxy: AUTHSVC_TRUSTED_PROXIES=0 (the default)."""
    return build_app(tmp_path, clock, AUTHSVC_POLICY=policy_with_apps(tmp_path), AUTHSVC_REDIRECT_ALLOWED_ORIGINS=None)


def verify(app, mode: str | None = "1", headers=None, environ=None, client=None, method="GET"):
    """Call /auth/verify as a proxy would. ``environ`` sets raw header values (CR/LF included) that
    Werkzeug's header API would refuse to build."""
    client = client or new_client(app)
    path = "/auth/verify" + (f"?redirect={mode}" if mode is not None else "")
    return client.open(path, method=method, headers=headers or {}, environ_overrides=environ or {})


def next_of(location: str) -> str | None:
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == LOGIN, location
    query = parse_qs(parts.query, keep_blank_values=True)
    assert set(query) <= {"next"} and len(query.get("next", [])) <= 1, location
    return query["next"][0] if query else None


def assert_on_allow_list(location: str) -> None:
    """The property every Location verify sends must have."""
    assert "\r" not in location and "\n" not in location
    target = next_of(location)
    if target is not None:
        decision = validate_next(target, RULES)
        assert decision.accepted and decision.target == target and decision.app is not None, (location, decision)


# --- reconstructing the original URL (pure) -------------------------------------------------------


@pytest.mark.asvs("V4.1.3")
def test_no_trusted_proxy_means_no_original_url_whatever_the_headers_say():
    headers = {"X-Original-URL": f"{NOTES}/a", "X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a"}
    assert original_request(headers, "https", trusted_proxies=0) == OriginalRequest(None, "GET")


def test_nginx_x_original_url_is_taken_as_sent():
    assert original_request({"X-Original-URL": f"{NOTES}/a?b=c"}, "http", 1).url == f"{NOTES}/a?b=c"


def test_traefik_and_caddy_headers_are_put_together_with_the_trusted_scheme():
    headers = {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a?b=c"}
    assert original_request(headers, "https", 1).url == f"{NOTES}/a?b=c"
    assert original_request({**headers, "X-Forwarded-Host": "app.example.test:8443"}, "https", 1).url == \
        "https://app.example.test:8443/notes/a?b=c"


def test_x_original_url_wins_over_x_forwarded_headers():
    headers = {"X-Original-URL": f"{NOTES}/nginx", "X-Forwarded-Host": "other.example.test", "X-Forwarded-Uri": "/x"}
    assert original_request(headers, "https", 1).url == f"{NOTES}/nginx"


@pytest.mark.parametrize("headers", [
    {"X-Original-URL": "/notes/relative"},                     # would read as a path on authsvc itself
    {"X-Original-URL": "javascript:alert(1)//https://app.example.test/"},
    {"X-Original-URL": "data:text/html,<script>"},
    {"X-Original-URL": f"{NOTES}/a b"},
    {"X-Original-URL": f"{NOTES}/\r\nSet-Cookie: x=y"},
    {"X-Original-URL": f"{NOTES}/\u00e9"},
    {"X-Original-URL": ""},
    # Not scheme://host/target (well_formed_original_url): nginx built these from a Host header
    # ("app:443?" routes by the name before the colon), and read as a URL each moves the path
    # the rules judge (to "/") or names another host; refused, not mended.
    {"X-Original-URL": "https://app.example.test:443?/admin/x"},
    {"X-Original-URL": "https://app.example.test?/admin/x"},
    {"X-Original-URL": "https://app.example.test#/admin/x"},
    {"X-Original-URL": "https://app.example.test:443#x/admin"},
    {"X-Original-URL": "https://app.example.test:443?"},
    {"X-Original-URL": "https://app.example.test"},
    {"X-Original-URL": "https://alice@app.example.test/admin/x"},
    {"X-Original-URL": "https://app.example.test:x/admin/x"},
    {"X-Original-URL": "https://app.example.test:443:1/admin/x"},
    {"X-Original-URL": "https:///admin/x"},
    {"X-Original-URL": "https://[zz]/admin/x"},
    {"X-Forwarded-Host": "app.example.test"},                  # no URI: not guessed
    {"X-Forwarded-Uri": "/notes/a"},                           # no host: not guessed
    {"X-Forwarded-Host": "app.example.test, evil.example", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "evil.example@app.example.test", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "app.example.test@evil.example", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "evil.example/app.example.test", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "evil.example#app.example.test", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "evil.example\\app.example.test", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "app.example.test\r\nX-Evil: 1", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "app.example.test.", "X-Forwarded-Uri": "/notes/a"},
    {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "@evil.example/notes"},
    {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "notes/a"},
    {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/\r\nX-Evil: 1"},
    {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a b"},
], ids=lambda h: ascii(h)[:70].replace("\\", "/"))  # no backslash: mutmut re-runs a test by its id
def test_unusable_proxy_descriptions_give_no_url(headers):
    assert original_request(headers, "https", 1).url is None


def test_a_scheme_other_than_http_or_https_gives_no_url():
    headers = {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a"}
    assert original_request(headers, "javascript", 1).url is None


@pytest.mark.parametrize("headers, method", [
    ({}, "GET"),                                      # nginx configs often leave it out
    ({"X-Original-Method": "POST"}, "POST"),
    ({"X-Forwarded-Method": "put"}, "PUT"),
    ({"X-Original-Method": "HEAD", "X-Forwarded-Method": "POST"}, "HEAD"),
    ({"X-Original-Method": "G E T"}, ""),
    ({"X-Original-Method": "GET\r\nX: y"}, ""),
    ({"X-Forwarded-Method": "ĜET"}, ""),
])
def test_method_headers(headers, method):
    assert original_request({"X-Original-URL": f"{NOTES}/a", **headers}, "https", 1).method == method


# --- the login Location (pure) --------------------------------------------------------------------


def test_login_url_is_absolute_on_the_public_url_and_relative_without_one():
    assert login_url("https://auth.example.com") == "https://auth.example.com/login"
    assert login_url(None) == "/login"


def test_allowed_original_url_becomes_next_re_serialised_and_quoted():
    location, decision = login_location(REDIRECT, OriginalRequest(f"{NOTES}/a?x=1&y=%20#frag", "GET"))
    assert decision.accepted
    assert location == f"{LOGIN}?next=https://app.example.test/notes/a%3Fx%3D1%26y%3D%2520%23frag"
    assert next_of(location) == f"{NOTES}/a?x=1&y=%20#frag"


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", ""])
def test_a_request_that_cannot_be_repeated_as_get_gets_no_next(method):
    assert login_location(REDIRECT, OriginalRequest(f"{NOTES}/a", method)) == (LOGIN, None)


@pytest.mark.asvs("V3.7.2")
def test_off_list_original_url_gives_login_without_next_and_says_why():
    location, decision = login_location(REDIRECT, OriginalRequest("https://evil.example/notes", "GET"))
    assert location == LOGIN
    assert decision.reason == "host_not_allowed"


# --- /auth/verify behind a proxy (Flask client) ---------------------------------------------------


@pytest.mark.asvs("V4.1.3")
def test_x_original_url_from_a_client_is_ignored_without_trusted_proxies(direct):
    response = verify(direct, headers={"X-Original-URL": f"{NOTES}/a"})
    assert response.status_code == 302
    assert response.headers["Location"] == LOGIN


@pytest.mark.asvs("V4.1.3")
def test_x_forwarded_host_from_a_client_is_ignored_without_trusted_proxies(direct):
    response = verify(direct, headers={"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a",
                                       "X-Forwarded-Proto": "https"})
    assert response.headers["Location"] == LOGIN


def test_x_original_url_is_honoured_behind_a_trusted_proxy(proxied):
    response = verify(proxied, headers={"X-Original-URL": f"{NOTES}/a"})
    assert response.status_code == 302
    assert next_of(response.headers["Location"]) == f"{NOTES}/a"


def test_traefik_style_headers_use_the_trusted_x_forwarded_proto(proxied):
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/notes/a",
               "X-Forwarded-Method": "GET", "X-Forwarded-For": "203.0.113.9"}
    response = new_client(proxied).get("/auth/verify?redirect=1", headers=headers, base_url="http://authsvc:8000")
    assert next_of(response.headers["Location"]) == f"{NOTES}/a"
    http = new_client(proxied).get("/auth/verify?redirect=1", base_url="http://authsvc:8000",
                                   headers={**headers, "X-Forwarded-Proto": "http"})
    assert next_of(http.headers["Location"]) is None   # an http app URL is a downgrade: refused


HOSTILE_ORIGINAL_URLS = [
    "https://evil.example/notes",
    "https://app.example.test.evil.example/notes",
    "https://app.example.test@evil.example/notes",
    "https://app.example.test%40evil.example/notes",
    "https://evil.example\\@app.example.test/notes",
    "https://app.example.test:444/notes",
    "http://app.example.test/notes",
    "https:/app.example.test/notes",
    "https:///evil.example/notes",
    "https://app.example.test/notes-evil",
    "https://app.example.test/other",
    "https://app.example.test/notes/../admin",
    "https://app.example.test/notes/%2e%2e/admin",
    "https://app.example.test/notes//evil.example",
    "https://app.example.test\u3002evil.example/notes",
    "https://APP.example.test\uff0eevil.example/notes",
    "javascript:alert(document.domain)//https://app.example.test/notes",
    "JaVaScRiPt:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "//evil.example/notes",
    "/\\evil.example/notes",
    "https://app.example.test/notes\r\nLocation: https://evil.example/",
    "https://app.example.test/notes\x00evil",
    "\thttps://evil.example/",
    "https://" + "a" * 3000 + ".example/",
]


@pytest.mark.asvs("V3.7.2", "V4.1.3")
@pytest.mark.parametrize("value", HOSTILE_ORIGINAL_URLS, ids=lambda v: repr(v)[:60])
def test_hostile_x_original_url_never_yields_an_off_list_location(proxied, value):
    for mode in ("1", "401"):
        response = verify(proxied, mode, environ={"HTTP_X_ORIGINAL_URL": value})
        assert response.status_code == {"1": 302, "401": 401}[mode]
        assert next_of(response.headers["Location"]) is None, response.headers["Location"]


HOSTILE_FORWARDED = [
    ("evil.example", "/notes/a"),
    ("app.example.test@evil.example", "/notes/a"),
    ("evil.example@app.example.test", "/notes/a"),
    ("evil.example/app.example.test", "/notes/a"),
    ("evil.example#app.example.test", "/notes/a"),
    ("evil.example?app.example.test", "/notes/a"),
    ("evil.example\\app.example.test", "/notes/a"),
    ("app.example.test, evil.example", "/notes/a"),
    ("evil.example, app.example.test", "/notes/a"),
    ("app.example.test\r\nX-Evil: 1", "/notes/a"),
    ("app.example.test:notaport", "/notes/a"),
    ("app.example.test:444", "/notes/a"),
    ("app.example.test", "//evil.example/notes"),
    ("app.example.test", "/\\evil.example/notes"),
    ("app.example.test", "@evil.example/notes"),
    ("app.example.test", "/notes/../admin"),
    ("app.example.test", "/notes/%2e%2e/admin"),
    ("app.example.test", "/notes-evil"),
    ("app.example.test", "/notes/\r\nLocation: https://evil.example/"),
    ("app.example.test", "javascript:alert(1)"),
]


@pytest.mark.asvs("V3.7.2", "V4.1.3")
@pytest.mark.parametrize("host, uri", HOSTILE_FORWARDED, ids=lambda v: repr(v)[:50])
def test_hostile_x_forwarded_host_or_uri_never_yields_an_off_list_location(proxied, host, uri):
    environ = {"HTTP_X_FORWARDED_HOST": host, "HTTP_X_FORWARDED_URI": uri, "HTTP_X_FORWARDED_PROTO": "https"}
    response = verify(proxied, environ=environ)
    assert response.status_code == 302
    assert next_of(response.headers["Location"]) is None, response.headers["Location"]


@pytest.mark.parametrize("value", [f"{NOTES}/a", f"{NOTES}?q=%zz", "https://grafana.example.test/d/x?from=now-1h",
                                   f"{NOTES}/caf%C3%A9", f"{NOTES}/a'\"<b>"])
def test_every_location_verify_sends_is_on_the_allow_list(proxied, value):
    location = verify(proxied, environ={"HTTP_X_ORIGINAL_URL": value}).headers["Location"]
    assert next_of(location) is not None
    assert_on_allow_list(location)


def test_rejected_original_url_is_audited(proxied, caplog):
    with caplog.at_level(logging.INFO, logger="authsvc.audit"):
        verify(proxied, headers={"X-Original-URL": "https://evil.example/notes"})
    events = [r.getMessage() for r in caplog.records if '"redirect_rejected"' in r.getMessage()]
    assert events and '"source":"verify"' in events[0] and '"reason":"host_not_allowed"' in events[0]


@pytest.mark.parametrize("url", ["https://wiki.example.test/magic-login?token=RESET-CANARY-7b1f",
                                 f"{NOTES}/reset?token=RESET-CANARY-7b1f&state=" + "s" * 3000],
                         ids=["host_not_allowed", "too_long"])
def test_a_rejected_original_url_is_audited_without_its_query(proxied, caplog, url):
    # Refused for its host or its length, the URL a signed-out user opened went to the audit log with
    # its query: a reset or magic-link token (found by review, session 14).
    with caplog.at_level(logging.INFO, logger="authsvc.audit"):
        verify(proxied, headers={"X-Original-URL": url})
    events = [r.getMessage() for r in caplog.records if '"redirect_rejected"' in r.getMessage()]
    assert events and f'"length":{len(url)}' in events[0]
    assert "CANARY" not in "".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("header", ["X-Original-Method", "X-Forwarded-Method"])
def test_non_get_original_request_is_sent_to_login_without_next(proxied, header):
    response = verify(proxied, headers={"X-Original-URL": f"{NOTES}/a", header: "POST"})
    assert response.status_code == 302
    assert response.headers["Location"] == LOGIN


def test_head_original_request_keeps_next(proxied):
    response = verify(proxied, headers={"X-Original-URL": f"{NOTES}/a", "X-Original-Method": "HEAD"})
    assert next_of(response.headers["Location"]) == f"{NOTES}/a"


def test_login_url_is_relative_without_a_public_url(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_ENV="development", AUTHSVC_PUBLIC_URL=None, AUTHSVC_TRUSTED_PROXIES="1")
    response = verify(app, headers={"X-Original-URL": "https://app.example.test/a"})
    assert response.headers["Location"] == "/login?next=https://app.example.test/a"


# --- redirect mode only for the anonymous; plain 401 unless asked --------------------------------


@pytest.mark.asvs("V7.2.1")
def test_anonymous_without_redirect_mode_gets_a_bare_401(proxied):
    response = verify(proxied, mode=None, headers={"X-Original-URL": f"{NOTES}/a"})
    assert response.status_code == 401
    assert "Location" not in response.headers
    assert response.data == b""


@pytest.mark.parametrize("mode", ["0", "2", "303", "true", "", "https://evil.example/"])
def test_unknown_redirect_mode_gets_a_bare_401(proxied, mode):
    response = verify(proxied, mode=mode, headers={"X-Original-URL": f"{NOTES}/a"})
    assert response.status_code == 401
    assert "Location" not in response.headers


def test_nginx_mode_is_a_401_carrying_the_login_location(proxied):
    response = verify(proxied, mode="401", headers={"X-Original-URL": f"{NOTES}/a"})
    assert response.status_code == 401
    assert next_of(response.headers["Location"]) == f"{NOTES}/a"


@pytest.mark.asvs("V7.2.1")
@pytest.mark.parametrize("mode", [None, "1", "401"])
def test_signed_in_request_gets_200_with_identity_and_never_a_redirect(proxied, mode):
    user = add_user(proxied)
    client = new_client(proxied)
    assert login(client).status_code == 303
    response = verify(proxied, mode, headers={"X-Original-URL": f"{NOTES}/a"}, client=client)
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.headers["X-Auth-User"] == "alice"
    assert response.headers["X-Auth-User-Id"] == str(user.id)


def test_head_is_answered_like_get(proxied):
    add_user(proxied)
    client = new_client(proxied)
    login(client)
    assert verify(proxied, None, client=client, method="HEAD").status_code == 200
    assert verify(proxied, "1", method="HEAD").status_code == 302


EVERY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "MKCOL",
                "BREW", "get", "Options"]


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("method", EVERY_METHOD)
def test_every_method_is_answered_as_get_is_and_no_automatic_options_lets_a_request_through(proxied, method):
    """Envoy's ext_authz asks with the original request's method: an OPTIONS or a 405 answered by
    the framework (Flask answers OPTIONS 200 with Allow by itself) would let the request through."""
    add_user(proxied)
    signed_in = new_client(proxied)
    assert login(signed_in).status_code == 303
    anonymous = verify(proxied, None, headers={"X-Original-URL": f"{NOTES}/a"}, method=method)
    redirected = verify(proxied, "1", headers={"X-Original-URL": f"{NOTES}/a"}, method=method)
    ok = verify(proxied, None, headers={"X-Original-URL": f"{NOTES}/a"}, client=signed_in, method=method)
    assert anonymous.status_code == 401 and "Allow" not in anonymous.headers
    assert redirected.status_code == 302 and redirected.headers["Location"].startswith(LOGIN)
    assert ok.status_code == 200 and ok.headers["X-Auth-User"] == "alice"


# --- verify never sets a cookie ------------------------------------------------------------------


@pytest.mark.asvs("V7.2.1")
def test_no_set_cookie_on_any_verify_answer(proxied):
    add_user(proxied)
    signed_in = new_client(proxied)
    assert login(signed_in, remember=True).status_code == 303
    answers = [verify(proxied, mode) for mode in (None, "1", "401")]
    answers += [verify(proxied, mode, client=signed_in) for mode in (None, "1", "401")]
    answers.append(verify(proxied, "1", headers={"Cookie": "__Host-authsvc_session=garbage"}))
    for response in answers:
        assert set_cookie_headers(response) == [], response.status_code


def test_no_set_cookie_when_the_session_binding_fails_in_verify(proxied):
    """A changed user agent ends the session (strong protection). Flask-Login then empties the session
    cookie, but that Set-Cookie must not ride on verify's answer: the proxy would drop it or hand it
    to the app's response."""
    add_user(proxied)
    client = new_client(proxied)
    login(client)
    response = verify(proxied, "1", headers={"User-Agent": "a different browser"}, client=client)
    assert response.status_code == 302
    assert set_cookie_headers(response) == []
    assert verify(proxied, None, client=client).status_code == 401   # and the session is over


def test_remember_me_cookie_alone_does_not_pass_verify(proxied):
    """Remember-me is restored by /login (which can rotate the cookie), never by verify."""
    add_user(proxied)
    client = new_client(proxied)
    login(client, remember=True)
    client.delete_cookie("__Host-authsvc_session", domain=HTTPS.split("://")[1])
    response = verify(proxied, "1", headers={"X-Original-URL": f"{NOTES}/a"}, client=client)
    assert response.status_code == 302
    assert set_cookie_headers(response) == []
    back = client.get(f"/login?next={NOTES}/a")
    assert back.status_code == 303 and back.headers["Location"] == f"{NOTES}/a"


# --- the login page a forwarded browser lands on -------------------------------------------------


def test_login_page_names_the_app_next_belongs_to(proxied):
    page = new_client(proxied).get(f"/login?next={NOTES}/a").get_data(as_text=True)
    assert "to continue to <strong>Notes</strong>" in page
    assert f'name="next" value="{NOTES}/a"' in page
    assert "<title>Sign in to Notes" in page


@pytest.mark.parametrize("next_url", ["https://evil.example/", "https://app.example.test/notes-evil",
                                      "https://grafana.example.test/"])
def test_login_page_names_no_app_for_an_off_list_or_unnamed_target(proxied, next_url):
    page = new_client(proxied).get(f"/login?next={next_url}").get_data(as_text=True)
    assert "to continue to" not in page


def test_login_page_has_no_inline_script_or_style_and_labels_every_field(proxied):
    page = new_client(proxied).get(f"/login?next={NOTES}/a").get_data(as_text=True)
    # The one script is the passkey button's, a static file of this origin, and nothing runs inline.
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.IGNORECASE | re.DOTALL)
    assert page.lower().count("<script") == len(scripts) <= 1 and all(body == "" for body in scripts)
    assert re.findall(r"<script\b([^>]*)>", page, re.IGNORECASE) in (
        [], [' src="/static/passkeys.js" defer'])
    assert "<style" not in page.lower()
    assert not re.search(r"\s(style|on[a-z]+)=", page), "inline style or event handler"
    for field in re.findall(r'<input id="([^"]+)"', page):
        assert f'<label for="{field}">' in page, field
    assert 'autocomplete="current-password"' in page and 'autocomplete="username"' in page


def test_login_error_is_announced_and_tied_to_the_fields(proxied):
    add_user(proxied)
    client = new_client(proxied)
    page = login(client, password="wrong password, long enough").get_data(as_text=True)
    assert re.search(r'<p class="error" role="alert" id="form-error">', page)
    assert page.count('aria-describedby="form-error"') == 2
    assert page.count('aria-invalid="true"') == 2
    assert re.search(r'id="password"[^>]*autofocus', page, re.DOTALL), "focus returns to the password"


# --- single sign-on: one cookie for every host under AUTHSVC_COOKIE_DOMAIN -----------------------


@pytest.mark.asvs("V3.3.1")
def test_shared_cookie_domain_uses_secure_prefix_and_reaches_the_app_host(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_COOKIE_DOMAIN=".example.test", AUTHSVC_TRUSTED_PROXIES="1")
    add_user(app)
    client = new_client(app)
    cookies = set_cookie_headers(login(client, remember=True))
    session = next(c for c in cookies if c.startswith("__Secure-authsvc_session="))
    assert "Domain=example.test" in session and "Secure" in session and "HttpOnly" in session
    # Only the session is shared: remember-me and device cookies are credentials no app needs.
    others = [c for c in cookies if c is not session]
    assert {c.split("=", 1)[0] for c in others} == {"__Host-authsvc_remember", "__Host-authsvc_device"}
    assert all("Domain=" not in c and "Secure" in c and "Path=/;" in c for c in others), others
    # The browser sends the cookie to app.example.test too; there nginx's subrequest carries it.
    response = client.get("/auth/verify", base_url="https://app.example.test")
    assert response.status_code == 200 and response.headers["X-Auth-User"] == "alice"


@pytest.mark.asvs("V3.3.1")
def test_without_a_cookie_domain_cookies_stay_host_only(app, user):
    cookies = set_cookie_headers(login(new_client(app)))
    assert cookies and all(c.startswith("__Host-") and "Domain=" not in c for c in cookies)


@pytest.mark.asvs("V3.3.1")
@pytest.mark.parametrize("domain, public_url, problem", [
    ("co.uk", "https://auth.example.co.uk", "public suffix"),
    (".github.io", "https://me.github.io", "public suffix"),
    ("test", "https://auth.test", "public suffix"),
    (".", "https://auth.example.test", "public suffix"),
    ("example.test:443", "https://auth.example.test", "not a domain"),
    ("*.example.test", "https://auth.example.test", "not a domain"),
    (".other.test", "https://auth.example.test", "does not cover"),
    ("ple.test", "https://auth.example.test", "does not cover"),       # a suffix, not a label boundary
    ("app.example.test", "https://auth.example.test", "does not cover"),
    (".example.test", None, "needs AUTHSVC_PUBLIC_URL"),
])
def test_cookie_domain_refused(domain, public_url, problem):
    problems = config.cookie_domain_problems(domain, public_url)
    assert len(problems) == 1 and problems[0].severity == "error", problems
    assert problem in problems[0].message


@pytest.mark.parametrize("domain, public_url", [
    (".example.test", "https://auth.example.test"),
    ("example.test", "https://auth.example.test:8443"),
    ("example.test", "https://example.test"),
    (".corp.example.co.uk", "https://login.corp.example.co.uk"),
])
def test_cookie_domain_accepted(domain, public_url):
    assert config.cookie_domain_problems(domain, public_url) == []


def test_production_refuses_to_start_with_a_public_suffix_cookie_domain(tmp_path):
    from authsvc.web.app import StartupRefused

    with pytest.raises(StartupRefused, match="AUTHSVC_COOKIE_DOMAIN=co.uk"):
        build_app(tmp_path, AUTHSVC_COOKIE_DOMAIN="co.uk")


# --- property: whatever the proxy headers say, the Location stays on the allow-list ---------------

_PIECES = st.sampled_from(["app.example.test", "grafana.example.test", "evil.example", "/notes", "/notes/",
                           "/other", "@", ":", ":443", ":444", "/", "\\", "//", "#", "?", "%2e", "%2F", "%40",
                           "..", ".", ",", " ", "\t", "\r\n", "\x00", "\u3002", "\uff0f", "javascript:",
                           "https://", "http://", "https:", "next=", "&"])
_FRAGMENT = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=6).map("".join)
_HOSTS = st.one_of(st.sampled_from(["app.example.test", "grafana.example.test", "APP.example.test:443"]),
                   st.tuples(st.sampled_from(["app.example.test", ""]), _FRAGMENT).map("".join))
_URIS = st.tuples(st.sampled_from(["/notes", "/notes/", "/", ""]), _FRAGMENT).map("".join)


@given(host=_HOSTS, uri=_URIS, scheme=st.sampled_from(["https", "http", "javascript"]),
       prefix=st.sampled_from(["https://", "http://", "", "https:/", "//"]),
       method=st.one_of(st.none(), st.sampled_from(["GET", "HEAD", "POST", "get", ""])), use_url=st.booleans())
def test_no_proxy_description_yields_a_location_off_the_allow_list(host, uri, scheme, prefix, method, use_url):
    headers = {"X-Forwarded-Host": host, "X-Forwarded-Uri": uri}
    if use_url:
        headers["X-Original-URL"] = prefix + host + uri
    if method is not None:
        headers["X-Original-Method"] = method
    location, _ = login_location(REDIRECT, original_request(headers, scheme, 1))
    assert_on_allow_list(location)
    assert location.isascii() and location.isprintable()
