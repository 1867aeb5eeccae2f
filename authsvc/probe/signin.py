"""Signing in through the real login form (its CSRF token, its next) and signing out, as a browser
does; and whether signing out really ends access: the next app request, with the cookies from
before, goes to the login page within about a second (authsvc's verify cache lives at most 1 s),
and those cookies (remember-me among them) no longer sign anyone in at the login page
(authentik CVE-2025-29928: a deleted session still worked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin

from authsvc.probe.access import TO_LOGIN, Decision, kept_out
from authsvc.probe.model import (
    OK,
    Check,
    Finding,
    failed,
    not_applicable,
    passed,
    shown,
)
from authsvc.probe.redirects import normal_origin

LOGOUT_GRACE_SECONDS = 1.0
# Requests with the old cookies after the grace (and at the login page): a session that survives
# on one node of several, or in a cache some requests miss, shows in some answers and not others.
LATE_ATTEMPTS = 5
REPLAY_ATTEMPTS = 3

SIGN_IN = Check("signin.form", "signing in through the login form reaches the app",
                "Check the probe account (no second factor; `authsvc user list`), that the app's origin is "
                "allow-listed, and that the session cookie reaches the app host (AUTHSVC_COOKIE_DOMAIN).",
                ("V6.3.1",))
LOGOUT = Check("logout.ends_access", "after logout the app refuses the old cookies within about a second",
               "Upgrade authsvc; do not cache /auth/verify answers in the proxy (nginx proxy_cache, Traefik/Caddy "
               "caches) or keep the proxy's cache below a second and keyed on the cookie.", ("V7.4.1",))
REPLAY = Check("logout.replay", "after logout the old cookies (remember-me too) sign no one in at the login page",
               "Upgrade authsvc: logout must end the server-side session and the remember-me token.", ("V7.4.1",))
NO_CREDENTIALS = "no credentials given (--user NAME --password-stdin)"
CHECKS = (SIGN_IN, LOGOUT, REPLAY)


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)   # hidden and pre-filled inputs
    types: dict[str, str] = field(default_factory=dict)    # input name -> type


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {k.lower(): (v or "") for k, v in attrs}
        if tag == "form":
            self._open = Form(attributes.get("action", ""), attributes.get("method", "get").lower())
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attributes.get("name"):
            name = attributes["name"]
            kind = attributes.get("type", "text").lower()
            self._open.types.setdefault(name, kind)
            if kind in ("hidden", "text") and "value" in attributes:
                self._open.fields.setdefault(name, attributes["value"])

    def handle_endtag(self, tag):
        if tag == "form":
            self._open = None


def forms(page: str) -> list[Form]:
    parser = _Forms()
    try:
        parser.feed(page)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on hostile markup
        pass
    return parser.forms


def login_form(page: str) -> Form | None:
    """The form with a password field and a CSRF token: the login form."""
    return next((f for f in forms(page) if "password" in f.types.values() and f.method == "post"), None)


def logout_form(page: str) -> Form | None:
    return next((f for f in forms(page) if f.method == "post" and f.action.rstrip("/").endswith("/logout")), None)


def action_problem(action: str, page_url: str, auth_origin: str) -> str | None:
    """Why the probe must not post a form whose ``action`` it read on ``page_url``, or None. The
    password (or the session, for the logout form) goes to the login host only: a page that names
    another host, or an action a browser may read otherwise than the probe (a backslash, a control
    or non-ASCII character), gets nothing."""
    action = action.strip(" \t\n\f\r")  # as browsers strip an action
    if "\\" in action or any(ord(c) < 0x20 or ord(c) >= 0x7f for c in action):
        return f"action {shown(action, 100)!r} has a backslash, a control or a non-ASCII character"
    try:
        target = urljoin(page_url, action)
    except ValueError:
        return f"action {shown(action, 100)!r} is not a URL"
    origin = normal_origin(target)
    if origin != auth_origin:
        return f"posts to {shown(origin or target, 100)}, not the login host {auth_origin}"
    return None


def judge_sign_in(status: int, location: str | None, arrived: Decision | None) -> Finding:
    """The answer to the login form's post, and the app's answer with the cookies it gave."""
    if status == 401:
        return failed("401: the username or password is not correct")
    if status == 429:
        return failed("429: the account or this client is throttled; try again later")
    if status in (400, 403):
        return failed(f"{status}: the form post was refused (CSRF token, or Origin/Sec-Fetch-Site through the proxy)")
    if not (300 <= status < 400) or not location:
        return failed(f"{status} after posting the login form, not a redirect")
    if "/login/mfa" in location:
        return failed("the account has a second step (/login/mfa): probe with an account without a second factor")
    if arrived is None or kept_out(arrived):
        return failed(f"signed in, but the app answered {arrived.describe() if arrived else 'nothing'}: the session "
                      "does not reach the app host")
    return passed(f"signed in; the app answered {arrived.status}")


def judge_logout(logout_status: int, attempts: list[tuple[float, Decision]]) -> Finding:
    """``attempts``: (seconds after the logout answer when the request started, the app's decision)
    with the cookies from before the logout, until several past the grace. Every one past the
    grace must be kept out, and a pass needs one there: a first refusal proves no more than that."""
    if not (300 <= logout_status < 400 or logout_status == 200):
        return failed(f"the logout form's post answered {logout_status}")
    if not attempts:
        return not_applicable("no request after logout")
    late = [(t, d) for t, d in attempts if t > LOGOUT_GRACE_SECONDS and not kept_out(d)]
    if late:
        t, d = late[0]
        return failed(f"the app still answered {d.status} to the old cookies {t:.2f} s after logout"
                      + (f" ({len(late)} of the requests after {LOGOUT_GRACE_SECONDS:g} s)" if len(late) > 1 else ""))
    refused = [(t, d) for t, d in attempts if kept_out(d)]
    if not refused:
        return failed(f"the app still answered the old cookies {attempts[-1][0]:.2f} s after logout")
    after = [t for t, _ in attempts if t > LOGOUT_GRACE_SECONDS]
    if not after:
        return not_applicable(f"no request with the old cookies after {LOGOUT_GRACE_SECONDS:g} s")
    t, d = refused[0]
    where = "to the login page" if d.kind == TO_LOGIN else d.kind
    return passed(f"the old cookies were sent {where} {t:.2f} s after logout, and every time up to "
                  f"{after[-1]:.2f} s ({len(attempts)} requests)")


def judge_replay(status: int, page: str) -> Finding:
    """The login page asked with the cookies from before the logout (a remember-me cookie among
    them): a sign-in form means no one was signed in; a redirect means a session lived on."""
    if 300 <= status < 400:
        return failed(f"{status}: the login page let the old cookies through (a session or remember-me token lives on)")
    if status == 200 and login_form(page) is not None:
        return passed("the login page asks for a password")
    return failed(f"{status} without a login form")


def judge_replays(answers: list[tuple[int, str]]) -> Finding:
    """Several askings of :func:`judge_replay` (status, page): any one that lets the old cookies
    through fails."""
    if not answers:
        return not_applicable("the login page was not asked after logout")
    for number, (status, page) in enumerate(answers, 1):
        found = judge_replay(status, page)
        if found.status != OK:
            return failed(f"request {number} of {len(answers)}: {found.detail}")
    return passed(f"{found.detail}, {len(answers)} times")
