"""The proxy mode in a Flask app: identity believed only from the trusted proxy, forged or malformed
identity a 401 (never a 500), no login state kept by the app, logs that cannot be forged."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest
from authsvc_testapp import ALICE, AUTH_URL, PROXY, STRANGER, get, make_app
from werkzeug.middleware.proxy_fix import ProxyFix


def login_redirect(response) -> tuple[str, str | None]:
    assert response.status_code == 302, response.get_data(as_text=True)
    parts = urlsplit(response.headers["Location"])
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query).get("next", [None])[0]


# --- the trusted proxy's identity -------------------------------------------------------------------

def test_identity_from_the_trusted_proxy_signs_the_user_in(client, app):
    assert get(client, "/", ALICE).get_data(as_text=True).startswith("Hi, alice!")
    assert get(client, "/private", ALICE).get_data(as_text=True) == "private page of alice"
    assert [i.username for i in app.loaded] == ["alice", "alice"]   # once per request


def test_ipv6_and_ipv4_mapped_proxy_addresses(client):
    assert get(client, "/private", ALICE, peer="::1").status_code == 200
    assert get(client, "/private", ALICE, peer=f"::ffff:{PROXY}").status_code == 200


def test_no_identity_is_a_guest_and_login_required_goes_to_authsvc_with_next(client):
    assert "Hello, guest" in get(client, "/").get_data(as_text=True)
    assert login_redirect(get(client, "/private?x=1&y=two words")) == (
        f"{AUTH_URL}/login", "http://localhost/private?x=1&y=two%20words")


def test_a_post_is_sent_to_login_without_next(client):
    response = client.post("/private", environ_base={"REMOTE_ADDR": PROXY})
    assert login_redirect(response) == (f"{AUTH_URL}/login", None)


def test_the_app_keeps_no_login_state(client):
    response = get(client, "/private", ALICE)
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert login_redirect(get(client, "/private")) == (f"{AUTH_URL}/login", "http://localhost/private")


def test_a_user_id_in_the_flask_session_signs_nobody_in(client):
    """An old login_user(), or a session cookie signed with a leaked SECRET_KEY, is not a login."""
    with client.session_transaction() as session:
        session["_user_id"] = "alice"
        session["_fresh"] = True
    assert get(client, "/private").status_code == 302


def test_unauthorized_redirect_writes_no_flash_message(client):
    response = get(client, "/private")
    assert response.status_code == 302 and "Set-Cookie" not in response.headers


# --- identity from anyone else is ignored, and logged safely ------------------------------------------

def test_identity_headers_from_an_untrusted_peer_are_ignored(client, app, caplog):
    caplog.set_level(logging.WARNING, "flask_authsvc")
    assert login_redirect(get(client, "/private", ALICE, peer=STRANGER))[0] == f"{AUTH_URL}/login"
    assert "Hello, guest" in get(client, "/", ALICE, peer=STRANGER).get_data(as_text=True)
    assert app.loaded == []
    assert any("untrusted peer 203.0.113.9 ignored" in r.getMessage() for r in caplog.records)


def test_forged_identity_from_an_untrusted_peer_is_not_even_judged(client):
    """A malformed forgery from a stranger is ignored like any other: the stranger learns nothing."""
    response = get(client, "/", raw={"X-Auth-User": "\u0430dmin\n"}, peer=STRANGER)
    assert response.status_code == 200


def test_proxy_fix_cannot_make_a_client_look_like_the_proxy(caplog):
    """With ProxyFix, REMOTE_ADDR becomes the X-Forwarded-For address; the TCP peer still decides."""
    app, _ = make_app()
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    client = app.test_client()
    forged = {**ALICE, "X-Forwarded-For": PROXY}
    assert get(client, "/private", forged, peer=STRANGER).status_code == 302
    honest = {**ALICE, "X-Forwarded-For": STRANGER, "X-Forwarded-Proto": "https"}
    assert get(client, "/private", honest, peer=PROXY).status_code == 200
    # and the next URL is the one the browser used (https through the proxy)
    assert login_redirect(get(client, "/private", {"X-Forwarded-Proto": "https"}))[1] == "https://localhost/private"


@pytest.mark.parametrize("layers", [2, 3])
def test_proxy_fix_twice_believes_no_identity_and_says_to_wrap_once(caplog, layers):
    """Each ProxyFix overwrites the original peer the one outside it kept: under two (one in
    create_app, one in wsgi.py), the "original" peer is the X-Forwarded-For the client wrote, and a
    stranger could name the proxy. No identity is believed then, from anyone: a 503 naming the fix."""
    app, _ = make_app()
    for _ in range(layers):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="flask_authsvc"):
        forged = get(client, "/private", {**ALICE, "X-Forwarded-For": PROXY}, peer=STRANGER)
    assert forged.status_code == 503 and "alice" not in forged.get_data(as_text=True)
    assert "wrap app.wsgi_app in ProxyFix once" in caplog.text
    assert get(client, "/private", {**ALICE, "X-Forwarded-For": STRANGER}, peer=PROXY).status_code == 503
    assert get(client, "/").status_code == 200  # no identity headers: the app still serves anonymously


@pytest.mark.parametrize("forged", ["mallory\n2026-12-07 INFO flask_authsvc: admin signed in", "x\r\nSet-Cookie: a=b",
                                    "\x1b[2J\x1b[Hcleared", "\u202eeulav", "a" * 5000])
def test_log_lines_about_forged_headers_cannot_be_forged(client, caplog, forged):
    caplog.set_level(logging.WARNING, "flask_authsvc")
    get(client, "/", raw={"X-Auth-User": forged, "X-Auth-User-Id": "1"}, peer=STRANGER)
    assert get(client, "/", raw={"X-Auth-User": forged, "X-Auth-User-Id": "1"}, peer=PROXY).status_code == 401
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    for message in messages:
        assert message.isascii() and message.isprintable() and len(message) < 400, message


def test_cookies_are_never_logged(client, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cr3t-session-value"
    client.set_cookie("session", secret)
    client.set_cookie("__Secure-authsvc_session", secret)
    get(client, "/", {**ALICE, "Cookie": f"a={secret}"}, peer=STRANGER)
    get(client, "/", {"X-Auth-User": "bad user", "X-Auth-User-Id": "1", "Authorization": f"Bearer {secret}"})
    assert caplog.records and not any(secret in r.getMessage() for r in caplog.records)


# --- malformed identity from the proxy: 401, never 500 --------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"X-Auth-User": "alice, mallory", "X-Auth-User-Id": "7"},
    {"X-Auth-User": "alice", "X-Auth-User-Id": "7, 8"},
    {"X-Auth-User": "\u0430lice", "X-Auth-User-Id": "7"},
    {"X-Auth-User": "Alice", "X-Auth-User-Id": "7"},
    {"X-Auth-User": "alice"},
    {"X-Auth-User-Id": "7"},
    {"X-Auth-User": "alice", "X-Auth-User-Id": "7", "X-Auth-Groups": "a b"},
    {"X-Auth-User": "alice", "X-Auth-User-Id": "7", "X-Auth-Methods": "pwd;mfa"},
    {"X-Auth-User": "a" * 100_000, "X-Auth-User-Id": "7"},
    {"X-Auth-User": "alice\t", "X-Auth-User-Id": "7"},
    {"X-Auth-User": "ä".encode().decode("latin-1"), "X-Auth-User-Id": "7"},
])
@pytest.mark.parametrize("path", ["/", "/private", "/admin", "/secure", "/no-such-page"])
def test_malformed_identity_from_the_proxy_is_401_on_every_page(client, app, headers, path):
    response = get(client, path, headers)
    assert response.status_code == 401
    assert response.get_data(as_text=True) == "error 401 for nobody"   # the error page asked for the user: no 500
    assert app.loaded == []


def test_repeated_identity_header_from_the_proxy_is_401(client):
    from werkzeug.datastructures import Headers
    headers = Headers([("X-Auth-User", "alice"), ("X-Auth-User", "mallory"), ("X-Auth-User-Id", "7")])
    assert get(client, "/private", headers).status_code == 401


def test_blanked_identity_headers_are_a_guest(client):
    response = get(client, "/", {"X-Auth-User": "", "X-Auth-User-Id": "", "X-Auth-Methods": ""})
    assert "Hello, guest" in response.get_data(as_text=True)


def test_an_app_hook_that_reads_current_user_first_still_gets_the_401():
    app, _ = make_app()
    seen = []

    @app.before_request
    def greet():
        from flask_login import current_user
        seen.append(current_user.is_authenticated)

    response = get(app.test_client(), "/", raw={"X-Auth-User": "a\nb", "X-Auth-User-Id": "1"})
    assert response.status_code == 401 and seen == []


# --- the app's own refusal -----------------------------------------------------------------------------

def test_user_the_app_does_not_know_is_403_not_a_login_loop(client):
    response = get(client, "/private", {"X-Auth-User": "stranger", "X-Auth-User-Id": "9"})
    assert response.status_code == 403
    assert response.get_data(as_text=True) == "error 403 for nobody"


def test_missing_user_loader_is_a_programming_error():
    app, authsvc = make_app()
    authsvc._user_callback = None
    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(RuntimeError, match="user_loader"):
        get(app.test_client(), "/private", ALICE)


# --- @authsvc.required --------------------------------------------------------------------------------

def test_required_sends_a_guest_to_authsvc(client):
    assert login_redirect(get(client, "/admin")) == (f"{AUTH_URL}/login", "http://localhost/admin")


@pytest.mark.parametrize("groups, status", [("admins", 200), ("staff,ops", 200), ("staff", 403), ("", 403),
                                            ("Admins", 403), ("admins2", 403), ("xadmins", 403)])
def test_required_groups_any_of_compared_exactly(client, groups, status):
    assert get(client, "/admin", {**ALICE, "X-Auth-Groups": groups}).status_code == status


def test_required_mfa_with_a_one_factor_sign_in_is_the_step_up_page(client):
    response = get(client, "/secure", {**ALICE, "X-Auth-Methods": "pwd"})
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert f'href="{AUTH_URL}/login?next=http%3A%2F%2Flocalhost%2Fsecure&amp;step_up=1"' in page
    assert f'href="{AUTH_URL}/"' in page and "You signed in with: pwd." in page
    assert response.headers["Cache-Control"] == "no-store"


def test_required_mfa_believes_only_authsvcs_mfa(client):
    assert get(client, "/secure", {**ALICE, "X-Auth-Methods": "pwd,otp"}).status_code == 403
    assert get(client, "/secure", {**ALICE, "X-Auth-Methods": "pwd,otp,mfa"}).status_code == 200


def test_required_mfa_from_an_untrusted_peer_is_a_guest(client):
    assert get(client, "/secure", {**ALICE, "X-Auth-Methods": "pwd,otp,mfa"}, peer=STRANGER).status_code == 302


def test_custom_step_up_handler_may_redirect_to_authsvcs_step_up():
    app, authsvc = make_app()

    @authsvc.step_up_handler
    def step_up(identity):
        from flask import redirect, request
        return redirect(authsvc.step_up_url(request.url))

    response = get(app.test_client(), "/secure", ALICE)
    assert response.status_code == 302
    assert response.headers["Location"] == f"{AUTH_URL}/login?next=http%3A%2F%2Flocalhost%2Fsecure&step_up=1"


def test_required_refuses_a_group_name_string_at_decoration():
    _, authsvc = make_app()
    with pytest.raises(TypeError):
        authsvc.required(groups="admins")
    with pytest.raises(TypeError):
        authsvc.required(groups=[""])


# --- URLs ----------------------------------------------------------------------------------------------

def test_login_and_logout_urls(app):
    authsvc = app.extensions["authsvc"].extension
    with app.test_request_context("/"):
        assert authsvc.login_url() == f"{AUTH_URL}/login"
        assert authsvc.login_url("https://app.example.test/a?b=c&d") == (
            f"{AUTH_URL}/login?next=https%3A%2F%2Fapp.example.test%2Fa%3Fb%3Dc%26d")
        assert authsvc.logout_url() == authsvc.account_url() == f"{AUTH_URL}/"
        assert authsvc.step_up_url("https://app.example.test/x") == (
            f"{AUTH_URL}/login?next=https%3A%2F%2Fapp.example.test%2Fx&step_up=1")
        assert authsvc.step_up_url() == f"{AUTH_URL}/login?step_up=1"
    assert app.login_manager.login_view == f"{AUTH_URL}/login"


def test_templates_get_the_logout_control(client):
    """Proxy mode: a link to authsvc's account page, whose Sign out (a POST there) ends the session;
    a GET there changes nothing, and the app has no sign-out endpoint of its own to forge."""
    page = get(client, "/", ALICE).get_data(as_text=True)
    assert f'<a class="authsvc-logout" href="{AUTH_URL}/">Sign out</a>' in page
    assert get(client, "/authsvc/logout", ALICE).status_code == 404


def test_two_apps_keep_their_own_settings():
    first, _ = make_app(AUTHSVC_URL="https://one.example.test")
    second, _ = make_app(AUTHSVC_URL="https://two.example.test", AUTHSVC_TRUSTED_PROXIES="192.0.2.1")
    assert login_redirect(get(first.test_client(), "/private"))[0] == "https://one.example.test/login"
    assert get(second.test_client(), "/private", ALICE, peer="192.0.2.1").status_code == 200
    assert get(second.test_client(), "/private", ALICE, peer=PROXY).status_code == 302


def test_identity_is_read_per_request_even_in_one_app_context(app, client):
    """g lives in the app context, which a test (or a worker) may hold across requests."""
    with app.app_context():
        assert get(client, "/private", ALICE).status_code == 200
        assert get(client, "/private").status_code == 302
        assert get(client, "/private", {**ALICE, "X-Auth-User": "bob"}).get_data(as_text=True) == "private page of bob"
