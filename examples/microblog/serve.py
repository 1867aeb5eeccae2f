"""Run the microblog and authsvc on this machine, the way tests/integration runs them
(tests/integration/microblog_stack.py): the shipped deploy/nginx/authsvc.conf, a throw-away CA,
authsvc in production mode with the cheap test policy and an account ``alice``. A demo, never a
deployment: the key and the password are the test suite's.

    examples/microblog/run.sh                 # proxy mode: behind nginx; until Ctrl-C
    examples/microblog/run.sh --oidc          # OIDC mode: an OpenID Connect client of authsvc
    examples/microblog/run.sh [--oidc] --check  # sign in once with the real login form, then stop
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import pytest  # the stack's helpers skip or fail like tests when a tool is missing

from tests.conftest import PASSWORD, csrf_in
from tests.integration.conftest import USERNAME, example_test_resolves_to_loopback
from tests.integration.microblog_stack import (
    Blog,
    OidcBlog,
    browser,
    microblog_oidc_stack,
    microblog_stack,
)

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def check(blog: Blog) -> int:
    """Anonymous -> authsvc's login form -> signed in -> "Hi, alice!" on the microblog."""
    with example_test_resolves_to_loopback():
        s = browser(blog)
        login = s.get(f"{blog.app}/index", timeout=10)          # nginx -> authsvc's login page
        fields = {"csrf_token": csrf_in(login.text), "username": USERNAME, "password": PASSWORD}
        hidden_next = re.search(r'name="next" value="([^"]*)"', login.text)
        if hidden_next:
            fields["next"] = hidden_next.group(1).replace("&amp;", "&")
        home = s.post(f"{blog.auth}/login", data=fields, timeout=30)  # and back to the microblog
    ok = home.status_code == 200 and "Hi, alice!" in home.text
    print(f"microblog: {'OK' if ok else 'FAILED'}: {home.url} answered {home.status_code}"
          + ("" if ok else f"\n{home.text[:500]}\n{blog.diagnostics()}"))
    return 0 if ok else 1


def check_oidc(blog: OidcBlog) -> int:
    """Anonymous -> the microblog's /authsvc/login -> authsvc's authorize -> login form -> consent
    -> the microblog's callback -> "Hi, alice!"."""
    import html
    from urllib.parse import urljoin

    with example_test_resolves_to_loopback():
        s = browser(blog)
        url, response = f"{blog.app}/index", None
        for _ in range(15):
            response = s.get(url, allow_redirects=False, timeout=20)
            page = response.text
            fields = {name: html.unescape(value) for name, value in HIDDEN.findall(page)}
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                continue
            if url.startswith(blog.auth) and 'name="password"' in page:
                response = s.post(f"{blog.auth}/login", data={**fields, "username": USERNAME, "password": PASSWORD},
                                  allow_redirects=False, timeout=30)
            elif url.startswith(blog.auth) and "Allow Microblog?" in page:
                response = s.post(f"{blog.auth}/oauth/authorize/consent", data={**fields, "decision": "allow"},
                                  allow_redirects=False, timeout=30)
            else:
                break
            url = urljoin(url, response.headers.get("Location", url))
    ok = response is not None and response.status_code == 200 and "Hi, alice!" in response.text
    print(f"microblog (OIDC): {'OK' if ok else 'FAILED'}: {url} answered {response.status_code}"
          + ("" if ok else f"\n{response.text[:500]}\n{blog.diagnostics()}"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8443, help="nginx's https port for both hosts (default 8443)")
    parser.add_argument("--check", action="store_true", help="sign in once with the login form, then stop")
    parser.add_argument("--oidc", action="store_true",
                        help="the OIDC mode: the microblog on http://127.0.0.1 as an OpenID Connect client of authsvc")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    stack = microblog_oidc_stack if args.oidc else microblog_stack
    try:
        with tempfile.TemporaryDirectory(prefix="microblog-") as tmp, stack(Path(tmp), args.port) as blog:
            if args.check:
                return check_oidc(blog) if args.oidc else check(blog)
            if args.oidc:
                print(f"""
The microblog is at {blog.app}/ (OIDC mode, client {blog.client_id}, scopes {blog.scopes!r});
authsvc at {blog.auth}/ behind nginx. Sign in as {USERNAME} with the password {PASSWORD} (a demo only).
authsvc's name means 127.0.0.1 and its certificate is from a throw-away CA ({blog.tls.ca}), so:
  chromium --user-data-dir=$(mktemp -d) --host-resolver-rules="MAP *.example.test 127.0.0.1" \\
           --ignore-certificate-errors {blog.app}/
or add "127.0.0.1 auth.example.test" to /etc/hosts and trust that CA.
Logs: {", ".join(str(path) for path in blog.logs.values())}
Ctrl-C stops nginx, authsvc and the microblog.""", flush=True)
                signal.pause()
                return 0
            print(f"""
The microblog is at {blog.app}/ behind nginx; authsvc at {blog.auth}/.
Sign in as {USERNAME} with the password {PASSWORD} (the test suite's; a demo only).
The hosts are names for 127.0.0.1 and the certificate is from a throw-away CA ({blog.tls.ca}), so:
  chromium --user-data-dir=$(mktemp -d) --host-resolver-rules="MAP *.example.test 127.0.0.1" \\
           --ignore-certificate-errors {blog.app}/
or add "127.0.0.1 auth.example.test app.example.test" to /etc/hosts and trust that CA.
Logs: {", ".join(str(path) for path in blog.logs.values())}
Ctrl-C stops nginx, authsvc and the microblog.""", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        return 0
    except (pytest.skip.Exception, pytest.fail.Exception) as missing:
        print(f"microblog: {missing.msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
