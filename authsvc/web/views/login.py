"""Login and logout: the only way a session starts or ends from a browser."""

from __future__ import annotations

from flask import Blueprint, after_this_request, g, redirect, render_template, request, session, url_for
from flask_login import current_user, logout_user

from authsvc.web import qr
from authsvc.web.auth import end_browser_session, is_session_token, services, session_identifier, start_session
from authsvc.web.crosssite import expire_planted_copies
from authsvc.web.errors import respond
from authsvc.web.forms import checkbox, field
from authsvc.web.limiter import PENDING, signed_device
from authsvc.core.accounts import Account
from authsvc.core.sessions import SessionRecord
from authsvc.core.sign_out import FACTOR_CHANGED, SignedOut
from authsvc.core.login_flow import TOO_LONG, Failed, FlowEnded, FlowState, Refused, SignedIn, StepRequired
from authsvc.core.totp import new_secret, provisioning_uri
from authsvc.rules.auth_methods import is_multi_factor
from authsvc.rules.redirects import RedirectDecision, loggable, validate_next
from authsvc.rules.second_step import MAX_CODE_INPUT

bp = Blueprint("login", __name__)

GENERIC_FAILURE = "The username or password is not correct."
CODE_FAILURE = "That code is not correct, or it was used before."

# The signed-session keys of a sign-in waiting for its second step: the flow (FlowState.to_session)
# and, when the account must first set up a factor, the new secret sealed (TotpStore.seal_pending).
PENDING_SET_UP = "mfa_set_up"


def next_decision(raw: str | None) -> RedirectDecision:
    svc = services()
    decision = validate_next(raw, svc.redirect_rules)
    if raw and not decision.accepted:
        svc.audit.emit("redirect_rejected", reason=decision.reason, value=loggable(raw), length=len(raw))
    return decision


def _raw_next() -> str | None:
    return request.form.get("next") or request.args.get("next")


def _render(decision: RedirectDecision, *, error: str | None = None, status: int = 200, username: str = ""):
    app_name = decision.app.name if decision.app is not None else None
    g.form_next = decision.target if decision.accepted else ""  # for the CSP form-action (views/oidc.py)
    return render_template("login.html", next=g.form_next,
                           app_name=app_name, error=error, username=username,
                           passkeys=services().passkeys is not None), status


def set_cookie(response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, max_age=max_age, **services().cookies.attributes())


def delete_cookie(response, name: str) -> None:
    attrs = services().cookies.attributes()
    response.delete_cookie(name, path="/", domain=attrs["domain"], secure=attrs["secure"],
                           httponly=True, samesite="Lax")


def forget_legacy_cookies(response) -> None:
    """End and delete remember-me/device cookies an earlier version shared with every app under
    the cookie domain. They are not honoured: every app behind the proxy may have logged them."""
    svc = services()
    for name in svc.cookies.legacy:
        value = request.cookies.get(name)
        if value is None:
            continue
        if name.endswith("_remember"):
            svc.remember.revoke_cookie(value)
        response.delete_cookie(name, path="/", domain=svc.cookies.domain, secure=True, httponly=True, samesite="Lax")


def restore_from_remember() -> bool:
    """Start a session from a remember-me cookie, rotating it. True if a session was started.

    Runs only on pages the browser itself loads (/login, /), never in /auth/verify: behind
    auth_request the proxy drops verify's Set-Cookie, which would lose the rotated cookie.
    """
    svc = services()
    name = svc.cookies.remember
    cookie = request.cookies.get(name)
    if not cookie:
        return False
    consumed, new_cookie = svc.remember.consume(cookie, request.remote_addr or "",
                                                request.headers.get("User-Agent", ""))
    if consumed.outcome in ("ok", "lost"):
        account = svc.accounts.by_id(consumed.user_id)
        # The restored session ends no later than the remember token: remembering never
        # extends past remember_lifetime_days (ASVS 7.3.2).
        user = start_session(account, remembered=True, fresh=False, not_after=consumed.expires_at,
                             methods=consumed.methods, generation=consumed.generation)
        svc.remember.attach(new_cookie, user.session_id)
        _send_rotated_cookie(new_cookie, consumed.expires_at)
        if consumed.outcome == "lost":
            _successor_unused(consumed, restored=True)
        else:
            svc.audit.emit("remember_rotated", outcome="success")
        return True
    if consumed.outcome == "replay":
        _replay_detected(consumed.user_id)
    else:
        svc.audit.emit("remember_rejected", reason=consumed.outcome)
    if consumed.outcome == "race":
        # Another tab of this browser just rotated the cookie; its response carries the new one,
        # which clearing here could overwrite.
        return False
    _clear_remember_cookie()
    return False


def rotate_remember_cookie(session_id: int) -> None:
    """Give this browser's remember-me cookie a successor, attached to ``session_id`` (the session
    the browser keeps through a factor change): a copy of the old cookie restores nothing after
    (it is rotated: presenting it again is judged as replay). Until session 13 a factor change kept
    the cookie as it was, and a copy of both cookies came back in through it (found by review)."""
    svc = services()
    presented = request.cookies.get(svc.cookies.remember)
    if not presented:
        return
    consumed, new_cookie = svc.remember.consume(presented, request.remote_addr or "",
                                                request.headers.get("User-Agent", ""))
    if consumed.outcome != "ok" or new_cookie is None:
        return
    svc.remember.attach(new_cookie, session_id)
    _send_rotated_cookie(new_cookie, consumed.expires_at)


def _send_rotated_cookie(value: str, expires_at: float) -> None:
    """This response sets the remember-me cookie's successor, until the chain's own expiry."""
    svc = services()
    max_age = max(1, int(expires_at - svc.clock()))

    @after_this_request
    def _rotate(response):
        set_cookie(response, svc.cookies.remember, value, max_age)
        return response


def _clear_remember_cookie() -> None:
    @after_this_request
    def _clear(response):
        delete_cookie(response, services().cookies.remember)
        return response


def _replay_detected(user_id: int) -> None:
    """A rotated remember token came back after its successor was used: one of the two browsers
    stole it. Every session and remember token of the user ends, the thief's with the owner's, and
    every known device is forgotten: whoever copied the browser's cookies has its device cookie
    too, which must not keep a password-guessing budget of its own."""
    svc = services()
    g.audit_user_id = user_id
    ended = svc.sign_out.everywhere(user_id, "remember_replay")
    svc.audit.emit("remember_replay_detected", outcome="revoked_all", sessions_revoked=ended.sessions)


def _successor_unused(consumed, *, restored: bool) -> None:
    g.audit_user_id = consumed.user_id
    services().audit.emit("remember_successor_unused", restored=restored,
                          sessions_revoked=int(consumed.ended_session_id is not None))


def judge_remember_cookie() -> str | None:
    """Judge the remember cookie of a request that restores nothing with it (a signed-in page
    load, POST /login, POST /logout): a rotated token presented again is theft wherever it comes
    back (finding: a thief's chain outlived the owner's logout). Returns the outcome, or None
    without a cookie. Call it before anything that starts a session: theft ends all of them."""
    svc = services()
    cookie = request.cookies.get(svc.cookies.remember)
    if not cookie:
        return None
    seen = svc.remember.examine(cookie)
    if seen.outcome == "replay":
        _replay_detected(seen.user_id)
    elif seen.outcome == "lost" and seen.discarded:
        _successor_unused(seen, restored=False)
    return seen.outcome


def page_session() -> str:
    """Where a page load (GET /login, GET /) stands: ``"signed_in"``, ``"restored"`` (a session
    started from the remember cookie) or ``"anonymous"``. A signed-in browser's remember cookie is
    judged too; if it gives a theft away, this session has ended with the others."""
    if current_user.is_authenticated:
        if judge_remember_cookie() != "replay":
            return "signed_in"
        logout_user()
        _clear_remember_cookie()
        return "anonymous"
    return "restored" if restore_from_remember() else "anonymous"


@bp.get("/login")
def login_form():
    decision = next_decision(_raw_next())
    state = page_session()
    if state == "signed_in" and request.args.get("step_up") == "1" and not is_multi_factor(
            current_user.record.methods):
        # /auth/verify sent a one-factor session here for a two_factor rule: sign in again, password
        # then second step (a new session replaces this one), instead of going straight back.
        return _render(decision, username=current_user.username)
    # reauth=1: sign in again although signed in (an OpenID client's prompt=login, max_age or
    # second-factor requirement, authsvc.web.views.oidc); the new session replaces this one.
    if state != "anonymous" and request.args.get("reauth") != "1":
        response = redirect(decision.target, 303)
        expire_planted_copies(response, decision.target)
        return response
    return _render(decision)


@bp.post("/login")
def login_post():
    """The form in, :meth:`authsvc.core.login_flow.LoginService.attempt`'s outcome out as a response."""
    svc = services()
    decision = next_decision(_raw_next())
    judge_remember_cookie()  # before the new session starts: theft revokes every session of the user
    username = field("username", svc.policy.limits.username_max_length * 4)
    password = field("password", svc.policy.passwords.max_length * 4)
    signed = signed_device()  # as the per-client limits saw it; the flow asks the registry
    outcome = svc.login.attempt(username, password, device=signed.device_id if signed else None,
                                remember=checkbox("remember"), binding=session_identifier())
    if isinstance(outcome, Refused):
        if outcome.reason == TOO_LONG:
            return _render(decision, error="The password is too long.", status=400)
        return respond(429, retry_after=outcome.retry_after)
    if isinstance(outcome, Failed):
        return _render(decision, error=GENERIC_FAILURE, status=401, username=username[:200])
    if isinstance(outcome, StepRequired):
        return _second_step_required(outcome.state, decision)
    return _signed_in(outcome, decision)


def _signed_in(outcome: SignedIn, decision: RedirectDecision, *, generation: int | None = None):
    """The session and the cookies of a successful sign-in, and the redirect to ``next``."""
    return finish_sign_in(outcome.account, redirect(decision.target, 303), remember=outcome.remember,
                          device_cookie=outcome.device_cookie, methods=outcome.methods, generation=generation)


def finish_sign_in(account: Account, response, *, remember: bool, device_cookie: str | None,
                   methods: tuple[str, ...], generation: int | None = None):
    """Start ``account``'s session and put the cookies of a sign-in on ``response`` (the redirect of
    POST /login, the JSON answer of a passkey sign-in): the known-device cookie, a new remember-me
    cookie when asked for, and the end of any remember-me or legacy cookie this browser held."""
    svc = services()
    if generation is None:
        generation = account.sign_out_generation  # as the sign-in read it, before checking the credential
    user = start_session(account, remembered=remember, methods=methods, generation=generation)
    if device_cookie is not None:
        set_cookie(response, svc.cookies.device, device_cookie,
                   svc.policy.throttle.device_cookie_lifetime_days * 86400)
    presented = request.cookies.get(svc.cookies.remember)
    if presented:  # replaced or declined: end it, don't orphan it
        svc.remember.revoke_cookie(presented, "login")
        if not remember:
            delete_cookie(response, svc.cookies.remember)
    if remember:
        value, expires = svc.remember.issue(account.id, request.remote_addr or "",
                                            request.headers.get("User-Agent", ""), session_id=user.session_id,
                                            methods=methods, generation=generation)
        set_cookie(response, svc.cookies.remember, value, int(expires - svc.clock()))
    forget_legacy_cookies(response)
    if account_moved_on(account, svc.accounts.by_id(account.id)):
        # The password was changed, or the account disabled, while this sign-in was checked (argon2
        # takes a while): the sign-out that change made came before this session. End what was just
        # made here; a change committed after this read signs it out itself (it updates, then signs out).
        end_browser_session()
        svc.remember.revoke_for_session(user.session_id)
        svc.known_devices.forget_all(account.id)  # the change forgot them; this sign-in's too
        svc.audit.emit("login_failure", reason="changed_during_sign_in", user_id=account.id)
        return respond(401, GENERIC_FAILURE)
    return response


def account_moved_on(seen: Account, now: Account | None) -> bool:
    """Has the account changed, since the sign-in read it, in a way that ends its sessions (its
    password, or disabled, or gone)?"""
    return now is None or now.disabled or now.password_changed_at != seen.password_changed_at


# --- the second step: /login/mfa ----------------------------------------------------------------

def _second_step_required(state: FlowState, decision: RedirectDecision):
    """The password was right and a second step must follow: no session until it passes. Any
    session this browser held ends now (as a new sign-in would end it), and the pending flow goes
    in the signed session, bound to this browser, for ``mfa.pending_seconds``."""
    end_browser_session()
    session[PENDING] = state.to_session()
    return redirect(url_for("login.second_step_form", next=_carried(decision)), 303)


def _carried(decision: RedirectDecision) -> str | None:
    """The validated ``next`` to carry to the next page of the sign-in (None: none was asked for,
    or it was refused; url_for leaves a None value out)."""
    return decision.target if decision.accepted and _raw_next() else None


def pending_flow() -> FlowState | None:
    """The sign-in this browser has waiting for its second step, if it still stands; an ended one
    (moved to another browser, expired, account gone or disabled: audited) is forgotten."""
    svc = services()
    data = session.get(PENDING)
    if data is None:
        return None
    state = svc.login.resume(data, session_identifier())
    if isinstance(state, FlowEnded):
        session.pop(PENDING, None)
        session.pop(PENDING_SET_UP, None)
        return None
    return state


def _set_up_secret(state: FlowState) -> str:
    """The secret this browser is setting up (kept sealed in its session), made on first sight."""
    svc = services()
    secret = svc.totp.open_pending(state.account_id, session.get(PENDING_SET_UP))
    if secret is None:
        secret = new_secret()
        session[PENDING_SET_UP] = svc.totp.seal_pending(state.account_id, secret)
    return secret


def render_set_up(template: str, account_name: str, secret: str, **context):
    """A page showing a new authenticator-app secret: QR code (inline SVG), URI and text."""
    svc = services()
    uri = provisioning_uri(secret, account_name, svc.rp_id)
    return render_template(template, qr=qr.drawing(uri), otpauth_uri=uri, secret=secret, **context)


def _render_second_step(state: FlowState, decision: RedirectDecision, *, error: str | None = None, status: int = 200):
    svc = services()
    target = g.form_next = _carried(decision) or ""  # for the CSP form-action (views/oidc.py)
    if state.set_up:
        account = svc.accounts.by_id(state.account_id)
        return render_set_up("mfa_set_up.html", account.username, _set_up_secret(state), next=target,
                             error=error), status
    passkey = svc.passkeys is not None and svc.passkeys.store.count(state.account_id) > 0
    app_codes = svc.totp.count(state.account_id) > 0
    return render_template("mfa.html", next=target, error=error, passkey=passkey, app_codes=app_codes), status


@bp.get("/login/mfa")
def second_step_form():
    decision = next_decision(_raw_next())
    state = pending_flow()
    if state is None:
        return redirect(url_for("login.login_form", next=_carried(decision)), 303)
    return _render_second_step(state, decision)


@bp.post("/login/mfa")
def second_step_post():
    """The code in, :meth:`authsvc.core.login_flow.LoginService.second_step`'s outcome out."""
    svc = services()
    decision = next_decision(_raw_next())
    code = field("code", MAX_CODE_INPUT)
    state = pending_flow()
    if state is None:
        return redirect(url_for("login.login_form", next=_carried(decision)), 303)
    if state.set_up:
        secret = svc.totp.open_pending(state.account_id, session.get(PENDING_SET_UP))
        if secret is None:  # the page was never shown to this session: show it
            return redirect(url_for("login.second_step_form", next=_carried(decision)), 303)
        # A factor is added: every earlier way in ends (V7.4.3), before it is stored. The session
        # made next carries the generation this sign-out set; the account stays as the set-up read
        # it, so a password change made meanwhile still ends what is made.
        signed_out: list[SignedOut] = []
        outcome = svc.login.set_up_step(state, secret, code, before_enroll=lambda: signed_out.append(
            end_sessions_after_factor_change(state.account_id, "totp_added")))
        if isinstance(outcome, SignedIn):
            return _signed_in(outcome, decision, generation=signed_out[0].generation)
    else:
        outcome = svc.login.second_step(state, code)
    if isinstance(outcome, Refused):
        return respond(429, retry_after=outcome.retry_after)
    if isinstance(outcome, Failed):
        return _render_second_step(state, decision, error=CODE_FAILURE, status=401)
    return _signed_in(outcome, decision)  # start_session empties the Flask session, the pending flow with it


def end_sessions_after_factor_change(user_id: int, change: str, *, keep_session: int | None = None) -> SignedOut:
    """ASVS V7.4.3: after a second factor was added or removed or the recovery codes replaced
    (``change`` says which, for the audit log), every session of the account ends, and every
    remember-me token, but ``keep_session`` and its token (the account page's own browser): whoever
    holds one may be why the user changes a factor, and a remember cookie would start a new
    session. The set-up that ``mfa.required`` asks for at sign-in keeps nothing: its session is
    made after, with the generation this returns.

    Known devices stay known (a password change forgets them): a device cookie only buys
    attempts at the password, and the password is what it was."""
    svc = services()
    ended = svc.sign_out.everywhere(user_id, FACTOR_CHANGED, keep_session=keep_session, keep_remember=True,
                                    forget_devices=False)
    svc.audit.emit("session_revoked", reason=FACTOR_CHANGED, change=change, sessions_revoked=ended.sessions,
                   remember_revoked=ended.remembered, user_id=user_id)
    return ended


@bp.post("/logout")
def logout():
    return sign_out(redirect(url_for("login.login_form"), 303))


def unrevoked_ended_session() -> SessionRecord | None:
    """The session this browser's cookie names when it timed out (idle, or its absolute lifetime)
    but was never revoked: signing out revokes it, so the OpenID clients that got tokens in it hear
    of it over the back channel and their refresh tokens end (until session 13 a sign-out after an
    idle spell ended nothing: found by review). None when there is none."""
    token = session.get("_user_id")
    if current_user.is_authenticated or not is_session_token(token):
        return None
    record = services().sessions.load(token)
    return record if record is not None and record.revoked_at is None else None


def sign_out(response, **audit_fields):
    """End this browser's session and its remember cookie, as /logout does (also the OpenID
    Provider's RP-initiated logout: authsvc.web.views.oidc); ``response`` is the answer to send."""
    svc = services()
    signed_in = current_user.is_authenticated  # loaded first: theft detection may end this session too
    judge_remember_cookie()
    if signed_in:
        svc.sessions.revoke(current_user.session_id, "logout")
        svc.audit.emit("logout", session_id=current_user.session_id, **audit_fields)
    else:
        ended = unrevoked_ended_session()
        if ended is not None and svc.sessions.revoke(ended.id, "logout"):
            svc.audit.emit("logout", session_id=ended.id, timed_out=True, **audit_fields)
    svc.remember.revoke_cookie(request.cookies.get(svc.cookies.remember), "logout")
    session.clear()
    delete_cookie(response, svc.cookies.remember)  # the session cookie is deleted by Flask (emptied)
    forget_legacy_cookies(response)
    # Not "cookies": browsers apply it to the whole registrable domain, which would delete the
    # device cookie (the user's way past a throttled username) and every sibling site's cookies.
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response
