"""examples/microblog behind deploy/nginx/authsvc.conf and a real authsvc: the stack of
conftest.py's ``stack`` fixture with the echo app swapped for the microblog under gunicorn.

Used by tests/integration/test_microblog_proxy.py and by examples/microblog/run.sh (which keeps it
running for a browser). The microblog trusts identity headers from 127.0.0.1 only: nginx's address.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT, TEST_POLICY
from tests.integration.conftest import (
    APP_HOST,
    AUTH_HOST,
    COOKIE_DOMAIN,
    Tls,
    _missing,
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


@contextlib.contextmanager
def microblog_server(folder: Path, auth_url: str):
    """examples/microblog under gunicorn on 127.0.0.1, configured by MICROBLOG_* variables;
    yields (port, log)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    if not gunicorn.exists():
        _missing(f"{gunicorn} not found: gunicorn is one of authsvc's dependencies (scripts/test installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "MICROBLOG_"))}
    env.update({"MICROBLOG_AUTHSVC_URL": auth_url, "MICROBLOG_AUTHSVC_TRUSTED_PROXIES": "127.0.0.1",
                "MICROBLOG_SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'app.db'}"})
    port = free_port()
    log = folder / "microblog.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(gunicorn), "--chdir", str(MICROBLOG), "--bind", f"127.0.0.1:{port}",
                                 "--workers", "1", "microblog:app"], env=env, stdout=out, stderr=subprocess.STDOUT)
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
