"""Security headers of the login page, as browsers read them: HSTS (the first header counts),
CSP (every enforced policy applies, so a property holds when any policy has it), X-Content-Type-
Options, framing (CSP frame-ancestors, else X-Frame-Options), Referrer-Policy (the last token a
browser knows wins) and Cache-Control (a page with a CSRF token and a fresh cookie is never stored).

Each judge takes the response's header list, ``[(name, value), ...]``, in order.
"""

from __future__ import annotations

from authsvc.probe.model import Check, Finding, failed, passed, shown

HSTS_MIN_SECONDS = 31536000  # one year (ASVS 5.0 V3.4.1)

HSTS = Check("header.hsts", "Strict-Transport-Security with max-age of at least a year",
             "Serve the login host over HTTPS only and keep authsvc's header (policy headers.hsts_max_age_seconds "
             "at least 31536000); a proxy must not drop or replace it.", ("V3.4.1",))
CSP = Check("header.csp", "a Content-Security-Policy that allows no inline or foreign script, no plugins and no <base>",
            "Keep authsvc's Content-Security-Policy; a proxy must not drop it or add a looser one that replaces "
            "it (nginx add_header in the login server block).", ("V3.4.3",))
NOSNIFF = Check("header.nosniff", "X-Content-Type-Options: nosniff",
                "Keep authsvc's X-Content-Type-Options header; let the proxy pass it through.", ("V3.4.4",))
FRAMING = Check("header.framing", "the login page cannot be framed (frame-ancestors, X-Frame-Options)",
                "Keep authsvc's frame-ancestors 'none' and X-Frame-Options: DENY; do not add a looser "
                "frame-ancestors in the proxy.", ("V3.4.6",))
REFERRER = Check("header.referrer", "a Referrer-Policy that never sends the login URL (with next) elsewhere",
                 "Keep authsvc's Referrer-Policy: same-origin (or no-referrer, strict-origin-when-cross-origin).",
                 ("V3.4.5",))
CACHE = Check("header.cache", "the login page is never stored (Cache-Control: no-store)",
              "Keep authsvc's Cache-Control: no-store; a proxy cache must not store or rewrite authsvc's answers "
              "(proxy_cache off, no proxy_hide_header Cache-Control).", ("V14.3.2",))

CHECKS = (HSTS, CSP, NOSNIFF, FRAMING, REFERRER, CACHE)

Headers = list[tuple[str, str]] | tuple[tuple[str, str], ...]


def values(headers: Headers, name: str) -> list[str]:
    return [v for k, v in headers if k.strip().lower() == name.lower()]


def parse_hsts(value: str) -> dict[str, str] | None:
    """RFC 6797 directives, or None when a browser ignores the header (a directive twice, a
    max-age that is not a number)."""
    seen: dict[str, str] = {}
    for part in value.split(";"):
        key, _, raw = part.partition("=")
        key = key.strip().lower()
        if not key:
            continue
        if key in seen:
            return None
        seen[key] = raw.strip().strip('"')
    if "max-age" not in seen or not seen["max-age"].isdigit() or not seen["max-age"].isascii():
        return None
    return seen


def judge_hsts(headers: Headers) -> Finding:
    found = values(headers, "Strict-Transport-Security")
    if not found:
        return failed("no Strict-Transport-Security header: a first visit over http can be intercepted")
    directives = parse_hsts(found[0])
    if directives is None:
        return failed(f"malformed (browsers ignore it): {shown(found[0])!r}")
    age = int(directives["max-age"])
    if age < HSTS_MIN_SECONDS:
        return failed(f"max-age={age} is below {HSTS_MIN_SECONDS} (one year)")
    extra = " (several headers: browsers read only the first)" if len(found) > 1 else ""
    return passed(f"max-age={age}" + ("; includeSubDomains" if "includesubdomains" in directives else "") + extra)


def parse_csp(value: str) -> dict[str, list[str]]:
    """One policy: directive -> source tokens (lower case); the first of a repeated directive wins,
    as in CSP3."""
    policy: dict[str, list[str]] = {}
    for part in value.split(";"):
        tokens = part.split()
        if tokens and tokens[0].lower() not in policy:
            policy[tokens[0].lower()] = [t.lower() for t in tokens[1:]]
    return policy


def policies(headers: Headers) -> list[dict[str, list[str]]]:
    """Every enforced policy (a header may hold several, comma-separated; Report-Only is not enforced)."""
    return [parse_csp(p) for v in values(headers, "Content-Security-Policy") for p in v.split(",") if p.strip()]


_LOOSE_SCRIPT = ("'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:", "blob:", "filesystem:")


def _effective(policy: dict[str, list[str]], directive: str) -> list[str] | None:
    if directive in policy:
        return policy[directive]
    return policy.get("default-src")


def script_problem(policy: dict[str, list[str]]) -> str | None:
    """What the policy lets run as script that a locked-down one would not. ``script-src-elem``
    (``<script>`` elements) and ``script-src-attr`` (event handlers) override ``script-src`` where
    they are given (CSP Level 3), so each of the three is judged, falling back as browsers do."""
    sources = _effective(policy, "script-src")
    if sources is None:
        return "no script-src or default-src"
    problems = []
    for directive in ("script-src", "script-src-elem", "script-src-attr"):
        found = policy.get(directive, sources)
        nonce_or_hash = any(s.startswith(("'nonce-", "'sha256-", "'sha384-", "'sha512-")) for s in found)
        # Every source that is not a quoted keyword names other origins (a host, a scheme, a
        # wildcard): a CDN or an API host serves script anyone can make it serve (JSONP, old
        # AngularJS). 'self' is the login host; use it for the login host's own scripts.
        loose = [s for s in found if s in _LOOSE_SCRIPT and not (s == "'unsafe-inline'" and nonce_or_hash)
                 or not s.startswith("'")]
        if loose and (directive == "script-src" or directive in policy):
            problems.append(f"{directive} allows {' '.join(loose)}")
    return "; ".join(problems) or None


def object_problem(policy: dict[str, list[str]]) -> str | None:
    sources = _effective(policy, "object-src")
    return None if sources == ["'none'"] else "object-src is not 'none'"


def base_problem(policy: dict[str, list[str]]) -> str | None:
    sources = policy.get("base-uri")  # not covered by default-src
    return None if sources in (["'none'"], ["'self'"]) else "no base-uri 'none' or 'self'"


def judge_csp(headers: Headers) -> Finding:
    found = policies(headers)
    if not found:
        report_only = " (only Content-Security-Policy-Report-Only, which enforces nothing)" if values(
            headers, "Content-Security-Policy-Report-Only") else ""
        return failed("no Content-Security-Policy" + report_only)
    problems = []
    for judge in (script_problem, object_problem, base_problem):
        verdicts = [judge(p) for p in found]
        if all(verdicts):  # no enforced policy has the property
            problems.append(verdicts[0])
    return failed("; ".join(problems)) if problems else passed(f"{len(found)} enforced polic{'y' if len(found) == 1 else 'ies'}")


def judge_nosniff(headers: Headers) -> Finding:
    found = values(headers, "X-Content-Type-Options")
    if found and found[0].split(",")[0].strip().lower() == "nosniff":  # Fetch reads the first value
        return passed("nosniff")
    return failed(f"X-Content-Type-Options is {shown(found[0])!r}" if found else "no X-Content-Type-Options header")


def frame_ancestors_problem(sources: list[str]) -> str | None:
    """Any source but 'none' and 'self' lets another site frame the login page (clickjacking);
    a named origin is another site too."""
    loose = [s for s in sources if s not in ("'none'", "'self'")]
    return f"frame-ancestors allows {' '.join(loose)}" if loose else None


def judge_framing(headers: Headers) -> Finding:
    ancestors = [p["frame-ancestors"] for p in policies(headers) if "frame-ancestors" in p]
    if ancestors:
        # frame-ancestors overrides X-Frame-Options; with several policies the strictest holds.
        problems = [frame_ancestors_problem(a) for a in ancestors]
        if all(problems):
            return failed(problems[0])
        return passed("frame-ancestors " + " ".join(next(a for a, p in zip(ancestors, problems) if p is None)))
    frame = values(headers, "X-Frame-Options")
    if len(frame) == 1 and frame[0].strip().lower() in ("deny", "sameorigin"):
        return passed(f"X-Frame-Options: {frame[0].strip()}")
    if frame:
        return failed(f"X-Frame-Options {shown(', '.join(frame))!r} is not one DENY or SAMEORIGIN")
    return failed("neither frame-ancestors nor X-Frame-Options: the page can be framed (clickjacking)")


_SAFE_REFERRER = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
_KNOWN_REFERRER = _SAFE_REFERRER | {"origin", "origin-when-cross-origin", "no-referrer-when-downgrade", "unsafe-url"}


def judge_referrer(headers: Headers) -> Finding:
    tokens = [t.strip().lower() for v in values(headers, "Referrer-Policy") for t in v.split(",")]
    known = [t for t in tokens if t in _KNOWN_REFERRER]
    if not known:
        return failed("no Referrer-Policy a browser knows")
    policy = known[-1]  # the last known token wins
    return passed(policy) if policy in _SAFE_REFERRER else failed(f"{policy} sends the login URL to other sites")


def judge_cache(headers: Headers) -> Finding:
    directives = {d.strip().lower().split("=")[0] for v in values(headers, "Cache-Control") for d in v.split(",")}
    if "no-store" in directives:
        return passed("no-store")
    found = ", ".join(values(headers, "Cache-Control"))
    return failed(f"Cache-Control is {shown(found)!r}, without no-store" if found else "no Cache-Control header")
