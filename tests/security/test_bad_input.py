"""Control 7: hostile input gets a clear 4xx, never a 500, a traceback, or a leaked secret.

What no browser form would send (invalid UTF-8, NUL bytes, repeated fields, megabyte bodies,
thousands of multipart parts, forged or oversized cookies, wrong methods) is refused early with a
4xx. Nothing an attacker sends, and no password, cookie or session token, shows up in a log line or
an error page: the last test replays the whole list with a canary password and greps the logs.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
import zlib
from urllib.parse import quote

import pytest

from tests.conftest import (
    HTTPS,
    PASSWORD,
    add_user,
    browser,
    cookie_value,
    csrf,
    login,
    new_client,
)

SESSION = "__Host-authsvc_session"
REMEMBER = "__Host-authsvc_remember"
DEVICE = "__Host-authsvc_device"
HOST = HTTPS.split("://")[1]
FORM = "application/x-www-form-urlencoded"
MAX_BODY = 65536  # policies/default.toml [limits] max_content_length


# --- helpers ---------------------------------------------------------------------------------------

_next_ip = iter(range(1, 1_000_000))


def fresh_client(app):
    """A client from its own address, so the per-client login limit never hides the answer."""
    client = new_client(app)
    n = next(_next_ip)
    client.environ_base["REMOTE_ADDR"] = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    return client


def assert_clean_refusal(response, *statuses: int) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code in statuses, (response.status_code, body[:300])
    assert "traceback" not in body.lower()
    assert "werkzeug" not in body.lower()
    assert 'File "' not in body


def raw_login(app, body: str, **kwargs):
    """POST /login with a hand-written urlencoded body after a genuine CSRF token."""
    client = fresh_client(app)
    token = csrf(client)
    return client, client.post("/login", data=f"csrf_token={quote(token)}&{body}", content_type=FORM, **kwargs)


def session_token(client) -> str | None:
    value = cookie_value(client, SESSION)
    if not value:
        return None
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(raw) if value.startswith(".") else raw).get("_user_id")


PW = quote(PASSWORD)


# --- malformed form fields -------------------------------------------------------------------------

BAD_FIELDS = {
    "non_utf8_username": f"username=%ff%fe%fd&password={PW}",
    "non_utf8_password": "username=alice&password=correct%ff%fehorse",
    "overlong_utf8_slash": f"username=%c0%afalice&password={PW}",
    "lone_surrogate_utf8": f"username=alice&password=%ed%a0%80{PW}",
    "nul_in_username": f"username=ali%00ce&password={PW}",
    "nul_in_password": f"username=alice&password={PW}%00",
    "missing_username": f"password={PW}",
    "missing_password": "username=alice",
    "no_fields_at_all": "",
    "duplicate_username": f"username=alice&username=bob&password={PW}",
    "duplicate_password": f"username=alice&password={PW}&password=guess",
    "huge_username": f"username={'a' * 10_000}&password={PW}",
    "password_over_the_cap": f"username=alice&password={'p' * 1100}",
}


@pytest.mark.asvs("V2.2.1", "V16.5.1")
@pytest.mark.parametrize("case", list(BAD_FIELDS))
def test_malformed_login_fields_are_refused_with_400(app, user, case):
    client, response = raw_login(app, BAD_FIELDS[case])
    assert_clean_refusal(response, 400)
    assert client.get("/auth/verify").status_code == 401


@pytest.mark.asvs("V2.2.1")
def test_the_same_raw_body_with_good_fields_logs_in(app, user):
    """Control for the cases above: the hand-written body itself is fine."""
    client, response = raw_login(app, f"username=alice&password={PW}")
    assert response.status_code == 303
    assert client.get("/auth/verify").status_code == 200


@pytest.mark.asvs("V6.2.8")
def test_password_that_literally_contains_percent_ff_still_logs_in(app):
    # The text "%FF" (sent as %25FF) is a valid password; only undecodable bytes are refused.
    odd = "literally %FF%FE in my passphrase"
    add_user(app, "bob", odd)
    client = fresh_client(app)
    assert login(client, "bob", odd).status_code == 303


@pytest.mark.asvs("V2.2.1", "V16.5.1")
@pytest.mark.parametrize("size", [MAX_BODY + 1, 1_000_000])
def test_oversized_body_is_refused_with_413(app, size):
    client = fresh_client(app)
    token = csrf(client)
    body = f"csrf_token={quote(token)}&username=alice&password=" + "x" * size
    assert_clean_refusal(client.post("/login", data=body, content_type=FORM), 413)


@pytest.mark.asvs("V2.2.1", "V16.5.1")
def test_multipart_with_a_thousand_parts_is_refused(app):
    client = fresh_client(app)
    data = {f"field{i}": "x" for i in range(1000)}
    data["csrf_token"] = csrf(client)
    response = client.post("/login", data=data, content_type="multipart/form-data")
    assert_clean_refusal(response, *range(400, 500))


@pytest.mark.asvs("V2.2.1")
@pytest.mark.parametrize("username, status", [(b"\xff\xfealice", 400), (b"ali\x00ce", 400), (b"alice", 303)],
                         ids=["invalid-utf8", "nul", "control-valid"])
def test_multipart_with_invalid_utf8_username_is_refused(app, user, username, status):
    client = fresh_client(app)
    boundary = "authsvc-test-boundary"
    parts = [("csrf_token", csrf(client).encode()), ("username", username), ("password", PASSWORD.encode())]
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
                    for name, value in parts) + f"--{boundary}--\r\n".encode()
    response = client.post("/login", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert_clean_refusal(response, status)


@pytest.mark.asvs("V13.4.4", "V16.5.1")
@pytest.mark.parametrize("method, path", [
    ("PUT", "/login"), ("DELETE", "/login"), ("PATCH", "/login"), ("TRACE", "/login"),
    # Not /auth/verify: it answers every method as GET (a proxy may forward the original method;
    # test_forward_auth.py::test_every_method_is_answered_as_get_is_and_no_automatic_options_lets_a_request_through).
    ("GET", "/logout"), ("PUT", "/logout"), ("POST", "/healthz"), ("DELETE", "/api/v1/session"),
])
def test_wrong_methods_are_405(client, method, path):
    assert_clean_refusal(client.open(path, method=method), 405)


# --- malformed cookies -----------------------------------------------------------------------------

GARBAGE_COOKIES = {
    "not_base64": "!!!not*base64@@@",
    "empty": "",
    "dots_only": "....",
    "compressed_garbage": ".eJz" + "A" * 200 + ".aaaa.bbbb",
    "bad_zlib": "." + base64.urlsafe_b64encode(b"\x78\x9cnot zlib").decode() + ".awE_1Q.c2ln",
    "json_not_object": base64.urlsafe_b64encode(b"[1,2,3]").decode().rstrip("=") + ".awE_1Q.c2ln",
    "percent_junk": "%ff%00%fe",
    "huge_8kb": "A" * 8192,
    "unicode": "s\u00e9ssion\u2603",
}

PAGES = ["/auth/verify", "/login", "/", "/api/v1/session", "/healthz"]


@pytest.mark.asvs("V16.5.1", "V9.1.1")
@pytest.mark.parametrize("cookie", [SESSION, REMEMBER, DEVICE])
@pytest.mark.parametrize("garbage", list(GARBAGE_COOKIES))
def test_malformed_cookies_never_cause_a_500(app, garbage, cookie):
    client = new_client(app, use_cookies=False)
    header = f"{cookie}={GARBAGE_COOKIES[garbage]}".encode().decode("latin-1")
    for path in PAGES:
        response = client.get(path, environ_overrides={"HTTP_COOKIE": header})
        assert_clean_refusal(response, 200, 303, 401)
        if path == "/auth/verify":
            assert response.status_code == 401


@pytest.mark.asvs("V16.5.1")
def test_hundreds_of_cookies_and_duplicates_never_cause_a_500(app):
    client = new_client(app, use_cookies=False)
    header = "; ".join([f"c{i}={'v' * 20}" for i in range(400)] +
                       [f"{SESSION}=junk{i}" for i in range(50)] + [f"{REMEMBER}=junk", f"{DEVICE}=junk"])
    for path in PAGES:
        # Two session cookies are refused (one was planted: authsvc.web.crosssite), cleanly.
        assert_clean_refusal(client.get(path, headers={"Cookie": header}), 200, 303, 400, 401)


@pytest.mark.asvs("V16.5.1")
@pytest.mark.filterwarnings("ignore:The '__Host-authsvc_.*' cookie is too large")
@pytest.mark.parametrize("garbage", ["huge_8kb", "not_base64", "bad_zlib"])
def test_login_still_works_next_to_garbage_cookies(app, user, garbage):
    client = fresh_client(app)
    for name in (REMEMBER, DEVICE):
        client.set_cookie(name, GARBAGE_COOKIES[garbage], domain=HOST)
    response = login(client)
    assert response.status_code == 303
    assert client.get("/auth/verify").status_code == 200


# --- hostile next ----------------------------------------------------------------------------------

@pytest.mark.asvs("V2.2.1", "V16.5.1")
def test_hundred_kilobyte_next_is_ignored_and_login_lands_on_the_default(app, user):
    huge = "/" + "a" * 100_000
    client = fresh_client(app)
    page = client.get("/login", query_string={"next": huge})
    assert_clean_refusal(page, 200)
    assert huge not in page.get_data(as_text=True)
    response = client.post("/login", query_string={"next": huge},
                           data={"csrf_token": csrf(client), "username": "alice", "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert client.get("/auth/verify").status_code == 200


@pytest.mark.asvs("V16.5.1")
@pytest.mark.parametrize("query", ["next=%ff%fe", "next=%00", "next=" + "%" * 50, "next=\\\\x", "next[]=1&next=2"])
def test_undecodable_next_never_causes_a_500(app, query):
    assert_clean_refusal(fresh_client(app).get("/login?" + query), 200)


# --- no secret in logs or error pages --------------------------------------------------------------

@pytest.mark.asvs("V16.2.5", "V16.5.1", "V14.2.1")
def test_no_password_cookie_or_session_token_reaches_a_log_line_or_page(app, caplog):
    canary = f"CANARY-pw-{uuid.uuid4()}"
    add_user(app, "carol", canary)
    caplog.set_level(logging.DEBUG)
    pages: list[str] = []

    def seen(response):
        pages.append(response.get_data(as_text=True))
        pages.extend(response.headers.getlist("Location"))
        return response

    # A successful and a failed login with the canary password.
    victim = fresh_client(app)
    ok = seen(victim.post("/login", data={"csrf_token": csrf(victim), "username": "carol", "password": canary,
                                          "remember": "on"}))
    assert ok.status_code == 303
    stolen = {name: cookie_value(victim, name) for name in (SESSION, REMEMBER, DEVICE)}
    stolen["session_token"] = session_token(victim)
    assert all(stolen.values()), stolen
    seen(victim.get("/"))
    seen(victim.get("/api/v1/session"))
    failed = fresh_client(app)
    assert seen(login(failed, "carol", canary + "x")).status_code == 401
    assert seen(login(fresh_client(app), "alice-does-not-exist", canary)).status_code == 401

    # Every malformed request above, carrying the canary where it fits.
    pw = quote(canary)
    for body in [f"username=carol&password={pw}%00", f"username=carol&password={pw}%ff",
                 f"username=carol&password={pw}&password={pw}", f"password={pw}",
                 f"username={'c' * 10_000}&password={pw}", f"username=carol&password={pw}{'x' * 70_000}"]:
        seen(raw_login(app, body)[1])
    client = fresh_client(app)
    data = {f"f{i}": canary for i in range(1000)}
    data["csrf_token"] = csrf(client)
    seen(client.post("/login", data=data, content_type="multipart/form-data"))
    seen(fresh_client(app).post("/login", data={"username": "carol", "password": canary}))  # no CSRF token
    seen(fresh_client(app).post("/login", data={"username": "carol", "password": canary, "csrf_token": canary}))
    seen(fresh_client(app).get("/login", query_string={"username": "carol", "password": canary}))
    seen(fresh_client(app).put("/login", data={"password": canary}))
    seen(fresh_client(app).post("/auth/verify", data={"password": canary}))

    # Mangled copies of the cookies (forged signatures), then the victim logs out and a thief
    # replays the exact cookies from another browser.
    for name in (SESSION, REMEMBER, DEVICE):
        for value in (stolen[name] + "x", stolen[name][:-5], "x" + stolen[name]):
            other = new_client(app, use_cookies=False)
            for path in PAGES:
                seen(other.get(path, headers={"Cookie": f"{name}={value}"}))
    assert seen(victim.post("/logout", data={"csrf_token": csrf(victim, "/")})).status_code == 303
    for name in (SESSION, REMEMBER, DEVICE):
        thief = new_client(app, use_cookies=False)
        for path in PAGES:
            seen(thief.get(path, headers={"Cookie": f"{name}={stolen[name]}", "User-Agent": "thief"}))

    logs = caplog.text
    assert "login_success" in logs and "login_failure" in logs  # the logs were really captured
    for leaked in [canary, *stolen.values()]:
        assert leaked not in logs
        for page in pages:
            assert leaked not in page


# --- a Host header the app can make no host of -------------------------------------------------------

BAD_HOSTS = ["a" * 64 + ".example.test", "auth.example.test:", "auth.example.test:x", "auth.example.test:99999",
             "auth.example.test:99999999999", "[::1", "auth..example.test", ".auth.example.test"]


@pytest.mark.parametrize("host", BAD_HOSTS)
@pytest.mark.parametrize("method, path", [("GET", "/login"), ("GET", "/healthz"), ("POST", "/oauth/token"),
                                          ("POST", "/oauth/revoke"), ("GET", "/auth/verify"), ("GET", "/nowhere")])
def test_a_host_header_with_no_usable_host_is_a_400_with_the_security_headers_not_a_500(app, capsys, host, method,
                                                                                       path):
    """nginx, Caddy and Traefik pass such a Host header on (nginx routes an unknown name to the
    first server). Authlib's https check then raised (a 500, and the unhandled_error alert an
    attacker could set off at will) and the error page's links could not be built (an exception out
    of Flask: gunicorn's bare 500, no security header): a plain 400 with every header instead."""
    from werkzeug.test import EnvironBuilder, run_wsgi_app

    environ = EnvironBuilder(path=path, method=method, base_url="https://auth.example.test",
                             data={"grant_type": "x"} if method == "POST" else None,
                             environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()
    environ["HTTP_HOST"] = host
    _body, status, headers = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert status.startswith("400 "), (host, path, status)
    assert "Content-Security-Policy" in headers and "Strict-Transport-Security" in headers
    assert "unhandled_error" not in capsys.readouterr().out


@pytest.mark.parametrize("row_id", ["0", "2147483648", str(2**63), str(2**64), "99999999999999999999999"])
def test_a_row_id_no_column_holds_is_a_404_not_a_500_or_a_503(app, user, row_id, capsys):
    """Werkzeug's int converter has no bound: 2**63 raised OverflowError in SQLite's driver (a 500
    with its traceback) and 2**31 a DataError in PostgreSQL's (503 and a false "database
    unavailable" alert, for any signed-in user to set off). Found by review, session 13."""
    client = browser(app)
    assert login(client).status_code == 303
    token = csrf(client, "/")
    for path in (f"/account/sessions/{row_id}/revoke", f"/account/passkeys/{row_id}/rename",
                 f"/account/passkeys/{row_id}/delete"):
        assert client.post(path, data={"csrf_token": token}).status_code == 404, path
    assert "unhandled_error" not in capsys.readouterr().err
