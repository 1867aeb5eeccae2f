"""/auth/verify with access rules: the threat list of "may this user reach this app".

Both parts of verify (the fast WSGI app and the Flask view it hands the rest to) decide with the
same pure function; these tests go through HTTP as a proxy would. A signed-in user a rule does not
let in gets 403 (never 200, never a login loop); a one-factor session on a two_factor rule is sent
to sign in again with its second step; bypass lets the anonymous through with no identity; the
request is described by the trusted proxy's headers only; the verify cache holds sessions, never
decisions; every method is answered alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from authsvc.core.groups import GroupExists
from tests.conftest import (
    PASSWORD,
    TEST_POLICY,
    add_user,
    build_app,
    csrf_in,
    login,
    new_client,
)
from tests.security.factors import enroll, second_step, sign_in

PUBLIC = "https://auth.example.test"
APP = "https://app.example.test"
ADMIN = "https://admin.example.test"
RULES = """
[access]
default = "one_factor"

[[access.rules]]
hosts = ["app.example.test"]
paths = ["/public"]
policy = "bypass"

[[access.rules]]
hosts = ["app.example.test"]
paths = ["/admin"]
policy = "deny"

[[access.rules]]
hosts = ["admin.example.test"]
groups = ["admins"]
policy = "two_factor"

[[access.rules]]
hosts = ["admin.example.test"]
policy = "deny"

[[access.rules]]
hosts = ["app.example.test"]
paths = ["/api"]
methods = ["DELETE"]
policy = "deny"
"""


def policy_file(tmp_path, rules: str = RULES) -> str:
    path = tmp_path / "policy.toml"
    apps = "".join(f'\n[[redirects.apps]]\norigin = "{origin}"\n' for origin in (APP, ADMIN))
    path.write_text(Path(TEST_POLICY).read_text() + apps + rules)
    return str(path)


@pytest.fixture
def ruled(tmp_path, clock):
    return build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_POLICY=policy_file(tmp_path),
                     AUTHSVC_REDIRECT_ALLOWED_ORIGINS=None)


def ask(app, url: str, client=None, mode: str | None = None, method: str = "GET", headers=None, flask_view=False):
    """/auth/verify as nginx asks it (X-Original-URL, X-Original-Method). ``flask_view``: with an
    Upgrade header, which the fast part hands to the Flask view."""
    client = client or new_client(app)
    sent = {"X-Original-URL": url, "X-Original-Method": method, **(headers or {})}
    if flask_view:
        sent["Upgrade"] = "h2c"
    return client.get("/auth/verify" + (f"?redirect={mode}" if mode else ""), headers=sent)


def signed_in(app, name: str = "alice", groups=()):
    user = add_user(app, name)
    svc = app.extensions["authsvc"]
    for group in groups:
        try:
            svc.groups.add(group)
        except GroupExists:  # added for an earlier user
            pass
        svc.groups.join(user.id, group)
    client = new_client(app)
    assert login(client, name).status_code == 303
    return user, client


BOTH_PARTS = pytest.mark.parametrize("flask_view", [False, True], ids=["fast", "flask-view"])


@pytest.mark.asvs("V8.3.1")
@BOTH_PARTS
def test_a_signed_in_user_a_rule_denies_gets_403_not_200_nor_a_login_loop(ruled, flask_view):
    _user, client = signed_in(ruled)
    for mode in (None, "1", "401"):
        answer = ask(ruled, f"{APP}/admin/x", client, mode, flask_view=flask_view)
        assert answer.status_code == 403 and "Location" not in answer.headers and "X-Auth-User" not in answer.headers
    assert ask(ruled, f"{APP}/notes", client, flask_view=flask_view).status_code == 200


@pytest.mark.asvs("V8.3.1")
@BOTH_PARTS
def test_a_user_outside_the_group_gets_403_and_a_member_with_two_factors_gets_in(ruled, clock, flask_view):
    _bob, bob = signed_in(ruled, "bob")
    assert ask(ruled, f"{ADMIN}/", bob, "1", flask_view=flask_view).status_code == 403
    carol, _ = signed_in(ruled, "carol", groups=("admins", "ops"))
    totp = enroll(ruled, carol, clock)
    client = new_client(ruled)
    assert sign_in(client, totp, "carol").status_code == 303
    answer = ask(ruled, f"{ADMIN}/", client, "1", flask_view=flask_view)
    assert answer.status_code == 200
    assert answer.headers["X-Auth-User"] == "carol" and answer.headers["X-Auth-Groups"] == "admins,ops"


def test_x_auth_groups_is_always_sent_empty_when_the_user_has_none(ruled):
    _user, client = signed_in(ruled)
    for flask_view in (False, True):
        answer = ask(ruled, f"{APP}/notes", client, flask_view=flask_view)
        assert answer.status_code == 200 and answer.headers["X-Auth-Groups"] == ""


@pytest.mark.asvs("V6.3.3")
@pytest.mark.parametrize("mode", ["1", "401"])
def test_two_factor_with_a_one_factor_session_is_sent_to_sign_in_again_with_the_second_step(ruled, clock, mode):
    carol, client = signed_in(ruled, "carol", groups=("admins",))  # password only
    enroll(ruled, carol, clock)  # a factor added after this session started
    answer = ask(ruled, f"{ADMIN}/x", client, mode)
    assert answer.status_code == (302 if mode == "1" else 401)
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{PUBLIC}/login"
    assert parse_qs(location.query) == {"next": [f"{ADMIN}/x"], "step_up": ["1"]}
    # The login page then asks for the password again instead of sending the session straight back.
    page = client.get(f"/login?{location.query}")
    assert page.status_code == 200 and 'value="carol"' in page.get_data(as_text=True)
    assert client.get(f"/login?next={ADMIN}/x").status_code == 303  # without step_up: back, as before


def test_after_the_step_up_the_new_session_gets_in(ruled, clock):
    carol, client = signed_in(ruled, "carol", groups=("admins",))
    totp = enroll(ruled, carol, clock)
    location = ask(ruled, f"{ADMIN}/", client, "1").headers["Location"]
    page = client.get(location.removeprefix(PUBLIC))
    first = client.post("/login", data={"csrf_token": csrf_in(page.get_data(as_text=True)), "username": "carol",
                                        "password": PASSWORD, "next": f"{ADMIN}/"})
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/mfa")
    done = second_step(client, totp.code(), next=f"{ADMIN}/")
    assert done.status_code == 303 and done.headers["Location"] == f"{ADMIN}/"
    answer = ask(ruled, f"{ADMIN}/", client)
    assert answer.status_code == 200 and answer.headers["X-Auth-Methods"] == "pwd,otp,mfa"


def test_two_factor_for_an_account_without_a_second_factor_is_403_not_a_loop(ruled, capsys):
    _user, client = signed_in(ruled, "carol", groups=("admins",))
    capsys.readouterr()
    assert ask(ruled, f"{ADMIN}/", client, "1").status_code == 403
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [e["reason"] for e in events if e.get("event") == "access_denied"] == ["no_second_factor"]


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", ["/public", "/public/", "/public/app.css", "/%70ublic/x", "/public?next=/admin"])
def test_bypass_lets_the_anonymous_through_with_no_identity(ruled, path):
    answer = ask(ruled, f"{APP}{path}", mode="1")
    assert answer.status_code == 200
    assert not [name for name, _ in answer.headers if name.lower().startswith("x-auth-")]
    _user, client = signed_in(ruled)
    answer = ask(ruled, f"{APP}{path}", client)
    assert answer.status_code == 200 and "X-Auth-User" not in answer.headers  # nobody's identity on a public path


@pytest.mark.asvs("V3.3.1")
@pytest.mark.parametrize("flask_view", [False, True])
def test_bypass_with_app_cookie_answers_the_apps_cookies_without_authsvcs(ruled, flask_view):
    """Traefik takes the app's Cookie header from verify's answer (``app_cookie=1``): a bypass answer
    without it would leave the app no cookies at all; with it, never authsvc's."""
    session = ruled.extensions["authsvc"].cookies.session
    client = ruled.test_client(use_cookies=False)
    headers = {"X-Original-URL": f"{APP}/public/x", "X-Original-Method": "GET", "X-Forwarded-For": "192.0.2.1",
               "X-Forwarded-Proto": "https", "Cookie": f"app=1; {session}=stolen; lang=en"}
    if flask_view:
        headers["Upgrade"] = "h2c"
    answer = client.get("/auth/verify?redirect=1&app_cookie=1", headers=headers)
    assert answer.status_code == 200 and answer.headers.get_all("Cookie") == ["app=1; lang=en"]
    assert not [name for name, _ in answer.headers if name.lower().startswith("x-auth-")]
    without = client.get("/auth/verify?redirect=1", headers=headers)  # not asked: no Cookie, as before
    assert without.status_code == 200 and "Cookie" not in without.headers


@pytest.mark.parametrize("cookie_lines", [
    "app=1,{session}=stolen", "app=1, {session}=stolen; lang=en", "lang=en; app=1 ,{session}=stolen",
    "{session}=stolen,app=1", "app=1,x=2,__Host-authsvc_remember=r; lang=en",
])
@pytest.mark.parametrize("flask_view", [False, True])
def test_cookie_lines_joined_by_a_comma_never_carry_authsvcs_cookie_to_the_app(ruled, flask_view, cookie_lines):
    """Two Cookie lines (a client that is not a browser; Traefik passes both) reach gunicorn joined
    by ",": the part holding authsvc's cookie goes whole (found by review through Traefik)."""
    session = ruled.extensions["authsvc"].cookies.session
    client = ruled.test_client(use_cookies=False)
    headers = {"X-Original-URL": f"{APP}/public/x", "X-Original-Method": "GET",
               "Cookie": cookie_lines.format(session=session)}
    if flask_view:
        headers["Upgrade"] = "h2c"
    answer = client.get("/auth/verify?redirect=1&app_cookie=1", headers=headers)
    assert answer.status_code == 200
    passed_on = "; ".join(answer.headers.get_all("Cookie"))
    assert "stolen" not in passed_on and "authsvc_" not in passed_on, passed_on
    assert ("lang=en" in passed_on) == ("lang=en" in cookie_lines)


@pytest.mark.parametrize("path", ["/public/..%2fadmin", "/public%2f..%2fadmin", "/public/%2e%2e/admin", "/public;/../admin",
                                  "/public%5c..%5cadmin", "/public/%252e%252e/admin"])
def test_encoded_detours_from_a_bypass_path_are_denied_even_signed_in(ruled, path):
    assert ask(ruled, f"{APP}{path}", mode="1").status_code == 403
    _user, client = signed_in(ruled)
    assert ask(ruled, f"{APP}{path}", client).status_code == 403


def test_an_anonymous_request_on_an_ordinary_path_still_goes_to_login(ruled):
    answer = ask(ruled, f"{APP}/notes", mode="1")
    assert answer.status_code == 302 and parse_qs(urlsplit(answer.headers["Location"]).query)["next"] == [f"{APP}/notes"]


@pytest.mark.parametrize("method", ["DELETE", "delete"])
def test_the_original_method_decides_method_rules(ruled, method):
    _user, client = signed_in(ruled)
    assert ask(ruled, f"{APP}/api/items", client, method=method).status_code == 403
    assert ask(ruled, f"{APP}/api/items", client, method="GET").status_code == 200


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize(("query", "headers"), [
    ("", {"X-HTTP-Method-Override": "DELETE"}), ("", {"X-HTTP-Method": "DELETE"}),
    ("", {"X-Method-Override": "delete"}), ("", {"x-http-method-override": "DELETE"}),
    ("", {"X-HTTP-Method-Override": ""}), ("", {"X-HTTP-Method-Override": "GET"}),
    ("?_method=DELETE", {}), ("?a=1&_method=delete", {}), ("?%5Fmethod=DELETE", {}), ("?_METHOD=DELETE", {}),
    ("?.method=DELETE", {}), ("?_method", {}), ("?x=1&%5f%6Dethod=DELETE", {}),
    # What PHP still files under _method (found by review of the fix): leading spaces dropped, a
    # name cut at a NUL, an array; and a "#" some servers keep in the query.
    ("?+_method=DELETE", {}), ("?%20%20_method=DELETE", {}), ("?_method%00=DELETE", {}), ("?_method%00x=DELETE", {}),
    ("?_method[x]=DELETE", {}), ("?a=1#&_method=DELETE", {}),
])
@BOTH_PARTS
def test_a_method_an_app_may_take_from_a_header_or_the_query_is_denied_on_a_host_with_method_rules(
        ruled, query, headers, flask_view):
    """Express's method-override, Symfony, Laravel and ASP.NET act on the method a header or a
    "_method" parameter names: a POST (or GET) that says DELETE there passed a rule denying DELETE
    (found by review of session 13's leftovers, session 14)."""
    _user, client = signed_in(ruled)
    answer = ask(ruled, f"{APP}/api/items{query}", client, method="POST", headers=headers, flask_view=flask_view)
    assert answer.status_code == 403, (query, headers, answer.status_code)
    assert ask(ruled, f"{APP}/api/items{query}", client, method="POST", flask_view=flask_view).status_code == (
        403 if query else 200)


@pytest.mark.parametrize("query", ["?methods=DELETE", "?method=DELETE", "?x_method=1", "?a=_method", "?q=%5Fmethod"])
def test_a_query_that_only_mentions_a_method_changes_nothing(ruled, query):
    _user, client = signed_in(ruled)
    assert ask(ruled, f"{APP}/api/items{query}", client, method="POST").status_code == 200


@pytest.mark.parametrize("url", [
    f"{APP}:443?/admin/x", f"{APP}?/admin/x", f"{APP}#/admin/x", f"{APP}:443#x/admin", f"{APP}:443?",
    f"{APP}", "https://alice@app.example.test/admin/x", "https://app.example.test:x/admin/x",
    "https://app.example.test:443:1/admin/x", "https:///admin/x", "https://[zz]/admin/x",
])
@BOTH_PARTS
def test_an_original_url_whose_host_or_path_is_malformed_is_denied_not_mended(ruled, url, flask_view):
    """nginx built X-Original-URL from the Host header as sent: "app:443?" routes to the app by the
    name before the colon, and a path read after a "?" or "#" became "/", where no path rule
    applies, while the app got /admin/x. A value that is not scheme://host/target is described
    nowhere: denied on a host with rules (signed in or not), never taken for "/"."""
    _user, client = signed_in(ruled)
    answer = ask(ruled, url, client, flask_view=flask_view)
    assert answer.status_code == 403, (url, answer.status_code)
    assert ask(ruled, f"{APP}/notes", client, flask_view=flask_view).status_code == 200  # a well-formed one


def test_a_rule_about_get_holds_for_head(tmp_path, clock):
    """HEAD runs the app's GET handler (side effects included), without the body: a rule listing
    GET decides HEAD too; a rule listing HEAD alone does not touch GET."""
    rules = RULES + '[[access.rules]]\nhosts = ["app.example.test"]\npaths = ["/export"]\nmethods = ["GET"]\npolicy = "deny"\n'
    rules += '[[access.rules]]\nhosts = ["app.example.test"]\npaths = ["/probe"]\nmethods = ["HEAD"]\npolicy = "deny"\n'
    app = build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_POLICY=policy_file(tmp_path, rules),
                    AUTHSVC_REDIRECT_ALLOWED_ORIGINS=None)
    _user, client = signed_in(app)
    for method, path, status in [("GET", "/export", 403), ("HEAD", "/export", 403), ("head", "/export", 403),
                                 ("POST", "/export", 200), ("HEAD", "/probe", 403), ("GET", "/probe", 200)]:
        assert ask(app, f"{APP}{path}", client, method=method).status_code == status, (method, path)


@pytest.mark.parametrize("verb", ["OPTIONS", "POST", "DELETE", "PROPFIND"])
def test_the_proxys_own_method_never_opens_a_denied_path(ruled, verb):
    """Envoy's ext_authz asks with the original method; an automatic OPTIONS answer must not pass."""
    _user, client = signed_in(ruled)
    for c in (client, new_client(ruled)):
        answer = c.open("/auth/verify", method=verb, headers={"X-Original-URL": f"{APP}/admin"})
        assert answer.status_code == 403 and "Allow" not in answer.headers
    # Without a method header, the proxy's own method is the original one.
    answer = client.open("/auth/verify", method="DELETE", headers={"X-Original-URL": f"{APP}/api/x"})
    assert answer.status_code == 403


@pytest.mark.asvs("V4.1.3")
@pytest.mark.parametrize("peer", ["203.0.113.9", "10.0.1.1"])
def test_forged_request_descriptions_from_an_untrusted_peer_are_ignored(tmp_path, clock, peer):
    """A client talking to verify itself (outside AUTHSVC_TRUSTED_PROXY_NETWORKS) cannot name the
    bypass path, or any other: without the proxy's description, rules deny."""
    app = build_app(tmp_path, clock, AUTHSVC_TRUSTED_PROXIES="1", AUTHSVC_TRUSTED_PROXY_NETWORKS="10.0.0.0/24",
                    AUTHSVC_POLICY=policy_file(tmp_path), AUTHSVC_REDIRECT_ALLOWED_ORIGINS=None)
    client = new_client(app)
    client.environ_base["REMOTE_ADDR"] = peer
    for headers in ({"X-Original-URL": f"{APP}/public"},
                    {"X-Forwarded-Host": "app.example.test", "X-Forwarded-Uri": "/public", "X-Forwarded-Proto": "https"}):
        answer = client.get("/auth/verify?redirect=1", headers=headers)
        assert answer.status_code == 403, headers
    add_user(app)
    assert login(client).status_code == 303
    assert client.get("/auth/verify", headers={"X-Original-URL": f"{APP}/notes"}).status_code == 403


def test_the_cache_holds_sessions_not_decisions(ruled):
    """Two URLs, one session, back to back (the cache warm): each gets its own decision."""
    _user, client = signed_in(ruled)
    for _ in range(3):
        assert ask(ruled, f"{APP}/notes", client).status_code == 200
        assert ask(ruled, f"{APP}/admin", client).status_code == 403
        assert ask(ruled, f"{ADMIN}/", client).status_code == 403


def test_a_group_change_reaches_verify_at_once_in_this_process(ruled, clock):
    carol, client = signed_in(ruled, "carol", groups=("admins",))
    totp = enroll(ruled, carol, clock)
    client = new_client(ruled)
    assert sign_in(client, totp, "carol").status_code == 303
    assert ask(ruled, f"{ADMIN}/", client).status_code == 200  # cached now
    svc = ruled.extensions["authsvc"]
    svc.groups.leave(carol.id, "admins")
    assert ask(ruled, f"{ADMIN}/", client).status_code == 403
    svc.groups.join(carol.id, "admins")
    assert ask(ruled, f"{ADMIN}/", client).status_code == 200
    svc.groups.remove("admins")
    assert ask(ruled, f"{ADMIN}/", client).status_code == 403


def test_denials_are_audited_with_the_rule_and_reason(ruled, capsys):
    _user, client = signed_in(ruled)
    capsys.readouterr()
    ask(ruled, f"{APP}/admin", client)
    (event,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()
                if line.startswith("{") and '"access_denied"' in line]
    assert event["reason"] == "rule" and event["rule"] == 1 and event["host"] == "app.example.test"


def test_without_rules_a_deny_default_denies_on_the_fast_path_too(tmp_path, clock):
    app = build_app(tmp_path, clock, AUTHSVC_POLICY=policy_file(tmp_path, '\n[access]\ndefault = "deny"\n'))
    _user, client = signed_in(app)
    assert client.get("/auth/verify").status_code == 403
