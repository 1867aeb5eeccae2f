"""authsvc instances as docs/deployment.md runs them, and a browser that can pick its instance.

The environment comes from the guide itself: its ``/etc/authsvc/authsvc.env`` block is read from
docs/deployment.md, and only the values that must differ on a test machine are replaced (where the
database, Redis and the key file are, the test policy, the test hosts). A variable the guide drops
fails the test that needs it; one the guide adds is passed on as written.

:class:`Browser` plays a browser behind the TLS proxy: it talks plain http straight to the instance
the test names, with ``X-Forwarded-For``/``-Proto`` set as nginx would (the instances trust one
hop), and keeps its cookies itself (they are ``Secure``, which ``requests`` would not send over
http). So a test can send one request to instance 1 and the next to instance 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.conftest import PASSWORD, ROOT, STRONG_KEY, TEST_POLICY, csrf_in
from tests.integration.conftest import (
    APP_HOST,
    APP_NAME,
    APP_PREFIX,
    AUTH_HOST,
    COOKIE_DOMAIN,
    authsvc_command,
    free_port,
    stop,
    tail,
    wait_for_port,
)

GUIDE = ROOT / "docs" / "deployment.md"
ENV_FILE = "# /etc/authsvc/authsvc.env"
PUBLIC_URL = f"https://{AUTH_HOST}"
APP_ORIGIN = f"https://{APP_HOST}"
NEW_PASSWORD = "a completely different passphrase 7"


def guide_env() -> dict[str, str]:
    """The environment file of docs/deployment.md, as a dict."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", GUIDE.read_text(), re.DOTALL):
        if block.startswith(ENV_FILE):
            pairs = [line.split("=", 1) for line in block.splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
            return {k.strip(): v.strip() for k, v in pairs}
    raise AssertionError(f"{GUIDE.relative_to(ROOT)} has no ```sh block starting with {ENV_FILE!r}")


def deployment_env(folder: Path, *, database_url: str, storage_uri: str, key_prefix: str,
                   public_url: str = PUBLIC_URL, app_origin: str = APP_ORIGIN) -> dict[str, str]:
    """The guide's environment with this machine's servers: what every instance and CLI run gets."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "secret_key"
    key.write_text(STRONG_KEY + "\n")
    key.chmod(0o600)
    policy = folder / "policy.toml"
    # The tests sign a few accounts in many times within seconds: the account success limit
    # (3 per 10 s by default) is raised; the per-client and failure limits stay the policy's.
    policy.write_text(Path(TEST_POLICY).read_text() + (
        f'\n[[redirects.apps]]\nname = "{APP_NAME}"\norigin = "{app_origin}"\npath_prefix = "{APP_PREFIX}"\n'
        '\n[throttle]\nsuccesses_per_account = ["300 per minute"]\n'))
    guide = guide_env()
    overrides = {
        "AUTHSVC_SECRET_KEY_FILE": str(key),
        "AUTHSVC_DATABASE_URL": database_url,
        "AUTHSVC_RATELIMIT_STORAGE_URI": storage_uri,
        "AUTHSVC_RATELIMIT_KEY_PREFIX": key_prefix,
        "AUTHSVC_PUBLIC_URL": public_url,
        "AUTHSVC_COOKIE_DOMAIN": COOKIE_DOMAIN,
        "AUTHSVC_POLICY": str(policy),
        "AUTHSVC_INSTANCE_PATH": str(folder / "cli-instance"),
        "AUTHSVC_TRUSTED_PROXY_NETWORKS": "127.0.0.1/32",  # this machine's nginx
    }
    missing = sorted(set(overrides) - set(guide))
    assert not missing, f"docs/deployment.md's environment file lacks {missing}; the tests run what it says"
    assert guide["AUTHSVC_DATABASE_URL"].startswith("postgresql+psycopg://"), guide["AUTHSVC_DATABASE_URL"]
    assert guide["AUTHSVC_RATELIMIT_STORAGE_URI"].startswith("redis"), guide["AUTHSVC_RATELIMIT_STORAGE_URI"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTHSVC_", "PROMETHEUS_"))}
    env.update(guide)
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``authsvc ARGS`` as an operator runs it, with ``env`` (from ``cwd``, else the tests' own directory)."""
    return subprocess.run([*authsvc_command(), *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=cwd)


@dataclass
class Instance:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def diagnostics(self) -> str:
        return f"--- {self.name} ({self.log}):\n{tail(self.log, 60)}"

    def crash(self) -> None:
        """SIGKILL to the master and its workers at once: the instance is gone, nothing cleaned up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@contextlib.contextmanager
def instances(folder: Path, env: dict[str, str], count: int = 2, workers: int = 2, meanwhile=None):
    """``count`` instances of ``authsvc serve --workers N``, each with its own instance folder (as on
    separate hosts), started together; yields them once every one answers /healthz. ``meanwhile()``
    runs while they boot."""
    started: list[Instance] = []
    try:
        for i in range(1, count + 1):
            port, log = free_port(), folder / f"instance{i}.log"
            own = {**env, "AUTHSVC_INSTANCE_PATH": str(folder / f"instance{i}")}
            with open(log, "wb") as out:
                proc = subprocess.Popen([*authsvc_command(), "serve", "--bind", f"127.0.0.1:{port}",
                                         "--workers", str(workers)], env=own, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # its own group: crash() takes the workers too
            started.append(Instance(f"instance{i}", port, log, proc))
        if meanwhile is not None:
            meanwhile()
        for inst in started:
            wait_for_port(inst.port, inst.proc, inst.log, timeout=60)
            deadline = time.monotonic() + 60
            while True:  # the master listens before its workers have loaded the app
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{inst.url}/healthz", timeout=30).status_code == 200:
                        break
                assert time.monotonic() < deadline, inst.diagnostics()
                time.sleep(0.1)
        yield started
    finally:
        for inst in started:
            stop(inst.proc)


class Browser:
    """One browser (address ``ip``, its own User-Agent) behind the TLS proxy, able to reach any
    instance: ``b.get(instance, "/login")``. Keeps cookies across instances, as a browser would
    across the proxy's upstreams."""

    def __init__(self, ip: str, ua: str | None = None) -> None:
        self.ip = ip
        self.ua = ua or f"Mozilla/5.0 (X11; Linux) ScaleOutTest/{ip}"
        self.cookies: dict[str, str] = {}
        self.http = requests.Session()
        self.http.trust_env = False
        # As a browser does: a GET sent on a kept-alive connection the server closed at that moment
        # (gunicorn lets an idle one go after 2 s) is sent once more on a new connection. Never a
        # POST, and never on an answer: every status reaches the test as the server gave it.
        self.http.mount("http://", HTTPAdapter(max_retries=Retry(
            total=1, connect=1, read=1, status=0, other=0, allowed_methods=frozenset({"GET"}),
            raise_on_status=False, respect_retry_after_header=False)))

    def headers(self, extra: dict | None = None) -> dict[str, str]:
        h = {"Host": AUTH_HOST, "X-Forwarded-For": self.ip, "X-Forwarded-Proto": "https", "User-Agent": self.ua}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        h.update(extra or {})
        return h

    def request(self, method: str, instance: Instance, path: str, *, timeout: float = 30, **kw) -> requests.Response:
        response = self.http.request(method, instance.url + path, headers=self.headers(kw.pop("headers", None)),
                                     allow_redirects=False, timeout=timeout, **kw)
        self.http.cookies.clear()  # ours are kept below, Secure or not
        for line in response.raw.headers.getlist("Set-Cookie"):
            jar = SimpleCookie()
            jar.load(line)
            for name, morsel in jar.items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    def get(self, instance: Instance, path: str, **kw) -> requests.Response:
        return self.request("GET", instance, path, **kw)

    def post(self, instance: Instance, path: str, **kw) -> requests.Response:
        return self.request("POST", instance, path, **kw)

    def csrf(self, instance: Instance, path: str = "/login") -> str:
        page = self.get(instance, path)
        if page.status_code == 303 and path == "/login":  # signed in already: the account page has one
            page = self.get(instance, "/")
        return csrf_in(page.text, f"{path} from {instance.name} ({page.status_code})")

    def login(self, instance: Instance, username: str, password: str = PASSWORD, *, remember: bool = False,
              csrf_from: Instance | None = None) -> requests.Response:
        data = {"csrf_token": self.csrf(csrf_from or instance), "username": username, "password": password}
        if remember:
            data["remember"] = "on"
        return self.post(instance, "/login", data=data)

    def verify(self, instance: Instance) -> int:
        return self.get(instance, "/auth/verify").status_code

    def cookie(self, suffix: str) -> str | None:
        """The cookie whose name ends in ``suffix`` (``authsvc_remember``), whatever its prefix."""
        return next((v for k, v in self.cookies.items() if k.endswith(suffix)), None)

    def only(self, suffix: str) -> Browser:
        """Another tab/browser at the same address with the same User-Agent, holding only that cookie."""
        other = Browser(self.ip, self.ua)
        other.cookies = {k: v for k, v in self.cookies.items() if k.endswith(suffix)}
        return other


def seconds_until_refused(check, *, bound: float, interval: float = 0.05) -> float:
    """Poll ``check()`` (a status code) from now until 1.5 x ``bound``; return how long it kept
    answering 200, in seconds from now: the send time of the last request answered 200 (0.0 if
    none was), so a slow answer is never counted against the bound. Anything other than 200 or 401
    fails at once: a revocation must not turn into an error."""
    started = time.monotonic()
    last_accepted = 0.0
    answers = []  # (sent at, status)
    while (sent := time.monotonic() - started) < bound * 1.5:
        status = check()
        answers.append((round(sent, 3), status))
        assert status in (200, 401), f"verify answered {status}: {answers}"
        if status == 200:
            last_accepted = sent
        time.sleep(interval)
    assert answers[-1][1] == 401, \
        f"the revoked session was still accepted {bound * 1.5:.1f} s after the revocation: {answers}"
    return last_accepted


def parallel(*calls):
    """Run the zero-argument ``calls`` at the same moment; their results, in order. When calls
    fail, the first failure that is not a broken barrier is raised: a call that fails before a
    barrier the others wait at breaks it for them, and the cause is that call's error."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        errors = [f.exception() for f in futures]
    failed = [e for e in errors if e is not None]
    if failed:
        raise next((e for e in failed if not isinstance(e, threading.BrokenBarrierError)), failed[0])
    return [f.result() for f in futures]
