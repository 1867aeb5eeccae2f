"""/auth/verify answers every method as it answers GET: the method describes the request the proxy
asks about, it does not choose the answer.

Envoy's ext_authz HTTP filter asks with the original request's method (a browser's OPTIONS
pre-flight, an API's DELETE), and so does nginx's auth_request unless told otherwise. Before, Flask
answered OPTIONS itself with 200 (its automatic OPTIONS), which a proxy takes for "let through",
with no identity: an anonymous request reached the app. Other methods got a 405 error page instead
of the login redirect. tests/integration/test_proxies.py sends these through a real Envoy.
"""

from __future__ import annotations

import pytest

from tests.conftest import build_app, login, new_client

METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT", "PROPFIND",
           "MKCOL", "QUERY", "get", "Options", "X-CUSTOM"]
APP_URL = "https://app.example.test/notes/page"


@pytest.fixture
def proxied(tmp_path):
    """The app behind one trusted proxy (the test client's 127.0.0.1 is in the default networks)."""
    return build_app(tmp_path, AUTHSVC_TRUSTED_PROXIES="1")


@pytest.mark.asvs("V8.3.1", "V4.1.3")
@pytest.mark.parametrize("method", METHODS)
def test_anonymous_request_with_any_method_is_never_let_through(proxied, method):
    client = new_client(proxied)
    for redirect, status in (("", 401), ("?redirect=1", 302), ("?redirect=401", 401)):
        answer = client.open(f"/auth/verify{redirect}", method=method)
        assert answer.status_code == status, (method, redirect, answer.status_code)
        assert "X-Auth-User" not in answer.headers
        assert "Allow" not in answer.headers   # no framework-made OPTIONS or 405 answer


@pytest.mark.parametrize("method", METHODS)
def test_signed_in_request_with_any_method_gets_the_identity(proxied, method):
    from tests.conftest import add_user
    add_user(proxied)
    client = new_client(proxied)
    assert login(client).status_code == 303
    answer = client.open("/auth/verify", method=method)
    assert answer.status_code == 200, (method, answer.status_code)
    assert answer.headers["X-Auth-User"] == "alice"


@pytest.mark.asvs("V3.7.2")
@pytest.mark.parametrize("method", ["OPTIONS", "POST", "PUT", "DELETE", "PATCH"])
def test_a_request_that_cannot_be_repeated_after_login_gets_no_next(proxied, method):
    """Asked with the original method (Envoy), an unsafe request gets the login page without next,
    as nginx's X-Original-Method: POST does: the browser would repeat it as a GET."""
    client = new_client(proxied)
    answer = client.open("/auth/verify?redirect=1", method=method, headers={"X-Original-URL": APP_URL})
    assert answer.status_code == 302
    assert answer.headers["Location"] == "https://auth.example.test/login"


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_safe_request_gets_its_next(proxied, method):
    client = new_client(proxied)
    answer = client.open("/auth/verify?redirect=1", method=method, headers={"X-Original-URL": APP_URL})
    assert answer.headers["Location"] == f"https://auth.example.test/login?next={APP_URL}"


def test_the_proxys_own_method_header_wins_over_the_request_method(proxied):
    """A proxy that asks with GET and says POST (nginx) is believed; one that asks with POST and
    says GET (Envoy with a header) too: both come from the trusted hop."""
    client = new_client(proxied)
    said_post = client.get("/auth/verify?redirect=1", headers={"X-Original-URL": APP_URL, "X-Original-Method": "POST"})
    assert said_post.headers["Location"] == "https://auth.example.test/login"
    said_get = client.post("/auth/verify?redirect=1", headers={"X-Original-URL": APP_URL, "X-Original-Method": "GET"})
    assert said_get.headers["Location"] == f"https://auth.example.test/login?next={APP_URL}"


def test_a_body_sent_with_the_question_is_not_read_as_a_form(proxied):
    client = new_client(proxied)
    answer = client.post("/auth/verify", data={"csrf_token": "x", "username": "alice"})
    assert answer.status_code == 401
