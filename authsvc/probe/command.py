"""``authsvc probe``: the command line around :class:`authsvc.probe.runner.Probe`, also runnable
with nothing installed as ``python -m authsvc.probe`` from a checkout (the package is standard
library only), which is how the sample CI jobs in deploy/ci/ run it.

Exit status: 0 when no check failed, 1 when one did, 2 when the deployment could not be asked
(usage, DNS, TLS, connection) and so nothing was judged.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from urllib.parse import urlsplit

from authsvc.probe import report
from authsvc.probe.client import Client, ProbeError
from authsvc.probe.model import FAIL
from authsvc.probe.runner import CHECKS, Probe, Target

EXIT_FAILED = 1
EXIT_ERROR = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--auth-url", required=True, help="the login service, e.g. https://auth.example.com")
    parser.add_argument("--app-url", required=True, help="a protected page behind the proxy, "
                        "e.g. https://app.example.com/ (one that shows who is signed in checks the most)")
    parser.add_argument("--user", help="an account for the checks that sign in (no second factor)")
    parser.add_argument("--password-stdin", action="store_true", help="read --user's password from standard input")
    parser.add_argument("--ca-file", help="PEM file of the CA(s) to trust instead of the system's")
    parser.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDRESS",
                        help="connect to ADDRESS for HOST:PORT (as curl --resolve; a staging server without DNS)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--sarif", metavar="FILE", help="also write the results as SARIF 2.1.0")


def _fail(message: str) -> int:
    print(f"authsvc probe: {message}", file=sys.stderr)
    return EXIT_ERROR


def parse_resolve(entries: list[str]) -> dict[tuple[str, int], str]:
    pinned = {}
    for entry in entries:
        host, _, rest = entry.partition(":")
        port, _, address = rest.partition(":")
        if not host or not port.isdigit() or not address:
            raise ValueError(f"--resolve {entry!r}: expected HOST:PORT:ADDRESS")
        pinned[(host.lower().rstrip("."), int(port))] = address.strip("[]")
    return pinned


def url_problem(name: str, url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"{name} must be an https:// URL with a host, not {url!r}"
    if parts.username is not None or parts.fragment:
        return f"{name} must not carry userinfo or a fragment"
    return None


def _password(args) -> str | None:
    if args.user is None:
        return None
    if args.password_stdin:
        password = sys.stdin.readline().removesuffix("\n")
        if not password:
            raise ValueError("--password-stdin: standard input held no password")
        return password
    if not sys.stdin.isatty():
        raise ValueError("--user without a terminal: pass the password with --password-stdin")
    return getpass.getpass(f"Password for {args.user}: ")


def run(args) -> int:
    for name, url in (("--auth-url", args.auth_url), ("--app-url", args.app_url)):
        problem = url_problem(name, url)
        if problem:
            return _fail(problem)
    if args.password_stdin and args.user is None:
        return _fail("--password-stdin needs --user")
    try:
        resolve = parse_resolve(args.resolve)
        password = _password(args)
    except ValueError as exc:
        return _fail(str(exc))
    auth = urlsplit(args.auth_url)
    target = Target(f"{auth.scheme}://{auth.netloc}", args.app_url, args.user, password)
    try:
        client = Client(ca_file=args.ca_file, resolve=resolve, timeout=args.timeout)
        results = Probe(target, client).run()
    except (ProbeError, OSError) as exc:  # OSError: an unreadable --ca-file
        return _fail(f"{exc}; nothing was checked")
    except ValueError as exc:  # server text no parser reads, past every judge's own care: no verdict
        return _fail(f"the deployment answered something the probe cannot read ({exc}); nothing was checked")
    print(report.table(results, target.auth_url, target.app_url))
    if args.json:
        Path(args.json).write_text(report.dump(report.to_json(results, target.auth_url, target.app_url)))
    if args.sarif:
        Path(args.sarif).write_text(report.dump(report.to_sarif(results, CHECKS)))
    return EXIT_FAILED if any(r.status == FAIL for r in results) else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m authsvc.probe``: the same arguments as ``authsvc probe``."""
    parser = argparse.ArgumentParser(prog="python -m authsvc.probe",
                                     description="Check a running authsvc deployment from outside over HTTPS.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
