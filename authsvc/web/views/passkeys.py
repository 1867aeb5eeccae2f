"""Passkeys over HTTP: the WebAuthn ceremonies as JSON endpoints for ``static/passkeys.js``, and
rename/remove as plain forms on the account page.

=========================================== ====================================================
``POST /account/passkeys/options``          creation options for the signed-in account (JSON)
``POST /account/passkeys``                  ``{"credential": ..., "name": ...}``: keep the passkey
                                            (every other session of the account ends)
``POST /account/passkeys/<id>/rename``      form: ``name``, ``csrf_token``
``POST /account/passkeys/<id>/delete``      form: ``csrf_token`` (every other session ends)
``POST /login/passkey/options``             request options for a usernameless sign-in (JSON)
``POST /login/passkey``                     ``{"credential": ..., "next": ...}``: sign in;
                                            answers ``{"redirect": next}`` (validated as /login does)
``POST /login/mfa/passkey/options``         request options for the pending second step's account
``POST /login/mfa/passkey``                 ``{"credential": ..., "next": ...}``: the second step;
                                            answers ``{"redirect": next}``
=========================================== ====================================================

Every one is a POST, so :mod:`authsvc.web.crosssite` (same origin) and :mod:`authsvc.web.csrf` (the
token: ``X-CSRF-Token`` from the scripts, the ``csrf_token`` field from the forms) check it first.
Each ceremony's challenge waits in the signed session under its purpose and is popped by the
answer, whatever the answer: one challenge, one try, one purpose. Bad input is a 4xx with a JSON
body ``{"error": code, "message": text}``; a refused passkey says no more than that it was refused
(the reason is in the audit log).
"""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)
from flask_login import current_user

from authsvc.core.login_flow import Failed, FlowEnded, Refused
from authsvc.core.passkeys import (
    CHALLENGE_SECONDS,
    PasskeyFailed,
    PasskeyService,
    b64url_decode,
    b64url_encode,
)
from authsvc.rules.passkeys import MAX_RAW_NAME_LENGTH, passkey_name
from authsvc.web.auth import services
from authsvc.web.forms import ROW_ID, field
from authsvc.web.views.account import (
    STEP_UP_MISSING,
    account_page,
    account_page_with_errors,
    end_other_sessions,
    keep_this_browser,
    others_signed_out,
    sign_out_others,
    step_up_is_due,
    step_up_or_refuse,
    void_recovery_codes_without_factor,
)
from authsvc.web.views.login import (
    PENDING,
    PENDING_SET_UP,
    finish_sign_in,
    judge_remember_cookie,
    next_decision,
    pending_flow,
)

bp = Blueprint("passkeys", __name__)

# A WebAuthn response is a few KiB (an attestation with a certificate chain, the largest, stays
# well under this); the policy's max_content_length still bounds every body before this is read.
MAX_BODY_BYTES = 32 * 1024
REGISTER, LOGIN, SECOND_STEP = "passkey_register", "passkey_login", "passkey_mfa"   # the session keys, one per purpose
DEFAULT_NAME = "Passkey"

REFUSED = "This passkey could not be used. Try again, or sign in with your password."
NAME_MESSAGES = {
    "empty": "Give the passkey a name.",
    "too_long": "A passkey name can be at most 64 characters long.",
}
NAME_REFUSED = "A passkey name may hold letters, digits, punctuation, spaces and emoji, but no control or " \
               "invisible characters."
REGISTER_MESSAGES = {
    "duplicate": "This passkey is already registered.",
    "too_many": "This account has as many passkeys as it can have. Remove one first.",
}


def _service() -> PasskeyService:
    passkeys = services().passkeys
    if passkeys is None:  # no relying party in these settings: there are no passkey pages
        abort(404)
    return passkeys


def _answer(status: int, error: str, message: str) -> Response:
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def _json_body() -> dict:
    """The request's JSON object, or a 4xx: not JSON (415), over :data:`MAX_BODY_BYTES` (413), not
    UTF-8, not one JSON object, nested too deep or a number too long to read (400)."""
    if request.mimetype != "application/json":
        abort(_answer(415, "unsupported_media_type", "Send JSON."))
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        abort(_answer(413, "too_large", "The request is too large."))
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        abort(_answer(413, "too_large", "The request is too large."))
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError and int-digit limits are ValueErrors
        body = None
    if not isinstance(body, dict):
        abort(_answer(400, "malformed", "The request was not valid."))
    return body


def _keep_challenge(key: str, challenge: bytes, bound_to: int | str | None = None) -> None:
    session[key] = {"c": b64url_encode(challenge), "t": int(services().clock()), "s": bound_to}


def _take_challenge(key: str, bound_to: int | str | None = None) -> bytes | None:
    """Pop the challenge kept for ``key`` (it is gone whatever follows); None unless it is there,
    younger than its options' timeout, was made for the same session (``bound_to``) and was never
    spent before: by this request's own cookie or by any copy of it, on any instance
    (:mod:`authsvc.core.spent_once`)."""
    kept = session.pop(key, None)
    if not isinstance(kept, dict) or kept.get("s") != bound_to or not isinstance(kept.get("t"), int):
        return None
    if not 0 <= services().clock() - kept["t"] <= CHALLENGE_SECONDS:
        return None
    challenge = b64url_decode(kept.get("c"), 64)
    if challenge is None or not services().passkey_challenges.spend(challenge):
        return None
    return challenge


def _signed_in_session() -> int:
    if not current_user.is_authenticated:
        abort(_answer(401, "unauthenticated", "Sign in first."))
    return current_user.session_id


def _options(options_json: str) -> Response:
    return Response(options_json, mimetype="application/json")


def _require_step_up() -> None:
    """Adding a passkey is a sensitive change: 403 (JSON) once the session's last authentication is
    older than ``mfa.step_up_seconds``; the account page then asks for the password first
    (POST /account/step-up)."""
    if step_up_is_due():
        abort(_answer(403, "step_up_required", STEP_UP_MISSING))


# --- the account's passkeys ------------------------------------------------------------------------------

def _name_refused(detail: str) -> Response:
    return _answer(400, "bad_name", NAME_MESSAGES.get(detail, NAME_REFUSED))


@bp.post("/account/passkeys/options")
def register_options():
    """Creation options. The name the passkey will get (``{"name": ...}``, optional) is judged here
    too, so a refused name is known before the authenticator makes a credential for nothing."""
    service = _service()
    session_id = _signed_in_session()
    _require_step_up()
    name = _json_body().get("name") or DEFAULT_NAME
    decided = passkey_name(name)
    if decided.name is None:
        return _name_refused(decided.reason)
    account = services().accounts.by_id(current_user.user_id)
    options = service.registration_options(account)
    _keep_challenge(REGISTER, options.challenge, session_id)
    return _options(options.json)


@bp.post("/account/passkeys")
def register():
    """Add a passkey: only within ``mfa.step_up_seconds`` of an authentication (the account page
    asks for the password first otherwise)."""
    service = _service()
    session_id = _signed_in_session()
    _require_step_up()
    body = _json_body()
    challenge = _take_challenge(REGISTER, session_id)
    name = body.get("name") or DEFAULT_NAME
    account = services().accounts.by_id(current_user.user_id)
    ended: list = []
    outcome = service.register(account, challenge, body.get("credential"), name,
                               before_add=lambda: ended.append(sign_out_others("passkey_added")))
    if isinstance(outcome, PasskeyFailed):
        if outcome.reason == "bad_name":
            return _name_refused(outcome.detail)
        status = 409 if outcome.reason in REGISTER_MESSAGES else 400
        return _answer(status, outcome.reason if status == 409 else "refused",
                       REGISTER_MESSAGES.get(outcome.reason, REFUSED))
    keep_this_browser()
    flash(f"Passkey added. {others_signed_out(ended[0])}")  # for the account page the script goes to next
    return jsonify(id=outcome.passkey.id, name=outcome.passkey.name, other_sessions_ended=ended[0]), 201


@bp.post(f"/account/passkeys/<{ROW_ID}:passkey_id>/rename")
def rename(passkey_id: int):
    service = _service()
    if not current_user.is_authenticated:
        abort(401)
    name = field("name", MAX_RAW_NAME_LENGTH)
    account = services().accounts.by_id(current_user.user_id)
    outcome = service.rename(account, passkey_id, name)
    if outcome is None:
        abort(404)
    if isinstance(outcome, PasskeyFailed):
        return account_page(400, errors=[NAME_MESSAGES.get(outcome.detail, NAME_REFUSED)])
    return redirect(url_for("account.home"), 303)


@bp.post(f"/account/passkeys/<{ROW_ID}:passkey_id>/delete")
def delete(passkey_id: int):
    """Remove a passkey: the password again when the last authentication is not recent (step-up)."""
    service = _service()
    if not current_user.is_authenticated:
        abort(401)
    refused = step_up_or_refuse(account_page_with_errors)
    if refused is not None:
        return refused
    account = services().accounts.by_id(current_user.user_id)
    if not service.remove(account, passkey_id):
        abort(404)
    voided = void_recovery_codes_without_factor(account.id)
    if voided:
        services().audit.emit("recovery_codes_voided", count=voided, reason="no_factor_left")
    ended = end_other_sessions("passkey_removed")
    flash(f"Passkey removed. {others_signed_out(ended)}")
    return redirect(url_for("account.home"), 303)


# --- signing in ------------------------------------------------------------------------------------------

@bp.post("/login/passkey/options")
def login_options():
    service = _service()
    _json_body()  # nothing is read from it; like every endpoint here it must be one JSON object
    options = service.authentication_options()
    _keep_challenge(LOGIN, options.challenge)
    return _options(options.json)


@bp.post("/login/passkey")
def login_finish():
    """A usernameless sign-in: the passkey's account gets a session (a user-verified passkey is
    multi-factor on its own), and the script is told where to go: ``next`` as POST /login decides."""
    service = _service()
    svc = services()
    body = _json_body()
    raw_next = body.get("next")
    decision = next_decision(raw_next if isinstance(raw_next, str) else None)
    challenge = _take_challenge(LOGIN)
    judge_remember_cookie()  # before the new session starts: theft revokes every session of the user
    outcome = service.authenticate(challenge, body.get("credential"),
                                   device_cookie=request.cookies.get(svc.cookies.device))
    if isinstance(outcome, PasskeyFailed):
        status = 400 if outcome.reason in ("malformed", "no_challenge") else 401
        return _answer(status, "refused", REFUSED)
    return finish_sign_in(outcome.account, jsonify(redirect=decision.target), remember=False,
                          device_cookie=outcome.device_cookie, methods=outcome.methods)


# --- the second step of a sign-in ------------------------------------------------------------------------

def _pending():
    """The live pending sign-in of this browser that a passkey can finish, or a 401 (JSON)."""
    state = pending_flow()
    if state is None or state.set_up:  # an account setting up its first factor has no passkey
        abort(_answer(401, "no_pending_sign_in", "Sign in with your password first."))
    return state


@bp.post("/login/mfa/passkey/options")
def second_step_options():
    """Request options for the pending account's passkeys; the challenge is bound to this flow."""
    service = _service()
    _json_body()
    state = _pending()
    account = services().accounts.by_id(state.account_id)
    options = service.authentication_options(account)
    _keep_challenge(SECOND_STEP, options.challenge, state.flow_id)
    return _options(options.json)


@bp.post("/login/mfa/passkey")
def second_step_finish():
    """A passkey of the pending account as the second step:
    :meth:`authsvc.core.login_flow.LoginService.passkey_step`'s outcome as JSON."""
    service = _service()
    svc = services()
    body = _json_body()
    raw_next = body.get("next")
    decision = next_decision(raw_next if isinstance(raw_next, str) else None)
    state = _pending()
    challenge = _take_challenge(SECOND_STEP, state.flow_id)
    outcome = svc.login.passkey_step(state, lambda: service.authenticate(
        challenge, body.get("credential"), account_id=state.account_id))
    if isinstance(outcome, Refused):
        response = _answer(429, "throttled", "Too many attempts. Try again later.")
        response.headers["Retry-After"] = str(outcome.retry_after)
        return response
    if isinstance(outcome, FlowEnded):
        session.pop(PENDING, None)
        session.pop(PENDING_SET_UP, None)
        return _answer(401, "sign_in_ended", "This sign-in has ended. Sign in again.")
    if isinstance(outcome, Failed):  # counted like a wrong code
        return _answer(401, "refused", REFUSED)
    # start_session empties the Flask session, the pending flow with it
    return finish_sign_in(outcome.account, jsonify(redirect=decision.target), remember=outcome.remember,
                          device_cookie=outcome.device_cookie, methods=outcome.methods)
