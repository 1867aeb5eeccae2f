"""Identity headers a client makes up: the proxy must overwrite or drop every spelling of the
names the app trusts (any case, "_" for "-", which WSGI and CGI read as the same header), so the
app never sees the client's value (oauth2-proxy CVE-2025-64484). Also the aliases an app or a
server reads as those names ("." for "-", "_" and "-" mixed), a name with whitespace before the
colon, and the header sent twice: each family is one request, named in the finding. Beside
authsvc's own names, the identity headers of other login proxies (FOREIGN): authsvc never sends
them, so the proxy must remove every client copy, or an app moved from behind oauth2-proxy or
Authelia (or Django's RemoteUserMiddleware reading HTTP_REMOTE_USER) takes it for the user.

From outside, what the app saw shows only in what it answers. Each forged header carries a canary
value no real identity has; a canary in the answer (body or headers) proves the app saw the
client's header. With a sign-in, the real user's name in the answer proves the app shows who is
signed in, which makes the absence of canaries meaningful; without it the check says it cannot
tell. A canary names no one, so an app may refuse it (403) even when the proxy let it through:
with a sign-in the real user's name is forged too, anonymously, and every forgery must be
answered as the same request without it (anonymous: sent to the login page; signed in: let
through), or refused outright by the proxy (a bare 400, a closed connection).
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from authsvc.probe.access import Decision, kept_out, refused_outright, same
from authsvc.probe.model import Check, Finding, failed, not_applicable, passed

ANONYMOUS = Check("identity.anonymous", "made-up identity headers get an anonymous client nowhere",
                  "Let the proxy ask authsvc about every request to the app and act only on its answer (nginx "
                  "auth_request, ForwardAuth); never skip the check when X-Auth-User is present.", ("V8.3.1",))
SIGNED_IN = Check("identity.signed_in", "the app never sees a client's own identity headers, in any spelling",
                  "Make the proxy set X-Auth-User, X-Auth-User-Id, X-Auth-Groups and X-Auth-Methods from authsvc's "
                  "answer only, replacing what the client sent (nginx proxy_set_header; Traefik authResponseHeaders; "
                  "Caddy copy_headers); remove the other login proxies' identity headers authsvc never sends "
                  "(Remote-User, X-Forwarded-User, X-Auth-Request-Email, ...: deploy/ strips them all); and drop "
                  "client headers whose names have underscores or dots (nginx: leave underscores_in_headers off and "
                  "ignore_invalid_headers on; Envoy: headers_with_underscores_action and a filter removing names with "
                  "a dot; Traefik: aliasHeadersStrategy: delete).", ("V8.3.1", "V4.1.3"))
CHECKS = (ANONYMOUS, SIGNED_IN)

# The names authsvc sends, and the names other login proxies send that an app might read
# (Apache's REMOTE_USER as a header, oauth2-proxy's X-Forwarded-* and X-Auth-Request-*, Authelia's
# Remote-*): authsvc never sends the latter, so any of them reaching the app is the client's.
OWN = ("X-Auth-User", "X-Auth-User-Id", "X-Auth-Groups", "X-Auth-Methods")
FOREIGN = ("Remote-User", "X-Remote-User", "X-Forwarded-User", "X-Auth-Request-User", "X-Forwarded-Email",
           "X-Auth-Request-Email", "Remote-Groups", "Remote-Email", "Remote-Name", "X-Forwarded-Preferred-Username",
           "X-Forwarded-Groups")
NAMES = OWN + FOREIGN
# The names that carry a user name: forged with the real user's, an app behind a proxy that trusts
# them lets an anonymous client in as that user.
USER_NAMES = ("X-Auth-User", "Remote-User", "X-Remote-User", "X-Forwarded-User", "X-Auth-Request-User",
              "X-Forwarded-Preferred-Username")
_FOREIGN_READ_AS = frozenset(name.lower() for name in FOREIGN)


def _mixed(name: str, other: str) -> str:
    """``name`` with its separators alternating between ``other`` and "-", ``other`` first:
    X_Auth-User, X.Auth-User-Id."""
    words = name.split("-")
    return words[0] + "".join((other if i % 2 == 0 else "-") + w for i, w in enumerate(words[1:]))


# Each spelling is one request: the names it sends for one of NAMES (two for a header sent twice).
# Aliases (any case, "_" or "." for "-", mixed) are names a WSGI, CGI or PHP app reads as the
# header; whitespace before the colon is one some parsers strip; a header twice makes the app
# choose, and it may choose the client's.
SPELLINGS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "as documented": lambda n: (n,),
    "lower case": lambda n: (n.lower(),),
    "upper case": lambda n: (n.upper(),),
    "underscores": lambda n: (n.replace("-", "_"),),
    "lower case with underscores": lambda n: (n.lower().replace("-", "_"),),
    "underscores and dashes mixed": lambda n: (_mixed(n, "_"),),
    "dots": lambda n: (n.replace("-", "."),),
    "dots and underscores mixed": lambda n: (_mixed(n, ".").replace("-", "_"),),
    "whitespace before the colon": lambda n: (f"{n} ",),
    "twice": lambda n: (n, n),
    "twice, in two cases": lambda n: (n, n.lower()),
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
            for spelled in spell(name):
                canary = (str(int(token(), 16) % 10**12).rjust(12, "9") if name.endswith("-Id")
                          else f"probe-forged-{token()}")
                headers.append((spelled, canary))
                canaries[canary] = spelled
        made.append(Forgery(spelling, tuple(headers), canaries))
    return made


def impersonations(username: str) -> list[Forgery]:
    """Per spelling, one request naming the real user in every header that carries a user name:
    what an attacker who knows a user name sends. No canaries: the name is the real one."""
    return [Forgery(f"{spelling}, naming {username}", tuple((spelled, username) for name in USER_NAMES
                                                                 for spelled in spell(name)), {})
            for spelling, spell in SPELLINGS.items()]


_HIDDEN = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def shows(username: str, answer: str) -> bool:
    """Whether ``answer`` shows ``username`` as a word of its visible text: not inside markup (a
    link to /admin/ is no sign that "admin" is signed in) and not part of a longer word, path,
    host or address ("administrator", "/admin/x", "admin.example", "admin@x")."""
    visible = html.unescape(_HIDDEN.sub(" ", answer))
    word = rf"(?<![\w./@-]){re.escape(username)}(?![\w/@-]|\.\w)"
    return bool(username) and re.search(word, visible, re.IGNORECASE) is not None


def canaries_seen(answer: str, forgery: Forgery) -> list[str]:
    """The header names whose forged value the answer repeats."""
    return sorted({name for canary, name in forgery.canaries.items() if canary in answer})


def is_foreign(name: str) -> bool:
    """Whether ``name``, as sent (any case, "_" or "." for "-", whitespace), is read as one of
    FOREIGN: a header authsvc never sends, which the proxy must remove rather than replace."""
    return name.strip().lower().replace("_", "-").replace(".", "-") in _FOREIGN_READ_AS


def _seen(outcomes: list[tuple[Forgery, Decision, str]]) -> str:
    """Per forgery whose canaries the answer repeats, its spelling and the names; "" if none. A
    foreign name is called so: the fix is at the proxy, which must remove it, not copy authsvc's."""
    seen = [f"{f.spelling}: {', '.join(canaries_seen(text, f))}" for f, _, text in outcomes
            if canaries_seen(text, f)]
    foreign = sorted({n.strip() for f, _, text in outcomes for n in canaries_seen(text, f) if is_foreign(n)})
    note = (f" ({', '.join(foreign)}: another login proxy's header, which authsvc never sends: the proxy must "
            "remove every client copy)") if foreign else ""
    return "; ".join(seen) + note if seen else ""


def judge_anonymous(baseline: Decision, outcomes: list[tuple[Forgery, Decision, str]]) -> Finding:
    """``baseline``: the decision on the plain anonymous request; ``outcomes``: per forgery, the
    proxy's decision and the whole answer as text. Any other answer than the baseline's, unless
    the proxy refused it outright, means someone acted on the forged header: a 403 from an app that was
    handed a name it does not know is not the proxy keeping the client out."""
    leaks = sorted((kept_out(d), f"{f.spelling}: {d.describe()}") for f, d, _ in outcomes
                   if not kept_out(d) or not same(d, baseline) and not refused_outright(d))
    seen = _seen(outcomes)
    if leaks:  # those let through first
        return failed(f"without them: {baseline.describe()}; with made-up identity: "
                      + "; ".join(text for _, text in leaks[:6]) + (" ..." if len(leaks) > 6 else ""))
    if seen:
        return failed("the answer repeats made-up identity headers: " + seen)
    return passed(f"{len(outcomes)} forgeries, each answered as without them ({baseline.describe()})")


def judge_signed_in(baseline: str, decided: Decision, outcomes: list[tuple[Forgery, Decision, str]],
                    username: str) -> Finding:
    """``baseline``: the app's answer to the signed-in user without forged headers, ``decided``
    the proxy's decision on it. A forgery answered otherwise (refused, sent to the login page),
    unless the proxy refused it outright, means the client's header changed what the proxy or app
    did."""
    seen = _seen(outcomes)
    if seen:
        return failed("the app saw the client's identity headers: " + seen)
    changed = [f"{f.spelling}: {d.describe()}" for f, d, _ in outcomes
               if d.kind != decided.kind and not refused_outright(d)]
    if changed:
        return failed(f"without them: {decided.describe()}; with made-up identity: " + "; ".join(changed[:5])
                      + (" ..." if len(changed) > 5 else ""))
    dropped = [f.spelling for f, d, _ in outcomes if refused_outright(d)]
    if not shows(username, baseline):
        return not_applicable("the app page does not show who is signed in, so what it believed cannot be seen "
                              "(point --app-url at a page that echoes X-Auth-User); no canary came back")
    lost = [f.spelling for f, _, text in outcomes if not shows(username, text) and f.spelling not in dropped]
    if lost:
        return failed("the signed-in user's name is gone from the app's answer with made-up headers "
                      f"({', '.join(lost)}): the client's header replaced the proxy's")
    return passed(f"{len(outcomes)} spellings; the app shows {username}, never the made-up values"
                  + (f" (refused: {', '.join(dropped)})" if dropped else ""))
