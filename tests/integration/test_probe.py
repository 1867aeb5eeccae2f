"""`authsvc probe` pointed at real proxies: each stack as shipped must pass every check, and each
deliberately broken copy (identity headers not stripped, the client's forwarding headers passed to
authsvc) must fail, naming the checks that catch it.

The probe runs as the installed command, from outside, as a team's CI job would: over TLS with the
test CA (--ca-file), the test hosts pinned to loopback with --resolve, signing in as the stack's user.
Every stack is one proxy in front of the same authsvc and echo app (``behind``): the four shipped
configs of deploy/ (PROBED) and copies made from them by asserted text substitution (BROKEN, each
with the checks it must fail in CAUGHT). STACKS names them; the module-scoped ``probed`` fixture,
parametrized by those names, starts each once and stops it before the next (they share the port).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import PASSWORD
from tests.integration.conftest import (
    AUTH_HOST,
    DEPLOY,
    FOREIGN_IDENTITY_NAMES,
    NGINX_TEMPLATE,
    PROXIES,
    USERNAME,
    Stack,
    authsvc_command,
    backend,
    make_tls,
    proxy_in_front,
)

pytestmark = pytest.mark.integration

# Fixture names of stacks as shipped, and of stacks broken on purpose (proxy by proxy).
PROBED = ["nginx", "traefik", "caddy", "envoy"]
BROKEN = ["broken_nginx_stack", "careless_nginx_stack", "caching_nginx_stack", "remote_user_nginx_stack",
          "broken_traefik_stack", "broken_caddy_stack", "broken_envoy_stack"]
# The checks each broken stack fails: exactly these (every other check still passes there).
CAUGHT = {
    "broken_nginx_stack": {"identity.signed_in", "forwarding.next", "forwarding.login_host"},
    "careless_nginx_stack": {"cookie.secure", "cookie.httponly", "cookie.samesite", "cookie.prefix", "cookie.scope",
                             "header.hsts", "header.csp", "header.framing", "header.cache"},
    "caching_nginx_stack": {"logout.ends_access"},
    "remote_user_nginx_stack": {"identity.signed_in"},
    "broken_traefik_stack": {"identity.signed_in", "forwarding.next", "forwarding.login_host"},
    "broken_caddy_stack": {"identity.signed_in", "forwarding.next", "forwarding.login_host"},
    "broken_envoy_stack": {"identity.signed_in", "forwarding.next", "forwarding.login_host"},
}

# The nginx config with its protections taken out, as a careless copy would have them: no identity
# header set from authsvc's answer (so the client's pass through), client headers with underscores
# and dots let in, and no forward-auth header set or blanked (so the client's reach authsvc).
_IDENTITY_LINES = re.compile(r"^\s*proxy_set_header X-Auth-[A-Za-z-]+ \$authsvc_\w+;.*\n", re.MULTILINE)
_FORWARDING_LINES = re.compile(
    r"^\s*proxy_set_header X-(?:Original-(?:URL|Method)|Forwarded-(?:Host|Uri|Method)) .*;\n", re.MULTILINE)


def broken_nginx_template() -> str:
    text = NGINX_TEMPLATE.read_text()
    text, identity = _IDENTITY_LINES.subn("", text)
    text, forwarding = _FORWARDING_LINES.subn("", text)
    text, underscores = re.subn(r"underscores_in_headers off;", "underscores_in_headers on;", text)
    text, invalid = re.subn(r"ignore_invalid_headers on;", "ignore_invalid_headers off;", text)
    # The shipped file must still have what is taken out here, or this test would probe a sound config.
    assert identity >= 3 and forwarding >= 8 and underscores == invalid == 2, (identity, forwarding, underscores,
                                                                               invalid)
    return text


def altered(source: Path, changes: list[tuple[str, str, int]]) -> str:
    """``source``'s text with each (regex, replacement, count) applied, asserting each matched exactly
    ``count`` times: the shipped file must still have what is taken out, or the test would probe a
    sound config and call it broken."""
    text = source.read_text()
    for pattern, replacement, count in changes:
        text, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert found == count, f"{source.relative_to(DEPLOY)}: {pattern!r} matched {found} times, not {count}"
    return text


def broken_traefik_templates() -> dict[str, str]:
    """Traefik with its protections taken out: the identity headers neither removed nor copied from
    authsvc's answer (no authResponseHeadersRegex), names with "_" let in, every request header sent
    on to authsvc (no authRequestHeaders: the client's X-Original-URL with them), the client's
    X-Forwarded-* kept (forwardedHeaders.insecure, trustForwardHeader) and the login host's
    X-Original-* left as the client sent them."""
    return {
        "traefik/authsvc.yml": altered(DEPLOY / "traefik" / "authsvc.yml", [
            (r"^ *authResponseHeadersRegex: .*\n", "", 1),
            (r"^ *authRequestHeaders: \[Cookie, User-Agent[^]\n]*\]\n", "", 1),
            (r"^( *)trustForwardHeader: false\n", r"\1trustForwardHeader: true\n", 1),
            (r"^ *middlewares: \[authsvc-own-headers\]\n", "", 1),
        ]),
        "traefik/traefik.yml": altered(DEPLOY / "traefik" / "traefik.yml", [
            (r"^ *aliasHeadersStrategy: delete\n", "", 1),
            (r"^(    address: \":\$\{HTTPS_PORT\}\"\n)", r"\1    forwardedHeaders:\n      insecure: true\n", 1),
        ]),
    }


def broken_caddy_templates() -> dict[str, str]:
    """Caddy with its protections taken out: no identity header removed (every spelling the client
    sends reaches the app) or copied from authsvc's answer, and the client's X-Original-* and
    X-Forwarded-Uri/-Method left for authsvc (and the app), on the app host and on the login host."""
    return {"caddy/Caddyfile": altered(DEPLOY / "caddy" / "Caddyfile", [
        (r"^\s*import strip_identity\n", "", 1),
        (r"^\s*copy_headers X-Auth-User X-Auth-User-Id X-Auth-Groups X-Auth-Methods\n", "", 1),
        (r"^\s*header_up -X-(?:Original-URL|Original-Method|Forwarded-Uri|Forwarded-Method)\n", "", 6),
        (r"^\s*request_header -X-(?:Original-URL|Original-Method|Forwarded-Uri|Forwarded-Method)\n", "", 4),
    ])}


def broken_envoy_templates() -> dict[str, str]:
    """Envoy with its protections taken out: the client's identity headers neither removed nor
    replaced by authsvc's answer (no allowed_upstream_headers), names with "_" let in, the client's
    X-Forwarded-Host/-Uri/-Method kept, its X-Original-URL and -Method kept where present (added only
    if absent), and the login host's left as sent."""
    return {"envoy/envoy.yaml": altered(DEPLOY / "envoy" / "envoy.yaml", [
        (r"^ *- remove: x-(?:auth-user|auth-user-id|auth-groups|auth-methods)\n", "", 4),
        (r"^ *- remove: x-forwarded-(?:host|uri|method)\n", "", 3),
        (r"headers_with_underscores_action: DROP_HEADER", "headers_with_underscores_action: ALLOW", 1),
        (r"(key: x-original-(?:url|method), .*\n *)append_action: OVERWRITE_IF_EXISTS_OR_ADD",
         r"\1append_action: ADD_IF_ABSENT", 2),
        (r"^ *authorization_response:\n *allowed_upstream_headers:\n *patterns:\n(?: *- \{exact: x-auth-[a-z-]+\}\n){4}",
         "", 1),
        (r"^ *request_headers_to_remove: \[x-original-url, x-original-method\]\n", "", 1),
    ])}


def remote_user_nginx_template() -> str:
    """The nginx config that strips authsvc's identity headers but passes other login proxies' on
    (Remote-User, X-Forwarded-User, X-Auth-Request-Email, ...), as a config written for authsvc's
    names alone would: an app moved from behind oauth2-proxy or Authelia believes the client's."""
    names = "|".join(map(re.escape, FOREIGN_IDENTITY_NAMES))
    text, found = re.subn(rf'^\s*proxy_set_header (?:{names}) "";\n', "", NGINX_TEMPLATE.read_text(),
                          flags=re.MULTILINE)
    assert found == 11, f"{found} other proxies' identity headers stripped in the shipped nginx config, not 11"
    return text


def careless_nginx_template() -> str:
    """The nginx config with a login server that "tidies" authsvc's answers, as proxies are made to:
    cookie flags and Domain rewritten, security headers hidden, a cacheable login page."""
    text = NGINX_TEMPLATE.read_text()
    careless = ("        proxy_cookie_flags ~ nosecure nohttponly samesite=none;\n"
                "        proxy_cookie_domain example.test test;\n"
                "        proxy_hide_header Strict-Transport-Security;\n"
                "        proxy_hide_header Content-Security-Policy;\n"
                "        proxy_hide_header X-Frame-Options;\n"
                "        proxy_hide_header Cache-Control;\n"
                "        add_header Cache-Control \"public, max-age=600\";\n")
    text, found = re.subn(r"(    location / \{\n)(        # Uncomment with the map)", rf"\1{careless}\2", text)
    assert found == 1, "the login server's location block moved: update careless_nginx_template"
    return text


def caching_nginx_template(cache: Path) -> str:
    """The nginx config with authsvc's answers to the auth subrequest cached for 10 s by cookie, as
    done "for speed": a session ended at logout lives on in the cache."""
    text = f"proxy_cache_path {cache} keys_zone=authsvc_verify:1m;\n" + NGINX_TEMPLATE.read_text()
    caching = ("        proxy_cache authsvc_verify;\n        proxy_cache_key $http_cookie;\n"
               "        proxy_cache_valid 200 10s;\n        proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;\n")
    text, found = re.subn(r"(        proxy_pass http://authsvc/auth/verify\?redirect=401;\n)", rf"\1{caching}", text)
    assert found == 1, "the auth subrequest's location moved: update caching_nginx_template"
    return text


# Each stack: the proxy, and the copies of its shipped templates it runs instead (name under deploy/ ->
# text; none for a stack as shipped), made in the stack's folder.
STACKS: dict[str, tuple[str, Callable[[Path], dict[str, str]]]] = {
    "nginx": ("nginx", lambda folder: {}),
    "traefik": ("traefik", lambda folder: {}),
    "caddy": ("caddy", lambda folder: {}),
    "envoy": ("envoy", lambda folder: {}),
    "broken_nginx_stack": ("nginx", lambda folder: {"nginx/authsvc.conf": broken_nginx_template()}),
    "careless_nginx_stack": ("nginx", lambda folder: {"nginx/authsvc.conf": careless_nginx_template()}),
    "caching_nginx_stack": ("nginx", lambda folder: {"nginx/authsvc.conf": caching_nginx_template(folder / "cache")}),
    "remote_user_nginx_stack": ("nginx", lambda folder: {"nginx/authsvc.conf": remote_user_nginx_template()}),
    "broken_traefik_stack": ("traefik", lambda folder: broken_traefik_templates()),
    "broken_caddy_stack": ("caddy", lambda folder: broken_caddy_templates()),
    "broken_envoy_stack": ("envoy", lambda folder: broken_envoy_templates()),
}


@pytest.fixture(scope="module")
def behind(tmp_path_factory):
    """One authsvc and one echo app behind every stack of the module (they share its port: one proxy
    runs at a time). Without access rules: with them, a broken copy that describes no request to
    authsvc is refused 403 (unknown_request) even signed in, and fails more checks than the header
    holes CAUGHT names (test_proxies.py runs the rules through each shipped proxy)."""
    with backend(tmp_path_factory.mktemp("probe"), rules="") as running:
        yield running


@pytest.fixture(scope="module")
def probed(request, behind):
    """The stack ``request.param`` names (STACKS) in front of ``behind``. Module-scoped and
    parametrized by name: pytest runs every test of one stack together, and stops that proxy
    before it starts the next."""
    proxy, copies = STACKS[request.param]
    folder = behind.folder / request.param
    (folder / "cache").mkdir(parents=True, exist_ok=True)  # caching_nginx_stack's nginx cache
    with proxy_in_front(proxy, behind, copies(folder), name=request.param) as running:
        yield running


def test_every_shipped_proxy_is_probed_as_shipped_and_in_a_copy_that_passes_client_headers_on():
    """Issue 18: the probe's own tests point it at each of the four proxies, once as shipped and
    once broken (identity headers not stripped, forwarding headers passed through)."""
    assert set(STACKS) == set(PROBED) | set(BROKEN) and not set(PROBED) & set(BROKEN)
    assert set(CAUGHT) == set(BROKEN)
    assert {STACKS[name][0] for name in PROBED} == set(PROXIES) and all(
        not STACKS[name][1](Path("/nonexistent")) for name in PROBED)
    header_holes = {"identity.signed_in", "forwarding.next", "forwarding.login_host"}
    assert {STACKS[name][0] for name in BROKEN if CAUGHT[name] == header_holes} == set(PROXIES)


def probe(stack: Stack, out: Path, *, user: bool = True) -> tuple[subprocess.CompletedProcess, dict, dict]:
    """Run `authsvc probe` against ``stack``; (the process, the JSON results, the SARIF log)."""
    pins = [arg for url in (stack.auth, stack.app) for arg in
            ("--resolve", f"{urlsplit(url).hostname}:{urlsplit(url).port}:127.0.0.1")]
    argv = [*authsvc_command(), "probe", "--auth-url", stack.auth, "--app-url", stack.protected("/"),
            "--ca-file", str(stack.tls.ca), *pins, "--json", str(out / "probe.json"),
            "--sarif", str(out / "probe.sarif")]
    if user:
        argv += ["--user", USERNAME, "--password-stdin"]
    run = subprocess.run(argv, input=PASSWORD + "\n" if user else "", capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode in (0, 1), run.stdout + run.stderr
    return run, json.loads((out / "probe.json").read_text()), json.loads((out / "probe.sarif").read_text())


def statuses(results: dict) -> dict[str, str]:
    return {r["id"]: r["status"] for r in results["results"]}


@pytest.mark.asvs("V3.3.1", "V3.4.1", "V4.1.3", "V7.4.1", "V8.3.1")
@pytest.mark.parametrize("probed", PROBED, indirect=True)
def test_a_proxy_as_shipped_passes_every_check_of_the_probe(probed, tmp_path):
    stack = probed
    run, results, sarif = probe(stack, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr + stack.diagnostics()
    assert set(statuses(results).values()) == {"pass"}, run.stdout
    assert len(results["results"]) >= 20
    assert PASSWORD not in run.stdout + run.stderr + json.dumps(results) + json.dumps(sarif)
    assert [r["kind"] for r in sarif["runs"][0]["results"]] == ["pass"] * len(results["results"])


@pytest.mark.parametrize("probed", PROBED, indirect=True)
def test_without_credentials_the_probe_says_which_checks_it_could_not_run(probed, tmp_path):
    stack = probed
    run, results, _ = probe(stack, tmp_path, user=False)
    assert run.returncode == 0, run.stdout + run.stderr
    found = statuses(results)
    assert {k for k, v in found.items() if v == "n/a"} == {
        "signin.form", "identity.signed_in", "forwarding.signed_in", "logout.ends_access", "logout.replay"}
    assert {v for k, v in found.items() if v != "n/a"} == {"pass"}


@pytest.mark.asvs("V4.1.3", "V8.3.1")
@pytest.mark.parametrize("probed", BROKEN, indirect=True)
def test_a_proxy_that_passes_client_headers_on_or_rewrites_authsvcs_answers_is_caught_by_the_probe(
        probed, request, tmp_path):
    stack, stack_name = probed, request.node.callspec.params["probed"]
    run, results, sarif = probe(stack, tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    failed = {k for k, v in statuses(results).items() if v == "fail"}
    assert failed == CAUGHT[stack_name], run.stdout
    assert {v for k, v in statuses(results).items() if k not in failed} == {"pass"}, run.stdout
    for check in CAUGHT[stack_name]:  # the table names it, with its fix
        assert re.search(rf"^FAIL\s+{re.escape(check)}\s", run.stdout, re.MULTILINE), run.stdout
    assert run.stdout.count("fix: ") == len(failed)
    errors = {r["ruleId"] for r in sarif["runs"][0]["results"] if r["level"] == "error"}
    assert errors == failed


def test_a_server_pacing_its_answer_holds_no_probe_request_past_its_deadline(tmp_path):
    """--timeout bounds each read; a hostile deployment sending one byte inside every timeout held
    one request for up to 1 MiB of them. A request now ends at 4 x --timeout, as an error (an outage
    is no verdict), not as the server's answer."""
    import socket
    import ssl
    import threading
    import time

    from authsvc.probe.client import Client, ProbeError

    tls = make_tls(tmp_path / "tls")
    listener = socket.create_server(("127.0.0.1", 0))
    port, stop = listener.getsockname()[1], threading.Event()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)

    def serve() -> None:
        raw, _ = listener.accept()
        with context.wrap_socket(raw, server_side=True) as conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
            while not stop.wait(0.3):
                try:
                    conn.sendall(b"a")
                except OSError:
                    break
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    client = Client(ca_file=str(tls.ca), resolve={(AUTH_HOST, port): "127.0.0.1"}, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ProbeError, match="paced it out|OSError|SSLError"):
        client.request("GET", f"https://{AUTH_HOST}:{port}/login")
    stop.set()
    assert time.monotonic() - started < 15  # a 2 s deadline; the drip would take days
