"""The account page: who you are, your sessions (end any of them), password change, logout, and
your second factors (authenticator app, recovery codes; passkeys: :mod:`authsvc.web.views.passkeys`).

Adding or removing a factor and generating recovery codes need a recent authentication
(``mfa.step_up_seconds``): a sign-in, or the password re-entered in the same form, which then
counts as one (:func:`step_up_or_refuse`). Once done, each ends every other session of the account
(:func:`end_other_sessions`), as a password change does."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    after_this_request,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    session,
    url_for,
)
from flask_login import current_user, logout_user

from authsvc.web.auth import renew_session_token, services
from authsvc.web.errors import respond
from authsvc.web.forms import ROW_ID, field
from authsvc.core.login_flow import Failed, Refused
from authsvc.core.second_factors import TOTP
from authsvc.core.sessions import ENDED_BY_OWNER
from authsvc.core.totp import new_secret
from authsvc.rules.passwords import normalize_password, password_problems
from authsvc.rules.second_step import MAX_CODE_INPUT, step_up_due
from authsvc.web.views.login import (
    delete_cookie,
    end_sessions_after_factor_change,
    page_session,
    render_set_up,
    rotate_remember_cookie,
)

bp = Blueprint("account", __name__)

# The signed-session key of an authenticator app being set up (its secret, sealed).
TOTP_SET_UP = "totp_set_up"
STEP_UP_MISSING = "Enter your password to confirm this change (you signed in more than a few minutes ago)."
STEP_UP_WRONG = "The password is not correct."
NO_FACTOR_FOR_CODES = "Set up an authenticator app or a passkey first: recovery codes stand in for one of them."


def step_up_is_due() -> bool:
    svc = services()
    return step_up_due(current_user.record.authenticated_at, svc.clock(), svc.policy.mfa.step_up_seconds)


def account_page(status: int = 200, *, errors: list[str] | None = None, notice: str | None = None):
    """The signed-in user's account page (also rendered by :mod:`authsvc.web.views.passkeys`).
    Without a ``notice``, the one a redirect to it left (``flask.flash``) is shown."""
    svc = services()
    if notice is None:
        notice = " ".join(get_flashed_messages()) or None
    uid = current_user.user_id
    live = svc.sessions.list_live(uid)
    factors = svc.factors.counts(uid)
    return render_template("account.html", username=current_user.username, sessions=live,
                           current_session=current_user.session_id, errors=errors or [],
                           notice=notice, min_length=svc.password_rules.min_length,
                           totp=bool(factors.get(TOTP)), factors=factors,
                           recovery_left=svc.recovery_codes.remaining(uid), step_up=step_up_is_due(),
                           apps=svc.oidc.apps_of(uid),
                           passkeys=svc.passkeys.store.list(uid) if svc.passkeys is not None else None), status


@bp.get("/")
def home():
    state = page_session()
    if state == "signed_in":
        return account_page()
    if state == "restored":
        return redirect(url_for("account.home"), 303)
    return redirect(url_for("login.login_form"), 303)


@bp.post("/account/password")
def change_password():
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    rules = svc.password_rules
    current = field("current_password", rules.max_length * 4)
    new = normalize_password(field("new_password", rules.max_length * 4))
    account = svc.accounts.by_id(current_user.user_id)
    checked = svc.login.confirm_password(account, current)  # the login throttle, gate included
    if isinstance(checked, Refused):
        return respond(429, retry_after=checked.retry_after)
    if isinstance(checked, Failed):
        return account_page(400, errors=["The current password is not correct."])
    problems = password_problems(new, username=account.username, rules=rules, blocklist=svc.blocklist)
    if problems:
        svc.audit.emit("password_change_failed", reason="policy")
        return account_page(400, errors=problems)
    svc.accounts.set_password_hash(account.id, svc.hasher.hash(new))
    # Every remember-me token ends, this browser's too (issued under the old password), and every
    # known device is forgotten (minted with the old password, it keeps no budget).
    ended = svc.sign_out.everywhere(account.id, "password_changed", keep_session=current_user.session_id).sessions
    svc.audit.emit("password_changed", by="user", sessions_revoked=ended)
    renew_session_token()  # the password was just proved; a copy of this browser's cookie keeps nothing

    @after_this_request
    def _forget_remember(response):
        delete_cookie(response, svc.cookies.remember)
        return response
    return account_page(notice="Password changed. Every other session has been signed out.")


@bp.post(f"/account/sessions/<{ROW_ID}:session_id>/revoke")
def revoke_session(session_id: int):
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    if not svc.sessions.revoke(session_id, ENDED_BY_OWNER, user_id=current_user.user_id):
        abort(404)
    # Its remember cookie would otherwise start a new session on that device's next page load. (A
    # restore with it between these two commits restores nothing either: the token's own session
    # was ended by its owner, which authsvc.core.remember.presented_verdict refuses.)
    remember_ended = svc.remember.revoke_for_session(session_id)  # a count
    g.audit_user_id = current_user.user_id
    svc.audit.emit("session_revoked", reason=ENDED_BY_OWNER, session_id=session_id, remember_revoked=remember_ended)
    if session_id == current_user.session_id:
        logout_user()
        response = redirect(url_for("login.login_form"), 303)
        delete_cookie(response, svc.cookies.remember)
        return response
    return redirect(url_for("account.home"), 303)


@bp.post("/account/apps/revoke")
def revoke_app():
    """End an app's access: the consent (it asks again next time) and every token it holds for this
    user. Another user's app, or an unknown id, is a 404 that reveals nothing."""
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    client_id = field("client_id", 64)
    ended = svc.oidc.revoke_app(current_user.user_id, client_id)
    if ended is None:
        abort(404)
    g.audit_user_id = current_user.user_id
    svc.audit.emit("oidc_consent_revoked", client_id=client_id, consent=ended[0], revoked=ended[1], by="user")
    return redirect(url_for("account.home"), 303)


# --- second factors ------------------------------------------------------------------------------

def end_other_sessions(change: str) -> int:
    """After a second factor was removed or the recovery codes replaced on the account page:
    :func:`sign_out_others`, then :func:`keep_this_browser`. Returns how many sessions ended. (Adding
    a factor signs the others out before the factor is stored, and keeps this browser after.)"""
    ended = sign_out_others(change)
    keep_this_browser()
    return ended


def sign_out_others(change: str) -> int:
    """:func:`authsvc.web.views.login.end_sessions_after_factor_change`, but this session (and its
    remember-me token) stays. Returns how many sessions ended."""
    return end_sessions_after_factor_change(current_user.user_id, change, keep_session=current_user.session_id).sessions


def keep_this_browser() -> None:
    """This session goes on under a new token, and the remember-me cookie rotates: a copy of this
    browser's cookies made before a factor change keeps nothing (until session 13 it did)."""
    renew_session_token(proved=False)
    rotate_remember_cookie(current_user.session_id)


def others_signed_out(ended: int) -> str:
    """The sentence that tells the user what :func:`end_other_sessions` did."""
    if ended == 0:
        return "No other session was signed in."
    if ended == 1:
        return "1 other session has been signed out."
    return f"{ended} other sessions have been signed out."


def step_up_or_refuse(render):
    """None when this session may make a sensitive change now: it authenticated within
    ``mfa.step_up_seconds``, or this POST's ``password`` is right (checked through the login
    throttle, and from then on the session counts as recently authenticated). Otherwise the
    response: ``render(status, errors)`` for a missing or wrong password, 429 when throttled."""
    if not step_up_is_due():
        return None
    svc = services()
    password = field("password", svc.password_rules.max_length * 4, required=False)
    if not password:
        return render(401, [STEP_UP_MISSING])
    checked = svc.login.reauthenticate(svc.accounts.by_id(current_user.user_id), password)
    if isinstance(checked, Refused):
        return respond(429, retry_after=checked.retry_after)
    if isinstance(checked, Failed):
        return render(401, [STEP_UP_WRONG])
    if renew_session_token() is None:  # ended meanwhile (signed out elsewhere, revoked)
        abort(401)
    return None


@bp.post("/account/step-up")
def step_up():
    """The password again, on its own: for the changes a script makes (adding a passkey), whose
    JSON endpoint answers 403 while a step-up is due."""
    if not current_user.is_authenticated:
        abort(401)
    refused = step_up_or_refuse(account_page_with_errors)
    if refused is not None:
        return refused
    return account_page(notice="Password confirmed: you can add a passkey now.")


def account_page_with_errors(status: int, errors: list[str]):
    return account_page(status, errors=errors)


def _set_up_secret() -> str:
    svc = services()
    secret = svc.totp.open_pending(current_user.user_id, session.get(TOTP_SET_UP))
    if secret is None:
        secret = new_secret()
        session[TOTP_SET_UP] = svc.totp.seal_pending(current_user.user_id, secret)
    return secret


def _set_up_page(status: int = 200, errors: list[str] | None = None):
    return render_set_up("totp_set_up.html", current_user.username, _set_up_secret(), errors=errors or [],
                         step_up=step_up_is_due()), status


@bp.get("/account/totp")
def totp_form():
    """Set-up: a new secret (QR code, ``otpauth://`` URI, text), kept sealed in this session until
    a first code confirms it."""
    if not current_user.is_authenticated:
        return redirect(url_for("login.login_form"), 303)
    if services().totp.count(current_user.user_id):
        return redirect(url_for("account.home"), 303)
    return _set_up_page()


@bp.post("/account/totp")
def add_totp():
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    code = field("code", MAX_CODE_INPUT)
    secret = svc.totp.open_pending(current_user.user_id, session.get(TOTP_SET_UP))
    if secret is None:  # no set-up page was shown to this session (or it was for another account)
        return redirect(url_for("account.totp_form"), 303)
    refused = step_up_or_refuse(_set_up_page)
    if refused is not None:
        return refused
    ended: list = []
    added = svc.login.add_totp(current_user.user_id, secret, code,
                               before_enroll=lambda: ended.append(sign_out_others("totp_added")))
    if isinstance(added, Failed):
        if added.reason == "already_set_up":
            session.pop(TOTP_SET_UP, None)
            return account_page(409, errors=["An authenticator app is already set up for this account."])
        return _set_up_page(400, ["That code is not correct. Check the app shows codes for this account, and "
                                  "that your device's clock is right."])
    session.pop(TOTP_SET_UP, None)
    keep_this_browser()
    return account_page(notice="Authenticator app added: signing in now asks for its code. Generate recovery codes "
                        f"below in case you lose it. {others_signed_out(ended[0])}")


@bp.post("/account/totp/remove")
def remove_totp():
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    refused = step_up_or_refuse(account_page_with_errors)
    if refused is not None:
        return refused
    uid = current_user.user_id
    if not svc.totp.remove_all(uid):
        return account_page(404, errors=["No authenticator app is set up for this account."])
    voided = void_recovery_codes_without_factor(uid)
    svc.audit.emit("mfa_removed", method="totp", by="user", recovery_codes_voided=voided)
    ended = end_other_sessions("totp_removed")
    return account_page(notice=f"Authenticator app removed. {others_signed_out(ended)}")


def void_recovery_codes_without_factor(user_id: int) -> int:
    """After a factor was removed: when the account has none left, its recovery codes go too (how
    many). They stand in for a factor, so there is nothing left to recover; kept, a sheet printed
    before would come back into force with the next factor added."""
    svc = services()
    return svc.recovery_codes.void(user_id) if not svc.factors.kinds(user_id) else 0


@bp.post("/account/recovery-codes")
def generate_recovery_codes():
    """Ten new recovery codes, shown once on this page; the old ones are void."""
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    refused = step_up_or_refuse(account_page_with_errors)
    if refused is not None:
        return refused
    if not svc.factors.kinds(current_user.user_id):
        # They stand in for a factor: made before one exists, whoever made them (a reused
        # password's holder, say) would pass the second step of the factor the owner adds later.
        return account_page(409, errors=[NO_FACTOR_FOR_CODES])
    codes = svc.recovery_codes.generate(current_user.user_id, session_id=current_user.session_id)
    if codes is None:  # this session was signed out meanwhile (a factor added elsewhere, say)
        abort(401)
    svc.audit.emit("recovery_codes_generated", count=len(codes))
    ended = end_other_sessions("recovery_codes_generated")
    return render_template("recovery_codes.html", codes=codes, notice=others_signed_out(ended))
