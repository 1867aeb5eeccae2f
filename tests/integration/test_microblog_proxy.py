"""The Mega-Tutorial's microblog (examples/microblog) behind deploy/nginx/authsvc.conf, its login
delegated to a real authsvc through flask_authsvc's proxy mode.

The stack (tests/integration/microblog_stack.py) is the one of conftest.py's ``stack`` fixture with
the echo app swapped for the microblog under gunicorn: nginx on https://auth.example.test and
https://app.example.test, authsvc behind it, the microblog trusting identity headers from 127.0.0.1
only (nginx's address). A client that reaches the microblog's port directly does so from
127.0.0.2, which loopback accepts as another address.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests

from tests.conftest import PASSWORD, csrf_in
from tests.integration.conftest import (
    APP_HOST,
    USERNAME,
)
from tests.integration.microblog_stack import Blog, browser, microblog_stack, module_fixtures

pytestmark = pytest.mark.integration

OUTSIDER = "127.0.0.2"   # a loopback address other than nginx's: "anyone but the proxy"


blog, resolve_example_test, logs_on_failure = module_fixtures(microblog_stack, "microblog-stack")


def get(s: requests.Session, url: str, **kwargs) -> requests.Response:
    return s.get(url, allow_redirects=False, timeout=10, **kwargs)


def sign_in(blog: Blog, s: requests.Session, login_url: str, username: str = USERNAME) -> requests.Response:
    """The real login form: GET it (CSRF token, next), POST it."""
    page = get(s, login_url)
    assert page.status_code == 200, page.text
    fields = {"csrf_token": csrf_in(page.text), "username": username, "password": PASSWORD}
    hidden_next = re.search(r'name="next" value="([^"]*)"', page.text)
    if hidden_next:
        fields["next"] = hidden_next.group(1).replace("&amp;", "&")
    return s.post(f"{blog.auth}/login", data=fields, allow_redirects=False, timeout=10)


def signed_in(blog: Blog) -> requests.Session:
    s = browser(blog)
    assert sign_in(blog, s, f"{blog.auth}/login").status_code == 303
    return s


def direct(blog: Blog, path: str, headers: dict[str, str | bytes], source: str) -> tuple[int, dict[str, str], str]:
    """A request straight to the microblog's port (not through nginx) from ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", blog.app_port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers={"Host": APP_HOST, **headers})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


# --- the delegated login, end to end ---------------------------------------------------------------

@pytest.mark.asvs("V7.2.1", "V7.4.1")
def test_microblog_login_is_authsvcs_round_trip(blog):
    s = browser(blog)
    first = get(s, f"{blog.app}/index")
    assert first.status_code == 302
    login = urlsplit(first.headers["Location"])
    assert f"{login.scheme}://{login.netloc}{login.path}" == f"{blog.auth}/login"
    assert parse_qs(login.query)["next"] == [f"{blog.app}/index"]

    assert "to continue to <strong>Microblog</strong>" in get(s, first.headers["Location"]).text
    posted = sign_in(blog, s, first.headers["Location"])
    assert posted.status_code == 303 and posted.headers["Location"] == f"{blog.app}/index"

    home = get(s, f"{blog.app}/index")
    assert home.status_code == 200, home.text
    assert "<h1>Hi, alice!</h1>" in home.text              # current_user, made from X-Auth-User
    assert "Set-Cookie" not in home.headers                  # the app keeps no login state
    profile = get(s, f"{blog.app}/user/alice")
    assert profile.status_code == 200 and "Signed in through authsvc with: pwd;" in profile.text

    # Logout: the app's link leads to authsvc's account page, whose Sign out ends the session; the
    # app has no sign-out endpoint of its own that another site could call.
    link = re.search(r'<a class="authsvc-logout" href="([^"]+)">Logout</a>', home.text)
    assert link and link.group(1) == f"{blog.auth}/", home.text
    assert get(s, f"{blog.app}/authsvc/logout").status_code == 404
    assert get(s, f"{blog.app}/logout").status_code == 404
    account = get(s, link.group(1))
    assert account.status_code == 200
    ended = s.post(f"{blog.auth}/logout", data={"csrf_token": csrf_in(account.text)}, allow_redirects=False,
                   timeout=10)
    assert ended.status_code == 303
    again = get(s, f"{blog.app}/index")
    assert again.status_code == 302 and again.headers["Location"].startswith(f"{blog.auth}/login")


def test_microblog_user_row_is_kept_across_sign_ins(blog):
    for _ in range(2):
        s = signed_in(blog)
        assert "<h1>Hi, alice!</h1>" in get(s, f"{blog.app}/").text
    assert get(signed_in(blog), f"{blog.app}/user/alice").status_code == 200


# --- identity is nginx's to set, never the client's ---------------------------------------------------

@pytest.mark.asvs("V4.1.3", "V8.3.1")
def test_identity_headers_through_nginx_are_authsvcs_not_the_clients(blog):
    s = signed_in(blog)
    forged = {"X-Auth-User": "mallory", "X-Auth-User-Id": "999", "X-Auth-Groups": "admins",
              "X-Auth-Methods": "pwd,otp,mfa"}
    profile = get(s, f"{blog.app}/user/alice", headers=forged)
    assert profile.status_code == 200
    assert "Signed in through authsvc with: pwd; groups: none." in profile.text
    assert "<h1>Hi, alice!</h1>" in get(s, f"{blog.app}/", headers=forged).text


def test_anonymous_client_with_forged_identity_through_nginx_goes_to_login(blog):
    response = get(browser(blog), f"{blog.app}/index", headers={"X-Auth-User": USERNAME, "X-Auth-User-Id": "1"})
    assert response.status_code == 302 and response.headers["Location"].startswith(f"{blog.auth}/login")


@pytest.mark.asvs("V4.1.3")
def test_forged_identity_sent_straight_to_the_app_is_ignored(blog):
    """Past the proxy, from any address but nginx's: the headers are not believed, and logged."""
    forged = {"X-Auth-User": USERNAME, "X-Auth-User-Id": "1", "X-Auth-Methods": "pwd,otp,mfa"}
    status, headers, _ = direct(blog, "/index", forged, OUTSIDER)
    assert status == 302
    assert headers["Location"].startswith(f"{blog.auth}/login?next=")
    assert "untrusted peer 127.0.0.2 ignored" in blog.logs["microblog"].read_text()
    # The same request from nginx's address is believed: the peer alone made the difference (and
    # why the app's port must be reachable by the proxy only).
    status, _, body = direct(blog, "/index", forged, "127.0.0.1")
    assert status == 200 and "<h1>Hi, alice!</h1>" in body


def test_log_line_about_a_forged_header_cannot_be_forged(blog):
    """A right-to-left override (UTF-8 bytes, which WSGI hands over as latin-1 characters) is
    logged escaped, never as the bytes a terminal or log viewer would act on."""
    direct(blog, "/", {"X-Auth-User": b"mallory" + "\u202e".encode(), "X-Auth-User-Id": "1"}, OUTSIDER)
    logged = blog.logs["microblog"].read_bytes()
    assert b"X-Auth-User=mallory\\xe2\\x80\\xae" in logged
    assert "\u202e".encode() not in logged


@pytest.mark.parametrize("headers", [{"X-Auth-User": "alice,mallory", "X-Auth-User-Id": "1"},
                                     {"X-Auth-User": "Alice", "X-Auth-User-Id": "1"},
                                     {"X-Auth-User": "alice", "X-Auth-User-Id": "1", "X-Auth-Groups": "a b"},
                                     {"X-Auth-User": "a" * 4000, "X-Auth-User-Id": "1"}])
def test_malformed_identity_from_the_proxys_address_is_401_not_500(blog, headers):
    status, _, _ = direct(blog, "/index", headers, "127.0.0.1")
    assert status == 401


# --- a second factor: X-Auth-Methods through to the app ---------------------------------------------

@pytest.mark.asvs("V6.3.3")
def test_second_factor_sign_in_reaches_the_app_as_mfa(blog):
    """bob adds an authenticator app on authsvc's account page, signs out, signs in again with the
    password and a code, and the microblog sees the methods authsvc recorded: pwd, otp, mfa."""
    added = subprocess.run([str(Path(sys.executable).parent / "authsvc"), "user", "add", "bob", "--password-stdin"],
                           env=blog.authsvc_env, input=PASSWORD + "\n", capture_output=True, text=True, timeout=120,
                           check=False)
    assert added.returncode == 0, added.stderr
    s = browser(blog)
    assert sign_in(blog, s, f"{blog.auth}/login", username="bob").status_code == 303
    assert "Signed in through authsvc with: pwd;" in get(s, f"{blog.app}/user/bob").text

    set_up = get(s, f"{blog.auth}/account/totp")
    uri = re.search(r'id="otpauth-uri">([^<]+)<', set_up.text)
    assert uri, set_up.text
    totp = pyotp.parse_uri(uri.group(1).replace("&amp;", "&"))
    step = int(time.time() // 30)
    confirmed = s.post(f"{blog.auth}/account/totp", data={"csrf_token": csrf_in(set_up.text),
                                                          "code": totp.generate_otp(step)}, timeout=10)
    assert confirmed.status_code == 200 and "Authenticator app added" in confirmed.text

    account = get(s, f"{blog.auth}/")
    assert s.post(f"{blog.auth}/logout", data={"csrf_token": csrf_in(account.text)}, allow_redirects=False,
                  timeout=10).status_code == 303
    first = get(s, f"{blog.app}/user/bob")
    assert first.status_code == 302
    password_step = sign_in(blog, s, first.headers["Location"], username="bob")
    assert password_step.status_code == 303 and urlsplit(password_step.headers["Location"]).path == "/login/mfa"
    assert get(s, f"{blog.app}/user/bob").status_code == 302       # no session until the code
    mfa_url = password_step.headers["Location"]
    mfa_page = get(s, mfa_url if mfa_url.startswith("https://") else f"{blog.auth}{mfa_url}")
    fields = {"csrf_token": csrf_in(mfa_page.text), "code": totp.generate_otp(step + 1)}  # the set-up used `step`
    hidden_next = re.search(r'name="next" value="([^"]*)"', mfa_page.text)
    if hidden_next:
        fields["next"] = hidden_next.group(1).replace("&amp;", "&")
    done = s.post(f"{blog.auth}/login/mfa", data=fields, allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["Location"] == f"{blog.app}/user/bob"
    profile = get(s, f"{blog.app}/user/bob")
    assert profile.status_code == 200
    assert "Signed in through authsvc with: pwd, otp, mfa; groups: none." in profile.text
