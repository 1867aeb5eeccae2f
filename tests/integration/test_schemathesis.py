"""Black-box fuzzing of the machine-facing HTTP surface: docs/openapi.yaml against the live service.

``authsvc serve`` (gunicorn, production settings: strong key, policies/test.toml, SQLite after
``authsvc db upgrade``) runs on a free loopback port; the test plays the TLS-terminating proxy
(``X-Forwarded-Proto: https``, ``X-Forwarded-For``, with ``AUTHSVC_TRUSTED_PROXIES=1``).
schemathesis generates requests for every operation of the spec, once anonymously and once with a
valid session cookie and metrics token, and checks every response: no 5xx other than the
documented 503s, a documented status code, content type, headers and body schema, and (with
credentials) that the protected operations refuse the same request without them.

Bounded on purpose (a few examples per operation, well under a minute): the long hunt is
``scripts/fuzz`` for the pure functions; this proves the HTTP glue keeps the documented contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, settings

from tests.conftest import PASSWORD, ROOT, build_app, csrf_in
from tests.integration.conftest import require_module, served_env, serving, tail

SPEC = ROOT / "docs" / "openapi.yaml"
TOKEN = "mtk-schemathesis-Vq3Lw9Zc2Xb7Nm5Kj1Hg8Fd4Sa6Pt0Ry"
AGENT = "authsvc-schemathesis"
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7", "User-Agent": AGENT}
SESSION = "__Host-authsvc_session"
EXAMPLES = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

pytestmark = pytest.mark.integration

try:
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        ignored_auth,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
        unsupported_method,
    )
except ImportError:  # pragma: no cover - the test below says what to install
    schemathesis = None


@dataclass(frozen=True)
class Live:
    url: str
    cookie: str
    log: Path


def _login(base: str) -> str:
    page = requests.get(f"{base}/login", headers=PROXY, timeout=30)
    assert page.status_code == 200, page.status_code
    jar = {c.name: c.value for c in page.cookies}
    token = csrf_in(page.text)
    response = requests.post(f"{base}/login", headers=PROXY, cookies=jar, allow_redirects=False, timeout=60,
                             data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    assert response.status_code == 303, (response.status_code, response.text[:300])
    value = response.cookies.get(SESSION)
    assert value, response.headers.get("Set-Cookie")
    # The cookie really is a live session before the fuzzing relies on it.
    assert requests.get(f"{base}/auth/verify", headers=PROXY, cookies={SESSION: value}, timeout=30).status_code == 200
    return f"{SESSION}={value}"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_module("schemathesis")
    folder = tmp_path_factory.mktemp("schemathesis")
    env = served_env(folder, AUTHSVC_REDIRECT_ALLOWED_ORIGINS="https://app.example.test", AUTHSVC_METRICS_TOKEN=TOKEN)
    with serving(folder, env, user="alice") as server:
        yield Live(server.base, _login(server.base), server.log)


@pytest.fixture
def server_log(live):
    """On failure, show what the server said (a 5xx is logged with its exception type)."""
    yield
    # pytest prints captured output only for failing tests
    print(f"--- authsvc log ({live.log}):\n{tail(live.log)}")


if schemathesis is None:
    def test_schemathesis_is_installed():
        require_module("schemathesis")
else:
    schema = schemathesis.openapi.from_path(SPEC)
    def unsupported_method_but_verify(ctx, response, case):
        """405 with Allow for an undeclared method, except at /auth/verify, which answers every method
        as GET (issue 18: a proxy may forward the original method, and no 405 or automatic OPTIONS
        may answer in the access rules' place; tests/security/test_forward_auth.py proves it)."""
        if case.path == "/auth/verify":
            return None
        return unsupported_method(ctx, response, case)

    CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_headers_conformance, response_schema_conformance, unsupported_method_but_verify]

    def header(response, name: str) -> str | None:
        """schemathesis keeps response headers lower-cased, each as a list of values."""
        values = response.headers.get(name.lower())
        return values[0] if values else None

    def _documented(case, response) -> bool:
        """True for a request with a documented method (schemathesis also sends TRACE, PUT, ...
        to every path, which unsupported_method checks: 405 with Allow)."""
        # The spec documents 503 (fail closed) only; nothing here makes a dependency fail.
        assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}"
        return case.method.upper() == case.operation.method.upper()

    @schema.parametrize()
    @EXAMPLES
    def test_anonymous_requests_get_documented_answers(case, live, server_log):
        response = case.call_and_validate(base_url=live.url, headers=dict(PROXY), checks=CHECKS, timeout=30)
        if not _documented(case, response):
            return
        if case.path in ("/api/v1/session", "/metrics"):
            assert response.status_code in (401, 404), "a protected operation answered without credentials"
        if case.path == "/auth/verify":
            assert response.status_code in (302, 401)
            assert header(response, "X-Auth-User") is None

    @schema.parametrize()
    @EXAMPLES
    def test_requests_with_a_live_session_get_documented_answers(case, live, server_log):
        headers = {**PROXY, "Cookie": live.cookie, "Authorization": f"Bearer {TOKEN}"}
        response = case.call_and_validate(base_url=live.url, headers=headers, checks=[*CHECKS, ignored_auth],
                                          timeout=30)
        if not _documented(case, response):
            return
        if case.path in ("/api/v1/session", "/auth/verify"):
            assert response.status_code == 200, (case.path, response.status_code)
        if case.path == "/auth/verify":
            assert header(response, "X-Auth-User") == "alice"
        if case.path == "/api/v1/session":
            assert response.json()["username"] == "alice"

    def test_the_spec_describes_every_machine_facing_route(tmp_path):
        """Every route under /api/ and /auth/, and the probes, is in docs/openapi.yaml, and nothing else."""
        described = {(op.method.upper(), op.path) for op in (r.ok() for r in schema.get_all_operations())}
        app = build_app(tmp_path)
        served = {(method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.rule.startswith(("/api/", "/auth/")) or rule.rule in ("/healthz", "/readyz", "/metrics")
                  # Flask answers HEAD for every GET; only verify's HEAD is part of the contract (proxies use it).
                  for method in rule.methods - {"OPTIONS"} - ({"HEAD"} if rule.rule != "/auth/verify" else set())}
        assert described == served
