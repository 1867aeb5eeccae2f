"""Every shipped proxy config, run for real in front of authsvc: nginx, Traefik, Caddy and Envoy.

The same checks for each, as the four would be deployed: deploy/<proxy>/ rendered with envsubst
and the placeholder list of docs/integration.md, over TLS with a test CA, both hosts on one port, in
front of one authsvc (gunicorn) and an echo app that reports the identity headers and cookies it
was sent. One proxy runs at a time (module-scoped, parametrized: each starts once).

What a proxy seam gets wrong, from the peers' advisories of 2023-2026
(../shared/reference/peers-2026.md; each class has a test named after its advisory below):
the client writes identity headers (any case, "_" for "-"); the client describes the request
(X-Original-URL, X-Forwarded-Uri/-Host/-Method/-Proto, empty ones, or a Connection header that makes
the proxy drop its own); health-check user agents skip authentication; malformed, truncated or
foreign session cookies get 200 with no identity; a session ended at logout still opens the app;
authsvc's cookies reach the app; a method other than GET is answered by a framework default.
"""

from __future__ import annotations

import http.client
import json
import posixpath
import re
import socket
import ssl
import subprocess
import time
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
import requests
from flask import Flask
from itsdangerous import URLSafeTimedSerializer

from authsvc.rules import forward_auth
from authsvc.web.session_cookie import SessionInterface
from tests.conftest import PASSWORD, csrf_in
from tests.integration.conftest import (
    ADMIN,
    API,
    APP_HOST,
    APP_PREFIX,
    AT_STAFF,
    AUTH_HOST,
    BACKEND_GROUPS,
    DENY_OTHERS_RULE,
    FINANCE,
    FOREIGN_IDENTITY_NAMES,
    IDENTITY_HEADERS,
    OPS,
    PROXIES,
    PUBLIC,
    USERNAME,
    VAULT,
    authsvc_command,
    backend,
    example_test_resolves_to_loopback,
    proxy_in_front,
)
from tests.integration.test_nginx_forward_auth import APP_COOKIES, app_cookies

pytestmark = pytest.mark.integration

SESSION = "__Secure-authsvc_session"
UA = "authsvc-proxy-test"


@pytest.fixture(scope="module", autouse=True)
def resolve_example_test():
    with example_test_resolves_to_loopback():
        yield


@pytest.fixture(scope="module")
def behind(tmp_path_factory):
    """One authsvc and one echo app for every proxy of the module."""
    with backend(tmp_path_factory.mktemp("proxies")) as running:
        yield running


@pytest.fixture(scope="module", params=PROXIES)
def stack(request, behind):
    """``request.param``'s shipped config in front of them; pytest runs each proxy's tests together
    and stops one proxy before it starts the next (they share the port)."""
    with proxy_in_front(request.param, behind) as running:
        yield running


# --- a browser ----------------------------------------------------------------------------------


def browser(stack) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(stack.tls.ca)
    s.headers["User-Agent"] = UA
    return s


def get(s: requests.Session, url: str, **kwargs) -> requests.Response:
    return s.get(url, allow_redirects=False, timeout=10, **kwargs)


def login_target(location: str) -> tuple[str, str | None]:
    """(login URL without query, next or None) from a Location header."""
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert set(query) <= {"next"}, location
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query.get("next", [None])[0]


def sign_in(stack, s: requests.Session, login_url: str, username: str = USERNAME) -> requests.Response:
    page = get(s, login_url)
    assert page.status_code == 200, page.text
    fields = {"csrf_token": csrf_in(page.text), "username": username, "password": PASSWORD}
    hidden_next = re.search(r'name="next" value="([^"]*)"', page.text)
    if hidden_next:
        fields["next"] = hidden_next.group(1).replace("&amp;", "&")
    return s.post(f"{stack.auth}/login", data=fields, allow_redirects=False, timeout=10)


def signed_in(stack, username: str = USERNAME, **headers) -> requests.Session:
    s = browser(stack)
    s.headers.update(headers)
    response = sign_in(stack, s, f"{stack.auth}/login", username)
    assert response.status_code == 303, response.text
    return s


def log_out(stack, s: requests.Session) -> None:
    account = get(s, f"{stack.auth}/")
    out = s.post(f"{stack.auth}/logout", data={"csrf_token": csrf_in(account.text)}, allow_redirects=False,
                 timeout=10)
    assert out.status_code == 303


def assert_sent_to_login(stack, response: requests.Response, next_url: str | None, hits_before: int) -> None:
    """Refused the way a browser needs it: a redirect to the login page, ``next`` as given, and
    the app never asked."""
    assert response.status_code == 302, (stack.proxy, response.status_code, response.text[:300])
    assert login_target(response.headers["Location"]) == (f"{stack.auth}/login", next_url)
    assert len(stack.app_hits) == hits_before, f"{stack.proxy} let the request reach the app"


def assert_refused_or_sent_to_login(stack, response: requests.Response, next_url: str | None,
                                    hits_before: int) -> None:
    """As :func:`assert_sent_to_login`, or refused by the proxy itself before anyone was asked:
    Envoy answers 400 to a Connection header naming X-Forwarded-For."""
    if response.status_code == 400:
        assert len(stack.app_hits) == hits_before, f"{stack.proxy} let the request reach the app"
        return
    assert_sent_to_login(stack, response, next_url, hits_before)


def assert_the_user(answer: requests.Response) -> dict:
    """200 from the app, which was told who the user is by authsvc and by no one else."""
    assert answer.status_code == 200, answer.text[:300]
    seen = answer.json()
    assert seen["user"] == [USERNAME], seen
    assert len(seen["user_id"]) == 1 and seen["user_id"][0].isdigit(), seen
    assert seen["methods"] == ["pwd"], seen
    return seen


def verify_directly(stack, s: requests.Session, url: str) -> requests.Response:
    """What authsvc itself answers for this browser's session and ``url``, asked without any proxy
    (from the proxies' address, describing the request as nginx does: the access rules need it)."""
    return requests.get(f"http://127.0.0.1:{stack.authsvc_port}/auth/verify", timeout=10,
                        headers={"Cookie": f"{SESSION}={s.cookies.get(SESSION)}", "User-Agent": UA,
                                 "X-Original-URL": url, "X-Original-Method": "GET"})


# --- the delegated login, end to end -----------------------------------------------------------


@pytest.mark.asvs("V7.2.1", "V3.7.2")
def test_anonymous_request_goes_to_the_login_page_with_next_the_original_url(stack):
    wanted = stack.protected("/page?x=1&y=two%20words")
    before = len(stack.app_hits)
    assert_sent_to_login(stack, get(browser(stack), wanted), wanted, before)


@pytest.mark.asvs("V7.2.1", "V4.1.3")
def test_sign_in_returns_to_the_app_which_sees_the_user_and_groups(stack):
    s = browser(stack)
    wanted = stack.protected("/today?tab=open")
    first = get(s, wanted)
    posted = sign_in(stack, s, first.headers["Location"])
    assert posted.status_code == 303 and posted.headers["Location"] == wanted
    seen = assert_the_user(get(s, wanted))
    assert seen["path"] == "/notes/today?tab=open"
    # Groups reach the app exactly as authsvc answers them.
    direct = verify_directly(stack, s, wanted)
    assert direct.status_code == 200 and direct.headers["X-Auth-Groups"] == ",".join(BACKEND_GROUPS)
    assert seen["groups"] == [direct.headers["X-Auth-Groups"]]
    assert seen["user_id"] == [direct.headers["X-Auth-User-Id"]]


@pytest.mark.asvs("V7.4.1")
def test_authentik_cve_2025_29928_logout_ends_access_at_the_app_within_one_second(stack):
    """An ended session must stop opening the app at once, whatever the proxy or authsvc cache."""
    s = signed_in(stack)
    stolen = s.cookies.get(SESSION)
    assert_the_user(get(s, stack.protected("/before")))
    log_out(stack, s)
    ended = time.monotonic()
    thief = browser(stack)
    while True:
        replay = get(thief, stack.protected("/after"), headers={"Cookie": f"{SESSION}={stolen}"})
        if replay.status_code == 302:
            break
        assert time.monotonic() - ended < 1.0, f"{stack.proxy}: the app still opens 1 s after logout"
        time.sleep(0.05)
    assert login_target(replay.headers["Location"]) == (f"{stack.auth}/login", stack.protected("/after"))
    assert time.monotonic() - ended < 1.0


# --- the client cannot write identity ---------------------------------------------------------


def spellings(name: str, separators: str = "-_") -> list[str]:
    """``name`` with every mix of ``separators`` between its words, each in three cases."""
    words = name.split("-")
    joined = [words[0]]
    for word in words[1:]:
        joined = [f"{j}{sep}{word}" for j in joined for sep in separators]
    return [variant for j in joined for variant in (j, j.lower(), j.upper())]


FORGED_IDENTITY = {variant: f"forged-{i}" for i, variant in enumerate(
    v for name in ("X-Auth-User", "X-Auth-User-Id", "X-Auth-Groups", "X-Auth-Methods") for v in spellings(name))}


def forged_values_seen(seen: dict) -> list[str]:
    values = [v for key in ("user", "user_id", "groups", "methods") for v in seen[key]]
    return [v for v in values if "forged" in v]


@pytest.mark.asvs("V4.1.3", "V8.3.1")
def test_oauth2_proxy_cve_2025_64484_identity_headers_in_any_case_or_with_underscores_never_reach_the_app(stack):
    """Every spelling a framework could read as an identity header, signed in and anonymous."""
    s = signed_in(stack)
    # One request with all of them, then each alone (a proxy might keep the first or the last).
    seen = assert_the_user(get(s, stack.protected("/whoami"), headers=FORGED_IDENTITY))
    assert forged_values_seen(seen) == [], (stack.proxy, seen)
    leaked = {}
    for name, value in FORGED_IDENTITY.items():
        one = get(s, stack.protected("/whoami"), headers={name: value}).json()
        if forged_values_seen(one) or one["user"] != [USERNAME]:
            leaked[name] = one
    assert leaked == {}, (stack.proxy, leaked)
    before = len(stack.app_hits)
    assert_sent_to_login(stack, get(browser(stack), stack.protected("/forged"), headers=FORGED_IDENTITY),
                         stack.protected("/forged"), before)


IDENTITY_NAMES = ("X-Auth-User", "X-Auth-User-Id", "X-Auth-Groups", "X-Auth-Methods")


def alias_field_lines() -> dict[str, list[str]]:
    """Header field lines (as written on the wire, each set sent alone) that some server normalises
    to an identity header or some app reads as one (:func:`conftest.read_as`), by family: dots and
    underscores in every position and mix, in three cases, all at once and each alone; whitespace
    around the name; the same header twice (as written, in two cases, in two spellings)."""
    aliases = [v for name in IDENTITY_NAMES for v in spellings(name, "-_.") if "_" in v or "." in v]
    cases = {"every alias at once": [f"{v}: forged-{i}" for i, v in enumerate(aliases)]}
    cases.update({f"alias {v}": [f"{v}: forged-alias"] for v in aliases})
    for name in IDENTITY_NAMES:
        cases.update(around_the_name(name))
        cases[f"{name} folded into the field before"] = ["Accept: */*", f" {name}: forged-folded"]
    return cases


def around_the_name(name: str) -> dict[str, list[str]]:
    """Header ``name`` with whitespace around it, or sent twice (in one case or two, beside its
    underscore or dotted spelling): the cases every identity header family gets."""
    return {
        f"{name} with a space before the colon": [f"{name} : forged-space"],
        f"{name} with a tab before the colon": [f"{name}\t: forged-tab"],
        f"{name} with a leading space, first": [f" {name}: forged-leading"],
        f"{name} twice": [f"{name}: forged-first", f"{name}: forged-second"],
        f"{name} twice in two cases": [f"{name}: forged-first", f"{name.lower()}: forged-second"],
        f"{name} and its underscore spelling": [f"{name}: forged-first", f"{name.replace('-', '_')}: forged-2"],
        f"{name} and its dotted spelling": [f"{name.replace('-', '.')}: forged-first", f"{name}: forged-2"],
    }


def foreign_field_lines() -> dict[str, list[str]]:
    """The same families for other login proxies' identity headers (FOREIGN_IDENTITY_NAMES), which
    authsvc never sends, so that every spelling, the documented one included, must be removed: each
    name with every mix of "-", "_" and "." in three cases, each alone and all at once; whitespace
    around the name; the header twice (in one case or two, beside an alias)."""
    every = [v for name in FOREIGN_IDENTITY_NAMES for v in spellings(name, "-_.")]
    cases = {"every foreign spelling at once": [f"{v}: forged-{i}" for i, v in enumerate(every)]}
    cases.update({f"foreign {v}": [f"{v}: forged-foreign"] for v in every})
    for name in FOREIGN_IDENTITY_NAMES:
        cases.update(around_the_name(name))
    return cases


class RawClient:
    """GET requests to the app host with header field lines written exactly as given, first after the
    request line (no client library would send most of them), on one kept-alive TLS connection
    (a new one after the proxy closes it, e.g. with a 400)."""

    def __init__(self, stack):
        self.stack, self.sock = stack, None

    def get(self, path: str, lines: list[str], cookie: str | None = None,
            method: str = "GET") -> tuple[int, dict | None]:
        """(status, the echo app's JSON or None)."""
        if self.sock is None:
            context = ssl.create_default_context(cafile=str(self.stack.tls.ca))
            self.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", self.stack.port), timeout=10),
                                            server_hostname=APP_HOST)
        head = [f"{method} {path} HTTP/1.1", *lines, f"Host: {APP_HOST}:{self.stack.port}", f"User-Agent: {UA}",
                *([f"Cookie: {cookie}"] if cookie else []), *(["Content-Length: 0"] if method == "POST" else [])]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        body = response.read()
        if response.will_close:
            self.close()
        return response.status, (json.loads(body) if response.status == 200 else None)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def identity_fields(seen: dict) -> list[list[str]]:
    """The [name as received, value] fields the app could read as an identity header."""
    return seen["identity_fields"]


@pytest.mark.asvs("V4.1.3", "V8.3.1")
def test_identity_header_aliases_whitespace_and_duplicates_reach_the_app_as_authsvcs_alone(stack):
    """Also oauth2-proxy CVE-2025-64484: X.Auth.User, X-Auth_User, X_Auth.User-Id (any mix, any
    case), a name with whitespace around it, and two X-Auth-User lines (in one case or two, or beside
    an alias). A WSGI app reads X_Auth_User as HTTP_X_AUTH_USER, PHP also X.Auth.User: whatever a
    proxy passes on under such a name is a second, forged identity. Signed in, the app gets exactly
    one field per identity header, spelled as authsvc's, with authsvc's value; on the bypass path it
    gets none. A proxy may instead refuse the request (400, 431) before anyone is asked.

    Other login proxies' identity headers the same way (Remote-User, X-Forwarded-User,
    X-Auth-Request-Email, Remote-Groups, ...: FOREIGN_IDENTITY_NAMES), in every spelling, the
    documented one included: authsvc never sends them, yet an app moved here from behind
    oauth2-proxy or Authelia, or Django's RemoteUserMiddleware reading HTTP_REMOTE_USER, would take
    a client's copy for the user. The app gets none of them, signed in or on the bypass path."""
    s = signed_in(stack)
    cookie = f"{SESSION}={s.cookies.get(SESSION)}"
    direct = verify_directly(stack, s, stack.protected("/alias"))
    assert direct.status_code == 200, direct.status_code
    expected = sorted((name.lower(), direct.headers[name]) for name in IDENTITY_NAMES)
    wrong = {}
    client = RawClient(stack)
    try:
        for case, lines in {**alias_field_lines(), **foreign_field_lines()}.items():
            for who, path, sent_cookie, wanted in (("signed in", f"{APP_PREFIX}/alias", cookie, expected),
                                                   ("bypass", f"{PUBLIC}/alias", None, [])):
                before = len(stack.app_hits)
                status, seen = client.get(path, lines, sent_cookie)
                if status in (400, 431) and len(stack.app_hits) == before:
                    continue   # refused by the proxy: nobody saw it
                fields = identity_fields(seen) if status == 200 else []
                # authsvc's value under authsvc's name (Envoy writes names in lower case), nothing else
                got = sorted((name.lower(), value) for name, value in fields if name in (*IDENTITY_NAMES,
                                                                                        *IDENTITY_HEADERS))
                if status != 200 or got != wanted or len(fields) != len(got):
                    wrong[f"{who}: {case}"] = status if status != 200 else fields
    finally:
        client.close()
    assert not wrong, (f"{stack.proxy} let a forged or second identity reach the app (authsvc's: {expected}):\n"
                       + "\n".join(f"  {case}: {got}" for case, got in wrong.items()))


# --- the client cannot describe the request --------------------------------------------------

DESCRIBING = ["X-Original-URL", "X-Original-URI", "X-Original-Method", "X-Forwarded-Uri", "X-Forwarded-Host",
              "X-Forwarded-Method", "X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Forwarded-Port", "Forwarded"]


def forged_descriptions(stack) -> dict[str, dict[str, str]]:
    fake = stack.protected("/fake")
    evil = f"https://evil.example.test:{stack.port}/notes/fake"
    every = {"X-Original-URL": evil, "X-Original-URI": "/notes/fake", "X-Original-Method": "POST",
             "X-Forwarded-Uri": "/notes/fake", "X-Forwarded-Host": "evil.example.test",
             "X-Forwarded-Method": "POST", "X-Forwarded-Proto": "http", "X-Forwarded-Prefix": "/evil",
             "X-Forwarded-Port": "1", "Forwarded": "host=evil.example.test;proto=http"}
    return {
        "x-original-url": {"X-Original-URL": fake},
        "x-original-url-elsewhere": {"X-Original-URL": evil},
        "x-original-uri": {"X-Original-URI": "/notes/fake"},
        "x-forwarded-uri": {"X-Forwarded-Uri": "/notes/fake"},
        "x-forwarded-host": {"X-Forwarded-Host": "evil.example.test"},
        "x-forwarded-method": {"X-Forwarded-Method": "POST"},
        "x-original-method": {"X-Original-Method": "POST"},
        "x-forwarded-proto": {"X-Forwarded-Proto": "http"},
        "all": every,
        "all-empty": {name: "" for name in DESCRIBING},
        "connection-hop-by-hop": {"Connection": "keep-alive, " + ", ".join(DESCRIBING)},
        "connection-and-all": {**every, "Connection": "keep-alive, " + ", ".join(DESCRIBING)},
    }


FORGED_DESCRIPTIONS = ["x-original-url", "x-original-url-elsewhere", "x-original-uri", "x-forwarded-uri",
                       "x-forwarded-host", "x-forwarded-method", "x-original-method", "x-forwarded-proto", "all",
                       "all-empty", "connection-hop-by-hop", "connection-and-all"]


@pytest.mark.asvs("V4.1.3", "V3.7.2")
@pytest.mark.parametrize("forged", FORGED_DESCRIPTIONS)
def test_client_forwarding_headers_change_neither_the_decision_nor_the_next(stack, forged):
    headers = forged_descriptions(stack)[forged]
    wanted = stack.protected("/real?q=1")
    before = len(stack.app_hits)
    anonymous = get(browser(stack), wanted, headers=headers)
    if forged.startswith("connection") and stack.proxy == "envoy":
        # Envoy refuses a Connection header naming X-Forwarded-For outright (400), signed in or not.
        signed = get(signed_in(stack), wanted, headers=headers)
        assert (anonymous.status_code, signed.status_code) == (400, 400), (anonymous.text, signed.text)
        assert len(stack.app_hits) == before
        return
    assert_sent_to_login(stack, anonymous, wanted, before)
    seen = assert_the_user(get(signed_in(stack), wanted, headers=headers))
    assert seen["path"] == "/notes/real?q=1"


@pytest.mark.asvs("V4.1.3")
def test_the_app_never_gets_the_clients_description_of_the_request(stack):
    """The app must not be told the request by the client either: an app behind IIS URL Rewrite or
    Zend routes by X-Original-URL or X-Rewrite-URL (a path verify never judged), and ProxyFix,
    Django or Rails build links and redirects from X-Forwarded-Host, -Proto, -Port, -Prefix and
    Forwarded (Zitadel GHSA-2wmj-46rj-qm2w, on the app). Each such header the client sends, in every
    case, is removed or replaced by the proxy's own value before the app: no field the app gets
    carries the client's value, signed in or on the bypass path."""
    canary = "forgedcanary"
    forged = {"X-Original-URL": f"https://{canary}.example/notes/admin", "X-Original-URI": f"/{canary}",
              "X-Original-Method": canary, "X-Rewrite-URL": f"/{canary}", "X-Forwarded-Uri": f"/{canary}",
              "X-Forwarded-Host": f"{canary}.example", "X-Forwarded-Method": canary,
              "X-Forwarded-Proto": canary, "X-Forwarded-Prefix": f"/{canary}", "X-Forwarded-Port": canary,
              "X-Forwarded-Server": canary, "X-Forwarded-Ssl": canary, "X-Forwarded-For": f"{canary}",
              "X-Real-IP": canary, "Forwarded": f"for={canary};host={canary}.example;proto=http",
              "X-Client-IP": canary, "Client-IP": canary, "X-Cluster-Client-IP": canary, "True-Client-IP": canary}
    cookie = f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"
    wrong = {}
    client = RawClient(stack)
    try:
        for spelling in (str, str.lower, str.upper):
            lines = [f"{spelling(name)}: {value}" for name, value in forged.items()]
            for who, path, sent_cookie in (("signed in", f"{APP_PREFIX}/described", cookie),
                                           ("bypass", f"{PUBLIC}/described", None)):
                for one in ([line] for line in lines):
                    status, seen = client.get(path, one, sent_cookie)
                    if status == 200 and any(canary in (value or "") for _, value in seen["describing_fields"]):
                        wrong[f"{who}: {one[0]}"] = seen["describing_fields"]
                    elif status not in (200, 400):
                        wrong[f"{who}: {one[0]}"] = status
    finally:
        client.close()
    assert not wrong, (f"{stack.proxy} passed the client's description of the request to the app:\n"
                       + "\n".join(f"  {case}: {got}" for case, got in wrong.items()))


@pytest.mark.asvs("V4.1.3")
def test_tinyauth_cve_2026_137182_a_spoofed_x_original_url_naming_a_public_page_lets_nothing_through(stack):
    """The client points X-Original-URL (and X-Original-URI) at pages anyone may see: the login
    page, authsvc's health check, its static files. The request is still the app's, and refused."""
    for target in ("/login", "/healthz", "/static/authsvc.css", "/auth/verify"):
        before = len(stack.app_hits)
        answer = get(browser(stack), stack.protected("/secret"),
                     headers={"X-Original-URL": f"{stack.auth}{target}", "X-Original-URI": target})
        assert_sent_to_login(stack, answer, stack.protected("/secret"), before)


@pytest.mark.asvs("V4.1.3")
def test_tinyauth_ghsa_xg2q_62g2_cvcm_empty_forwarding_headers_do_not_continue_as_authenticated(stack):
    headers = {name: "" for name in (*DESCRIBING, "X-Forwarded-For", "X-Real-IP")}
    before = len(stack.app_hits)
    assert_sent_to_login(stack, get(browser(stack), stack.protected("/empty"), headers=headers),
                         stack.protected("/empty"), before)


@pytest.mark.asvs("V4.1.3")
def test_traefik_cve_2024_45410_a_connection_header_cannot_make_the_proxy_drop_its_own_headers(stack):
    """Connection: X-Forwarded-Host (etc.) asks a hop to delete those headers: a proxy that deletes
    the ones it set itself sends authsvc a request with no URL (no next) or the client's."""
    hop = {"Connection": "keep-alive, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Uri, X-Forwarded-Proto, "
                         "X-Forwarded-Method, X-Original-URL, X-Original-Method, X-Real-IP, X-Request-ID, "
                         "X-Auth-User, Cookie, User-Agent"}
    before = len(stack.app_hits)
    assert_refused_or_sent_to_login(stack, get(browser(stack), stack.protected("/hop"), headers=hop),
                                    stack.protected("/hop"), before)
    s = signed_in(stack)
    # Naming the identity headers must not remove what authsvc set (Caddy's reverse_proxy did: the
    # app got a request that had passed authsvc, with no user).
    answer = get(s, stack.protected("/hop"), headers={"Connection": "keep-alive, X-Auth-User, X-Auth-User-Id, "
                                                                      "X-Auth-Groups, X-Auth-Methods"})
    assert_the_user(answer)


@pytest.mark.asvs("V4.1.3")
def test_zitadel_ghsa_2wmj_46rj_qm2w_a_client_x_forwarded_host_never_makes_links(stack):
    """Neither the login redirect nor the login page may be built from a client's X-Forwarded-Host."""
    evil = "evil.example.test"
    s = browser(stack)
    answer = get(s, stack.protected("/poison"), headers={"X-Forwarded-Host": evil})
    assert urlsplit(answer.headers["Location"]).hostname == AUTH_HOST
    page = get(s, f"{stack.auth}/login", headers={"X-Forwarded-Host": evil, "X-Forwarded-Proto": "http"})
    assert page.status_code == 200
    assert evil not in page.text


@pytest.mark.asvs("V4.1.3")
def test_authentik_ghsa_5wcc_hf24_rf5h_authsvcs_own_paths_on_the_app_host_are_the_apps(stack):
    """On the app's host, /auth/verify, /login or /healthz are the app's paths like any other: asked
    about, refused anonymously, never answered by authsvc or let through."""
    for path in ("/auth/verify", "/login", "/healthz", "/outpost.goauthentik.io/auth/nginx"):
        before = len(stack.app_hits)
        answer = get(browser(stack), f"{stack.app}{path}", headers={"X-Original-URI": path})
        assert answer.status_code == 302, (stack.proxy, path, answer.status_code)
        assert login_target(answer.headers["Location"])[0] == f"{stack.auth}/login"
        assert len(stack.app_hits) == before


@pytest.mark.asvs("V4.1.3", "V7.2.1")
@pytest.mark.parametrize("forwarded_for", ["203.0.113.9", "not-an-address", "203.0.113.9, 198.51.100.1", "::zz, 1",
                                           "", "unknown"])
def test_oauth2_proxy_cve_2026_76835_a_client_x_forwarded_for_is_never_the_address_authsvc_sees(stack,
                                                                                              forwarded_for):
    """Also authentik CVE-2023-36456 / CVE-2024-47070 and allauth 65.14.2: the session is bound to the
    client address authsvc is told. Signed in with a forged X-Forwarded-For, the same browser
    without it keeps its session (and the reverse): the proxy replaced it with the TCP peer's."""
    s = signed_in(stack, **{"X-Forwarded-For": forwarded_for})
    del s.headers["X-Forwarded-For"]
    assert_the_user(get(s, stack.protected("/bound")))
    assert_the_user(get(s, stack.protected("/bound"), headers={"X-Forwarded-For": forwarded_for}))
    before = len(stack.app_hits)
    assert_sent_to_login(stack, get(browser(stack), stack.protected("/xff"), headers={"X-Forwarded-For": forwarded_for}),
                         stack.protected("/xff"), before)


@pytest.mark.asvs("V16.2.1", "V4.1.3")
def test_a_client_x_request_id_never_reaches_the_app_as_the_clients(stack):
    """The id authsvc logs a request under is the proxy's (or authsvc's own), never the client's."""
    s = signed_in(stack)
    seen = assert_the_user(get(s, stack.protected("/rid"), headers={"X-Request-ID": "forged-request-id"}))
    assert "forged-request-id" not in seen["request_id"], (stack.proxy, seen["request_id"])
    assert len(seen["request_id"]) <= 1


# --- health checkers, methods, hosts, paths ---------------------------------------------------

HEALTH_CHECKERS = ["kube-probe/1.31", "ELB-HealthChecker/2.0", "GoogleHC/1.0", "Consul Health Check",
                   "Envoy/HC", "Traefik", "Go-http-client/1.1", "curl/8.5.0", ""]


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("agent", HEALTH_CHECKERS)
def test_oauth2_proxy_cve_2026_34457_health_check_user_agents_get_no_special_treatment(stack, agent):
    s = browser(stack)
    s.headers["User-Agent"] = agent
    before = len(stack.app_hits)
    assert_sent_to_login(stack, get(s, stack.protected("/health")), stack.protected("/health"), before)


@pytest.mark.asvs("V8.3.1", "V13.4.4")
@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PUT", "DELETE", "PATCH"])
def test_a_request_with_any_method_is_asked_about_and_never_let_through_anonymously(stack, method):
    """Envoy's ext_authz asks authsvc with the original method; a framework's automatic OPTIONS
    answer (200) used to let an anonymous request through. No next: the browser would repeat it
    as a GET."""
    before = len(stack.app_hits)
    answer = browser(stack).request(method, stack.protected("/m"), allow_redirects=False, timeout=10,
                                    headers={"Origin": "https://evil.example.test",
                                             "Access-Control-Request-Method": "DELETE"})
    assert_sent_to_login(stack, answer, None, before)
    signed = signed_in(stack).request(method, stack.protected("/m"), allow_redirects=False, timeout=10)
    assert assert_the_user(signed)["method"] == method


@pytest.mark.asvs("V4.1.3")
def test_authelia_ghsa_j748_h363_wqj8_the_app_host_in_another_case_is_still_protected(stack):
    for host in (APP_HOST.upper(), "App.Example.Test", f"{APP_HOST}."):
        before = len(stack.app_hits)
        answer = raw_request(stack, "GET", "/notes/case", host=f"{host}:{stack.port}")
        assert answer[0] != 200 and len(stack.app_hits) == before, (stack.proxy, host, answer)


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("path", ["/notes/../notes/x", "/notes/%2e%2e/notes/x", "/notes/%2F..%2Fx", "//notes/x",
                                  "/notes/x?next=/healthz", "/notes/x#fragment", "/notes/./x"])
def test_tinyauth_ghsa_r27r_rr9v_vv37_an_unclean_path_is_still_asked_about(stack, path):
    """Also oauth2-proxy CVE-2025-54576 (a query) and GHSA-pxq7-h93f-9jrg (a fragment): whatever the
    path looks like, the anonymous request is refused, and a next it gets is one authsvc validated.
    (403: the app host has path rules, and a path apps read in more than one way is denied there.)"""
    before = len(stack.app_hits)
    status, headers = raw_request(stack, "GET", path, host=f"{APP_HOST}:{stack.port}")
    assert status in (302, 400, 403, 404), (stack.proxy, path, status)
    assert len(stack.app_hits) == before, (stack.proxy, path)
    if status == 302:
        login, next_url = login_target(headers["location"])
        assert login == f"{stack.auth}/login"
        assert next_url is None or next_url.startswith(stack.protected("/")), next_url


def raw_request(stack, method: str, target: str, host: str, headers: dict[str, str] | None = None):
    """One request as written (no URL clean-up by a client library); (status, lower-cased headers)."""
    context = ssl.create_default_context(cafile=str(stack.tls.ca))
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", stack.port), timeout=10),
                               server_hostname=APP_HOST)
    connection = http.client.HTTPSConnection(APP_HOST, stack.port, timeout=10, context=context)
    connection.sock = sock
    try:
        connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        connection.putheader("User-Agent", UA)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


# --- access rules, through the proxy (conftest.BACKEND_RULES) ---------------------------------


def audit_events(stack, name: str) -> list[dict]:
    return [e for e in (json.loads(line) for line in stack.logs["authsvc"].read_text().splitlines()
                        if line.startswith("{")) if e.get("event") == name]


@pytest.mark.asvs("V8.3.1")
def test_a_signed_in_user_without_access_gets_403_and_the_app_never_sees_the_request(stack):
    """A deny rule, and a part of the app for a group the user is not in (then denied to the rest):
    403 from the proxy, audited with the deciding rule; the same user's other pages still open."""
    s = signed_in(stack)
    denials = len(audit_events(stack, "access_denied"))
    before = len(stack.app_hits)
    for path in (f"{ADMIN}", f"{ADMIN}/settings?tab=1", f"{FINANCE}/report"):
        for method in ("GET", "POST"):
            denied = s.request(method, f"{stack.app}{path}", allow_redirects=False, timeout=10)
            assert denied.status_code == 403, (stack.proxy, method, path, denied.status_code, denied.text[:200])
    assert stack.app_hits[before:] == [], stack.proxy
    assert_the_user(get(s, stack.protected("/page")))
    events = audit_events(stack, "access_denied")[denials:]
    assert [(e["rule"], e["reason"]) for e in events] == [(1, "rule")] * 4 + [(DENY_OTHERS_RULE, "rule")] * 2, events
    assert all(e["host"].startswith(APP_HOST) for e in events), events


@pytest.mark.asvs("V8.3.1")
def test_an_anonymous_request_for_a_group_only_part_is_sent_to_sign_in_not_told_403(stack):
    """Who is asking decides a rule that names a group: signed out, the login page, with next."""
    for path in (f"{FINANCE}/report", f"{OPS}/board"):
        before = len(stack.app_hits)
        assert_sent_to_login(stack, get(browser(stack), f"{stack.app}{path}"), f"{stack.app}{path}", before)


@pytest.mark.asvs("V8.3.1", "V4.1.3")
def test_a_group_rule_the_user_is_in_lets_it_through_with_x_auth_groups(stack):
    s = signed_in(stack)
    seen = assert_the_user(get(s, f"{stack.app}{OPS}/board?x=1", headers=FORGED_IDENTITY))
    assert seen["path"] == f"{OPS}/board?x=1"
    assert seen["groups"] == [",".join(BACKEND_GROUPS)], (stack.proxy, seen)
    assert forged_values_seen(seen) == [], (stack.proxy, seen)


@pytest.mark.asvs("V8.3.1", "V4.1.3")
def test_a_bypass_path_reaches_the_app_anonymously_with_no_identity_and_forged_identity_stripped(stack):
    """Anyone reaches a bypass path, and nobody is named there: not the client's forged headers (every
    spelling), and not a signed-in user either (the session is not even read for a bypass)."""
    for s in (browser(stack), signed_in(stack)):
        for headers in ({}, FORGED_IDENTITY):
            answer = get(s, f"{stack.app}{PUBLIC}/style.css", headers=headers)
            assert answer.status_code == 200, (stack.proxy, answer.status_code, answer.text[:200])
            seen = answer.json()
            assert seen["path"] == f"{PUBLIC}/style.css"
            assert (seen["user"], seen["user_id"], seen["groups"], seen["methods"]) == ([], [], [], []), \
                (stack.proxy, seen)


@pytest.mark.asvs("V3.3.1", "V14.2.1")
def test_a_bypass_path_never_receives_authsvcs_cookies_and_keeps_the_apps(stack):
    """The bypass answer has no identity, but a proxy that takes the app's Cookie header from
    authsvc's answer (Traefik, ``app_cookie=1``) still gets one: the app's cookies without authsvc's."""
    session = signed_in(stack).cookies.get(SESSION)
    answer = get(browser(stack), f"{stack.app}{PUBLIC}/x", headers={"Cookie": f"app=1; {SESSION}={session}"})
    assert answer.status_code == 200, answer.text[:200]
    assert session not in answer.text, stack.proxy
    assert app_cookies(answer.json()) == ["app=1"], (stack.proxy, answer.json()["cookie"])


@pytest.mark.asvs("V6.3.3", "V8.3.1")
def test_two_factor_part_with_a_one_factor_session_of_an_account_without_a_second_factor_is_403(stack):
    """The user has no second factor to step up with (and [mfa] required is false): sending it to
    sign in again would be a loop, so authsvc answers 403 (reason no_second_factor)."""
    s = signed_in(stack)
    denials = len(audit_events(stack, "access_denied"))
    before = len(stack.app_hits)
    answer = get(s, f"{stack.app}{VAULT}/keys")
    assert answer.status_code == 403, (stack.proxy, answer.status_code, answer.headers.get("Location"))
    assert len(stack.app_hits) == before
    assert [e["reason"] for e in audit_events(stack, "access_denied")[denials:]] == ["no_second_factor"]


def add_user(behind, name: str) -> None:
    added = subprocess.run([*authsvc_command(), "user", "add", name, "--password-stdin"], env=behind.authsvc_env,
                           input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, check=False)
    assert added.returncode == 0, added.stderr


def set_up_authenticator_app(stack, s: requests.Session) -> tuple[pyotp.TOTP, int]:
    """The account page's set-up, through the proxy: (the app's TOTP, the time step its first code used)."""
    page = get(s, f"{stack.auth}/account/totp")
    uri = re.search(r'id="otpauth-uri">([^<]+)<', page.text)
    assert uri, (stack.proxy, page.status_code, page.text[:300])
    totp = pyotp.parse_uri(uri.group(1).replace("&amp;", "&"))
    step = int(time.time() // 30)
    added = s.post(f"{stack.auth}/account/totp", data={"csrf_token": csrf_in(page.text), "code": totp.generate_otp(step)},
                   allow_redirects=False, timeout=10)
    assert added.status_code == 200 and "Authenticator app added" in added.text, (stack.proxy, added.status_code)
    return totp, step


@pytest.mark.asvs("V6.3.3", "V8.3.1")
def test_two_factor_part_sends_a_one_factor_session_to_step_up_and_lets_the_two_factor_one_in(stack, behind):
    """An account with an authenticator app, signed in with its password only (the session began
    before the app was set up): a two_factor part sends the browser to the login page with
    step_up=1 and next; there, password then code, and back on the part with pwd, otp, mfa."""
    name = f"carol-{stack.proxy}"   # one account per proxy: each code is accepted once
    add_user(behind, name)
    s = signed_in(stack, name)
    totp, step = set_up_authenticator_app(stack, s)
    wanted = f"{stack.app}{VAULT}/keys?id=7"
    before = len(stack.app_hits)
    first = get(s, wanted)
    assert first.status_code == 302, (stack.proxy, first.status_code, first.text[:200])
    parts = urlsplit(first.headers["Location"])
    assert (f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)) == (
        f"{stack.auth}/login", {"next": [wanted], "step_up": ["1"]}), first.headers["Location"]
    assert len(stack.app_hits) == before, f"{stack.proxy} let a one-factor session into a two_factor part"
    # The one-factor session still opens the one_factor parts.
    assert get(s, stack.protected("/page")).json()["user"] == [name]
    password_step = sign_in(stack, s, first.headers["Location"], name)
    assert password_step.status_code == 303 and urlsplit(password_step.headers["Location"]).path == "/login/mfa", \
        (stack.proxy, password_step.status_code, password_step.headers.get("Location"))
    mfa_url = password_step.headers["Location"]
    mfa_page = get(s, mfa_url if mfa_url.startswith("https://") else f"{stack.auth}{mfa_url}")
    fields = {"csrf_token": csrf_in(mfa_page.text), "code": totp.generate_otp(step + 1)}  # the set-up used `step`
    hidden_next = re.search(r'name="next" value="([^"]*)"', mfa_page.text)
    if hidden_next:
        fields["next"] = hidden_next.group(1).replace("&amp;", "&")
    done = s.post(f"{stack.auth}/login/mfa", data=fields, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["Location"] == wanted, (stack.proxy, done.status_code)
    inside = get(s, wanted)
    assert inside.status_code == 200, (stack.proxy, inside.status_code)
    seen = inside.json()
    assert seen["user"] == [name] and seen["methods"] == ["pwd,otp,mfa"], (stack.proxy, seen)
    assert seen["groups"] in ([], [""]), (stack.proxy, seen)   # in no group: empty (nginx sends no empty header)
    # Two factors open no group's part: the rules still decide who.
    assert get(s, f"{stack.app}{OPS}/board").status_code == 403


# Spellings of a denied path (ADMIN) reached through the bypass one (PUBLIC) or directly: what an
# app, a framework or a proxy might read as ADMIN. Each must stop before the app, signed in or not.
DETOURS = [
    f"{PUBLIC}/..%2fadmin/x", f"{PUBLIC}/..%2Fadmin/x", f"{PUBLIC}/%2e%2e/admin/x", f"{PUBLIC}/%2E%2E/admin/x",
    f"{PUBLIC}/.%2e/admin/x", f"{PUBLIC}%2f..%2fadmin/x", f"{PUBLIC}/%252e%252e/admin", f"{PUBLIC}/%2e%2e%2fadmin",
    f"{PUBLIC};/../admin/x", f"{PUBLIC}/..;/admin/x", f"{PUBLIC}/..%5cadmin/x", f"{PUBLIC}/..\\admin/x",
    f"{PUBLIC}/../admin/x", f"{PUBLIC}/./../admin/x", "/notes//admin/x", "//notes/admin/x", "/notes/./admin/x",
    "/notes/%61dmin/x", "/notes/admin;x=1", f"{ADMIN}%2f", f"{ADMIN}/", f"{ADMIN}?{PUBLIC}", f"{ADMIN}#{PUBLIC}",
    # What a case-insensitive app (Express by default, IIS, a case-insensitive disk) serves as ADMIN.
    "/notes/ADMIN/x", "/notes/Admin", "/NOTES/admin/x", f"{PUBLIC}/../Admin/x", "/notes/admin./x",
    "/notes/admin%20/x", "/notes/admin.%20./x", "/notes/%41dmin/x", "/notes/admin::$DATA/x",
    # A "#" in the request line that Go's server reads as part of the path (nginx passes it on).
    f"{PUBLIC}#/../admin/x", f"{PUBLIC}#/%2e%2e/admin/x", "/notes/x#/../admin/x",
]


def reads_as(part: str, target: str) -> bool:
    """Whether some app could take request target ``target`` for a path under ``part``: the query
    cut off, and a fragment cut off or its "#" read as part of the path (Go's server); escapes
    decoded (again and again), backslashes as slashes, ``;`` parameters dropped, empty and dot
    segments resolved; in any case, and segments without trailing dots, spaces and ``::$DATA`` (a
    case-insensitive app, IIS)."""
    before_query = target.split("?", 1)[0]
    return any(_reads_as(part, path) for path in (before_query.split("#", 1)[0], before_query))


def _reads_as(part: str, path: str) -> bool:
    while unquote(path) != path:
        path = unquote(path)
    segments = [s.split(";", 1)[0] for s in path.replace("\\", "/").lower().split("/")]
    segments = [s if s in (".", "..") else s.removesuffix("::$data").rstrip(". ") for s in segments]
    path = posixpath.normpath("/" + "/".join(s for s in segments if s))
    return path == part or path.startswith(part + "/")


@pytest.mark.asvs("V8.3.1", "V4.1.3")
@pytest.mark.parametrize("path", DETOURS)
def test_a_path_spelled_to_reach_a_denied_part_never_reaches_the_app(stack, path):
    """The rules judge the path as the app will see it (escapes of printable characters decoded,
    "//" and dot segments resolved) and deny what apps read in more than one way (%2f, %5c, %2e%2e,
    %252e, ";", a backslash, a "#"). Whatever the proxy does with the spelling (refuse it: 400; pass it
    on), it is refused before the app, signed in or not. A "#" in the request line is the one spelling a
    proxy may make another path of (Caddy sends it on as %23: "admin%23" is not "admin"); then that
    path is judged, and the app must still never get one it could read as the denied part. nginx
    passed "/notes/public#/../admin/x" on as it came, authsvc judged "/notes/public" and a Go app
    served "/notes/admin/x" (found by review, session 14)."""
    assert reads_as(ADMIN, path), path   # each detour really is a spelling of the denied part
    before = len(stack.app_hits)
    for cookie in ("", f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"):
        status, _ = raw_request(stack, "GET", path, host=f"{APP_HOST}:{stack.port}",
                                headers={"Cookie": cookie} if cookie else None)
        if "#" not in path:
            assert status in (400, 403), (stack.proxy, path, bool(cookie), status)
        else:
            assert status in (200, 302, 400, 403), (stack.proxy, path, bool(cookie), status)
    reached = stack.app_hits[before:]
    assert not [hit for hit in reached if reads_as(ADMIN, hit)], (stack.proxy, path, reached)
    if "#" not in path:
        assert reached == [], (stack.proxy, path, reached)


@pytest.mark.asvs("V8.3.1")
def test_an_escaped_reserved_character_never_opens_a_part_a_rule_denies(stack):
    """A rule on "/notes/@staff" was matched only as written, while every app decodes "%40" to "@":
    "/notes/%40staff/x" got the default and reached the app (found by review, session 14)."""
    cookie = {"Cookie": f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"}
    before = len(stack.app_hits)
    for path in (f"{AT_STAFF}/x", f"{APP_PREFIX}/%40staff/x", f"{APP_PREFIX}/%40staff", f"{APP_PREFIX}/%40STAFF/x"):
        assert reads_as(AT_STAFF, path), path
        status, _ = raw_request(stack, "GET", path, host=f"{APP_HOST}:{stack.port}", headers=cookie)
        assert status in (400, 403), (stack.proxy, path, status)
    assert stack.app_hits[before:] == [], (stack.proxy, stack.app_hits[before:])


@pytest.mark.asvs("V8.3.1")
def test_a_method_override_never_takes_a_denied_method_to_the_app(stack):
    """A POST saying DELETE in X-HTTP-Method-Override (Express's method-override, ASP.NET) or in a
    "_method" query parameter (Symfony, Laravel) passed a rule denying DELETE: the app acted on a
    method verify never judged. Each proxy hands verify the override (Envoy by allowed_headers)."""
    cookie = f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"
    host = f"{APP_HOST}:{stack.port}"
    assert raw_request(stack, "POST", f"{API}/items", host=host, headers={"Cookie": cookie})[0] == 200  # the control
    before = len(stack.app_hits)
    for name in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        status, _ = raw_request(stack, "POST", f"{API}/items", host=host, headers={"Cookie": cookie, name: "DELETE"})
        assert status in (400, 403), (stack.proxy, name, status)
    for query in ("_method=DELETE", "%5Fmethod=DELETE", ".method=DELETE"):
        status, _ = raw_request(stack, "POST", f"{API}/items?{query}", host=host, headers={"Cookie": cookie})
        assert status in (400, 403), (stack.proxy, query, status)
    assert stack.app_hits[before:] == [], (stack.proxy, stack.app_hits[before:])


@pytest.mark.asvs("V8.3.1")
def test_a_method_override_spelled_with_underscores_or_dots_never_reaches_the_app_unjudged(stack):
    """The override headers as a WSGI server or PHP reads them (X_HTTP_Method_Override, X.HTTP.Method,
    any mix): a proxy that passes such a field to the app but not to verify (Traefik and Envoy hand
    verify only the headers they name) would let the app act on DELETE where a rule denies it.
    Each spelling is refused, or denied by verify, or never reaches the app."""
    cookie = f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"
    aliases = [v for name in forward_auth.METHOD_OVERRIDE_HEADERS for v in spellings(name, "-_.")
               if "_" in v or "." in v]
    wrong = {}
    client = RawClient(stack)
    try:
        for alias in aliases:
            status, seen = client.get(f"{API}/items", [f"{alias}: DELETE"], cookie, method="POST")
            if status == 200 and seen["override_fields"]:
                wrong[alias] = seen["override_fields"]
            elif status not in (200, 400, 403, 431):
                wrong[alias] = status
    finally:
        client.close()
    assert not wrong, (f"{stack.proxy} passed a method override to the app that verify never judged:\n"
                       + "\n".join(f"  {alias}: {got}" for alias, got in wrong.items()))


def host_spellings(port: int) -> list[str]:
    """Host headers that name the app to a proxy routing by the name before the colon, with more
    after it: nginx took them into X-Original-URL as sent, and authsvc judged "/" where the app got
    the denied path (found by review, session 12)."""
    return [f"{APP_HOST}:{port}?", f"{APP_HOST}:{port}#", f"{APP_HOST}:{port}?x", f"{APP_HOST}:{port}/",
            f"{APP_HOST}:{port}?/", f"{APP_HOST}:{port}x", f"{APP_HOST}:{port}:{port}", f"{APP_HOST}?"]


@pytest.mark.asvs("V8.3.1")
def test_a_host_header_spelled_with_more_after_the_port_never_opens_a_denied_path(stack):
    before = len(stack.app_hits)
    cookie = {"Cookie": f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"}
    for host in host_spellings(stack.port):
        for path in (f"{ADMIN}/x", f"{FINANCE}/report", f"{VAULT}/keys"):
            status, _ = raw_request(stack, "GET", path, host=host, headers=cookie)
            assert status != 200, (stack.proxy, host, path, status)
    reached = stack.app_hits[before:]
    assert not [hit for hit in reached if any(reads_as(part, hit) for part in (ADMIN, FINANCE, VAULT))], \
        (stack.proxy, reached)


@pytest.mark.asvs("V8.3.1")
def test_an_absolute_request_line_is_judged_for_the_host_the_proxy_routes_to(stack):
    """An absolute-form request line names the app, the Host header another host: a proxy routes by
    the request line, so the rules of that host decide, not the Host header's."""
    before = len(stack.app_hits)
    cookie = {"Cookie": f"{SESSION}={signed_in(stack).cookies.get(SESSION)}"}
    for headers in (cookie, None):
        status, _ = raw_request(stack, "GET", f"https://{APP_HOST}:{stack.port}{ADMIN}/x",
                                host=f"other.example.test:{stack.port}", headers=headers)
        assert status != 200, (stack.proxy, bool(headers), status)
    assert not [hit for hit in stack.app_hits[before:] if reads_as(ADMIN, hit)], (stack.proxy, stack.app_hits[before:])


# --- session cookies that are not a session ---------------------------------------------------


def foreign_copy(cookie: str) -> str:
    """The same session content signed by another deployment's key (authsvc's format and salt)."""
    _, payload = URLSafeTimedSerializer("x", salt=SessionInterface.salt).loads_unsafe(cookie)
    other = Flask("another-deployment")
    other.config.update(SECRET_KEY="another deployment's key, 32+ bytes long!!", SECRET_KEY_FALLBACKS=[])
    return SessionInterface().get_signing_serializer(other).dumps(payload)


def broken_cookies(real: str) -> dict[str, str]:
    head = real.partition(".")[0]
    flipped = real[:-2] + ("A" if real[-2] != "A" else "B") + real[-1]
    return {
        "truncated-half": real[: len(real) // 2], "truncated-one": real[:-1], "signature-flipped": flipped,
        "no-signature": real.rsplit(".", 1)[0], "payload-only": head, "empty": "", "dots": "...",
        "garbage": "eyJfdXNlcl9pZCI6ImEifQ.x.y", "not-base64": "!!!*@@@", "huge": "A" * 6000,
        "percent": "%ff%00%fe", "json": json.dumps({"_user_id": "1"}), "quoted": f'"{real}"',
        "foreign-key": foreign_copy(real),
    }


BROKEN = ["truncated-half", "truncated-one", "signature-flipped", "no-signature", "payload-only", "empty", "dots",
          "garbage", "not-base64", "huge", "percent", "json", "quoted", "foreign-key"]


@pytest.fixture(scope="module")
def a_real_session(stack):
    return signed_in(stack).cookies.get(SESSION)


@pytest.mark.asvs("V7.2.1", "V3.3.1")
@pytest.mark.parametrize("broken", BROKEN)
def test_authentik_cve_2026_25748_a_malformed_session_cookie_never_gets_200_without_identity(stack, a_real_session,
                                                                                            broken):
    value = broken_cookies(a_real_session)[broken]
    before = len(stack.app_hits)
    answer = get(browser(stack), stack.protected("/cookie"), headers={"Cookie": f"{SESSION}={value}"})
    if broken == "quoted":   # RFC 6265 allows DQUOTEs around a value: still the real session
        assert_the_user(answer)
        return
    assert answer.status_code in (302, 400, 431), (stack.proxy, broken, answer.status_code)
    assert len(stack.app_hits) == before


@pytest.mark.asvs("V3.2.1")
def test_zitadel_cve_2026_119128_a_session_cookie_signed_elsewhere_is_refused(stack, a_real_session):
    """Real session content, signed with another deployment's key: nothing but the key differs."""
    before = len(stack.app_hits)
    answer = get(browser(stack), stack.protected("/forged"), headers={"Cookie": f"{SESSION}={foreign_copy(a_real_session)}"})
    assert_sent_to_login(stack, answer, stack.protected("/forged"), before)


@pytest.mark.asvs("V3.3.1")
def test_oauth2_proxy_ghsa_f24x_5g9q_753f_a_planted_second_session_cookie_is_not_let_through(stack):
    """A sibling site can plant a second session cookie (fixation): two are treated as none."""
    victim, mallory = signed_in(stack).cookies.get(SESSION), signed_in(stack).cookies.get(SESSION)
    before = len(stack.app_hits)
    for header in (f"{SESSION}={mallory}; {SESSION}={victim}", f"{SESSION}={victim}; {SESSION}={victim}"):
        answer = get(browser(stack), stack.protected("/planted"), headers={"Cookie": header})
        assert_sent_to_login(stack, answer, stack.protected("/planted"), before)


# --- authsvc's cookies never reach the app (issue 10) -----------------------------------------

# nginx has no loop: with more of authsvc's cookies than a browser holds, it sends no cookie at all.
# The others remove each of ours and keep the app's.
MORE_THAN_A_BROWSER_HOLDS = APP_COOKIES[-1][0]


@pytest.mark.asvs("V3.3.1", "V14.2.1")
@pytest.mark.parametrize(("header", "expected"), APP_COOKIES)
def test_the_app_never_receives_authsvcs_cookies(stack, a_real_session, header, expected):
    answer = get(browser(stack), stack.protected("/cookies"),
                 headers={"Cookie": header.format(s=f"{SESSION}={a_real_session}")})
    seen = assert_the_user(answer)
    kept = app_cookies(seen)
    if header == MORE_THAN_A_BROWSER_HOLDS and stack.proxy != "nginx":
        expected = ["app=1"]
    assert kept == expected, (stack.proxy, kept)
    assert a_real_session not in answer.text
    assert not [c for c in kept if re.match(r"(__Host-|__Secure-)?authsvc_(session|remember|device)\s*=", c)]


# --- the harness itself: a missing proxy must not turn CI green -------------------------------


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
@pytest.mark.parametrize("proxy", [p for p in PROXIES if p != "nginx"])
def test_a_missing_proxy_fails_under_ci_and_skips_elsewhere(monkeypatch, proxy, ci, outcome):
    import sys

    from tests.integration import conftest as harness

    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(harness, "_venv_script", lambda name: None)
    monkeypatch.setattr(harness.shutil, "which", lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "caddyserver", None)   # import fails as if not installed
    monkeypatch.setitem(sys.modules, "envoy", None)
    with pytest.raises(outcome, match=f"{proxy} is not installed"):
        harness.proxy_binary(proxy)


@pytest.mark.parametrize("proxy", [p for p in PROXIES if p != "nginx"])
def test_each_wheel_binary_is_found_and_runs(proxy):
    """The resolver finds the test extra's binary, and it is the real program."""
    import subprocess

    from tests.integration.conftest import proxy_binary

    binary = proxy_binary(proxy)
    args = {"traefik": ["version"], "caddy": ["version"], "envoy": ["--version"]}[proxy]
    shown = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=True).stdout
    assert {"traefik": "Version:", "caddy": "v2.", "envoy": "version:"}[proxy] in shown, shown
