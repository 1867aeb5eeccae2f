"""Identity headers a client makes up: the proxy must overwrite or drop every spelling of the
names the app trusts (any case, "_" for "-", which WSGI and CGI read as the same header), so the
app never sees the client's value (oauth2-proxy CVE-2025-64484).

From outside, what the app saw shows only in what it answers. Each forged header carries a canary
value no real identity has; a canary in the answer (body or headers) proves the app saw the
client's header. With a sign-in, the real user's name in the answer proves the app shows who is
signed in, which makes the absence of canaries meaningful; without it the check says it cannot
tell.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from authsvc.probe.access import Decision, kept_out
from authsvc.probe.model import Check, Finding, failed, not_applicable, passed

ANONYMOUS = Check("identity.anonymous", "made-up identity headers get an anonymous client nowhere",
                  "Let the proxy ask authsvc about every request to the app and act only on its answer (nginx "
                  "auth_request, ForwardAuth); never skip the check when X-Auth-User is present.", ("V8.3.1",))
SIGNED_IN = Check("identity.signed_in", "the app never sees a client's own identity headers, in any spelling",
                  "Make the proxy set X-Auth-User, X-Auth-User-Id, X-Auth-Groups and X-Auth-Methods from authsvc's "
                  "answer only, replacing what the client sent (nginx proxy_set_header; Traefik authResponseHeaders; "
                  "Caddy copy_headers), and drop client headers spelled with underscores (nginx: leave "
                  "underscores_in_headers off).", ("V8.3.1", "V4.1.3"))
CHECKS = (ANONYMOUS, SIGNED_IN)

# The names authsvc sends, and names other forward-auth services use that an app might read.
NAMES = ("X-Auth-User", "X-Auth-User-Id", "X-Auth-Groups", "X-Auth-Methods",
         "Remote-User", "X-Remote-User", "X-Forwarded-User", "X-Auth-Request-User")

SPELLINGS: dict[str, Callable[[str], str]] = {
    "as documented": lambda n: n,
    "lower case": str.lower,
    "upper case": str.upper,
    "underscores": lambda n: n.replace("-", "_"),
    "lower case with underscores": lambda n: n.lower().replace("-", "_"),
}


@dataclass(frozen=True)
class Forgery:
    spelling: str
    headers: tuple[tuple[str, str], ...]
    canaries: dict[str, str]  # canary value -> header name


def forgeries(token: Callable[[], str] = lambda: secrets.token_hex(6)) -> list[Forgery]:
    """One request's worth of forged headers per spelling, each value a fresh canary (digits for
    the id: an app may parse it as a number)."""
    made = []
    for spelling, spell in SPELLINGS.items():
        headers, canaries = [], {}
        for name in NAMES:
            canary = (str(int(token(), 16) % 10**12).rjust(12, "9") if name.endswith("-Id")
                      else f"probe-forged-{token()}")
            headers.append((spell(name), canary))
            canaries[canary] = spell(name)
        made.append(Forgery(spelling, tuple(headers), canaries))
    return made


def canaries_seen(answer: str, forgery: Forgery) -> list[str]:
    """The header names whose forged value the answer repeats."""
    return sorted({name for canary, name in forgery.canaries.items() if canary in answer})


def judge_anonymous(outcomes: list[tuple[Forgery, Decision, str]]) -> Finding:
    """``outcomes``: per forgery, the proxy's decision and the whole answer as text."""
    leaks = [f"{f.spelling}: {d.describe()}" for f, d, _ in outcomes if not kept_out(d)]
    seen = [f"{f.spelling}: {', '.join(canaries_seen(text, f))}" for f, _, text in outcomes
            if canaries_seen(text, f)]
    if leaks:
        return failed("let through with made-up identity: " + "; ".join(leaks))
    if seen:
        return failed("the answer repeats made-up identity headers: " + "; ".join(seen))
    return passed(f"{len(outcomes)} spellings, each kept out")


def judge_signed_in(baseline: str, outcomes: list[tuple[Forgery, Decision, str]], username: str) -> Finding:
    """``baseline``: the app's answer to the signed-in user without forged headers."""
    seen = [f"{f.spelling}: {', '.join(canaries_seen(text, f))}" for f, _, text in outcomes
            if canaries_seen(text, f)]
    if seen:
        return failed("the app saw the client's identity headers: " + "; ".join(seen))
    dropped = [f.spelling for f, d, _ in outcomes if kept_out(d)]
    shows_user = username.lower() in baseline.lower()
    if not shows_user:
        return not_applicable("the app page does not show who is signed in, so what it believed cannot be seen "
                              "(point --app-url at a page that echoes X-Auth-User); no canary came back")
    lost = [f.spelling for f, _, text in outcomes if username.lower() not in text.lower() and f.spelling not in dropped]
    if lost:
        return failed("the signed-in user's name is gone from the app's answer with made-up headers "
                      f"({', '.join(lost)}): the client's header replaced the proxy's")
    return passed(f"{len(outcomes)} spellings; the app shows {username}, never the made-up values"
                  + (f" (refused: {', '.join(dropped)})" if dropped else ""))
