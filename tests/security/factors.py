"""Helpers for the second-factor tests: an authenticator app outside the service (pyotp, driven by
the test's clock), and the two steps of a sign-in through the real HTTP interface."""

from __future__ import annotations

import re

import pyotp

from authsvc.core.totp import new_secret
from authsvc.rules.second_step import TOTP_PERIOD_SECONDS
from tests.conftest import PASSWORD, api, csrf, csrf_in, login, verify

URI = re.compile(r'id="otpauth-uri">([^<]+)<')


class App:
    """An authenticator app holding ``secret``, reading the test's ``clock``."""

    def __init__(self, secret: str, clock) -> None:
        self.totp = pyotp.TOTP(secret)  # pyotp's defaults: what every app uses (6 digits, 30 s, SHA-1)
        self.clock = clock

    def code(self, steps: int = 0) -> str:
        """The code shown now, or ``steps`` time steps from now."""
        return self.totp.generate_otp(int(self.clock() // TOTP_PERIOD_SECONDS) + steps)

    def wrong_codes(self, count: int) -> list[str]:
        """``count`` codes that none of this app's codes near now is (a guesser's, never lucky)."""
        near = {self.code(steps) for steps in range(-3, 4)}
        return [code for code in (f"{n:06d}" for n in range(count + len(near))) if code not in near][:count]


def enroll(app, user, clock) -> App:
    """Give ``user`` an authenticator app, as a confirmed set-up would (its first code two steps
    ago, so every code from now on is new)."""
    svc = app.extensions["authsvc"]
    secret = new_secret()
    assert svc.totp.enroll(user.id, secret, int(clock() // TOTP_PERIOD_SECONDS) - 2)
    return App(secret, clock)


def app_from_set_up_page(html: str, clock) -> App:
    """The app a user sets up from a set-up page, reading its ``otpauth://`` URI."""
    match = URI.search(html)
    assert match, "no otpauth:// URI on the set-up page"
    totp = pyotp.parse_uri(match.group(1).replace("&amp;", "&"))
    return App(totp.secret, clock)


def second_step(client, code: str, *, next: str | None = None, page: str = "/login/mfa"):
    """POST the code to the second step, with the CSRF token of its page."""
    data = {"csrf_token": csrf(client, page), "code": code}
    if next is not None:
        data["next"] = next
    return client.post("/login/mfa", data=data)


def sign_in(client, totp: App, username: str = "alice", password: str = PASSWORD, **kwargs):
    """Both steps; the second step's response."""
    first = login(client, username, password, **kwargs)
    assert first.status_code == 303 and first.headers["Location"].startswith("/login/mfa"), first.headers
    return second_step(client, totp.code(), next=kwargs.get("next"))


def post_with_csrf(client, path: str, data: dict, page: str = "/"):
    return client.post(path, data={"csrf_token": csrf_in(client.get(page).get_data(as_text=True)), **data})


def only_this_session_is_left(here, others) -> None:
    """After a change of factor (ASVS V7.4.3): the browser that made it is still signed in, every
    other browser of the account is refused by /auth/verify and the API at once."""
    assert (verify(here), api(here)) == (200, 200)
    for other in others:
        assert (verify(other), api(other)) == (401, 401)
