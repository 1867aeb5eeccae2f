"""Login CSRF by cookie tossing (review finding 6), and the cookies single sign-on shares (finding 3).

In single sign-on mode every sibling subdomain is same-site with authsvc, and its script can plant
a session cookie under the shared domain. The attacks here: a sibling page posts a login form with
a token it knows (its own planted session's), a sibling posts logout or a password change, a
request carries a planted second session cookie, and the Origin / Sec-Fetch-Site headers are
spoofed in every spelling a parser could get wrong. The decisions are pure functions
(:mod:`authsvc.rules.sameorigin`, :mod:`authsvc.web.cookieheader`), tested first with hostile inputs; then
the service, through the Flask test client. tests/integration/test_browser.py runs the attack in
Chromium through nginx.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authsvc.web import cookieheader

from authsvc.rules import sameorigin
from tests.conftest import (
    HTTPS,
    add_user,
    build_app,
    csrf,
    csrf_in,
    login,
    new_client,
    set_cookie_headers,
)

OWN = "https://auth.example.test"  # HTTPS in tests/conftest.py, canonical
SESSION = "__Secure-authsvc_session"
HOST = HTTPS.split("://")[1]


# --- the decision: may this request change state? ------------------------------------------------

ALLOWED = [
    # (method, Origin, Sec-Fetch-Site, reason)
    ("GET", "https://evil.example.test", "cross-site", "safe_method"),
    ("HEAD", None, "same-site", "safe_method"),
    ("OPTIONS", "null", None, "safe_method"),
    ("TRACE", "https://evil.example.test", None, "safe_method"),
    ("POST", OWN, "same-origin", "same_origin"),
    ("POST", "null", "same-origin", "same_origin"),      # what a no-referrer page sends
    ("POST", None, "same-origin", "same_origin"),
    ("POST", OWN, None, "same_origin"),                 # a browser without fetch metadata
    ("POST", f" {OWN}\t", None, "same_origin"),         # optional whitespace around the value
    ("POST", None, " same-origin ", "same_origin"),
    ("POST", None, "none", "user_initiated"),
    ("POST", OWN, "none", "user_initiated"),
    ("PUT", OWN, "same-origin", "same_origin"),
    ("DELETE", None, None, "no_browser_headers"),       # curl: the CSRF token decides
    ("POST", None, None, "no_browser_headers"),
]


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize(("method", "origin", "site", "reason"), ALLOWED)
def test_requests_from_the_service_itself_or_without_browser_headers_pass(method, origin, site, reason):
    assert sameorigin.check(method, origin, site, OWN) == sameorigin.OriginDecision(True, reason)


SIBLING_SITE = [
    # Sec-Fetch-Site says another site (or is garbled): refused whatever Origin claims.
    ("POST", OWN, "same-site", "cross_site_fetch"),      # a sibling subdomain: the tossing attack
    ("POST", OWN, "cross-site", "cross_site_fetch"),
    ("POST", None, "same-site", "cross_site_fetch"),
    ("POST", None, "Same-Origin", "cross_site_fetch"),   # browsers send lower case only
    ("POST", None, "SAME-ORIGIN", "cross_site_fetch"),
    ("POST", None, "same-origin, same-site", "cross_site_fetch"),   # two headers joined
    ("POST", None, "same-origin,none", "cross_site_fetch"),
    ("POST", None, "", "cross_site_fetch"),
    ("POST", None, "same_origin", "cross_site_fetch"),
    ("POST", None, "same-origin\x00", "cross_site_fetch"),
    ("POST", None, "same-orіgin", "cross_site_fetch"),   # Cyrillic i
    ("POST", None, "same-origin\n", "cross_site_fetch"),
    ("PATCH", None, "cross-site", "cross_site_fetch"),
    ("DELETE", None, "same-site", "cross_site_fetch"),
    ("post", OWN, "same-site", "cross_site_fetch"),      # methods are case-sensitive: checked
    ("PROPFIND", None, "cross-site", "cross_site_fetch"),
    # Fetch metadata says same-origin but Origin names someone else: contradiction, refused.
    ("POST", "https://evil.example.test", "same-origin", "foreign_origin"),
    ("POST", "https://evil.example.test", "none", "foreign_origin"),
]


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize(("method", "origin", "site", "reason"), SIBLING_SITE)
def test_fetch_metadata_from_another_site_is_refused(method, origin, site, reason):
    assert sameorigin.check(method, origin, site, OWN) == sameorigin.OriginDecision(False, reason)


LOOK_ALIKE_ORIGINS = [
    "https://evil.example.test",               # a sibling subdomain
    "https://app.example.test",                # an allowed app is still not the login service
    "https://example.test",                    # the parent domain
    "http://auth.example.test",                # scheme
    "https://auth.example.test:443",           # a default port browsers never write
    "https://auth.example.test:8443",          # another port
    "https://auth.example.test/",              # trailing slash
    "https://auth.example.test/login",         # a path
    "HTTPS://AUTH.EXAMPLE.TEST",               # case: browsers serialize lower case
    "https://Auth.example.test",
    "https://auth.example.test.",              # trailing dot
    "https://auth.example.test.evil.test",     # own origin as a prefix
    "https://xauth.example.test",
    "https://auth.example.tes",
    "https://аuth.example.test",               # Cyrillic a
    "https://xn--uth-8cd.example.test",        # its punycode
    "https://user@auth.example.test",
    f"{OWN}, {OWN}",                           # two Origin headers joined
    f"{OWN} https://evil.example.test",
    f"https://evil.example.test, {OWN}",
    f"{OWN}\x00",
    f"{OWN}\r\nX: y",
    "",
    " ",
    "*",
    "file://",
    "chrome-extension://abcdef",
    OWN * 200,
]


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("origin", LOOK_ALIKE_ORIGINS)
def test_origin_other_than_the_services_own_is_refused(origin):
    assert sameorigin.check("POST", origin, None, OWN) == sameorigin.OriginDecision(False, "foreign_origin")


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("origin", ["null", " null ", "null\t"])
def test_opaque_origin_without_fetch_metadata_is_refused(origin):
    # Sandboxed frames, data: pages and cross-origin redirects send "null"; nothing vouches for it.
    assert sameorigin.check("POST", origin, None, OWN) == sameorigin.OriginDecision(False, "opaque_origin")
    assert sameorigin.check("POST", "NULL", None, OWN).reason == "foreign_origin"


def test_a_development_origin_with_a_port_is_its_own():
    dev = "http://127.0.0.1:8000"
    assert sameorigin.check("POST", dev, None, dev).allowed
    assert not sameorigin.check("POST", "http://127.0.0.1:8001", None, dev).allowed
    assert not sameorigin.check("POST", "http://localhost:8000", None, dev).allowed


# --- the decision: two cookies of one name --------------------------------------------------------

COUNTS = [
    (None, 0),
    ("", 0),
    ("other=1", 0),
    (f"{SESSION}=a", 1),
    (f"{SESSION}=a; {SESSION}=b", 2),              # a planted Path=/login copy comes first
    (f"{SESSION}=a;{SESSION}=a", 2),               # same value, still two cookies
    (f"x=1; {SESSION}=a; y=2; {SESSION}=b; z=3", 2),
    (f" {SESSION} = a ; {SESSION}=b", 2),          # Werkzeug reads " name = v" as name: so do we
    (f"{SESSION}=; {SESSION}=b", 2),               # an empty one counts
    (f"{SESSION}=a; {SESSION}=b; {SESSION}=c", 3),
    (f"x{SESSION}=a; {SESSION}=b", 1),             # names that contain ours are other cookies
    (f"{SESSION}x=a; {SESSION}=b", 1),
    (f"__Host-authsvc_session=a; {SESSION}=b", 1),
    (f"__secure-authsvc_session=a; {SESSION}=b", 1),   # names are case-sensitive
    (f"authsvc_session=a; {SESSION}=b", 1),
]


@pytest.mark.parametrize(("header", "expected"), COUNTS)
def test_session_cookies_are_counted_as_the_request_parser_reads_them(header, expected):
    assert cookieheader.count(header, SESSION) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/", ["/"]),
    ("/login", ["/", "/login"]),
    ("/login/", ["/", "/login", "/login/"]),
    ("/account/password", ["/", "/account", "/account/", "/account/password"]),
    ("/account/sessions/7/revoke", ["/", "/account", "/account/", "/account/sessions", "/account/sessions/",
                                    "/account/sessions/7", "/account/sessions/7/",
                                    "/account/sessions/7/revoke"]),
    ("", ["/"]),
    ("login", ["/"]),
])
def test_every_cookie_path_that_matches_a_request_path(path, expected):
    assert cookieheader.path_prefixes(path) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/x;Domain=evil.test", ["/", "/x"]),
    ("/x y/z", ["/", "/x"]),
    ("/a/b\r\nSet-Cookie: x=1", ["/", "/a", "/a/", "/a/b"]),
    ("/ä/b", ["/"]),
    ("/a,b", ["/", "/a"]),
    ("/%3B/x", ["/", "/%3B", "/%3B/", "/%3B/x"]),
])
def test_path_prefixes_stop_at_what_a_path_attribute_cannot_hold(path, expected):
    assert cookieheader.path_prefixes(path) == expected


@pytest.mark.parametrize("host", ["evil.test; Secure", "a..b", "-a.test", "xn--ä.test", "a.test\x00", "[::1",
                                  "a" * 300 + ".test", "", ":", "exa mple.test"])
def test_a_hostile_host_header_yields_no_domain_but_the_configured_one(host):
    domains = {d for d, _ in cookieheader.stray_locations(host, "/login", ".example.test")}
    assert domains <= {None, "example.test"}


@settings(max_examples=500)
@given(st.one_of(st.text(alphabet="/ab;%3B ä,\r\n.", max_size=40), st.text(max_size=40)))
def test_the_flask_extension_reads_cookie_paths_as_authsvc_does(path):
    # flask_authsvc.cookies keeps a copy (the extension does not depend on authsvc): the two must not drift.
    from flask_authsvc.cookies import path_prefixes as extensions
    assert extensions(path) == cookieheader.path_prefixes(path)


def test_deep_paths_are_bounded():
    assert len(cookieheader.path_prefixes("/a" * 10_000)) <= 2 * cookieheader.MAX_PATH_DEPTH + 1


def test_stray_locations_cover_every_domain_and_path_but_the_services_own():
    locations = cookieheader.stray_locations("auth.example.test:8443", "/login", ".example.test")
    assert ("example.test", "/") not in locations, "authsvc's own session cookie is kept"
    assert set(locations) == {
        (None, "/"), (None, "/login"),
        ("auth.example.test", "/"), ("auth.example.test", "/login"),
        ("example.test", "/login"),
    }
    host_only = cookieheader.stray_locations("AUTH.example.test", "/login", None)
    assert (None, "/") not in host_only and (None, "/login") in host_only
    assert ("example.test", "/") in host_only
    assert all(d is None for d, _ in cookieheader.stray_locations("[::1]:8000", "/", None)) is True
    assert cookieheader.stray_locations("127.0.0.1:8000", "/x", None) == [(None, "/x")]


# --- the service: cross-site posts --------------------------------------------------------------


@pytest.fixture
def sso(tmp_path, clock):
    """authsvc in single sign-on mode, as the review attacked it."""
    app = build_app(tmp_path, clock, AUTHSVC_COOKIE_DOMAIN=".example.test", AUTHSVC_TRUSTED_PROXIES="1")
    add_user(app)
    return app


def shared_cookie(client, name: str = SESSION) -> str | None:
    cookie = client.get_cookie(name, domain="example.test")
    return cookie.value if cookie else None


def signed_in_as(client) -> str | None:
    response = client.get("/api/v1/session")
    return response.get_json()["username"] if response.status_code == 200 else None


def attacker_form(app) -> tuple[str, str]:
    """An anonymous session cookie and the CSRF token bound to it, as the attacker fetches them."""
    attacker = new_client(app)
    token = csrf(attacker)
    return shared_cookie(attacker), token


SIBLING_HEADERS = [
    {"Origin": "https://evil.example.test", "Sec-Fetch-Site": "same-site"},   # what Chromium sends
    {"Origin": "https://evil.example.test"},                                 # a browser without fetch metadata
    {"Origin": "null", "Sec-Fetch-Site": "same-site"},                       # attacker page with no-referrer
    {"Origin": "null"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": OWN, "Sec-Fetch-Site": "same-site"},                          # a spoofed Origin is not enough
    {"Origin": "https://auth.example.test.evil.test", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "http://auth.example.test"},
]


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("headers", SIBLING_HEADERS)
def test_login_posted_from_a_sibling_site_is_refused_even_with_a_valid_token(sso, headers):
    victim = new_client(sso)
    data = {"csrf_token": csrf(victim), "username": "alice", "password": "correct horse battery staple 42"}
    response = victim.post("/login", data=data, headers=headers)
    assert response.status_code == 403
    assert "not sent from this site" in response.get_data(as_text=True)
    assert signed_in_as(victim) is None


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("headers", [{"Origin": OWN, "Sec-Fetch-Site": "same-origin"},
                                     {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
                                     {"Origin": OWN}, {}])
def test_login_from_the_services_own_page_still_works(sso, headers):
    client = new_client(sso)
    assert login(client, headers=headers).status_code == 303
    assert signed_in_as(client) == "alice"


@pytest.mark.asvs("V3.5.1")
def test_a_post_without_browser_headers_still_needs_the_csrf_token(sso):
    client = new_client(sso)
    client.get("/login")
    data = {"username": "alice", "password": "correct horse battery staple 42"}
    assert client.post("/login", data=data).status_code == 400
    assert signed_in_as(client) is None


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_state_changing_method_is_checked(sso, method):
    client = new_client(sso)
    assert client.open("/logout", method=method, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert client.open("/logout", method=method).status_code == 405  # no such route: the usual answer


@pytest.mark.asvs("V3.5.1")
def test_logout_and_password_change_from_a_sibling_are_refused(sso):
    client = new_client(sso)
    assert login(client).status_code == 303
    token = csrf(client, "/")
    evil = {"Origin": "https://evil.example.test", "Sec-Fetch-Site": "same-site"}
    assert client.post("/logout", data={"csrf_token": token}, headers=evil).status_code == 403
    change = {"csrf_token": token, "current_password": "x", "new_password": "y" * 20, "confirm_password": "y" * 20}
    assert client.post("/account/password", data=change, headers=evil).status_code == 403
    assert client.post("/account/sessions/1/revoke", data={"csrf_token": token}, headers=evil).status_code == 403
    assert signed_in_as(client) == "alice"


def test_verify_is_not_origin_checked(sso):
    # Proxies call it with headers describing some other request; it changes nothing.
    client = new_client(sso)
    assert login(client).status_code == 303
    headers = {"Origin": "https://evil.example.test", "Sec-Fetch-Site": "cross-site"}
    assert client.get("/auth/verify", headers=headers).status_code == 200


# --- the service: a planted second session cookie --------------------------------------------------


@pytest.mark.parametrize("host", ["auth.example.test; Domain=evil.test", "auth.example.test:x", "[::1]:443",
                                  "AUTH.EXAMPLE.TEST", "xn--80ak6aa92e.example.test"])
def test_two_session_cookies_with_a_hostile_host_are_a_clean_400(sso, host):
    response = new_client(sso, use_cookies=False).get(
        "/login;Path=/x", headers={"Cookie": f"{SESSION}=a; {SESSION}=b", "Host": host})
    assert response.status_code == 400
    for header in set_cookie_headers(response):
        assert "evil" not in header and header.count("Path=") == 1, header


@pytest.mark.asvs("V3.5.1", "V3.3.1")
def test_login_with_a_planted_session_cookie_is_refused_and_the_plant_removed(sso):
    planted, token = attacker_form(sso)
    victim = new_client(sso)
    victim.get("/login")   # the victim's own (anonymous) session cookie, Path=/
    # The browser sends the longer path first. (Werkzeug's test client keeps one cookie per name,
    # so the header is written out.) No browser headers at all: only the duplicate check stands
    # between the attacker's token and a login.
    header = f"{SESSION}={planted}; {SESSION}={shared_cookie(victim)}"
    data = {"csrf_token": token, "username": "alice", "password": "correct horse battery staple 42"}
    response = new_client(sso, use_cookies=False).post("/login", data=data, headers={"Cookie": header})
    assert response.status_code == 400
    assert "two sign-in cookies" in response.get_data(as_text=True)
    deletions = [h for h in set_cookie_headers(response) if h.startswith(f"{SESSION}=;")]
    assert any("Domain=example.test" in h and "Path=/login" in h for h in deletions), deletions
    assert not any("Domain=example.test" in h and "Path=/;" in h for h in deletions), "the real one stays"
    assert all("Secure" in h and "Max-Age=0" in h for h in deletions)
    assert signed_in_as(victim) is None

    # The browser drops the planted copy; the next attempt is an ordinary login.
    assert login(victim).status_code == 303
    assert signed_in_as(victim) == "alice"


@pytest.mark.asvs("V3.3.1")
def test_a_planted_session_cookie_is_removed_by_the_429_too(sso):
    """Past the per-client limit the two-cookie refusal of a sign-in is a 429: it must still delete
    the planted copy, or the browser keeps sending it and stays refused."""
    client = new_client(sso, use_cookies=False)
    header = f"{SESSION}=planted; {SESSION}=real"
    answers = [client.post("/login", headers={"Cookie": header}) for _ in range(12)]
    assert [a.status_code for a in answers] == [400] * 10 + [429] * 2
    for answer in answers:
        deletions = [h for h in set_cookie_headers(answer) if h.startswith(f"{SESSION}=;")]
        assert any("Domain=example.test" in h and "Path=/login" in h and "Max-Age=0" in h for h in deletions), \
            (answer.status_code, deletions)


@pytest.mark.asvs("V3.3.1")
@pytest.mark.parametrize("path", ["/", "/login", "/account/password", "/api/v1/session", "/logout"])
def test_any_request_with_two_session_cookies_is_refused(sso, path):
    client = new_client(sso, use_cookies=False)  # the header as written, no cookie jar
    header = f"{SESSION}=planted; {SESSION}=real"
    response = client.open(path, method="POST" if path in ("/logout", "/account/password") else "GET",
                           headers={"Cookie": header})
    assert response.status_code == 400
    assert "two sign-in cookies" in response.get_data(as_text=True)   # not some other 400 (no CSRF token)


@pytest.mark.asvs("V3.3.1")
def test_verify_treats_two_session_cookies_as_signed_out(sso):
    """A copy planted at the app's path (Path=/notes) must not make the app see someone else, nor
    let the fast path answer for the first copy it reads."""
    victim = new_client(sso)
    assert login(victim).status_code == 303
    real = shared_cookie(victim)
    mallory = new_client(sso)
    assert login(mallory).status_code == 303
    planted = shared_cookie(mallory)
    for header in (f"{SESSION}={planted}; {SESSION}={real}", f"{SESSION}={real}; {SESSION}={real}"):
        answer = new_client(sso, use_cookies=False).get("/auth/verify?redirect=401",
                                                        base_url="https://app.example.test",
                                                        headers={"Cookie": header})
        assert answer.status_code == 401
        assert "X-Auth-User" not in answer.headers
        assert answer.headers["Location"].startswith(f"{HTTPS}/login")
    one = new_client(sso, use_cookies=False).get("/auth/verify", headers={"Cookie": f"{SESSION}={real}"})
    assert one.status_code == 200 and one.headers["X-Auth-User"] == "alice"


# --- the app's Cookie header without authsvc's (review finding 3; Traefik's way) ---------------

S = f"{SESSION}=S"
STRIPPED = [
    (None, ""),
    ("", ""),
    (S, ""),
    (f"app=1; {S}", "app=1"),
    (f"{S}; app=1", "app=1"),
    (f"a=1;{S};b=2", "a=1; b=2"),
    (f"a=1 ;\t{S} ; b=2", "a=1; b=2"),
    (f"{S};;", ""),
    (f"__Secure-authsvc_remember=r; app=1; {S}; __Secure-authsvc_device=d", "app=1"),
    (f"{S}; __Host-authsvc_remember=r; __Host-authsvc_device=d; authsvc_session=z; app=1", "app=1"),
    (f"authsvc_remember =r; {S}", ""),                 # Werkzeug ignores the space: so do we
    (f" {SESSION} =S", ""),
    (f"{S}; {S}; {S}; {S}; {S}; app=1", "app=1"),       # no pass limit
    (f"xauthsvc_session=k1; {S}; authsvc_session_app=k2; my__Secure-authsvc_device=k3; authsvc_sessions=k4",
     "xauthsvc_session=k1; authsvc_session_app=k2; my__Secure-authsvc_device=k3; authsvc_sessions=k4"),
    (f"app=authsvc_session=v; {S}", "app=authsvc_session=v"),
    (f"__host-authsvc_session=k; {S}", "__host-authsvc_session=k"),   # not a name authsvc writes
    (f'q="x; {S}"', 'q="x'),                            # a quoted value hiding ours: ours still goes
    ("flag", "flag"),
]


@pytest.mark.asvs("V3.3.1", "V14.2.1")
@pytest.mark.parametrize(("header", "expected"), STRIPPED)
def test_the_apps_cookie_header_never_holds_one_of_authsvcs(header, expected):
    assert cookieheader.without(header) == expected


def test_every_name_authsvc_gives_a_cookie_is_stripped(sso, tmp_path, clock):
    dev = build_app(tmp_path / "dev", clock, AUTHSVC_ENV="development", AUTHSVC_SECRET_KEY=None,
                    AUTHSVC_PUBLIC_URL=None)
    for app in (sso, build_app(tmp_path / "host", clock), dev):
        names = app.extensions["authsvc"].cookies
        for name in (names.session, names.remember, names.device, *names.legacy):
            assert name in cookieheader.AUTHSVC_NAMES, name


@pytest.mark.asvs("V3.3.1")
@pytest.mark.parametrize("path", ["fast", "flask"])
def test_verify_answers_the_apps_cookie_header_when_asked(sso, path):
    """Traefik (authResponseHeaders: [Cookie]) sets the app's Cookie to this answer, or removes it."""
    victim = new_client(sso)
    assert login(victim, remember=True).status_code == 303
    session = shared_cookie(victim)
    # Upgrade (not a websocket) makes the fast path step aside: the Flask view answers.
    extra = {} if path == "fast" else {"Upgrade": "h2c"}
    raw = new_client(sso, use_cookies=False)
    header = f"theme=dark; {SESSION}={session}; __Secure-authsvc_remember=old; lang=en"
    answer = raw.get("/auth/verify?redirect=1&app_cookie=1", headers={"Cookie": header, **extra})
    assert answer.status_code == 200 and answer.headers["X-Auth-User"] == "alice"
    assert answer.headers.getlist("Cookie") == ["theme=dark; lang=en"]
    alone = raw.get("/auth/verify?app_cookie=1", headers={"Cookie": f"{SESSION}={session}", **extra})
    assert alone.status_code == 200 and "Cookie" not in alone.headers
    unasked = raw.get("/auth/verify?redirect=1", headers={"Cookie": header, **extra})
    assert unasked.status_code == 200 and "Cookie" not in unasked.headers
    refused = raw.get("/auth/verify?app_cookie=1", headers={"Cookie": "theme=dark", **extra})
    assert refused.status_code == 401 and "Cookie" not in refused.headers


@pytest.mark.asvs("V3.3.1")
def test_a_copy_planted_on_an_apps_path_is_expired_when_login_sends_the_browser_back(sso):
    """verify says "signed out" (two cookies at /notes/...), the login page sees one (Path=/) and
    sends the browser back: the redirect must drop the planted copy, or the two bounce forever."""
    client = new_client(sso)
    assert login(client).status_code == 303
    target = "https://app.example.test/notes/today"
    back = client.get(f"/login?next={target}")
    assert back.status_code == 303 and back.headers["Location"] == target
    deleted = {h.split("Path=")[1].split(";")[0] for h in set_cookie_headers(back)
               if h.startswith(f"{SESSION}=;") and "Domain=example.test" in h and "Max-Age=0" in h}
    assert deleted == {"/notes", "/notes/", "/notes/today"}
    assert signed_in_as(client) == "alice", "the real session (Path=/) is untouched"
    # Off-domain or relative targets: nothing to expire.
    assert not [h for h in set_cookie_headers(client.get("/login")) if h.startswith(SESSION)]


# --- upgrading: remember-me and device cookies an older authsvc shared under the domain ----------

LEGACY_REMEMBER, LEGACY_DEVICE = "__Secure-authsvc_remember", "__Secure-authsvc_device"


def legacy_header(sso, **extra: str) -> tuple[str, str]:
    """A Cookie header with an old shared remember-me cookie (a valid token) and device cookie."""
    svc = sso.extensions["authsvc"]
    account = svc.accounts.by_username("alice")
    remember, _ = svc.remember.issue(account.id, "127.0.0.1", "Werkzeug")
    device = svc.devices.issue("alice", None)
    parts = [f"{LEGACY_REMEMBER}={remember}", f"{LEGACY_DEVICE}={device}", *(f"{k}={v}" for k, v in extra.items())]
    return "; ".join(parts), remember


@pytest.mark.asvs("V3.3.1", "V7.4.1")
def test_an_old_shared_remember_cookie_is_not_honoured_and_is_revoked_on_sign_in(sso):
    header, remember = legacy_header(sso)
    svc = sso.extensions["authsvc"]
    raw = new_client(sso, use_cookies=False)
    page = raw.get("/login", headers={"Cookie": header})
    assert page.status_code == 200, "a shared remember cookie (every app may have logged it) starts nothing"

    session = next(h for h in set_cookie_headers(page) if h.startswith(SESSION)).split(";")[0]
    token = csrf_in(page.get_data(as_text=True))
    data = {"csrf_token": token, "username": "alice", "password": "correct horse battery staple 42"}
    signed = raw.post("/login", data=data, headers={"Cookie": f"{header}; {session}"})
    assert signed.status_code == 303
    deleted = {h.split("=")[0]: h for h in set_cookie_headers(signed) if "Max-Age=0" in h}
    for name in (LEGACY_REMEMBER, LEGACY_DEVICE):
        assert "Domain=example.test" in deleted[name] and "Secure" in deleted[name], deleted
    consumed, _ = svc.remember.consume(remember, "127.0.0.1", "Werkzeug")
    assert consumed.outcome != "ok", "the old token is revoked, not just forgotten by this browser"


@pytest.mark.asvs("V7.4.1")
def test_sign_out_deletes_old_shared_cookies_too(sso):
    client = new_client(sso)
    assert login(client).status_code == 303
    token = csrf(client, "/")
    session = shared_cookie(client)
    header, remember = legacy_header(sso, **{SESSION: session})
    out = new_client(sso, use_cookies=False).post("/logout", data={"csrf_token": token},
                                                  headers={"Cookie": header})
    assert out.status_code == 303
    deleted = [h.split("=")[0] for h in set_cookie_headers(out) if "Max-Age=0" in h and "Domain=example.test" in h]
    assert LEGACY_REMEMBER in deleted and LEGACY_DEVICE in deleted
    assert "__Host-authsvc_device" not in [h.split("=")[0] for h in set_cookie_headers(out)]
    consumed, _ = sso.extensions["authsvc"].remember.consume(remember, "127.0.0.1", "Werkzeug")
    assert consumed.outcome != "ok"
