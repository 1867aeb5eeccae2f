"""The account page: who you are, your sessions (end any of them), password change, logout (passkeys:
:mod:`authsvc.web.views.passkeys`)."""

from __future__ import annotations

from flask import (
    Blueprint,
    abort,
    after_this_request,
    g,
    redirect,
    render_template,
    url_for,
)
from flask_login import current_user, logout_user

from authsvc.web.auth import services
from authsvc.web.errors import respond
from authsvc.web.forms import field
from authsvc.core.login_flow import Failed, Refused
from authsvc.rules.passwords import normalize_password, password_problems
from authsvc.web.views.login import delete_cookie, page_session

bp = Blueprint("account", __name__)


def account_page(status: int = 200, *, errors: list[str] | None = None, notice: str | None = None):
    """The signed-in user's account page (also rendered by :mod:`authsvc.web.views.passkeys`)."""
    svc = services()
    live = svc.sessions.list_live(current_user.user_id)
    keys = svc.passkeys.store.list(current_user.user_id) if svc.passkeys is not None else None
    return render_template("account.html", username=current_user.username, sessions=live,
                           current_session=current_user.session_id, errors=errors or [],
                           notice=notice, min_length=svc.password_rules.min_length, passkeys=keys), status


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
    ended = svc.sessions.revoke_all(account.id, "password_changed", except_id=current_user.session_id)
    svc.remember.revoke_all(account.id)  # this browser's too: it was issued under the old password
    svc.known_devices.forget_all(account.id)  # devices minted with the old password keep no budget
    svc.audit.emit("password_changed", by="user", sessions_revoked=ended)

    @after_this_request
    def _forget_remember(response):
        delete_cookie(response, svc.cookies.remember)
        return response
    return account_page(notice="Password changed. Every other session has been signed out.")


@bp.post("/account/sessions/<int:session_id>/revoke")
def revoke_session(session_id: int):
    if not current_user.is_authenticated:
        abort(401)
    svc = services()
    if not svc.sessions.revoke(session_id, "user_revoked", user_id=current_user.user_id):
        abort(404)
    # Its remember cookie would otherwise start a new session on that device's next page load.
    remember_ended = svc.remember.revoke_for_session(session_id)  # a count
    g.audit_user_id = current_user.user_id
    svc.audit.emit("session_revoked", reason="user_revoked", session_id=session_id, remember_revoked=remember_ended)
    if session_id == current_user.session_id:
        logout_user()
        response = redirect(url_for("login.login_form"), 303)
        delete_cookie(response, svc.cookies.remember)
        return response
    return redirect(url_for("account.home"), 303)
