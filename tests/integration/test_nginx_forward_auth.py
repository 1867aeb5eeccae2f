"""nginx auth_request in front of a real app, with deploy/nginx/authsvc.conf exactly as shipped.

The whole delegated-login path over TLS with `requests` as the browser: anonymous request -> login
page with next -> login -> back at the app, which sees X-Auth-User -> logout -> refused again. Then
the attacks on the glue: identity headers a client makes up, forward-auth headers a client makes
up, and next values off the allow-list.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from tests.conftest import PASSWORD, csrf_in
from tests.integration.conftest import (
    APP_NAME,
    USERNAME,
    example_test_resolves_to_loopback,
    require_binary,
    require_module,
)

pytestmark = pytest.mark.integration

SESSION = "__Secure-authsvc_session"


@pytest.fixture(scope="module", autouse=True)
def resolve_example_test():
    with example_test_resolves_to_loopback():
        yield


def browser(stack) -> requests.Session:
    """A cookie-keeping client that trusts the test CA and follows no redirect by itself."""
    s = requests.Session()
    s.trust_env = False   # no proxy or CA bundle from the environment: REQUESTS_CA_BUNDLE beats .verify
    s.verify = str(stack.tls.ca)
    s.headers["User-Agent"] = "authsvc-integration-test"
    return s


def get(s: requests.Session, url: str, **kwargs) -> requests.Response:
    return s.get(url, allow_redirects=False, timeout=10, **kwargs)


def csrf_from(page: requests.Response) -> str:
    return csrf_in(page.text, f"{page.url} ({page.status_code})")


def sign_in(stack, s: requests.Session, login_url: str, password: str = PASSWORD) -> requests.Response:
    """Load the login page at ``login_url`` (as the redirect gave it) and post the form."""
    page = get(s, login_url)
    assert page.status_code == 200, page.text
    fields = {"csrf_token": csrf_from(page), "username": USERNAME, "password": password}
    hidden_next = re.search(r'name="next" value="([^"]*)"', page.text)
    if hidden_next:
        fields["next"] = hidden_next.group(1).replace("&amp;", "&")
    return s.post(f"{stack.auth}/login", data=fields, allow_redirects=False, timeout=10)


def login_target(location: str) -> tuple[str, str | None]:
    """(login URL without query, next or None) from a Location header."""
    parts = urlsplit(location)
    query = parse_qs(parts.query)
    assert set(query) <= {"next"}, location
    return f"{parts.scheme}://{parts.netloc}{parts.path}", query.get("next", [None])[0]


def signed_in(stack) -> requests.Session:
    s = browser(stack)
    response = sign_in(stack, s, f"{stack.auth}/login")
    assert response.status_code == 303, response.text
    return s


# --- the delegated login, end to end -----------------------------------------------------------


def protected_app_server(config: str) -> list[str]:
    """The directives of a shipped nginx config's protected-app server block, comments dropped."""
    block = config[config.index("# The protected app"):]
    lines = [line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else "" for line in block.splitlines()]
    return [line for line in lines if line]


def test_the_load_balancer_config_guards_the_app_exactly_as_the_single_instance_one_does():
    """loadbalancer.conf is authsvc.conf with more instances: the app's server block must be the
    same, line for line (it lacked the groups header, the other login proxies' headers and the
    header-name rules: a signed-in user's own X-Auth-Groups reached the app, found by review), but
    for the keep-alive to the upstream instances. And neither builds X-Original-URL from the Host
    header as sent."""
    folder = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
    single = protected_app_server((folder / "authsvc.conf").read_text())
    balanced = protected_app_server((folder / "loadbalancer.conf").read_text())
    assert [line for line in balanced if line != 'proxy_set_header Connection "";'] == single
    for config in (single, balanced):
        original = [line for line in config if line.startswith("proxy_set_header X-Original-URL")]
        # the one authsvc is told (the auth subrequest's), and the app's, which only clears the client's
        assert original == ["proxy_set_header X-Original-URL $scheme://$host$authsvc_original_port$request_uri;",
                            'proxy_set_header X-Original-URL "";']
        assert "proxy_set_header X-Auth-Groups $authsvc_groups;" in config
        assert 'proxy_set_header Remote-User "";' in config


@pytest.mark.asvs("V7.2.1", "V7.4.1", "V3.3.1")
def test_full_delegated_login_round_trip(stack):
    s = browser(stack)
    wanted = stack.protected("/page?x=1&y=two%20words")

    first = get(s, wanted)
    assert first.status_code == 302, first.text
    login, next_url = login_target(first.headers["Location"])
    assert login == f"{stack.auth}/login"
    assert next_url == wanted
    assert wanted not in [f"{stack.app}{p}" for p in stack.app_hits]

    page = get(s, first.headers["Location"])
    assert f"to continue to <strong>{APP_NAME}</strong>" in page.text
    posted = sign_in(stack, s, first.headers["Location"])
    assert posted.status_code == 303
    assert posted.headers["Location"] == wanted

    cookies = {c.name: c for c in s.cookies}
    assert cookies[SESSION].domain.lstrip(".") == "example.test", cookies
    # Only the session is shared; the device cookie stays on the login host (__Host-).
    assert cookies["__Host-authsvc_device"].domain == urlsplit(stack.auth).hostname
    assert all(c.secure for c in cookies.values())

    arrived = get(s, wanted)
    assert arrived.status_code == 200, arrived.text
    assert arrived.json()["user"] == [USERNAME]
    assert arrived.json()["user_id"] and arrived.json()["user_id"][0].isdigit()
    assert arrived.json()["path"] == "/notes/page?x=1&y=two%20words"

    account = get(s, f"{stack.auth}/")
    out = s.post(f"{stack.auth}/logout", data={"csrf_token": csrf_from(account)}, allow_redirects=False, timeout=10)
    assert out.status_code == 303

    again = get(s, wanted)
    assert again.status_code == 302
    assert login_target(again.headers["Location"]) == (f"{stack.auth}/login", wanted)


@pytest.mark.asvs("V7.4.1")
def test_a_stolen_session_cookie_stops_working_after_logout(stack):
    s = signed_in(stack)
    stolen = {c.name: c.value for c in s.cookies}
    account = get(s, f"{stack.auth}/")
    s.post(f"{stack.auth}/logout", data={"csrf_token": csrf_from(account)}, allow_redirects=False, timeout=10)

    thief = browser(stack)
    replay = get(thief, stack.protected("/"), cookies=stolen)
    assert replay.status_code == 302, "the server-side session must be gone, not just the browser's copy"


def test_anonymous_post_is_sent_to_login_without_next(stack):
    """A POST cannot be repeated after login, so no next (the login page lands on its default)."""
    s = browser(stack)
    response = s.post(stack.protected("/form"), data={"a": "b"}, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert login_target(response.headers["Location"]) == (f"{stack.auth}/login", None)


# --- identity headers are nginx's to set, never the client's -------------------------------------


@pytest.mark.asvs("V4.1.3", "V8.3.1")
def test_client_identity_headers_never_reach_the_app(stack):
    s = signed_in(stack)
    forged = {"X-Auth-User": "mallory", "X-Auth-User-Id": "999", "X_Auth_User": "mallory", "X_Auth_User_Id": "999",
              "X-Auth-Methods": "pwd,otp,mfa", "X_Auth_Methods": "pwd,otp,mfa"}
    seen = get(s, stack.protected("/whoami"), headers=forged)
    assert seen.status_code == 200
    assert seen.json()["user"] == [USERNAME]
    assert seen.json()["user_id"] != ["999"] and len(seen.json()["user_id"]) == 1
    assert seen.json()["methods"] == ["pwd"]  # a password sign-in, whatever the client claims


def test_anonymous_client_with_forged_identity_is_not_let_through(stack):
    s = browser(stack)
    before = len(stack.app_hits)
    response = get(s, stack.protected("/forged"), headers={"X-Auth-User": USERNAME, "X-Auth-User-Id": "1"})
    assert response.status_code == 302
    assert len(stack.app_hits) == before, "the app must not be reached without a session"


def test_forged_session_cookie_is_not_let_through(stack):
    s = browser(stack)
    response = get(s, stack.protected("/"), cookies={"__Secure-authsvc_session": "eyJfdXNlcl9pZCI6ImEifQ.x.y"})
    assert response.status_code == 302


# --- forward-auth headers are nginx's to set, never the client's ---------------------------------


@pytest.mark.asvs("V4.1.3")
def test_client_x_original_url_is_replaced_by_nginx(stack):
    s = browser(stack)
    response = get(s, stack.protected("/real"), headers={"X-Original-URL": stack.protected("/fake"),
                                                         "X-Forwarded-Host": "evil.example.test",
                                                         "X-Forwarded-Uri": "/fake"})
    assert login_target(response.headers["Location"])[1] == stack.protected("/real")


@pytest.mark.asvs("V4.1.3")
def test_client_cannot_describe_a_forward_auth_request_to_the_login_host(stack):
    """On the auth host nginx blanks the forward-auth headers, so verify has no URL to send back to,
    and no request to judge: with access rules (the stack has BACKEND_RULES) a request it cannot
    describe is denied (``unknown_request``), never steered by the client's X-Original-URL. Without
    rules it would be the login page with no next."""
    s = browser(stack)
    response = get(s, f"{stack.auth}/auth/verify?redirect=1", headers={"X-Original-URL": stack.protected("/x")})
    assert response.status_code == 403 and "Location" not in response.headers
    signed_in = browser(stack)
    sign_in(stack, signed_in, f"{stack.auth}/login")
    response = get(signed_in, f"{stack.auth}/auth/verify?redirect=1", headers={"X-Original-URL": stack.protected("/x")})
    assert response.status_code == 403 and "X-Auth-User" not in response.headers


# --- request ids are nginx's, never the client's --------------------------------------------------

NGINX_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def audit_lines(stack, since: int) -> list[dict]:
    lines = stack.logs["authsvc"].read_text(errors="replace").splitlines()[since:]
    parsed = (json.loads(line) for line in lines if line.startswith("{"))
    return [line for line in parsed if "event" in line]   # audit events, not access or error lines


@pytest.mark.asvs("V16.2.1", "V4.1.3")
def test_a_client_x_request_id_never_reaches_the_audit_log_the_app_or_the_answer(stack):
    """A client choosing the id its requests are logged under could hide them among, or pin them on,
    someone else's: nginx sets its own id on every proxied location, the auth subrequest included."""
    forged = f"forged-{secrets.token_hex(6)}"
    mark = len(stack.logs["authsvc"].read_text(errors="replace").splitlines())
    s = browser(stack)
    s.headers["X-Request-ID"] = forged
    answers = [
        get(s, f"{stack.auth}/login?next=//evil.example.test/"),        # redirect_rejected (login)
        s.post(f"{stack.auth}/login", allow_redirects=False, timeout=10,  # login_failure
               data={"csrf_token": csrf_from(get(s, f"{stack.auth}/login")), "username": USERNAME,
                     "password": "not the password at all 1234"}),
        get(s, f"{stack.app}/admin"),                                    # redirect_rejected (verify)
    ]
    assert [a.status_code for a in answers] == [200, 401, 302]
    signed = signed_in(stack)
    signed.headers["X-Request-ID"] = forged
    seen = get(signed, stack.protected("/whoami"))
    assert seen.status_code == 200
    assert len(seen.json()["request_id"]) == 1 and NGINX_REQUEST_ID.fullmatch(seen.json()["request_id"][0])
    for answer in answers[:2]:
        assert NGINX_REQUEST_ID.fullmatch(answer.headers["X-Request-ID"]), answer.headers["X-Request-ID"]
    wait_for = {"redirect_rejected", "login_failure"}
    for _ in range(50):  # the worker writes its log line after answering
        lines = audit_lines(stack, mark)
        if wait_for <= {line["event"] for line in lines} and len(lines) >= 3:
            break
        time.sleep(0.1)
    assert {line.get("source") for line in lines if line["event"] == "redirect_rejected"} >= {None, "verify"}
    assert all(NGINX_REQUEST_ID.fullmatch(line["request_id"]) for line in lines), lines
    assert forged not in stack.logs["authsvc"].read_text(errors="replace")


# --- next must be on the allow-list ---------------------------------------------------------------


@pytest.mark.asvs("V3.7.2")
def test_app_url_outside_the_allowed_prefix_gets_login_without_next(stack):
    s = browser(stack)
    response = get(s, f"{stack.app}/admin")   # the app is protected everywhere, allow-listed under /notes
    assert response.status_code == 302
    assert login_target(response.headers["Location"]) == (f"{stack.auth}/login", None)


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("next_url", [
    "https://evil.example.test:{port}/",
    "https://app.example.test:{port}/admin",
    "https://app.example.test:{port}/notes-evil",
    "https://app.example.test:{port}@evil.example.test/notes",
    "//evil.example.test/notes",
    "javascript:alert(1)",
], ids=["other-host", "outside-prefix", "prefix-without-boundary", "userinfo", "scheme-relative", "javascript"])
def test_login_with_next_off_the_allow_list_lands_on_the_default_page(stack, next_url):
    next_url = next_url.format(port=stack.port)
    via_link = browser(stack)   # the login page drops the bad next from its form...
    page = get(via_link, f"{stack.auth}/login?next={quote(next_url, safe='')}")
    assert "to continue to" not in page.text and 'name="next"' not in page.text
    posted = sign_in(stack, via_link, f"{stack.auth}/login?next={quote(next_url, safe='')}")
    forged = browser(stack)     # ...and the POST refuses it when an attacker puts it back
    fields = {"csrf_token": csrf_from(get(forged, f"{stack.auth}/login")), "username": USERNAME,
              "password": PASSWORD, "next": next_url}
    direct = forged.post(f"{stack.auth}/login", data=fields, allow_redirects=False, timeout=10)
    for response in (posted, direct):
        assert response.status_code == 303
        assert response.headers["Location"] == "/", response.headers["Location"]


# --- the harness itself: a missing dependency must not turn CI green --------------------------


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_dependency_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no-such-binary-for-authsvc is not installed"):
        require_binary("no-such-binary-for-authsvc")
    with pytest.raises(outcome, match="no_such_module_for_authsvc"):
        require_module("no_such_module_for_authsvc")


# --- authsvc's cookies never reach the app (review finding 3) ------------------------------------

# (Cookie header as a browser or an attacker sends it to the app, with {s} for the live session
# cookie; the cookies the app must be sent). The session must be there once for verify to let the
# request through: nginx's auth subrequest still gets every cookie.
APP_COOKIES = [
    ("{s}", []),
    ("app=1; {s}", ["app=1"]),
    ("{s}; app=1", ["app=1"]),
    ("a=1; {s}; b=2", ["a=1", "b=2"]),
    ("a=1;{s};b=2", ["a=1", "b=2"]),
    ("a=1 ;\t{s} ; b=2", ["a=1", "b=2"]),
    ("{s};", []),
    # remember-me and device cookies an older authsvc shared under the domain, and other spellings
    ("__Secure-authsvc_remember=r; app=1; {s}; __Secure-authsvc_device=d", ["app=1"]),
    ("{s}; __Host-authsvc_remember=r; __Host-authsvc_device=d; authsvc_session=z; app=1", ["app=1"]),
    ("authsvc_remember =r; {s}", []),
    # the app's own cookies whose names contain or extend ours stay
    ("xauthsvc_session=k1; {s}; authsvc_session_app=k2; my__Secure-authsvc_device=k3; authsvc_sessions=k4",
     ["xauthsvc_session=k1", "authsvc_session_app=k2", "my__Secure-authsvc_device=k3", "authsvc_sessions=k4"]),
    ("app=authsvc_session=v; {s}", ["app=authsvc_session=v"]),
    ("__host-authsvc_session=k; {s}", ["__host-authsvc_session=k"]),   # not a name authsvc writes
    # five of ours: more than any browser holds; the app gets no cookie at all rather than one of them
    ("app=1; {s}; authsvc_session=1; authsvc_remember=2; authsvc_device=3; __Host-authsvc_device=4", []),
]


def app_cookies(answer: dict) -> list[str]:
    assert len(answer["cookie"]) <= 1, answer
    return [part.strip() for part in "".join(answer["cookie"]).split(";") if part.strip()]


@pytest.mark.asvs("V3.3.1", "V14.2.1")
@pytest.mark.parametrize(("header", "expected"), APP_COOKIES)
def test_the_app_never_receives_authsvcs_cookies(stack, header, expected):
    session = signed_in(stack).cookies.get(SESSION)
    client = browser(stack)
    answer = get(client, stack.protected("/cookies"), headers={"Cookie": header.format(s=f"{SESSION}={session}")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["user"] == [USERNAME]
    assert app_cookies(answer.json()) == expected
    assert session not in answer.text


@pytest.mark.asvs("V3.3.1")
def test_two_session_cookies_at_the_app_are_not_let_through(stack):
    """A copy planted by a sibling site (Path=/notes) must not decide who the app sees."""
    victim, mallory = signed_in(stack).cookies.get(SESSION), signed_in(stack).cookies.get(SESSION)
    hits = len(stack.app_hits)
    for header in (f"{SESSION}={mallory}; {SESSION}={victim}", f"{SESSION}={victim}; {SESSION}={victim}"):
        answer = get(browser(stack), stack.protected("/planted"), headers={"Cookie": header})
        assert answer.status_code == 302
        assert login_target(answer.headers["Location"])[0] == f"{stack.auth}/login"
    assert len(stack.app_hits) == hits


# --- login CSRF from a sibling host (review finding 6), through nginx and gunicorn ---------------

SIBLING = "https://evil.example.test"


@pytest.mark.asvs("V3.5.1")
@pytest.mark.parametrize("headers", [
    {"Origin": SIBLING, "Sec-Fetch-Site": "same-site"},
    {"Origin": SIBLING},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "{auth}", "Sec-Fetch-Site": "same-site"},
    {"Origin": "{auth}/"},
    {"Origin": "{auth}, {auth}"},
    {"Origin": "http://auth.example.test:{port}"},
    {"Origin": "https://auth.example.test"},          # the default port, not nginx's
    {"Origin": "{auth}", "Sec-Fetch-Site": "same-origin, same-site"},
])
def test_login_posted_from_another_origin_is_refused_through_nginx(stack, headers):
    s = browser(stack)
    page = get(s, f"{stack.auth}/login")
    sent = {k: v.format(auth=stack.auth, port=stack.port) for k, v in headers.items()}
    answer = s.post(f"{stack.auth}/login", allow_redirects=False, timeout=10, headers=sent,
                    data={"csrf_token": csrf_from(page), "username": USERNAME, "password": PASSWORD})
    assert answer.status_code == 403, answer.text
    assert get(s, stack.protected("/")).status_code == 302, "not signed in"


@pytest.mark.parametrize("headers", [{"Origin": "{auth}", "Sec-Fetch-Site": "same-origin"}, {"Origin": "{auth}"}, {}])
def test_login_from_the_services_own_origin_or_a_script_works_through_nginx(stack, headers):
    s = browser(stack)
    page = get(s, f"{stack.auth}/login")
    sent = {k: v.format(auth=stack.auth) for k, v in headers.items()}
    answer = s.post(f"{stack.auth}/login", allow_redirects=False, timeout=10, headers=sent,
                    data={"csrf_token": csrf_from(page), "username": USERNAME, "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    assert get(s, stack.protected("/")).status_code == 200
