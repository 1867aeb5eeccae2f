"""`authsvc probe` run end to end against a deployment in memory: a login host, a proxy and an app
behind it, sound unless a mode breaks it one way (the ideas of the probe review's fake deployment).
A deployment broken any of these ways must fail the check that names it, and the probe must
never pass what it could not see, post a password off the login host, or leave a session alive.

The judges alone are in test_probe_checks.py; the real proxies in tests/integration/test_probe.py.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from authsvc.probe.client import Jar, ProbeError, Response
from authsvc.probe.model import FAIL, NOT_APPLICABLE, OK
from authsvc.probe.runner import Probe, Target

AUTH = "https://auth.example.com"
APP_ORIGIN = "https://app.example.com"
APP = f"{APP_ORIGIN}/notes/"
EVIL = "https://evil.example"
USER, PASSWORD = "alice", "correct horse battery staple 42"
SESSION, REMEMBER = "__Secure-authsvc_session", "__Host-authsvc_remember"
HEALTH_AGENTS = ("kube-probe", "elb-healthchecker", "googlehc")
SECURITY_HEADERS = (
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
    ("Content-Security-Policy", ("default-src 'none'; script-src 'self'; object-src 'none'; base-uri 'none'; "
                                 "frame-ancestors 'none'")),
    ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)


class Deployment:
    """The client the probe is handed: answers as authsvc behind a sound proxy would, unless
    ``modes`` break it (each mode one way, named for the hole). Records every request."""

    def __init__(self, *modes: str) -> None:
        self.modes = set(modes)
        self.sessions: dict[str, str] = {}    # live session token -> user
        self.remember: dict[str, str] = {}    # live remember-me token -> user
        self.ended: set[str] = set()          # sessions ended at logout
        self.asked: list[tuple[str, str]] = []
        self.posted: list[tuple[str, dict[str, str]]] = []
        self.flips = 0

    # --- the client interface -------------------------------------------------------------------

    def request(self, method, url, headers=(), body=None, *, jar: Jar | None = None) -> Response:
        self.asked.append((method, url))
        sent = list(headers)
        cookie = jar.header(url) if jar is not None else None
        if cookie and not any(n.lower() == "cookie" for n, _ in sent):
            sent.append(("Cookie", cookie))
        parts = urlsplit(url)
        form = {k: v[0] for k, v in parse_qs((body or b"").decode(), keep_blank_values=True).items()}
        if method == "POST":
            self.posted.append((url, form))
        if parts.hostname == "auth.example.com":
            status, answer, text = self.login_host(method, parts, sent, form)
        elif parts.hostname == "app.example.com":
            status, answer, text = self.app(parts, sent)
        else:
            status, answer, text = 303, [("Location", APP)], ""
        response = Response(status, tuple(answer), text.encode(), url)
        if jar is not None:
            jar.take(response)
        return response

    # --- plumbing ---------------------------------------------------------------------------------

    @staticmethod
    def header(sent, name: str) -> str | None:
        return next((v for n, v in sent if n.lower() == name.lower()), None)

    @staticmethod
    def cookies(sent) -> list[tuple[str, str]]:
        found = []
        for name, value in sent:
            if name.lower() == "cookie":
                for part in value.split(";"):
                    key, _, val = part.strip().partition("=")
                    found.append((key, val))
        return found

    def session_of(self, sent) -> tuple[str | None, str | None]:
        values = [v for n, v in self.cookies(sent) if n == SESSION]
        if len(values) != 1:
            return None, None
        return self.sessions.get(values[0]), values[0]

    def new_session(self, user: str) -> str:
        token = f"{secrets.token_hex(8)}.{secrets.token_hex(8)}"
        self.sessions[token] = user
        return token

    def session_cookie(self, value: str, max_age: int | None = None) -> str:
        domain = "" if "hostonly" in self.modes else "; Domain=example.com"
        age = f"; Max-Age={max_age}" if max_age is not None else ""
        return f"{SESSION}={value}{domain}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"

    @staticmethod
    def remember_cookie(value: str, max_age: int = 86400) -> str:
        return f"{REMEMBER}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}"

    def allowed_next(self, value: str | None) -> str | None:
        if not value or "nonext" in self.modes:
            return None
        ok = value.startswith(APP_ORIGIN + "/") and all(c.isalnum() or c in "/._-:" for c in value)
        return value if ok else None

    # --- the login host -----------------------------------------------------------------------------

    def login_page(self, next_value: str | None, status: int = 200, extra=()):
        action = f"{EVIL}/collect" if "evilaction" in self.modes else "/l\u00f6gin" if "unicodeaction" in self.modes \
            else "/login"
        hidden = f'<input type="hidden" name="next" value="{next_value}">' if next_value else ""
        page = (f'<form method="post" action="{action}"><input type="hidden" name="csrf_token" value="t">'
                f'{hidden}<input type="text" name="username"><input type="password" name="password">'
                '<input type="checkbox" name="remember"></form>')
        return status, [*SECURITY_HEADERS, *extra], page

    def login_host(self, method, parts, sent, form):
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        user, token = self.session_of(sent)
        if parts.path == "/login" and method == "GET":
            if "slownext" in self.modes and len(query.get("next", "")) > 5000:
                raise ProbeError("GET /login: TimeoutError: the read operation timed out")
            if "oddanswers" in self.modes and query.get("next", "").startswith("https://evil"):
                return 303, [("Location", "https://[::1"), ("Set-Cookie", "odd=1; Max-Age=--1")], ""
            target = self.allowed_next(query.get("next"))
            remembered = dict(self.cookies(sent)).get(REMEMBER)
            if user is None and "flakyreplay" in self.modes and token in self.ended:
                self.flips += 1
                if self.flips % 2 == 0:  # one node of two still holds the ended session
                    return 303, [("Location", f"{AUTH}/")], ""
            if user is None and remembered in self.remember:
                return 303, [("Location", target or f"{AUTH}/"),
                             ("Set-Cookie", self.session_cookie(self.new_session(self.remember[remembered])))], ""
            if user is not None:
                return 303, [("Location", target or f"{AUTH}/")], ""
            extra = [] if token else [("Set-Cookie", self.session_cookie("anon." + secrets.token_hex(8)))]
            return self.login_page(target, extra=extra)
        if parts.path == "/login" and method == "POST":
            if form.get("username") != USER or form.get("password") != PASSWORD:
                return self.login_page(None, 401)
            answer = [("Location", self.allowed_next(form.get("next")) or f"{AUTH}/"),
                      ("Set-Cookie", self.session_cookie(self.new_session(USER)))]
            if form.get("remember") == "on":
                remembered = secrets.token_hex(8)
                self.remember[remembered] = USER
                answer.append(("Set-Cookie", self.remember_cookie(remembered)))
            return 303, answer, ""
        if parts.path == "/" and method == "GET":
            if user is None:
                return 303, [("Location", "/login")], ""
            action = f"{EVIL}/logout" if "evillogout" in self.modes else "/logout"
            return 200, list(SECURITY_HEADERS), (f'<p>Signed in as {user}</p><form method="post" action="{action}">'
                                                 '<input type="hidden" name="csrf_token" value="t"></form>')
        if parts.path == "/logout" and method == "POST":
            if token in self.sessions:
                self.sessions.pop(token)
                self.ended.add(token)
            self.remember.pop(dict(self.cookies(sent)).get(REMEMBER), None)
            return 303, [("Location", "/login"), ("Set-Cookie", self.session_cookie("", 0)),
                         ("Set-Cookie", self.remember_cookie("", 0))], ""
        if parts.path == "/auth/verify":  # the login host blanks forwarding headers: no next
            return 302, [("Location", f"{AUTH}/login")], ""
        return 404, [], ""

    # --- the proxy and the app ------------------------------------------------------------------------

    def app(self, parts, sent):
        if "unprotected" in self.modes:  # no forward auth; the app has a login page of its own
            return (200, [], "the app's own login") if parts.path == "/login" else (302, [("Location", "/login")], "")
        if "brokenapp" in self.modes and self.session_of(sent)[0] is not None:
            raise ProbeError("GET /notes/: ConnectionResetError")
        agent = (self.header(sent, "User-Agent") or "").lower()
        claimed = self.header(sent, "X-Auth-User")
        if "idbypass" in self.modes and claimed is not None:
            allowed, user = True, claimed         # "already signed in upstream"
        elif "health" in self.modes and agent.startswith(HEALTH_AGENTS):
            allowed, user = True, None            # health checkers skip forward auth
        else:
            allowed, user = self.verify(sent)
        if not allowed:
            target = self.allowed_next(APP_ORIGIN + parts.path)
            return 302, [("Location", f"{AUTH}/login" + (f"?next={quote(target, safe='')}" if target else ""))], ""
        if user is None:
            return 401 if "malformed" in self.modes else 403, [], "no user"
        if user != USER:
            return 403, [], "forbidden"
        return 200, [("Content-Type", "application/json")], json.dumps({"user": [user]})

    def verify(self, sent) -> tuple[bool, str | None]:
        user, _ = self.session_of(sent)
        values = [v for n, v in self.cookies(sent) if n == SESSION]
        if user is None and "flakycache" in self.modes and len(values) == 1 and values[0] in self.ended:
            self.flips += 1
            if self.flips % 2 == 0:  # one proxy node of two caches verify's 200 by cookie
                return True, USER
        if user is None and "malformed" in self.modes and values and not all(
                c in "0123456789abcdef." for c in values[0].removeprefix("anon")):
            return True, None  # fails open on a cookie it cannot read
        return (True, user) if user is not None else (False, None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds + 0.01


def run(deployment: Deployment, *, user: bool = True) -> dict[str, tuple[str, str]]:
    clock = Clock()
    target = Target(AUTH, APP, USER if user else None, PASSWORD if user else None)
    results = Probe(target, deployment, clock=clock, sleep=clock.sleep).run()
    return {r.check.id: (r.status, r.finding.detail) for r in results}


def statuses(found: dict[str, tuple[str, str]]) -> dict[str, str]:
    return {check: status for check, (status, _) in found.items()}


def test_the_sound_deployment_passes_every_check():
    """The fake is sound as shipped: every other test breaks it in exactly one way."""
    found = run(Deployment())
    assert set(statuses(found).values()) == {OK}, found
    assert not Deployment().sessions


# --- a proxy that trusts the client's X-Auth-User -----------------------------------------------------------


@pytest.mark.asvs("V8.3.1")
def test_a_proxy_that_trusts_a_clients_x_auth_user_naming_the_real_user_fails_identity_anonymous():
    """The proxy skips forward auth when the client sends X-Auth-User; the app refuses names it does
    not know (403), so random canaries look kept out. The real user's name gets in."""
    found = run(Deployment("idbypass"))
    status, detail = found["identity.anonymous"]
    assert status == FAIL and USER in detail and "200" in detail, detail
    assert found["identity.signed_in"][0] == FAIL, found["identity.signed_in"]


@pytest.mark.asvs("V8.3.1")
def test_a_403_to_forged_identity_headers_where_the_plain_request_goes_to_the_login_page_fails():
    found = run(Deployment("idbypass"), user=False)
    status, detail = found["identity.anonymous"]
    assert status == FAIL and "403" in detail, detail


# --- forwarding checks that cannot see a made-up URL --------------------------------------------------------


@pytest.mark.asvs("V4.1.3")
def test_forwarding_checks_without_a_next_to_compare_say_so_instead_of_passing():
    found = run(Deployment("nonext"))
    assert found["forwarding.next"][0] == NOT_APPLICABLE, found["forwarding.next"]
    assert found["forwarding.login_host"][0] == NOT_APPLICABLE, found["forwarding.login_host"]


# --- the app's own refusal is not the proxy keeping a client out --------------------------------------------


@pytest.mark.asvs("V8.3.1")
def test_health_checker_user_agents_that_reach_an_app_answering_403_itself_fail():
    status, detail = run(Deployment("health"))["session.health_check"]
    assert status == FAIL and "kube-probe" in detail and "403" in detail, detail


@pytest.mark.asvs("V7.2.1")
def test_malformed_cookies_that_reach_an_app_answering_401_itself_fail():
    status, detail = run(Deployment("malformed"))["session.malformed"]
    assert status == FAIL and "401" in detail, detail


# --- an app's own relative /login ---------------------------------------------------------------------------


@pytest.mark.asvs("V8.3.1")
def test_an_app_with_no_forward_auth_redirecting_to_its_own_login_page_fails_access_anonymous():
    status, detail = run(Deployment("unprotected"), user=False)["access.anonymous"]
    assert status == FAIL and "/login" in detail, detail


# --- a session that survives logout now and then ------------------------------------------------------------


@pytest.mark.asvs("V7.4.1")
def test_a_session_let_through_every_other_request_after_logout_fails():
    status, detail = run(Deployment("flakycache"))["logout.ends_access"]
    assert status == FAIL and "after logout" in detail, detail


@pytest.mark.asvs("V7.4.1")
def test_old_cookies_that_sign_in_at_the_login_page_every_other_time_fail_replay():
    status, detail = run(Deployment("flakyreplay"))["logout.replay"]
    assert status == FAIL, detail


# --- the password goes to the login host only ---------------------------------------------------------------


@pytest.mark.asvs("V6.3.1")
def test_a_login_form_posting_to_another_host_gets_no_password():
    deployment = Deployment("evilaction")
    status, detail = run(deployment)["signin.form"]
    assert status == FAIL and "evil.example" in detail, detail
    assert not [url for _, url in deployment.asked if url.startswith(EVIL)]
    assert all(PASSWORD not in form.values() for _, form in deployment.posted)


def test_a_logout_form_posting_to_another_host_is_not_followed():
    deployment = Deployment("evillogout")
    found = run(deployment)
    assert found["logout.ends_access"][0] == FAIL and "evil.example" in found["logout.ends_access"][1]
    assert not [url for _, url in deployment.asked if url.startswith(EVIL)]


# --- no session left behind ---------------------------------------------------------------------------------


@pytest.mark.asvs("V7.4.1")
def test_a_sign_in_that_does_not_reach_the_app_is_still_signed_out():
    deployment = Deployment("hostonly")
    found = run(deployment)
    assert found["signin.form"][0] == FAIL
    assert {found[c][0] for c in ("logout.ends_access", "logout.replay")} == {NOT_APPLICABLE}
    assert not deployment.sessions and not deployment.remember


def test_a_run_that_breaks_off_after_sign_in_still_signs_out():
    deployment = Deployment("brokenapp")
    with pytest.raises(ProbeError):
        run(deployment)
    assert not deployment.sessions and not deployment.remember


# --- a login page that hangs on a long next -----------------------------------------------------------------


@pytest.mark.asvs("V3.7.2")
def test_a_login_page_that_hangs_on_a_hostile_next_fails():
    status, detail = run(Deployment("slownext"), user=False)["redirect.next"]
    assert status == FAIL and "oversized" in detail, detail


# --- answers no parser reads --------------------------------------------------------------------------------


def test_unparsable_answers_are_judged_not_a_reason_to_stop():
    """A Location no URL parser reads on a hostile next, a Max-Age of "--1", a form action that is
    not ASCII: each is judged, and the run reports every failure it found (no exit 2)."""
    found = run(Deployment("oddanswers", "unicodeaction"))
    assert found["redirect.next"][0] == FAIL and "unparsable" in found["redirect.next"][1]
    assert found["signin.form"][0] == FAIL and "non-ASCII" in found["signin.form"][1]
