"""Flask-Login glue: the logged-in "user" is a live server-side session.

``get_id()`` returns the session token (Flask-Login's alternative-token pattern), so the signed
Flask session cookie holds only that opaque token, and the user loader accepts it only while the
record is live. Flask-Login's own remember-me (``user id | HMAC``, never revocable) is switched off
through its public settings: :mod:`authsvc.core.remember` replaces it. Strong session protection is
authsvc's own (:func:`_before_request`), bound to :func:`binding_identifier` of ProxyFix's address:
Flask-Login's takes no identifier through its public settings, and its default trusts the first
X-Forwarded-For hop.
"""

from __future__ import annotations

import hashlib
import re
import secrets

import flask_login
from flask import Flask, current_app, g, request, session
from flask_login import login_user

from authsvc.rules import clientip
from authsvc.core.accounts import Account
from authsvc.core.sessions import LIVE, SessionRecord
from authsvc.rules.auth_methods import PASSWORD_ONLY

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}\Z")


def services():
    return current_app.extensions["authsvc"]


def binding_identifier(remote_addr: str | None, user_agent: str) -> str:
    """What "strong" session protection binds a session to: the client as the throttle groups it
    (an IPv6 address's /64, which privacy addresses rotate within) and the user agent. An IPv4
    address gives the same identifier as before /64 grouping, so IPv4 sessions outlive the upgrade."""
    group = clientip.client_group(remote_addr)
    raw = f"{remote_addr if group is None else group}|{user_agent}"
    return hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


def session_identifier() -> str:
    return binding_identifier(request.remote_addr, request.headers.get("User-Agent", ""))


class AuthUser(flask_login.UserMixin):
    def __init__(self, record: SessionRecord, token: str) -> None:
        self.record = record
        self.token = token
        self.user_id = record.user_id
        self.username = record.username
        self.session_id = record.id

    def get_id(self) -> str:
        return self.token

    @property
    def is_active(self) -> bool:
        return not self.record.user_disabled


# The session keys Flask-Login's login_user writes: what strong protection drops from a moved session.
LOGIN_KEYS = ("_user_id", "_id", "_fresh")

# Flask-Login reads its remember cookie only when the request carries a cookie of this name, and no
# client can send one: a cookie name is an RFC 6265 token, which has no spaces (Werkzeug's parser
# agrees). So its remember-me is never read, and never written (login_user is never asked to remember).
FLASK_LOGIN_REMEMBER_COOKIE = "authsvc never reads flask-login remember cookies"


def is_session_token(value: object) -> bool:
    """The shape of a token :func:`authsvc.core.sessions.new_token` makes (anything else is not looked up)."""
    return isinstance(value, str) and _TOKEN.match(value) is not None


def request_id(incoming: str) -> str:
    """The proxy's X-Request-ID when it looks like one, else a new one."""
    return incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)


def load_user(token: str) -> AuthUser | None:
    if not is_session_token(token):
        return None
    record, verdict = services().sessions.authenticate(token)
    if verdict != LIVE:
        g.ended_session = verdict
        return None
    g.audit_user_id = record.user_id
    return AuthUser(record, token)


def _before_request() -> None:
    g.request_id = request_id(request.headers.get("X-Request-ID", ""))
    # Strong protection, before anything asks for current_user: a session presented from another
    # client (address group or user agent) is forgotten by this request and, when it was bound, ended
    # on the server too, so the cookie's other copies are worth nothing either.
    bound, token = session.get("_id"), session.get("_user_id")
    if token is None or bound == session_identifier():
        return
    for key in LOGIN_KEYS:
        session.pop(key, None)
    if bound and is_session_token(token):
        svc = services()
        record = svc.sessions.load(token)
        if record and record.revoked_at is None:
            svc.sessions.revoke(record.id, "binding_changed", presented=True)
            g.audit_user_id = record.user_id
            svc.audit.emit("session_revoked", reason="binding_changed", session_id=record.id)


def _after_request(response):
    response.headers["X-Request-ID"] = g.get("request_id", "")
    return response


def end_browser_session() -> None:
    """End the session this browser holds, if any, and empty its Flask session: before a new one
    starts, or a sign-in waits for its second step. Ended, not just forgotten: its token may have
    been copied (ASVS 7.2.4)."""
    svc = services()
    previous = session.get("_user_id")
    if is_session_token(previous):
        old = svc.sessions.load(previous)
        if old is not None and old.revoked_at is None:
            svc.sessions.revoke(old.id, "replaced", presented=True)
    session.clear()


def start_session(account: Account, *, remembered: bool, fresh: bool = True,
                  not_after: float | None = None, methods: tuple[str, ...] = PASSWORD_ONLY,
                  generation: int | None = None) -> AuthUser:
    """A new server-side session for ``account`` (never reusing the visitor's: no fixation), the
    one way a session starts.

    A session this browser held before is ended (:func:`end_browser_session`). ``not_after`` caps
    the new session's absolute lifetime. ``methods`` are the RFC 8176 methods the sign-in used
    (``X-Auth-Methods``); ``fresh`` is False for a session restored from a remember-me cookie,
    which then never counts as a recent authentication (step-up). The session carries ``account``'s
    sign-out generation as the sign-in read it before checking the credential (or ``generation``:
    a restore's, from its remember-me token), so a sign-out everywhere since ends it too
    (:mod:`authsvc.core.sign_out`)."""
    svc = services()
    end_browser_session()
    ua = request.headers.get("User-Agent", "")
    token, _sid = svc.sessions.create(account.id, request.remote_addr or "", ua, remembered, not_after,
                                      methods=methods, authenticated=fresh,
                                      generation=account.sign_out_generation if generation is None else generation)
    user = _into_browser(svc.sessions.load(token), token, fresh=fresh)
    g.audit_user_id = account.id
    return user


def _into_browser(record: SessionRecord, token: str, *, fresh: bool) -> AuthUser:
    """``token``'s session into this browser's Flask session, bound to it."""
    user = AuthUser(record, token)
    login_user(user, fresh=fresh)
    session["_id"] = session_identifier()  # the binding is ours, not the identifier login_user wrote
    return user


def renew_session_token(*, proved: bool = True) -> AuthUser | None:
    """The user proved a factor again in this session (step-up: ``proved``), or changed the
    password or a factor in it: the session gets a new token in this browser's cookie, the old one
    stops working (ASVS V7.2.4, V7.4.3: a copy of the cookie made before keeps nothing), and
    everything else stays (the session's id and expiry, its remember-me token, the rest of the
    browser's session: a set-up under way, the CSRF token). None if the session ended meanwhile."""
    svc = services()
    token = svc.sessions.reauthenticated(flask_login.current_user.session_id, proved=proved)
    record = svc.sessions.load(token) if token is not None else None
    return _into_browser(record, token, fresh=True) if record is not None else None


def init_app(app: Flask) -> None:
    manager = flask_login.LoginManager()
    manager.init_app(app)
    manager.user_loader(load_user)
    app.config["SESSION_PROTECTION"] = None  # authsvc's own strong protection: _before_request
    app.config["REMEMBER_COOKIE_NAME"] = FLASK_LOGIN_REMEMBER_COOKIE
    app.before_request(_before_request)
    app.after_request(_after_request)
