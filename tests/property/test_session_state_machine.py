"""Sessions and remember-me as a state machine: random interleavings of logins, verifies, logouts,
password changes, admin revocation, ended sessions, clock jumps, cookie theft and replay.

A small model tracks which server-side sessions are live (and whether any request used them) and
what each remember token may still do (which token it was rotated into, why it was revoked); the
real service (HTTP interface, real database, the test clock) must agree with it at every step.
A rotated token presented again is judged by the rules of authsvc.core.remember: a tab race within the
grace, a lost response when nothing the rotation gave was ever used, theft otherwise, wherever it is
presented (a page that restores, a signed-in page, logout).
The invariant is the security property itself: /auth/verify answers 200 exactly when the cookie
presented is backed by a live, unexpired, unrevoked session, and never again for a cookie that a
logout, password change, revocation, timeout, strong-protection failure or detected replay ended.

Each browser is its own test client at its own address. A thief is a new client holding copies of
a browser's cookies, either on the victim's network (same address and agent) or elsewhere.
"""

from __future__ import annotations

import atexit
import functools
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from authsvc.core.models import remember_tokens
from authsvc.core.sessions import LIVE, session_verdict
from tests.conftest import (
    PASSWORD,
    TEST_POLICY,
    Clock,
    add_user,
    build_app,
    cookie_value,
    csrf,
    csrf_in,
    new_client,
)

HOST = "auth.example.test"
USERS = ("alice", "bob")


CAP = 3  # a small session cap, so that a short run can reach it


@functools.cache
def _template() -> Path:
    """A database with the schema and both users, made once per run (argon2 hashing is the slow
    part), and the test policy with a small session cap. The machine models sessions, not the
    throttle: an account's successes are not limited here (tests/security/test_throttle.py holds
    that limit), or eleven logins within a minute would meet a 429 the model does not expect."""
    path = Path(tempfile.mkdtemp(prefix="authsvc-sm-template-"))
    policy = (Path(TEST_POLICY).read_text() + f"\n[sessions]\nmax_sessions_per_user = {CAP}\n"
              "\n[throttle]\nsuccesses_per_account = []\n")
    (path / "policy.toml").write_text(policy)
    app = build_app(path, Clock(), AUTHSVC_POLICY=str(path / "policy.toml"))
    for user in USERS:
        add_user(app, user)
    app.extensions["authsvc"].engine.dispose()
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@dataclass(eq=False)
class Sess:
    """Model of one server-side session record."""

    user: str
    binding: tuple[str, str]
    created: float
    last_seen: float
    expires: float
    revoked: bool = False
    token: str | None = None  # the real token, once the response has shown it
    used: bool = False        # a request after the one that started it presented it


@dataclass(eq=False)
class Token:
    """Model of one remember-me token (one selector)."""

    user: str
    expires: float
    session: Sess | None
    rotated_at: float | None = None
    revoked: bool = False
    selector: str | None = None
    successor: Token | None = None  # what it was rotated into
    ended_unused: bool = False      # revoked as a successor that never reached its browser
    revoked_at: float | None = None


@dataclass(eq=False)
class Browser:
    client: object
    ip: str
    ua: str
    session: Sess | None = None    # the session the session cookie points to
    remember: Token | None = None  # the token the remember cookie holds
    victim: Browser | None = None   # for a thief: whose cookies it copied


class SessionMachine(RuleBasedStateMachine):
    browsers = Bundle("browsers")
    thieves = Bundle("thieves")

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="authsvc-sm-")
        shutil.copy(_template() / "authsvc.db", self.tmp)  # migrated, users in: only the app is new
        self.clock = Clock()
        self.app = build_app(Path(self.tmp), self.clock, AUTHSVC_POLICY=str(_template() / "policy.toml"))
        self.svc = self.app.extensions["authsvc"]
        p = self.svc.policy.sessions
        self.idle, self.absolute, self.touch = p.idle_timeout_seconds, p.absolute_lifetime_seconds, p.touch_interval_seconds
        self.grace, self.cap = p.remember_rotation_grace_seconds, p.max_sessions_per_user
        assert self.cap == CAP
        self.remember_lifetime = p.remember_lifetime_days * 86400
        self.passwords = {u: PASSWORD for u in USERS}
        self.user_ids = {u: self.svc.accounts.by_username(u).id for u in USERS}
        self.sessions: list[Sess] = []
        self.tokens: list[Token] = []
        self.seen_tokens: set[str] = set()
        self.seen_selectors: set[str] = set()
        self.ended: set[str] = set()  # tokens of sessions that some event or timeout ended
        self.addresses = itertools.count(1)
        self.password_serial = itertools.count(1)

    def teardown(self) -> None:
        self.svc.engine.dispose()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- model -------------------------------------------------------------------------------------

    def _live(self, s: Sess | None) -> bool:
        now = self.clock()
        return s is not None and not s.revoked and now < s.expires and now - s.last_seen < self.idle

    def _authenticate(self, b: Browser) -> bool:
        """One request's worth of session handling: strong protection, then the live check and touch."""
        s = b.session
        if s is None:
            return False
        if s.binding != (b.ip, b.ua):
            event("strong protection: binding changed")
            if not s.revoked:  # a changed address or agent ends the server-side session itself
                s.revoked, s.used = True, True
            return False
        if not self._live(s):
            return False
        if not s.used or self.clock() - s.last_seen >= self.touch:
            s.last_seen = self.clock()
        s.used = True
        return True

    def _new_session(self, b: Browser, user: str, not_after: float | None = None) -> Sess:
        now = self.clock()
        if b.session is not None and not b.session.revoked:  # ended, not just forgotten (and presented)
            b.session.revoked, b.session.used = True, True
        expires = now + self.absolute if not_after is None else min(now + self.absolute, not_after)
        s = Sess(user, (b.ip, b.ua), now, now, expires)
        self.sessions.append(s)
        counted = [x for x in self.sessions if x.user == user and not x.revoked and x.expires > now]
        for old in counted[: max(0, len(counted) - self.cap)]:  # oldest first
            old.revoked = True
        b.session = s
        return s

    def _revoke_token(self, t: Token, *, unused: bool = False) -> None:
        if not t.revoked:
            t.revoked, t.revoked_at, t.ended_unused = True, self.clock(), unused

    def _revoke_user(self, user: str, *, except_session: Sess | None = None) -> None:
        for s in self.sessions:
            if s.user == user and s is not except_session:
                s.revoked = True
        for t in self.tokens:
            if t.user == user:
                self._revoke_token(t)

    def _judge(self, t: Token) -> str:
        """What presenting ``t`` means, by the rules as the model states them: "ok", "revoked",
        "race", "lost", "replay" or "expired"."""
        now = self.clock()
        if t.revoked:
            if t.ended_unused:  # it reached a browser after all: its predecessor was a copy
                return "race" if now - t.revoked_at <= self.grace else "replay"
            return "revoked"
        if t.rotated_at is not None:
            if now - t.rotated_at <= self.grace:
                return "race"
            nxt = t.successor
            delivered = nxt.rotated_at is not None or (nxt.revoked and not nxt.ended_unused) or nxt.session.used
            if delivered:
                return "replay"
        if now >= t.expires:
            return "expired"
        return "ok" if t.rotated_at is None else "lost"

    def _end_unused_successor(self, t: Token) -> None:
        nxt = t.successor
        if not nxt.revoked:
            self._revoke_token(nxt, unused=True)
            nxt.session.revoked = True

    def _replay(self, b: Browser, t: Token) -> None:
        event("remember: replay detected")
        self._revoke_user(t.user)  # theft
        b.remember = None

    def _examine(self, b: Browser) -> str | None:
        """The remember cookie judged where it restores nothing (a signed-in page, logout)."""
        t = b.remember
        if t is None:
            return None
        verdict = self._judge(t)
        if verdict == "replay":
            self._replay(b, t)
        elif verdict == "lost":
            event("remember: unused successor ended")
            self._end_unused_successor(t)
        return verdict

    def _visit(self, b: Browser) -> str:
        """GET /login or GET /: "authed", "restored" (remember cookie rotated) or "anonymous"."""
        if self._authenticate(b):
            if self._examine(b) == "replay":
                return "anonymous"  # this session ended with the others
            return "authed"
        t = b.remember
        if t is None:
            return "anonymous"
        verdict = self._judge(t)
        if verdict == "race":
            event("remember: reuse within grace")
            return "anonymous"  # two tabs racing: refused, nothing revoked, cookie kept
        if verdict == "replay":
            self._replay(b, t)
            return "anonymous"
        if verdict in ("revoked", "expired"):
            event(f"remember: {verdict}")
            b.remember = None
            return "anonymous"
        if verdict == "lost":
            event("remember: lost response, restored")
            self._end_unused_successor(t)
        else:
            event("remember: restored")
        t.rotated_at = self.clock()
        s = self._new_session(b, t.user, not_after=t.expires)
        b.remember = Token(t.user, t.expires, s)
        t.successor = b.remember
        self.tokens.append(b.remember)
        return "restored"

    # --- reading the real cookies ------------------------------------------------------------------

    def _cookie_token(self, b: Browser) -> str | None:
        value = cookie_value(b.client, self.svc.cookies.session)
        if not value:
            return None
        return self.app.session_interface.get_signing_serializer(self.app).loads(value).get("_user_id")

    def _bind_new(self, b: Browser, remember_is_new: bool) -> None:
        """After a response that started a session: learn its real token (and the new selector)."""
        token = self._cookie_token(b)
        assert token is not None
        assert token not in self.seen_tokens, "a session token was issued twice"
        self.seen_tokens.add(token)
        b.session.token = token
        if remember_is_new:
            parts = self.svc.remember.parse(cookie_value(b.client, self.svc.cookies.remember))
            assert parts is not None
            assert parts[0] not in self.seen_selectors, "a remember selector was reused"
            self.seen_selectors.add(parts[0])
            b.remember.selector = parts[0]

    def _new_client(self, ip: str, ua: str):
        c = new_client(self.app)
        c.environ_base.update(REMOTE_ADDR=ip, HTTP_USER_AGENT=ua)
        return c

    def _page(self, b: Browser, path: str):
        """Load a page, check the response against the model; (outcome, response)."""
        outcome = self._visit(b)
        r = b.client.get(path)
        if path == "/login":
            expected = 303 if outcome in ("authed", "restored") else 200
        else:
            expected = 200 if outcome == "authed" else 303
        assert r.status_code == expected, (path, outcome, r.status_code)
        if path == "/" and expected == 303:
            assert r.headers["Location"].endswith("/login") == (outcome == "anonymous")
        if outcome == "restored":
            self._bind_new(b, remember_is_new=True)
        return outcome, r

    def _csrf(self, b: Browser) -> tuple[bool, str]:
        """(signed in, CSRF token): from the login form, or from the account page when signed in."""
        outcome, r = self._page(b, "/login")
        if outcome == "anonymous":
            return False, csrf_in(r.get_data(as_text=True))
        assert self._authenticate(b)
        return True, csrf(b.client, "/")

    # --- rules -------------------------------------------------------------------------------------

    @initialize(target=browsers, user=st.sampled_from(USERS))
    def first_browser(self, user):
        return self._login(user, remember=True)

    @initialize(target=browsers, remember=st.booleans())
    def second_browser_of_alice(self, remember):
        return self._login("alice", remember)

    @rule(target=browsers, user=st.sampled_from(USERS), remember=st.booleans())
    def login(self, user, remember):
        return self._login(user, remember)

    def _login(self, user: str, remember: bool) -> Browser:
        n = next(self.addresses)
        b = Browser(None, f"10.{n // 250}.{n % 250}.1", f"Browser/{n}")
        b.client = self._new_client(b.ip, b.ua)
        data = {"csrf_token": csrf(b.client), "username": user, "password": self.passwords[user]}
        if remember:
            data["remember"] = "on"
        r = b.client.post("/login", data=data)
        assert r.status_code == 303, r.status_code
        s = self._new_session(b, user)
        if remember:
            b.remember = Token(user, self.clock() + self.remember_lifetime, s)
            self.tokens.append(b.remember)
        self._bind_new(b, remember_is_new=remember)
        return b

    def _verify(self, b: Browser, api: bool) -> None:
        expected = self._authenticate(b)
        status = b.client.get("/api/v1/session" if api else "/auth/verify").status_code
        assert status == (200 if expected else 401), (api, expected, status)
        event(f"verify: {status}")
        if status == 200:
            token = self._cookie_token(b)
            assert token == b.session.token
            assert token not in self.ended, "a cookie that was ended authenticated again"

    @rule(b=browsers, where=st.sampled_from(["/auth/verify", "/api/v1/session", "/login", "/"]))
    def request(self, b, where):
        """A proxied app asks /auth/verify, a client asks the API, or the browser loads a page
        (the only place a remember cookie is used)."""
        if where.startswith(("/auth", "/api")):
            self._verify(b, api=where.startswith("/api"))
        else:
            self._page(b, where)

    @rule(b=browsers, wait=st.sampled_from([0, 3, 6, 3601]))
    def lose_response(self, b, wait):
        """The browser loads the login page, but the answer (and any cookie it sets) never
        arrives; ``wait`` later it tries again."""
        lost = Browser(self._new_client(b.ip, b.ua), b.ip, b.ua, b.session, b.remember)
        for name in (self.svc.cookies.session, self.svc.cookies.remember):
            value = cookie_value(b.client, name)
            if value is not None:
                lost.client.set_cookie(name, value, domain=HOST)
        self._page(lost, "/login")  # b keeps its cookies: its session (if any, now maybe replaced) and token
        self.clock.advance(wait)
        self._page(b, "/login")

    @rule(t=thieves, wait=st.sampled_from([0, 3, 6, 3601]))
    def replay(self, t, wait):
        """The thief waits, then uses the stolen cookies on the login page (where remember-me acts)."""
        self.clock.advance(wait)
        self._page(t, "/login")

    @rule(t=thieves, wait=st.sampled_from([3, 6, 3601, 86400]))
    def victim_returns(self, t, wait):
        """Later, the owner of the stolen cookies loads a page: whoever uses the copied remember
        cookie second (after the grace) gives the theft away."""
        self.clock.advance(wait)
        self._page(t.victim, "/login")

    @rule(b=browsers, half_hours=st.sampled_from([1, 2, 10, 47, 48, 49, 60]))
    def stay_active(self, b, half_hours):
        """Open the app (restoring from remember-me if need be), then a request every 30 minutes:
        never idle, so only the absolute lifetime can end the session."""
        self._page(b, "/login")
        for _ in range(half_hours):
            self.clock.advance(1800)
            self._verify(b, api=False)

    @rule(b=browsers, action=st.sampled_from(["logout", "change_password", "end_session"]),
          pick=st.integers(0, 40))
    def account(self, b, action, pick):
        """What a signed-in user does with the account page (a signed-out one can only log out)."""
        signed_in, token = self._csrf(b)
        if action == "logout":
            self._logout(b, token)
        elif signed_in and action == "change_password":
            self._change_password(b, token)
        elif signed_in:
            self._end_session(b, token, pick)

    def _logout(self, b: Browser, token: str) -> None:
        signed_in = self._authenticate(b)
        t = b.remember
        self._examine(b)  # a rotated cookie given back at logout is judged like anywhere else
        if signed_in:
            b.session.revoked = True
        elif b.session is not None and b.session.binding == (b.ip, b.ua) and not b.session.revoked:
            event("logout of a timed-out session")
            b.session.revoked = True  # signing out ends the timed-out session the cookie names
        if t is not None and t.rotated_at is None:
            # A rotated one stays as it is (session 12, fa85fdc): revoking it would let a thief
            # signing out with a stolen copy turn the owner's later replay into a quiet refusal.
            self._revoke_token(t)
        b.session, b.remember = None, None
        r = b.client.post("/logout", data={"csrf_token": token})
        assert r.status_code == 303

    def _change_password(self, b: Browser, token: str) -> None:
        assert self._authenticate(b)
        user = b.session.user
        new = f"correct horse number {next(self.password_serial)} staple"
        r = b.client.post("/account/password", data={
            "csrf_token": token, "current_password": self.passwords[user], "new_password": new})
        assert r.status_code == 200, r.status_code
        self.passwords[user] = new
        self._revoke_user(user, except_session=b.session)
        b.remember = None  # the response clears this browser's (revoked) remember cookie
        # This browser's session goes on under a new token (a copy of the old cookie keeps nothing).
        old, renewed = b.session.token, self._cookie_token(b)
        assert renewed is not None and renewed != old and renewed not in self.seen_tokens
        self.seen_tokens.add(renewed)
        self.ended.add(old)
        b.session.token = renewed

    def _end_session(self, b: Browser, token: str, pick: int) -> None:
        """End one of the user's live sessions (maybe this one) from the account page."""
        assert self._authenticate(b)
        mine = [s for s in self.sessions if s.user == b.session.user and self._live(s)]
        target = mine[pick % len(mine)]
        sid = self.svc.sessions.load(target.token).id
        r = b.client.post(f"/account/sessions/{sid}/revoke", data={"csrf_token": token})
        assert r.status_code == 303
        target.revoked = True
        for t in self.tokens:
            if t.session is target and t.rotated_at is None:
                self._revoke_token(t)  # the unused remember token that would bring it back
        if target is b.session:
            b.session, b.remember = None, None

    @rule(user=st.sampled_from(USERS))
    def revoke_all(self, user):
        """What `authsvc sessions revoke NAME` does."""
        uid = self.user_ids[user]
        self.svc.sessions.revoke_all(uid, "admin_revoked")
        self.svc.remember.revoke_all(uid)
        self._revoke_user(user)

    @rule(seconds=st.one_of(
        st.sampled_from([1, 5, 6, 59, 60, 3599, 3600, 3601, 86400]),
        st.integers(1, 120),
        st.integers(1, 2 * 86400),
    ))
    def advance_clock(self, seconds):
        self.clock.advance(seconds)

    @rule(targets=(thieves, browsers), victim=browsers, same_place=st.booleans(),
          what=st.sampled_from(["both", "remember"]))
    def steal_cookies(self, victim, same_place, what):
        """Copy the victim's cookies into a new browser. A thief is a browser like any other after this."""
        return self._steal(victim, same_place, what)

    @rule(targets=(thieves, browsers), victim=browsers, same_place=st.booleans(),
          what=st.sampled_from(["both", "remember"]), thief_first=st.booleans(),
          gap=st.sampled_from([3, 6, 3601, 86400]))
    def theft_story(self, victim, same_place, what, thief_first, gap):
        """The whole theft in one step: steal, then thief and owner each load a page, ``gap`` apart
        (the owner only after its session has idled out, so that it needs its remember cookie)."""
        thief = self._steal(victim, same_place, what)
        self._verify(thief, api=False)  # first, the stolen session cookie at a proxied app
        if thief_first:
            self._page(thief, "/login")
            self.clock.advance(gap)
            self._page(victim, "/login")
        else:
            self.clock.advance(self.idle + 1)
            self._page(victim, "/login")
            self.clock.advance(gap)
            self._page(thief, "/login")
        return thief

    def _steal(self, victim: Browser, same_place: bool, what: str) -> Browser:
        if same_place:  # malware on the victim's machine, or a shared network and browser build
            ip, ua = victim.ip, victim.ua
        else:
            n = next(self.addresses)
            ip, ua = f"203.0.{n // 250}.{n % 250 + 1}", "curl/8.0"
        stolen = [self.svc.cookies.remember] + ([self.svc.cookies.session] if what == "both" else [])
        session = victim.session if what == "both" else None
        thief = Browser(self._new_client(ip, ua), ip, ua, session, victim.remember, victim=victim)
        for name in stolen:
            value = cookie_value(victim.client, name)
            if value is not None:
                thief.client.set_cookie(name, value, domain=HOST)
        return thief

    # --- invariants (no requests: reading the database does not touch sessions) -------------------

    @invariant()
    def database_agrees_with_model(self):
        now = self.clock()
        for s in self.sessions:
            if s.token is None:
                continue
            rec = self.svc.sessions.load(s.token)
            live = session_verdict(rec, now, self.svc.policy.sessions) == LIVE
            assert live == self._live(s), (s, now)
            assert (rec.revoked_at is not None) == s.revoked, (s, rec.revoked_at)
            assert (rec.used_at is not None) == s.used, (s, rec.used_at)
            if not live:
                self.ended.add(s.token)
        with self.svc.engine.connect() as conn:
            rows = {r.selector: r for r in conn.execute(sa.select(remember_tokens))}
        for t in self.tokens:
            if t.selector is None:
                continue
            row = rows[t.selector]
            assert (row.revoked_at is not None) == t.revoked, t
            assert (row.revoke_reason == "unused_successor") == t.ended_unused, (t, row.revoke_reason)
            assert (row.rotated_at is not None) == (t.rotated_at is not None), t
            assert row.expires_at == t.expires  # rotation never extends a remember token


_FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
SessionMachine.TestCase.settings = settings(
    max_examples=1000 if _FUZZ else 50,
    stateful_step_count=40 if _FUZZ else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSessionStateMachine = SessionMachine.TestCase
