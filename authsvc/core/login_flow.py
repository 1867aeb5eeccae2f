"""The login flow: from a username and a password to an outcome a view turns into a response.

No Flask and no Werkzeug here (a test imports this module alone and checks): the view reads the
form and the cookies and hands plain values in; :class:`LoginService` decides, records what
happened (throttle counts, audit events, the known-device registry) and returns one outcome:

* :class:`Refused`: no password was checked (throttled, or a password too long to be anyone's);
* :class:`Failed`: the password was checked and the sign-in failed. The user is told only that
  the username or password is not correct, whatever ``reason`` says;
* :class:`SignedIn`: the password was right; the view starts the session and sets the cookies
  the outcome carries;
* :class:`StepRequired`: the password was right, but a second step must pass before a session
  starts (the account has a second factor, or the policy requires one and it must set one up).

The second step takes a code (:meth:`LoginService.second_step`) or a passkey of the account
(:meth:`LoginService.passkey_step`).

The second step (:meth:`LoginService.second_step`, :meth:`LoginService.set_up_step`) takes the
:class:`FlowState` back, as :meth:`LoginService.resume` found it still standing, and a code; it
returns one of the same outcomes. Between the two steps there is no session: the view keeps the
state in the browser's signed session, bound to that browser, for ``mfa.pending_seconds``.

Its collaborators are built once, in ``create_app``, and handed in: the account store, the hasher,
the throttle, the known-device registry and the device-cookie signer, and the audit sink; for the
second step the account's factors (:class:`authsvc.core.second_factors.SecondFactors`, the one
question "which kinds does this account have"), the TOTP store, the recovery codes, a throttle of
its own for codes, the ``[mfa]`` policy and the clock the pending flow's age is measured with.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

from authsvc.rules import second_step as rules
from authsvc.core.totp import ACCEPTED_CODE, first_step
from authsvc.rules.auth_methods import ONE_TIME_CODE, PASSWORD_ONLY, format_methods, session_methods
from authsvc.rules.passwords import normalize_password
from authsvc.rules.usernames import normalize_username

if TYPE_CHECKING:
    from authsvc.core.accounts import Account, AccountStore
    from authsvc.core.devices import DeviceCookies, DeviceRegistry
    from authsvc.core.hashing import Hasher
    from authsvc.core.pending_flows import EndedFlows
    from authsvc.core.policy import MfaPolicy
    from authsvc.core.recovery_codes import RecoveryCodes
    from authsvc.core.second_factors import SecondFactors
    from authsvc.core.throttle import Throttle
    from authsvc.core.totp import TotpStore

TOO_LONG = "password_too_long"
# Failed.reason of a second step: the code was not accepted (wrong, malformed, used before, or a
# recovery code that is not one of the account's unused ones). The user sees one message.
BAD_CODE = "bad_code"
# Failed.reason of a second step with a passkey that was refused (the reason is in the audit log).
BAD_PASSKEY = "bad_passkey"
# The audit log's reason for each TOTP verdict that is not an acceptance (the others name themselves:
# ``not_set_up``, ``unreadable``).
CODE_REASONS = {"reused": "reused_code", "wrong": "wrong_code"}


@dataclass(frozen=True)
class Refused:
    """No password was checked. ``reason`` is the throttle's (``backoff``, ``locked``, ``global``,
    ``busy``, ``successes``: answered 429 with ``retry_after`` seconds, every reason the same page)
    or :data:`TOO_LONG` (answered 400; nothing was counted, so ``retry_after`` is 0)."""

    reason: str
    retry_after: int = 0


@dataclass(frozen=True)
class Failed:
    """The sign-in failed after a password check. ``reason`` (``unknown_user``, ``disabled``,
    ``bad_password`` for a login; ``bad_current_password`` for a password change) goes to the audit
    log only: the user sees one generic message, so the response tells no account's state."""

    reason: str


@dataclass(frozen=True)
class SignedIn:
    """The password was right: start a session for ``account``, and remember this browser when
    ``remember`` asks for it. ``device_cookie`` is the known-device cookie to set (the same device id
    for a known device, a new one otherwise), or None when the policy keeps no known devices."""

    account: Account
    remember: bool
    known_device: bool
    device_cookie: str | None
    methods: tuple[str, ...] = PASSWORD_ONLY  # RFC 8176 values the session records (authsvc.rules.auth_methods)


@dataclass(frozen=True)
class FlowState:
    """Where a sign-in stands between its password and its second step. :class:`StepRequired`
    carries it; the view keeps it in the browser's signed session (:meth:`to_session`) and hands
    it back (:meth:`LoginService.resume`) with the code.

    ``passed`` holds the RFC 8176 methods already used, in order (the password, ``pwd``, is always
    the first). The rest is what the last step needs to finish as :class:`SignedIn` would have: the
    account, the remember-me choice, the known device the password step used (its id: not a
    credential, the browser's own cookie carries it), when the password step passed, the binding
    of the browser that passed it (strong session protection's identifier), and whether the
    account must first set up a factor (``mfa.required`` and none yet). No password, hash, code or
    secret is ever kept here.
    """

    account_id: int
    remember: bool
    device: str | None
    passed: tuple[str, ...] = PASSWORD_ONLY
    started_at: float = 0.0
    bound_to: str = ""
    set_up: bool = False
    flow_id: str = ""  # random: how the server ends this flow for every copy of the cookie (EndedFlows)

    def to_session(self) -> dict[str, Any]:
        """A JSON-able form for the signed session."""
        return {"a": self.account_id, "r": self.remember, "d": self.device, "p": list(self.passed),
                "t": self.started_at, "b": self.bound_to, "s": self.set_up, "i": self.flow_id}

    @classmethod
    def from_session(cls, data: object) -> FlowState | None:
        """Back from :meth:`to_session`'s form; None for anything else (the cookie is signed, so
        only another release's form can get here)."""
        if not isinstance(data, dict):
            return None
        account, remember, device, passed = data.get("a"), data.get("r"), data.get("d"), data.get("p")
        started, bound, set_up, flow_id = data.get("t"), data.get("b"), data.get("s"), data.get("i")
        if not (type(account) is int and isinstance(remember, bool) and isinstance(set_up, bool)
                and (device is None or isinstance(device, str)) and isinstance(bound, str)
                and isinstance(flow_id, str) and flow_id
                and isinstance(started, (int, float)) and not isinstance(started, bool)
                and isinstance(passed, list) and all(isinstance(p, str) for p in passed)):
            return None
        return cls(account, remember, device, tuple(passed), float(started), bound, set_up, flow_id)


@dataclass(frozen=True)
class FlowEnded:
    """:meth:`LoginService.resume`: the pending sign-in no longer stands. ``reason``:
    ``binding_changed``, ``expired``, ``unknown_account``, ``disabled``, ``password_changed`` (since
    the password step), ``factor_added`` (to an account this flow was setting one up for), ``ended`` (the server
    ended this flow before: it completed, or a copy came from another browser; each audited as
    ``mfa_flow_ended``) or ``none`` (there was no pending sign-in: nothing to audit)."""

    reason: str


@dataclass(frozen=True)
class StepRequired:
    """The password was right, and ``state`` says what else must pass before a session starts."""

    state: FlowState


@dataclass(frozen=True)
class Confirmed:
    """A signed-in user's current password was right (:meth:`LoginService.confirm_password`)."""

    account: Account


Outcome = Refused | Failed | SignedIn | StepRequired


class AuditSink(Protocol):
    """Where the flow's security events go (:class:`authsvc.core.audit.Audit` in the app)."""

    def emit(self, event: str, **fields: Any) -> None: ...


class LoginService:
    """The password check of every sign-in and of every password change, through one throttle."""

    def __init__(self, *, accounts: AccountStore, hasher: Hasher, throttle: Throttle,
                 known_devices: DeviceRegistry, device_cookies: DeviceCookies, audit: AuditSink,
                 max_username_length: int, max_password_length: int,
                 factors: SecondFactors | None = None, totp: TotpStore | None = None,
                 recovery: RecoveryCodes | None = None, code_throttle: Throttle | None = None,
                 mfa: MfaPolicy | None = None, ended_flows: EndedFlows | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.accounts = accounts
        self.hasher = hasher
        self.throttle = throttle
        self.known_devices = known_devices
        self.device_cookies = device_cookies
        self.audit = audit
        self.max_username_length = max_username_length
        self.max_password_length = max_password_length
        # The second step: without factors (a test's service) nobody has one and none is required.
        self.factors = factors
        self.totp = totp
        self.recovery = recovery
        self.code_throttle = code_throttle
        self.mfa = mfa
        self.ended_flows = ended_flows
        self.clock = clock

    def attempt(self, username: str, password: str, *, device: str | None = None,
                remember: bool = False, binding: str = "") -> Outcome:
        """Sign in with ``username`` and ``password`` as typed (the view has bounded their size and
        refused what is not stream-safe: :func:`authsvc.web.forms.field`).

        ``device`` is the id in a device cookie validly signed for this account
        (:func:`authsvc.web.limiter.signed_device`), or None; it counts as a known device only while the
        account's registry holds it. ``remember`` is the remember-me choice, carried to the outcome.
        ``binding`` identifies the browser (strong session protection's identifier): a second step
        is bound to it.

        Raises :class:`authsvc.core.hashing.HashingBusy` (no argon2 slot in time) and
        :class:`authsvc.core.throttle.ThrottleUnavailable` (rate-limit storage down); the view answers
        both with 503, and the throttle's gate is let go either way.
        """
        password = normalize_password(password)  # once: the length rule, argon2 and a rehash see this
        if len(password) > self.max_password_length:
            return Refused(TOO_LONG)
        key = normalize_username(username)
        known = device if device is not None and self.known_devices.is_known(key, device) else None
        with self.throttle.attempt(key, known) as attempt:
            verdict = attempt.verdict
            if not verdict.allowed:
                self.audit.emit("login_throttled", reason=verdict.reason, known_device=known is not None)
                return Refused(verdict.reason, verdict.retry_after)
            # A name too long to be anyone's is looked up nowhere, and costs argon2 like any other.
            account = self.accounts.by_username(key) if len(key) <= self.max_username_length else None
            checked = self.hasher.verify(account.password_hash if account else None, password,
                                         anonymous=known is None)
            if not checked.ok or account is None or account.disabled:
                after = attempt.record_failure()
                reason = "unknown_user" if account is None else ("disabled" if checked.ok else "bad_password")
                user_id = account.id if account else None
                self.audit.emit("login_failure", reason=reason, known_device=known is not None, user_id=user_id)
                if after.reason == "locked":  # this failure reached the lock-out
                    self.audit.emit("device_locked_out" if known else "account_locked_out",
                                    reason="max_consecutive_failures", user_id=user_id)
                return Failed(reason)
            attempt.record_success()
            if checked.needs_rehash:
                self.accounts.set_password_hash(account.id, self.hasher.hash(password), changed=False)
                self.audit.emit("password_rehashed", user_id=account.id)
            kinds = self.factors.kinds(account.id) if self.factors is not None else frozenset()
            if kinds or (self.mfa is not None and self.mfa.required and self.factors is not None):
                # No session, no known device yet: both wait for the second step. A device registered
                # now would give whoever has only the password a bucket of its own for code guesses.
                state = FlowState(account.id, remember, known, PASSWORD_ONLY, self.clock(), binding, set_up=not kinds,
                                  flow_id=secrets.token_urlsafe(16))
                self.audit.emit("mfa_required", user_id=account.id, set_up=state.set_up, known_device=known is not None)
                return StepRequired(state)
            signed_in = self._finish(account, FlowState(account.id, remember, known))
        return signed_in

    def _finish(self, account: Account, state: FlowState) -> SignedIn:
        """The last step passed: register the known device and record the sign-in."""
        device_id = self.known_devices.remember(account.id, state.device)  # the same id, or a new one (cap: LRU out)
        cookie = self.device_cookies.issue(account.username_key, device_id) if device_id is not None else None
        methods = session_methods(state.passed)
        # A password alone logs the fields it always did; a second step adds the methods used.
        extra = {"methods": format_methods(methods)} if methods != PASSWORD_ONLY else {}
        self.audit.emit("login_success", remembered=state.remember, known_device=state.device is not None,
                        user_id=account.id, **extra)
        return SignedIn(account, state.remember, state.device is not None, cookie, methods)

    # --- the second step -------------------------------------------------------------------------------

    def resume(self, data: object, binding: str) -> FlowState | FlowEnded:
        """The pending sign-in kept in the browser's session (``data``, from
        :meth:`FlowState.to_session`), if it still stands for this browser (``binding``) and its
        account: else why not, audited. The caller forgets an ended flow."""
        if data is None:
            return FlowEnded("none")
        state = FlowState.from_session(data)
        if state is None:
            return FlowEnded("none")
        verdict = rules.pending_verdict(state.started_at, self.clock(), self.mfa.pending_seconds if self.mfa else 0,
                                        state.bound_to, binding)
        reason = None if verdict == rules.LIVE else verdict
        if reason is None and self.ended_flows is not None and self.ended_flows.ended(state.flow_id):
            reason = "ended"
        if reason is None:
            account = self.accounts.by_id(state.account_id)
            reason = "unknown_account" if account is None else ("disabled" if account.disabled else None)
            if account is not None and reason is None:
                has_factor = state.set_up and self.factors is not None and bool(self.factors.kinds(account.id))
                verdict = rules.account_verdict(account.password_changed_at, state.started_at, state.set_up, has_factor)
                reason = None if verdict == rules.LIVE else verdict
        if reason is not None:
            # A copy elsewhere, or an account that moved on: end the flow for every copy, the owner's
            # too (a factor added and removed again within the flow's lifetime brings nothing back).
            if reason in (rules.BINDING_CHANGED, rules.CHANGED_SINCE, rules.FACTOR_ADDED):
                self._end(state)
            self.audit.emit("mfa_flow_ended", reason=reason, user_id=state.account_id)
            return FlowEnded(reason)
        return state

    def _end(self, state: FlowState) -> None:
        if self.ended_flows is not None:
            self.ended_flows.end(state.flow_id)

    def second_step(self, state: FlowState, code: str) -> Refused | Failed | SignedIn:
        """The code typed in the second step of ``state`` (a live one, from :meth:`resume`): an
        authenticator-app code or a recovery code, whichever it looks like. Each guess is counted
        per account in the code throttle (its own key space: a right password resets nothing of
        it); none runs argon2. Raises :class:`authsvc.core.throttle.ThrottleUnavailable`."""
        account = self.accounts.by_id(state.account_id)
        if account is None or account.disabled or self.code_throttle is None:
            return Failed("unknown_user" if account is None else "disabled")
        kind, value = rules.read_code(code)
        with self.code_throttle.attempt(account.username_key, state.device) as attempt:
            if not attempt.verdict.allowed:
                return self._throttled(attempt.verdict, account, state)
            reason = self._check_code(account.id, kind, value)
            if reason is not None:
                return self._wrong(attempt, account, state, reason, kind, BAD_CODE)
            attempt.record_success()
            self._end(state)  # once: an old copy of this browser's cookie cannot take the step again
        passed = FlowState(state.account_id, state.remember, state.device, (*state.passed, ONE_TIME_CODE))
        return self._finish(account, passed)

    def passkey_step(self, state: FlowState, verify: Callable[[], Any]) -> Refused | Failed | FlowEnded | SignedIn:
        """A passkey of the pending account in the second step of ``state`` (a live one, from
        :meth:`resume`). ``verify`` checks the browser's assertion (the view binds
        :meth:`authsvc.core.passkeys.PasskeyService.authenticate` to the challenge, the credential
        and ``state.account_id``) and returns its ``PasskeySignedIn`` or ``PasskeyFailed``; it runs
        only while the code throttle allows this account a try. A refusal that may mean tampering
        (:data:`authsvc.rules.second_step.PASSKEY_TAMPERING`: another origin, relying party,
        challenge or account) ends the flow for every copy of it; any other counts like a wrong
        code. On success the flow ends and the session records the password and the passkey."""
        account = self.accounts.by_id(state.account_id)
        if account is None or account.disabled or self.code_throttle is None:
            return Failed("unknown_user" if account is None else "disabled")
        with self.code_throttle.attempt(account.username_key, state.device) as attempt:
            if not attempt.verdict.allowed:
                return self._throttled(attempt.verdict, account, state)
            outcome = verify()
            reason = getattr(outcome, "reason", None)  # PasskeyFailed has one, PasskeySignedIn none
            if reason is not None and rules.passkey_ends_flow(reason):
                self._end(state)
                self.audit.emit("mfa_flow_ended", reason=f"passkey_{reason}", user_id=account.id)
                return FlowEnded(f"passkey_{reason}")
            if reason is not None:
                return self._wrong(attempt, account, state, reason, "passkey", BAD_PASSKEY)
            attempt.record_success()
            self._end(state)  # once, as after a code
        passed = FlowState(state.account_id, state.remember, state.device, (*state.passed, *outcome.methods))
        return self._finish(account, passed)

    def _throttled(self, verdict, account: Account, state: FlowState) -> Refused:
        self.audit.emit("mfa_throttled", reason=verdict.reason, user_id=account.id,
                        known_device=state.device is not None)
        return Refused(verdict.reason, verdict.retry_after)

    def _wrong(self, attempt, account: Account, state: FlowState, reason: str, method: str, failed: str) -> Failed:
        """A second-step try that failed: counted (the lock-out said when this one reaches it), audited."""
        after = attempt.record_failure()
        self.audit.emit("mfa_failed", reason=reason, method=method, user_id=account.id,
                        known_device=state.device is not None)
        if after.reason == "locked":
            self.audit.emit("mfa_locked_out", reason="max_consecutive_failures", user_id=account.id,
                            known_device=state.device is not None)
        return Failed(failed)

    def _check_code(self, user_id: int, kind: str, value: str) -> str | None:
        """None when the code is accepted (and spent), else the reason for the audit log."""
        if kind == rules.TOTP and self.totp is not None:
            verdict = self.totp.check(user_id, value)
            if verdict == ACCEPTED_CODE:
                self.audit.emit("mfa_used", method="totp", user_id=user_id)
                return None
            return CODE_REASONS.get(verdict, verdict)
        if kind == rules.RECOVERY and self.recovery is not None:
            if self.recovery.use(user_id, value):
                self.audit.emit("recovery_code_used", user_id=user_id, codes_left=self.recovery.remaining(user_id))
                return None
            return "wrong_code"
        return "malformed_code"

    def set_up_step(self, state: FlowState, secret: str, code: str, *,
                    before_enroll: Callable[[], object] | None = None) -> Failed | SignedIn:
        """An account that must have a second factor (``mfa.required``) and has none confirms the
        authenticator app it just set up (``secret``, kept sealed in its session) with a first
        code; the factor is stored and the sign-in finishes with both methods."""
        account = self.accounts.by_id(state.account_id)
        if account is None or account.disabled or not state.set_up or self.totp is None:
            return Failed("unknown_user" if account is None else "disabled")
        result = self.add_totp(account.id, secret, code, before_enroll=before_enroll)
        if isinstance(result, Failed):
            return result
        self._end(state)
        passed = FlowState(state.account_id, state.remember, state.device, (*state.passed, ONE_TIME_CODE))
        return self._finish(account, passed)

    def add_totp(self, user_id: int, secret: str, code: str, *,
                 before_enroll: Callable[[], object] | None = None) -> Confirmed | Failed:
        """Store the authenticator-app ``secret`` for the account once ``code`` shows the app
        produces its codes (that code's step counts as used). ``Failed("bad_code")`` for a code
        that does not match, ``Failed("already_set_up")`` when another request stored one first.
        ``before_enroll`` runs once the code is right, before the factor is stored: the caller's
        sign-out of every other session, so that no session that was live when the factor appeared
        can make recovery codes for it (:meth:`authsvc.core.recovery_codes.RecoveryCodes.generate`)."""
        digits = rules.totp_code(code)
        if self.totp is None:
            return Failed("already_set_up")
        step = first_step(secret, digits, self.clock()) if digits is not None else None
        if step is None:
            self.audit.emit("mfa_failed", reason="wrong_code" if digits else "malformed_code", method="totp_set_up",
                            user_id=user_id)
            return Failed(BAD_CODE)
        if before_enroll is not None:
            before_enroll()
        if not self.totp.enroll(user_id, secret, step):
            return Failed("already_set_up")
        self.audit.emit("mfa_added", method="totp", user_id=user_id)
        account = self.accounts.by_id(user_id)
        return Confirmed(account)  # type: ignore[arg-type]

    def confirm_password(self, account: Account, password: str) -> Confirmed | Refused | Failed:
        """Check a signed-in user's current password before a password change.

        It goes through the login throttle's anonymous bucket with its gate held, so a stolen
        session is no faster an oracle for the password than the login form, and parallel changes
        cannot overrun the count. A password too long to be anyone's counts as a wrong one, found
        without argon2. Raises what :meth:`attempt` raises.
        """
        return self._confirm(account, password, step_up=False)

    def reauthenticate(self, account: Account, password: str) -> Confirmed | Refused | Failed:
        """Step-up: a signed-in user re-enters the password before a sensitive change (adding or
        removing a factor, new recovery codes) once the last authentication is older than
        ``mfa.step_up_seconds``. The same check, throttle and gate as :meth:`confirm_password`."""
        return self._confirm(account, password, step_up=True)

    def _confirm(self, account: Account, password: str, *, step_up: bool) -> Confirmed | Refused | Failed:
        password = normalize_password(password)
        with self.throttle.attempt(account.username_key, None) as attempt:
            if not attempt.verdict.allowed:
                self.audit.emit("step_up_throttled" if step_up else "password_change_throttled",
                                reason=attempt.verdict.reason)
                return Refused(attempt.verdict.reason, attempt.verdict.retry_after)
            correct = len(password) <= self.max_password_length and \
                self.hasher.verify(account.password_hash, password, anonymous=False).ok  # signed in
            if correct:
                attempt.record_confirmation()
            else:
                attempt.record_failure()
        if not correct:
            self.audit.emit("step_up_failed" if step_up else "password_change_failed", reason="bad_current_password")
            return Failed("bad_current_password")
        return Confirmed(account)
