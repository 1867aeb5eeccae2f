"""examples/microblog and a real authsvc, both ways:

* :func:`microblog_stack` (proxy mode): behind deploy/nginx/authsvc.conf, the stack of conftest.py's
  ``stack`` fixture with the echo app swapped for the microblog under gunicorn. The microblog
  trusts identity headers from 127.0.0.1 only: nginx's address.
* :func:`microblog_oidc_stack` (OIDC mode): authsvc behind the same nginx on
  https://auth.example.test, the microblog on plain http on loopback (http://127.0.0.1:<port>), an
  OpenID Connect client registered with ``authsvc oidc client add``.

Used by tests/integration/test_microblog_proxy.py, tests/integration/test_microblog_oidc.py and by
examples/microblog/run.sh (which keeps a stack running for a browser).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import ROOT, TEST_POLICY
from tests.integration.conftest import (
    APP_HOST,
    AUTH_HOST,
    COOKIE_DOMAIN,
    Tls,
    _missing,
    authsvc_command,
    example_test_resolves_to_loopback,
    free_port,
    make_tls,
    require_binary,
    run_proxy,
    served_env,
    serving,
    stop,
    tail,
    wait_for_port,
)

MICROBLOG = ROOT / "examples" / "microblog"


@dataclass
class Blog:
    auth: str                 # https://auth.example.test:<port>
    app: str                  # https://app.example.test:<port>
    app_port: int             # the microblog's own port (gunicorn), behind nginx
    tls: Tls
    logs: dict[str, Path] = field(default_factory=dict)
    authsvc_env: dict[str, str] = field(default_factory=dict)   # for `authsvc` commands on its database

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name} ({path}):\n{tail(path)}" for name, path in self.logs.items())


def browser(blog: Blog) -> requests.Session:
    """A browser of the stack: no proxy from the environment, the stack's throw-away CA trusted."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(blog.tls.ca)
    return s


def module_fixtures(stack: Callable[..., Any], folder: str) -> tuple[Any, Any, Any]:
    """A test module's fixtures for ``stack`` (:func:`microblog_stack` or :func:`microblog_oidc_stack`):
    ``blog``, the stack started once for the module in a temporary folder named ``folder``;
    ``resolve_example_test``, *.example.test meaning 127.0.0.1 for the module; ``logs_on_failure``,
    the stack's logs printed under a failing test. Both last are autouse. Bind the three at the
    module's top level, where pytest looks for fixtures::

        blog, resolve_example_test, logs_on_failure = module_fixtures(microblog_stack, "microblog-stack")
    """
    @pytest.fixture(scope="module")
    def blog(tmp_path_factory):
        with stack(tmp_path_factory.mktemp(folder)) as running:
            yield running

    @pytest.fixture(scope="module", autouse=True)
    def resolve_example_test():
        with example_test_resolves_to_loopback():
            yield

    @pytest.fixture(autouse=True)
    def logs_on_failure(request, blog):
        yield
        report = getattr(request.node, "rep_call", None)   # set by conftest.py's pytest_runtest_makereport
        if report is not None and report.failed:
            print(blog.diagnostics())

    return blog, resolve_example_test, logs_on_failure


NAMES_CONFIG = Path(__file__).with_name("example_test_names.py")
# *.example.test on loopback; the access log shows whether authsvc posted a logout token.
OIDC_GUNICORN_ARGS = ("-c", str(NAMES_CONFIG), "--access-logfile", "-")


@contextlib.contextmanager
def microblog_server(folder: Path, auth_url: str, *, port: int | None = None,
                     settings: dict[str, str] | None = None, gunicorn_args: tuple[str, ...] = ()):
    """examples/microblog under gunicorn on 127.0.0.1, configured by MICROBLOG_* variables (the
    proxy mode's unless ``settings`` replace them); yields (port, log)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        _missing(f"{gunicorn} not found: gunicorn is one of authsvc's dependencies (scripts/test installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "MICROBLOG_"))}
    env.update({"MICROBLOG_AUTHSVC_URL": auth_url, "MICROBLOG_SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'app.db'}"})
    env.update(settings if settings is not None else {"MICROBLOG_AUTHSVC_TRUSTED_PROXIES": "127.0.0.1"})
    port = port or free_port()
    log = folder / "microblog.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(gunicorn), "--chdir", str(MICROBLOG), "--bind", f"127.0.0.1:{port}",
                                 "--workers", "1", *gunicorn_args, "microblog:app"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, log)
        yield port, log
    finally:
        stop(proc)


@contextlib.contextmanager
def microblog_stack(folder: Path, port: int | None = None):
    """nginx (the shipped config, a throw-away CA) + authsvc (production settings, the cheap test
    policy, user alice) + the microblog, until the block ends."""
    require_binary("nginx")
    require_binary("openssl")
    port = port or free_port()
    auth, app = f"https://{AUTH_HOST}:{port}", f"https://{APP_HOST}:{port}"
    tls = make_tls(folder / "tls")
    policy = folder / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text() + (
        '\n[throttle]\nper_client = ["300 per minute"]\nper_client_known_device = ["300 per minute"]\n'
        'per_device = ["300 per minute"]\nsuccesses_per_account = ["300 per minute"]\n'
        f'\n[[redirects.apps]]\nname = "Microblog"\norigin = "{app}"\npath_prefix = "/"\n'))
    (folder / "authsvc").mkdir(parents=True, exist_ok=True)
    env = served_env(folder / "authsvc", auth, AUTHSVC_POLICY=str(policy), AUTHSVC_COOKIE_DOMAIN=COOKIE_DOMAIN)
    with contextlib.ExitStack() as running:
        app_port, app_log = running.enter_context(microblog_server(folder / "microblog", auth))
        authsvc = running.enter_context(serving(folder / "authsvc", env))
        # Rendered with envsubst and the documented variable list, as conftest.py does for every proxy.
        nginx_log = running.enter_context(run_proxy("nginx", folder / "nginx", {
            "AUTH_HOST": AUTH_HOST, "APP_HOST": APP_HOST, "HTTPS_PORT": str(port),
            "TLS_CERT": str(tls.cert), "TLS_KEY": str(tls.key),
            "AUTHSVC_ADDR": f"127.0.0.1:{authsvc.port}", "APP_ADDR": f"127.0.0.1:{app_port}",
            "AUTHSVC_IP": "127.0.0.1", "AUTHSVC_PORT": str(authsvc.port), "APP_IP": "127.0.0.1",
            "APP_PORT": str(app_port), "CONFIG_DIR": str(folder / "nginx"),
        }))
        yield Blog(auth, app, app_port, tls, {"microblog": app_log, "authsvc": authsvc.log, "nginx": nginx_log}, env)


# --- the OIDC mode ---------------------------------------------------------------------------------

@dataclass
class OidcBlog(Blog):
    client_id: str = ""
    client_secret: str = ""
    scopes: str = ""
    discovery: dict = field(default_factory=dict)   # authsvc's, as the stack found it at start
    settings: dict = field(default_factory=dict)    # the microblog's MICROBLOG_* (and CA) variables

    @property
    def callback(self) -> str:
        return f"{self.app}/authsvc/callback"


def register_client(env: dict[str, str], *args: str) -> dict[str, str]:
    """``authsvc oidc client add ... --json``: the last line, {client_id, client_secret}."""
    made = subprocess.run([*authsvc_command(), "oidc", "client", "add", *args, "--json"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    return json.loads(made.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def microblog_oidc_stack(folder: Path, port: int | None = None, *, trusted: bool = False,
                         groups: tuple[str, ...] = ("moderators",)):
    """authsvc behind nginx (the shipped config, a throw-away CA) on https://auth.example.test:<port>,
    user alice in ``groups``, and the microblog in the OIDC mode on http://127.0.0.1:<app port>,
    registered as a confidential client (``trusted``: no consent page) whose redirect URI and
    back-channel logout URI are the microblog's own, exactly. The microblog asks for the scope
    ``groups`` when authsvc's discovery offers it. It trusts the test CA through REQUESTS_CA_BUNDLE
    and resolves *.example.test to loopback through :data:`NAMES_CONFIG`."""
    require_binary("nginx")
    require_binary("openssl")
    port = port or free_port()
    auth = f"https://{AUTH_HOST}:{port}"
    app_port = free_port()
    app = f"http://127.0.0.1:{app_port}"
    tls = make_tls(folder / "tls")
    policy = folder / "policy.toml"
    policy.write_text(Path(TEST_POLICY).read_text() + (
        '\n[throttle]\nper_client = ["300 per minute"]\nper_client_known_device = ["300 per minute"]\n'
        'per_device = ["300 per minute"]\nsuccesses_per_account = ["300 per minute"]\n'))
    (folder / "authsvc").mkdir(parents=True, exist_ok=True)
    env = served_env(folder / "authsvc", auth, AUTHSVC_POLICY=str(policy))
    with contextlib.ExitStack() as running:
        authsvc = running.enter_context(serving(folder / "authsvc", env, groups=groups))
        nginx_log = running.enter_context(run_proxy("nginx", folder / "nginx", {
            "AUTH_HOST": AUTH_HOST, "APP_HOST": APP_HOST, "HTTPS_PORT": str(port),
            "TLS_CERT": str(tls.cert), "TLS_KEY": str(tls.key),
            "AUTHSVC_ADDR": f"127.0.0.1:{authsvc.port}", "APP_ADDR": f"127.0.0.1:{app_port}",
            "AUTHSVC_IP": "127.0.0.1", "AUTHSVC_PORT": str(authsvc.port), "APP_IP": "127.0.0.1",
            "APP_PORT": str(app_port), "CONFIG_DIR": str(folder / "nginx"),
        }))
        with example_test_resolves_to_loopback():
            discovery = requests.get(f"{auth}/.well-known/openid-configuration", verify=str(tls.ca),
                                     timeout=10).json()
        scopes = "openid profile" + (" groups" if "groups" in discovery.get("scopes_supported", ()) else "")
        client = register_client(env, "Microblog", "--redirect-uri", f"{app}/authsvc/callback",
                                 "--backchannel-logout-uri", f"{app}/authsvc/backchannel-logout",
                                 "--scopes", scopes, *(["--trusted"] if trusted else []))
        settings = {"MICROBLOG_AUTHSVC_MODE": "oidc", "MICROBLOG_AUTHSVC_CLIENT_ID": client["client_id"],
                    "MICROBLOG_AUTHSVC_CLIENT_SECRET": client["client_secret"], "MICROBLOG_AUTHSVC_SCOPES": scopes,
                    "MICROBLOG_SECRET_KEY": secrets.token_urlsafe(32), "REQUESTS_CA_BUNDLE": str(tls.ca)}
        app_port, app_log = running.enter_context(microblog_server(
            folder / "microblog", auth, port=app_port, gunicorn_args=OIDC_GUNICORN_ARGS, settings=settings))
        yield OidcBlog(auth, app, app_port, tls, {"microblog": app_log, "authsvc": authsvc.log, "nginx": nginx_log},
                       env, client["client_id"], client["client_secret"], scopes, discovery, settings)
