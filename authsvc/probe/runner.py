"""Runs every family of checks against one deployment: sends each family's requests through the
:class:`~authsvc.probe.client.Client` and hands the answers to its judges. The only module that
orders requests; the judging stays in the family modules.

Order matters once signed in: everything that needs the live session runs before the logout, and
the logout runs last.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urljoin, urlsplit

from authsvc.probe import (
    access,
    cookies,
    forwarding,
    headers,
    identity,
    redirects,
    sessions,
    signin,
)
from authsvc.probe.access import Decision
from authsvc.probe.client import Client, Jar, ProbeError, Response
from authsvc.probe.cookies import SetCookie
from authsvc.probe.model import OK, Check, Finding, Result, failed, not_applicable
from authsvc.probe.redirects import normal_origin

CHECKS: tuple[Check, ...] = (
    *access.CHECKS, *headers.CHECKS, *cookies.CHECKS, *identity.CHECKS, *forwarding.CHECKS,
    *sessions.CHECKS, *redirects.CHECKS, *signin.CHECKS,
)
NEEDS_SIGN_IN = (identity.SIGNED_IN, forwarding.SIGNED_IN, signin.LOGOUT, signin.REPLAY)
# When the service's session cookie cannot be told from the login page's answer.
DEFAULT_SESSION_NAMES = ("__Host-authsvc_session", "__Secure-authsvc_session", "authsvc_session")
LOGOUT_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Target:
    auth_url: str                 # the login service's origin: https://auth.example.com
    app_url: str                  # a protected page of an app behind the proxy
    username: str | None = None
    password: str | None = None


def _text(response: Response) -> str:
    """Everything an app answered, headers and body, for canary searches."""
    return "\n".join(f"{k}: {v}" for k, v in response.headers) + "\n\n" + response.text


class Probe:
    def __init__(self, target: Target, client: Client, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, token: Callable[[], str] = lambda: secrets.token_hex(6)):
        self.target = target
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self.token = token
        self.auth = target.auth_url.rstrip("/")
        self.auth_origin = normal_origin(self.auth) or self.auth
        self.app_url = target.app_url
        self.trusted = {self.auth_origin, normal_origin(self.app_url) or ""}
        self.findings: dict[str, tuple[Finding, str]] = {}
        self.set_cookies: list[SetCookie] = []
        self.malformed_outcomes: list[tuple[str, Decision]] = []
        self.anonymous = Decision(access.OTHER, 0)  # the plain anonymous request's decision, once asked

    # --- plumbing -------------------------------------------------------------------------------

    def record(self, check: Check, finding: Finding, url: str) -> None:
        self.findings[check.id] = (finding, url)

    def get(self, url: str, headers=(), jar: Jar | None = None) -> Response:
        return self.client.request("GET", url, list(headers), jar=jar)

    def decide(self, response: Response | None) -> Decision:
        if response is None:  # the proxy closed the connection on a hostile request: kept out
            return Decision(access.REFUSED, 0)
        return access.decision(response.status, response.header("Location"), self.auth_origin, response.url)

    def hostile(self, url: str, headers=(), jar: Jar | None = None) -> Response | None:
        """A request a proxy may rightly drop the connection on: None then, once a plain request
        shows the deployment still answers (else the run stops: an outage is no verdict)."""
        try:
            return self.get(url, headers, jar)
        except ProbeError:
            self.get(self.app_url)
            return None

    def app_with_cookie(self, cookie: str, headers=()) -> Decision:
        return self.decide(self.hostile(self.app_url, [("Cookie", cookie), *headers]))

    # --- the run ------------------------------------------------------------------------------------

    def run(self) -> list[Result]:
        anonymous = Jar()
        login_page = self.get(f"{self.auth}/login", jar=anonymous)
        self.set_cookies += login_page.set_cookies
        for check, judge in zip(headers.CHECKS, (headers.judge_hsts, headers.judge_csp, headers.judge_nosniff,
                                                 headers.judge_framing, headers.judge_referrer, headers.judge_cache)):
            self.record(check, judge(login_page.headers), login_page.url)

        baseline = self.anonymous = self.decide(self.get(self.app_url))
        self.record(access.ANONYMOUS, access.judge_anonymous(baseline, self.app_url), self.app_url)
        self.anonymous_identity(baseline)
        self.anonymous_forwarding(baseline)
        issued = anonymous.value("session")
        self.malformed(issued, baseline)
        self.health_checks(baseline)
        next_problems = self.hostile_next(None)

        if self.target.username is None or self.target.password is None:
            for check in (signin.SIGN_IN, *NEEDS_SIGN_IN):
                self.record(check, not_applicable(signin.NO_CREDENTIALS), self.app_url)
        else:
            next_problems += self.signed_in()
        self.record(redirects.NEXT, redirects.judge_next(
            next_problems, len(next_problems), self.target.username is not None
            and self.findings[signin.SIGN_IN.id][0].status == OK), f"{self.auth}/login")

        auth_host, app_host = urlsplit(self.auth).hostname or "", urlsplit(self.app_url).hostname or ""
        for check, judge in ((cookies.SECURE, cookies.judge_secure), (cookies.HTTPONLY, cookies.judge_httponly),
                             (cookies.SAMESITE, cookies.judge_samesite), (cookies.PREFIX, cookies.judge_prefix)):
            self.record(check, judge(self.set_cookies), f"{self.auth}/login")
        self.record(cookies.SCOPE, cookies.judge_scope(self.set_cookies, auth_host, app_host), f"{self.auth}/login")
        return [Result(c, *self.findings[c.id]) for c in CHECKS if c.id in self.findings]

    def anonymous_identity(self, baseline: Decision) -> None:
        made = identity.forgeries(self.token)
        if self.target.username:  # the real user's name, as an attacker who knows it sends it
            made += identity.impersonations(self.target.username)
        outcomes = []
        for forgery in made:
            response = self.hostile(self.app_url, forgery.headers)
            outcomes.append((forgery, self.decide(response), _text(response) if response else ""))
        self.record(identity.ANONYMOUS, identity.judge_anonymous(baseline, outcomes), self.app_url)

    def anonymous_forwarding(self, baseline: Decision) -> None:
        token = self.token()
        outcomes = [(f, self.decide(self.hostile(self.app_url, f.headers)))
                    for f in forwarding.forgeries(self.app_url, token)]
        self.record(forwarding.NEXT, forwarding.judge_anonymous(baseline, outcomes), self.app_url)
        elsewhere = urljoin(self.app_url, f"{forwarding.MARK}-{token}")
        verify = self.hostile(f"{self.auth}/auth/verify?redirect=1", [
            ("X-Original-URL", elsewhere), ("X-Forwarded-Host", urlsplit(elsewhere).netloc),
            ("X-Forwarded-Uri", urlsplit(elsewhere).path)])
        self.record(forwarding.LOGIN_HOST, forwarding.judge_login_host(
            verify.status if verify else 0, verify.header("Location") if verify else None, token, baseline),
            f"{self.auth}/auth/verify")

    def malformed(self, issued: tuple[str, str] | None, baseline: Decision) -> None:
        names = [issued[0]] if issued else list(DEFAULT_SESSION_NAMES)
        outcomes = []
        for name in names:
            for label, value in sessions.malformed_values(issued[1] if issued else None):
                outcomes.append((f"{name} {label}", self.app_with_cookie(f"{name}={value}")))
        if issued:
            name, value = issued
            outcomes.append(("the login page's own cookie (no user)", self.app_with_cookie(f"{name}={value}")))
            outcomes.append(("two session cookies", self.app_with_cookie(f"{name}=x; {name}={value}")))
            for other in sessions.name_variants(name):
                outcomes.append((f"renamed {other}", self.app_with_cookie(f"{other}={value}")))
        self.malformed_outcomes = outcomes
        self.record(sessions.MALFORMED, sessions.judge_malformed(baseline, outcomes), self.app_url)

    def health_checks(self, baseline: Decision) -> None:
        outcomes = [(agent, self.decide(self.hostile(self.app_url, [("User-Agent", agent)])))
                    for agent in sessions.HEALTH_CHECK_AGENTS]
        self.record(sessions.HEALTH_CHECK, sessions.judge_health_check(baseline, outcomes), self.app_url)

    def hostile_next(self, jar: Jar | None) -> list[str | None]:
        problems = []
        for label, value in redirects.samples(urlsplit(self.auth).netloc, urlsplit(self.app_url).netloc):
            response = self.hostile(f"{self.auth}/login?next={quote(value, safe='')}",
                                    jar=jar.copy() if jar is not None else None)
            if response is None:  # the login page hung or dropped it: a ReDoS, or a crash, not a refusal
                problems.append(redirects.no_answer(label))
                continue
            problems.append(redirects.judge_answer(label, value, response.status, response.header("Location"),
                                                   response.text, [c.name for c in response.set_cookies],
                                                   self.trusted))
        return problems

    # --- signed in ------------------------------------------------------------------------------------

    def sign_in(self, jar: Jar) -> tuple[Finding | None, Response | None]:
        """Post the login form: (None, the answer), or (why nothing was posted, None)."""
        page = self.get(f"{self.auth}/login?next={quote(self.app_url, safe='')}", jar=jar)
        self.set_cookies += page.set_cookies
        form = signin.login_form(page.text)
        if page.status != 200 or form is None:
            return failed(f"no login form with a password field at {self.auth}/login ({page.status})"), None
        problem = signin.action_problem(form.action or "/login", page.url, self.auth_origin)
        if problem:
            return failed(f"the login form {problem}: the probe sent no password"), None
        fields = dict(form.fields)
        user_field = next((n for n, t in form.types.items() if t in ("text", "email")), "username")
        password_field = next(n for n, t in form.types.items() if t == "password")
        fields[user_field] = self.target.username or ""
        fields[password_field] = self.target.password or ""
        if form.types.get("remember") == "checkbox":
            fields["remember"] = "on"  # so the logout checks see a remember-me token end too
        posted = self.client.request("POST", urljoin(page.url, form.action.strip() or "/login"), [
            ("Content-Type", "application/x-www-form-urlencoded"), ("Origin", self.auth_origin),
            ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "document"),
        ], urlencode(fields).encode(), jar=jar)
        self.set_cookies += posted.set_cookies
        return None, posted

    def signed_in(self) -> list[str | None]:
        """The checks that need a session, then the logout checks. Once the sign-in post answered
        with a redirect a session may live: whatever happens next, the probe signs out before it
        returns or raises, so a failed run leaves no session or remember-me token behind."""
        jar = Jar()
        refusal, posted = self.sign_in(jar)
        session_made = posted is not None and 300 <= posted.status < 400
        try:
            if posted is None:
                finding = refusal or failed("the login form was not posted")
            else:
                arrived = self.decide(self.get(self.app_url, jar=jar)) if session_made else None
                finding = signin.judge_sign_in(posted.status, posted.header("Location"), arrived)
            self.record(signin.SIGN_IN, finding, f"{self.auth}/login")
            if finding.status != OK:
                for check in NEEDS_SIGN_IN:
                    self.record(check, not_applicable("the probe could not sign in (see signin.form)"), self.app_url)
                return []
            problems = self.with_session(jar)
            self.logout(jar)
            session_made = False
            return problems
        finally:
            if session_made:
                with contextlib.suppress(ProbeError):  # the run's own error, if any, is the one to report
                    self.sign_out(jar)

    def with_session(self, jar: Jar) -> list[str | None]:
        username = self.target.username or ""
        baseline = self.get(self.app_url, jar=jar)
        outcomes = []
        for forgery in identity.forgeries(self.token):
            response = self.hostile(self.app_url, forgery.headers, jar=jar)
            outcomes.append((forgery, self.decide(response), _text(response) if response else ""))
        self.record(identity.SIGNED_IN, identity.judge_signed_in(_text(baseline), self.decide(baseline),
                                                                   outcomes, username), self.app_url)

        forged = [(f, self.decide(self.hostile(self.app_url, f.headers, jar=jar)))
                  for f in forwarding.forgeries(self.app_url, self.token())]
        self.record(forwarding.SIGNED_IN, forwarding.judge_signed_in(self.decide(baseline), forged), self.app_url)

        live = jar.value("session")
        if live is not None:  # altered copies of a live session cookie: none is a session
            name, value = live
            more = [(f"{name} live session, {label[len('issued, '):]}", self.app_with_cookie(f"{name}={altered}"))
                    for label, altered in sessions.malformed_values(value) if label.startswith("issued")]
            outcomes_all = self.malformed_outcomes + more
            self.record(sessions.MALFORMED, sessions.judge_malformed(self.anonymous, outcomes_all), self.app_url)

        return self.hostile_next(jar)

    def sign_out(self, jar: Jar) -> tuple[Response | None, str]:
        """Post the account page's logout form: (the answer, ""), or (None, why it was not posted)."""
        account = self.get(f"{self.auth}/", jar=jar)
        form = signin.logout_form(account.text)
        if form is None:
            return None, f"no logout form on {self.auth}/ ({account.status})"
        problem = signin.action_problem(form.action, account.url, self.auth_origin)
        if problem:
            return None, f"the logout form {problem}: the probe did not post it"
        out = self.client.request("POST", urljoin(account.url, form.action.strip()), [
            ("Content-Type", "application/x-www-form-urlencoded"), ("Origin", self.auth_origin),
            ("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "document"),
        ], urlencode(form.fields).encode(), jar=jar)
        self.set_cookies += out.set_cookies
        return out, ""

    def logout(self, jar: Jar) -> None:
        stolen = jar.copy()  # what a thief (or a second tab) holds: must stop working
        out, why = self.sign_out(jar)
        if out is None:
            for check in (signin.LOGOUT, signin.REPLAY):
                self.record(check, failed(why), f"{self.auth}/")
            return
        started = self.clock()
        attempts: list[tuple[float, Decision]] = []
        late = 0
        while late < signin.LATE_ATTEMPTS:  # past the grace, several: a session may survive now and then
            at = self.clock() - started
            decided = self.decide(self.get(self.app_url, jar=stolen.copy()))
            attempts.append((at, decided))
            if at > signin.LOGOUT_GRACE_SECONDS:
                if not access.kept_out(decided):
                    break  # a verdict
                late += 1
            self.sleep(LOGOUT_POLL_SECONDS)
        self.record(signin.LOGOUT, signin.judge_logout(out.status, attempts), self.app_url)
        replays = []
        for _ in range(signin.REPLAY_ATTEMPTS):
            replay = self.get(f"{self.auth}/login", jar=stolen.copy())
            replays.append((replay.status, replay.text))
            self.sleep(LOGOUT_POLL_SECONDS)
        self.record(signin.REPLAY, signin.judge_replays(replays), f"{self.auth}/login")
