"""Access rules through real nginx, with deploy/nginx/authsvc.conf exactly as shipped.

The same stack as test_nginx_forward_auth.py (nginx + `authsvc serve` + an echo app, a test CA),
with a policy that has access rules on the app host: a public part (bypass), an admin part
(deny), everything else one_factor. nginx passes the raw request URI (`$request_uri`) in
`X-Original-URL` and to the app, so what the rules judge is what the app is asked for; a path
spelled to reach the admin part through the public one never reaches the app.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import requests

from tests.conftest import PASSWORD, csrf_in
from tests.integration.conftest import (
    APP_HOST,
    AUTH_HOST,
    USERNAME,
    Stack,
    authsvc_env,
    echo_app,
    example_test_resolves_to_loopback,
    free_port,
    make_tls,
    nginx_server,
    require_binary,
    serving,
)

pytestmark = pytest.mark.integration

RULES = f"""
[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["/notes/public"]
policy = "bypass"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["/notes/admin"]
policy = "deny"
"""


@pytest.fixture(scope="module", autouse=True)
def resolve_example_test():
    with example_test_resolves_to_loopback():
        yield


@pytest.fixture(scope="module")
def ruled_stack(tmp_path_factory):
    """nginx + authsvc (with RULES in its policy) + echo app, started once for the module."""
    require_binary("nginx")
    require_binary("openssl")
    folder = tmp_path_factory.mktemp("ruled")
    port = free_port()
    auth, app = f"https://{AUTH_HOST}:{port}", f"https://{APP_HOST}:{port}"
    tls = make_tls(folder / "tls")
    with contextlib.ExitStack() as running:
        app_server = running.enter_context(echo_app())
        (folder / "authsvc").mkdir()
        env = authsvc_env(folder / "authsvc", auth, app)
        policy = Path(env["AUTHSVC_POLICY"])
        policy.write_text(policy.read_text() + RULES)
        served = running.enter_context(serving(folder / "authsvc", env))
        nginx_log = running.enter_context(nginx_server(folder / "nginx", port, {
            "AUTH_HOST": AUTH_HOST, "APP_HOST": APP_HOST, "HTTPS_PORT": str(port),
            "TLS_CERT": str(tls.cert), "TLS_KEY": str(tls.key),
            "AUTHSVC_ADDR": f"127.0.0.1:{served.port}", "APP_ADDR": f"127.0.0.1:{app_server.server_address[1]}",
        }))
        yield Stack(port, auth, app, tls, folder, app_server.hits, {"authsvc": served.log, "nginx": nginx_log})


def browser(stack) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(stack.tls.ca)
    s.headers["User-Agent"] = "authsvc-integration-test"
    return s


def get(s: requests.Session, url: str, **kwargs) -> requests.Response:
    return s.get(url, allow_redirects=False, timeout=10, **kwargs)


def signed_in(stack) -> requests.Session:
    s = browser(stack)
    page = get(s, f"{stack.auth}/login")
    posted = s.post(f"{stack.auth}/login", allow_redirects=False, timeout=10,
                    data={"csrf_token": csrf_in(page.text), "username": USERNAME, "password": PASSWORD})
    assert posted.status_code == 303, posted.text
    return s


def raw_path_get(s: requests.Session, url: str) -> requests.Response:
    """GET with the path sent exactly as written (requests would not re-encode it, but say so)."""
    prepared = requests.Request("GET", url).prepare()
    prepared.url = url
    return s.send(prepared, allow_redirects=False, timeout=10)


@pytest.mark.asvs("V8.3.1")
def test_a_denied_path_is_403_through_nginx_for_a_signed_in_user_and_never_reaches_the_app(ruled_stack):
    s = signed_in(ruled_stack)
    before = len(ruled_stack.app_hits)
    denied = get(s, f"{ruled_stack.app}/notes/admin/settings")
    assert denied.status_code == 403, denied.text
    allowed = get(s, f"{ruled_stack.app}/notes/page")
    assert allowed.status_code == 200 and allowed.json()["user"] == [USERNAME]
    assert ruled_stack.app_hits[before:] == ["/notes/page"]


@pytest.mark.asvs("V8.3.1")
def test_a_bypass_path_reaches_the_app_anonymously_with_no_identity(ruled_stack):
    answer = get(browser(ruled_stack), f"{ruled_stack.app}/notes/public/style.css",
                 headers={"X-Auth-User": "admin", "X-Auth-User-Id": "1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["user"] == [] and answer.json()["user_id"] == []  # the client's copies are gone too


@pytest.mark.asvs("V8.3.1")
@pytest.mark.parametrize("path", ["/notes/public/..%2fadmin/x", "/notes/public/..%2Fadmin/x",
                                  "/notes/public/%2e%2e/admin/x", "/notes/public%2f..%2fadmin/x",
                                  "/notes/public;/../admin/x", "/notes/public/%252e%252e/admin"])
def test_a_path_spelled_to_reach_the_admin_part_through_the_public_one_never_reaches_the_app(ruled_stack, path):
    before = len(ruled_stack.app_hits)
    for s in (browser(ruled_stack), signed_in(ruled_stack)):
        answer = raw_path_get(s, f"{ruled_stack.app}{path}")
        assert answer.status_code == 403, (path, answer.status_code)
    assert ruled_stack.app_hits[before:] == []


def test_the_denial_is_in_the_audit_log(ruled_stack):
    s = signed_in(ruled_stack)
    get(s, f"{ruled_stack.app}/notes/admin")
    lines = [json.loads(line) for line in ruled_stack.logs["authsvc"].read_text().splitlines()
             if line.startswith("{") and '"access_denied"' in line]
    assert any(e["rule"] == 1 and e["host"].startswith(APP_HOST) for e in lines), lines
