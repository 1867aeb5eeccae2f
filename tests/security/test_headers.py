"""Control 6: browser security headers, caching, HTTPS enforcement and the cross-origin surface.

The headers must hold on every response a browser or a cache can see, error pages included (a
404 or a 413 that forgets HSTS or frame-ancestors is still a page an attacker can frame or strip).
Each test names the attack the header stops.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import authsvc
from authsvc.core.accounts import UsernameTaken
from tests.conftest import PASSWORD, add_user, build_app, csrf, login, new_client

ALLOWED_ORIGIN = "https://app.example.test"  # AUTHSVC_REDIRECT_ALLOWED_ORIGINS in conftest
HTTP = "http://auth.example.test"
ONE_YEAR = 31536000
TEMPLATES = Path(authsvc.__file__).parent / "web" / "templates"


# --- helpers ---------------------------------------------------------------------------------------

def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            assert words[0].lower() not in directives, f"directive {words[0]} repeated"
            directives[words[0].lower()] = words[1:]
    return directives


def assert_security_headers(response) -> None:
    label = f"{response.request.method} {response.request.path} -> {response.status_code}"
    hsts = response.headers.get("Strict-Transport-Security", "")
    parts = [p.strip().lower() for p in hsts.split(";")]
    max_age = [int(p.split("=", 1)[1]) for p in parts if p.startswith("max-age=")]
    assert max_age and max_age[0] >= ONE_YEAR, f"{label}: HSTS {hsts!r}"
    assert "includesubdomains" in parts, f"{label}: HSTS {hsts!r}"

    assert response.headers.get("X-Content-Type-Options") == "nosniff", label
    assert response.headers.get("Referrer-Policy") == "same-origin", label

    csp_header = response.headers.get("Content-Security-Policy", "")
    assert len(response.headers.getlist("Content-Security-Policy")) == 1, label
    csp = csp_directives(csp_header)
    for directive in ("default-src", "frame-ancestors", "base-uri", "object-src"):
        assert csp.get(directive) == ["'none'"], f"{label}: {directive} in {csp_header!r}"
    assert sorted(csp.get("form-action", [])) == sorted(["'self'", ALLOWED_ORIGIN]), f"{label}: {csp_header!r}"
    assert "'unsafe-inline'" not in csp_header and "'unsafe-eval'" not in csp_header, label
    # One static script (passkeys.js) and its JSON posts to the service itself; never inline script.
    assert csp.get("script-src") == ["'self'"] and csp.get("connect-src") == ["'self'"], f"{label}: {csp_header!r}"
    for directive in ("script-src-elem", "script-src-attr"):
        assert directive not in csp or csp[directive] == ["'none'"], label


def assert_no_store(response) -> None:
    label = f"{response.request.method} {response.request.path} -> {response.status_code}"
    directives = [d.strip().lower() for d in response.headers.get("Cache-Control", "").split(",")]
    assert "no-store" in directives, f"{label}: Cache-Control {response.headers.get('Cache-Control')!r}"


def logged_in(app):
    try:
        add_user(app)
    except UsernameTaken:
        pass
    client = new_client(app)
    assert login(client).status_code == 303
    return client


def _throttled(app):
    client = new_client(app)
    client.environ_base["REMOTE_ADDR"] = "192.0.2.99"
    for i in range(30):
        response = client.post("/login", data={"csrf_token": csrf(client), "username": f"nobody{i}",
                                               "password": "not the password"})
        if response.status_code == 429:
            return response
    raise AssertionError("no 429 after 30 failed logins from one client")


# Each entry: a request a browser (or an attacker) can make, and whether it carries or depends on
# a session (then it must never be stored by a cache).
RESPONSES = {
    "login_page": (lambda app: new_client(app).get("/login"), True),
    "login_post_303": (lambda app: _login_response(app, PASSWORD), True),
    "login_post_401": (lambda app: _login_response(app, "wrong password, sorry"), True),
    "verify_200": (lambda app: logged_in(app).get("/auth/verify"), True),
    "verify_401": (lambda app: new_client(app).get("/auth/verify"), True),
    "account_page": (lambda app: logged_in(app).get("/"), True),
    "api_session_200": (lambda app: logged_in(app).get("/api/v1/session"), True),
    "api_session_401": (lambda app: new_client(app).get("/api/v1/session"), True),
    "error_400_csrf": (lambda app: new_client(app).post("/login", data={"username": "a", "password": "b"}), True),
    "error_404": (lambda app: new_client(app).get("/no/such/page"), True),
    "error_405": (lambda app: new_client(app).get("/logout"), True),
    "error_413": (lambda app: new_client(app).post("/login", data="x" * 70_000,
                                                   content_type="application/x-www-form-urlencoded"), True),
    "error_429": (_throttled, True),
    "logout": (lambda app: _logout(app), True),
    "healthz": (lambda app: new_client(app).get("/healthz"), False),
    "readyz": (lambda app: new_client(app).get("/readyz"), False),
    "static_css": (lambda app: new_client(app).get("/static/authsvc.css"), False),
}


def _login_response(app, password):
    add_user(app)
    return login(new_client(app), password=password)


def _logout(app):
    client = logged_in(app)
    return client.post("/logout", data={"csrf_token": csrf(client, "/")})


EXPECTED_STATUS = {"login_page": 200, "login_post_303": 303, "login_post_401": 401, "verify_200": 200,
                   "verify_401": 401, "account_page": 200, "api_session_200": 200, "api_session_401": 401,
                   "error_400_csrf": 400, "error_404": 404, "error_405": 405, "error_413": 413, "error_429": 429,
                   "logout": 303, "healthz": 200, "readyz": 200, "static_css": 200}


# --- headers on every response -----------------------------------------------------------------------

@pytest.mark.asvs("V3.4.1", "V3.4.3", "V3.4.4", "V3.4.5", "V3.4.6")
@pytest.mark.parametrize("name", list(RESPONSES))
def test_every_response_carries_hsts_nosniff_referrer_policy_and_a_locked_down_csp(app, name):
    response = RESPONSES[name][0](app)
    assert response.status_code == EXPECTED_STATUS[name]
    assert_security_headers(response)


@pytest.mark.asvs("V14.2.2", "V14.3.2")
@pytest.mark.parametrize("name", [n for n, (_, private) in RESPONSES.items() if private])
def test_session_bearing_responses_are_never_stored_by_caches(app, name):
    response = RESPONSES[name][0](app)
    assert response.status_code == EXPECTED_STATUS[name]
    assert_no_store(response)


@pytest.mark.asvs("V3.4.8", "V3.5.8")
@pytest.mark.parametrize("name", ["login_page", "account_page", "verify_200", "error_404"])
def test_cross_origin_windows_and_embeds_are_isolated(app, name):
    response = RESPONSES[name][0](app)
    assert response.headers.get("Cross-Origin-Opener-Policy") == "same-origin"
    assert response.headers.get("Cross-Origin-Resource-Policy") == "same-origin"
    assert response.headers.get("X-Frame-Options") == "DENY"


def test_csp_form_action_lists_exactly_self_and_each_allowed_app(tmp_path):
    app = build_app(tmp_path, AUTHSVC_REDIRECT_ALLOWED_ORIGINS="https://app.example.test,https://wiki.example.test")
    csp = csp_directives(new_client(app).get("/login").headers["Content-Security-Policy"])
    assert sorted(csp["form-action"]) == sorted(["'self'", "https://app.example.test", "https://wiki.example.test"])


# --- no inline script or style anywhere --------------------------------------------------------------

# The one way a page may load script: an empty element naming a file of the service's own /static/.
_STATIC_SCRIPT = re.compile(r"""<script src="(?:/static/[a-z]+\.js|\{\{ url_for\('static', filename='[a-z]+\.js'\) \}\})" defer></script>""")


class _Inline(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        if tag == "style":
            self.problems.append(f"<{tag}>")
        if tag == "script":
            self.in_script = True
            if not dict(attrs).get("src"):
                self.problems.append("<script> without src")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}=javascript:...>")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.problems.append("inline script")


def inline_problems(html: str) -> list[str]:
    parser = _Inline()
    parser.feed(html)
    raw = [m for m in re.findall(r"<\s*script|<\s*style|\bstyle\s*=", _STATIC_SCRIPT.sub("", html), re.IGNORECASE)]
    return parser.problems + raw


@pytest.mark.asvs("V3.4.3")
@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_need_no_unsafe_inline(template):
    assert inline_problems((TEMPLATES / template).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("html", [
    "<script>alert(1)</script>",
    '<script src="/static/passkeys.js">alert(1)</script>',
    '<script src="https://evil.example/x.js" defer></script>',
    '<script src="//evil.example/static/x.js" defer></script>',
    '<script src="/static/passkeys.js" defer onload="alert(1)"></script>',
    '<script src="data:text/javascript,alert(1)" defer></script>',
    "<SCRIPT>alert(1)</SCRIPT>",
    '<script src="/static/passkeys.js" defer></script><script>alert(1)</script>',
])
def test_the_inline_check_still_catches_inline_and_foreign_script(html):
    """Only an empty element loading a file of /static/ passes (passkeys.js, issue 17)."""
    assert inline_problems(html) != []


def test_the_inline_check_lets_the_one_static_script_through():
    assert inline_problems('<script src="/static/passkeys.js" defer></script>') == []


def test_template_list_is_not_empty():
    assert {"base.html", "login.html", "account.html", "error.html"} <= {p.name for p in TEMPLATES.glob("*.html")}


@pytest.mark.asvs("V3.4.3")
@pytest.mark.parametrize("name", ["login_page", "login_post_401", "account_page", "error_404", "error_413"])
def test_rendered_pages_need_no_unsafe_inline(app, name):
    response = RESPONSES[name][0](app)
    assert response.mimetype == "text/html"
    assert inline_problems(response.get_data(as_text=True)) == []


# --- HTTPS -------------------------------------------------------------------------------------------

@pytest.mark.asvs("V12.2.1")
@pytest.mark.parametrize("path", ["/login", "/", "/api/v1/session"])
def test_plain_http_request_is_sent_to_https(app, path):
    response = new_client(app).get(path, base_url=HTTP)
    assert response.status_code == 302  # temporary (authsvc.web.headers: force_https_permanent=False)
    assert response.headers["Location"] == f"https://auth.example.test{path}"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("value", ["1", "true"])
def test_a_leftover_flask_debug_never_turns_the_https_redirect_off_in_production(tmp_path, monkeypatch, value):
    """Flask reads FLASK_DEBUG, and Flask-Talisman skips force_https in debug mode: production keeps
    debug off, whatever the environment says."""
    monkeypatch.setenv("FLASK_DEBUG", value)
    app = build_app(tmp_path)
    assert app.debug is False
    response = new_client(app).get("/login", base_url=HTTP)
    assert response.status_code == 302 and response.headers["Location"].startswith("https://")


@pytest.mark.asvs("V12.2.1")
def test_client_forged_x_forwarded_proto_does_not_pass_for_https(app):
    response = new_client(app).get("/login", base_url=HTTP, headers={"X-Forwarded-Proto": "https"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("https://")


@pytest.mark.asvs("V12.2.1")
def test_trusted_proxy_terminating_tls_is_believed(tmp_path):
    app = build_app(tmp_path, AUTHSVC_TRUSTED_PROXIES="1")
    client = new_client(app)
    behind_proxy = client.get("/login", base_url=HTTP,
                              headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    assert behind_proxy.status_code == 200
    assert_security_headers(behind_proxy)
    # Even with a trusted proxy, a request the proxy marked as plain http is still redirected.
    plain = client.get("/login", base_url=HTTP, headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "http"})
    assert plain.status_code == 302


@pytest.mark.asvs("V4.1.2")
@pytest.mark.parametrize("path, status", [("/auth/verify", 401), ("/healthz", 200), ("/readyz", 200)])
def test_proxy_facing_endpoints_are_not_redirected_over_internal_http(app, path, status):
    response = new_client(app).get(path, base_url=HTTP)
    assert response.status_code == status
    assert "Location" not in response.headers


# --- cross-origin reads, odd methods, JSONP, cache deception -------------------------------------------

@pytest.mark.asvs("V3.4.2")
@pytest.mark.parametrize("method, path", [("GET", "/login"), ("GET", "/api/v1/session"), ("GET", "/auth/verify"),
                                          ("OPTIONS", "/api/v1/session"), ("OPTIONS", "/login")])
def test_cors_does_not_reflect_an_attacker_origin(app, method, path):
    client = logged_in(app)
    response = client.open(path, method=method, headers={"Origin": "https://evil.example",
                                                         "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.asvs("V13.4.4")
@pytest.mark.parametrize("path", ["/login", "/", "/api/v1/session", "/logout"])
def test_trace_is_refused(client, path):
    response = client.open(path, method="TRACE", headers={"X-Canary": "echo-me"})
    assert response.status_code == 405
    assert b"echo-me" not in response.get_data()


@pytest.mark.asvs("V13.4.4")
def test_trace_to_verify_is_answered_as_get_and_echoes_nothing(client):
    """/auth/verify answers every method as GET (a proxy may forward the original one): a TRACE gets
    the anonymous 401, empty, never an echo of the request."""
    response = client.open("/auth/verify", method="TRACE", headers={"X-Canary": "echo-me"})
    assert response.status_code == 401
    assert response.get_data() == b"" and "echo-me" not in str(response.headers)


@pytest.mark.asvs("V3.5.6")
@pytest.mark.parametrize("path", ["/api/v1/session", "/healthz", "/readyz", "/auth/verify", "/login"])
def test_jsonp_callback_is_ignored(app, path):
    response = logged_in(app).get(path, query_string={"callback": "stealData", "jsonp": "stealData"})
    assert "javascript" not in response.mimetype
    assert not response.get_data(as_text=True).lstrip().startswith("stealData")


@pytest.mark.asvs("V14.2.5")
@pytest.mark.parametrize("path", ["/auth/verify/x.css", "/login/a.js", "/api/v1/session/x.css", "/healthz/x.png",
                                  "/account/x.css", "/login;x.css", "/auth/verify%2Fx.css"])
def test_web_cache_deception_paths_are_404(app, path):
    response = logged_in(app).get(path)
    assert response.status_code == 404
    assert_no_store(response)
    assert b"alice" not in response.get_data()


@pytest.mark.asvs("V4.1.1")
@pytest.mark.parametrize("name", ["login_page", "error_404", "account_page"])
def test_html_declares_its_charset(app, name):
    response = RESPONSES[name][0](app)
    assert response.headers["Content-Type"].lower().replace(" ", "") == "text/html;charset=utf-8"
