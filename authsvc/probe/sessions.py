"""Session cookies that carry no session: malformed, truncated, tampered, a valid cookie of the
login page that names no user, another prefix, two at once. None may reach the app (authentik
CVE-2026-25748: a malformed session cookie passed forward auth with no identity headers). Nor may
a health checker's User-Agent (oauth2-proxy CVE-2026-34457).

Each answer is judged against the plain anonymous request's: a proxy that keeps the client out
answers it the same way (the same login redirect). A 401, 403 or 5xx where the plain request is
sent to the login page is the app answering a request the proxy let through without an identity.
Only a proxy refusing a cookie header outright (a bare 400, a closed connection: as authsvc's own
host answers two session cookies) is kept out another way.
"""

from __future__ import annotations

from authsvc.probe.access import Decision, kept_out, refused_outright, same
from authsvc.probe.model import Check, Finding, failed, passed

MALFORMED = Check("session.malformed", "malformed, truncated, tampered or empty session cookies never reach the app",
                  "Upgrade authsvc (verify answers 401 for any cookie that is not a live session) and let the proxy "
                  "pass only authsvc's 2xx (nginx auth_request; Traefik/Caddy forward the request only on 2xx).",
                  ("V7.2.1", "V3.3.1"))
HEALTH_CHECK = Check("session.health_check", "health checkers' User-Agents get no special treatment",
                     "Remove any proxy rule that skips forward auth by User-Agent; health checks belong on a path "
                     "that is not the app (authsvc's /healthz).", ("V8.3.1",))
CHECKS = (MALFORMED, HEALTH_CHECK)

HEALTH_CHECK_AGENTS = (
    "kube-probe/1.31", "ELB-HealthChecker/2.0", "GoogleHC/1.0", "Consul Health Check",
    "Amazon-Route53-Health-Check-Service (ref 0)", "Go-http-client/1.1", "UptimeRobot/2.0",
    "Blackbox Exporter/0.25.0", "Traefik", "",
)


def malformed_values(issued: str | None) -> list[tuple[str, str]]:
    """(label, value) pairs: shapes that are never a session, and, from a value the service
    ``issued`` (an anonymous cookie, or a live session's), cut and altered copies of it. Labels
    never contain the issued value (it may be a credential)."""
    values = [
        ("empty", ""), ("one letter", "x"), ("null", "null"), ("deleted", "deleted"), ("zero", "0"),
        ("quoted", '"x"'), ("three dots", "..."), ("token shape", "eyJ1c2VyIjoiYWRtaW4ifQ.AAAA.BBBB"),
        ("a JWT with alg none", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
        ("percent-encoded NUL", "%00"), ("latin-1 bytes", "\xff\xfe"), ("4 KiB", "A" * 4096),
    ]
    if issued:
        flipped = issued[:-1] + ("A" if issued[-1] != "A" else "B")
        values += [
            ("issued, last character dropped", issued[:-1]),
            ("issued, cut in half", issued[: len(issued) // 2]),
            ("issued, last character changed", flipped),
            ("issued, first part only", issued.split(".")[0]),
            ("issued, with a character appended", issued + "A"),
            ("issued, doubled", issued + issued),
        ]
    distinct: dict[str, str] = {}
    for label, value in values:
        distinct.setdefault(value, label)
    return [(label, value) for value, label in distinct.items()]


def name_variants(name: str) -> list[str]:
    """The cookie's name under the other prefixes and in another case: a planted or foreign copy."""
    bare = name
    for prefix in ("__Host-", "__Secure-"):
        if name.lower().startswith(prefix.lower()):
            bare = name[len(prefix):]
    variants = {bare, "__Host-" + bare, "__Secure-" + bare, name.lower(), name.upper()}
    variants.discard(name)
    return sorted(variants)


def _reached(baseline: Decision, d: Decision) -> bool:
    return not kept_out(d) or not same(d, baseline)


def judge_malformed(baseline: Decision, outcomes: list[tuple[str, Decision]]) -> Finding:
    """``baseline``: the decision on the plain anonymous request."""
    through = [f"{label}: {d.describe()}" for label, d in outcomes
               if _reached(baseline, d) and not refused_outright(d)]
    if through:
        return failed(f"{len(through)} of {len(outcomes)} answered otherwise than without a cookie "
                      f"({baseline.describe()}): " + "; ".join(through[:5]))
    return passed(f"{len(outcomes)} cookies, each kept out as without one")


def judge_health_check(baseline: Decision, outcomes: list[tuple[str, Decision]]) -> Finding:
    """``baseline``: the decision on the plain anonymous request, which every User-Agent must get."""
    through = [f"{agent or '(none)'!r}: {d.describe()}" for agent, d in outcomes if _reached(baseline, d)]
    if through:
        return failed(f"answered otherwise than without them ({baseline.describe()}): " + "; ".join(through))
    return passed(f"{len(outcomes)} User-Agents, each answered as without them")
