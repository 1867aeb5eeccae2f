"""The login flow: from a username and a password to an outcome a view turns into a response.

No Flask and no Werkzeug here (a test imports this module alone and checks): the view reads the
form and the cookies and hands plain values in; :class:`LoginService` decides, records what
happened (throttle counts, audit events, the known-device registry) and returns one outcome:

* :class:`Refused`: no password was checked (throttled, or a password too long to be anyone's);
* :class:`Failed`: the password was checked and the sign-in failed. The user is told only that
  the username or password is not correct, whatever ``reason`` says;
* :class:`SignedIn`: the password was right; the view starts the session and sets the cookies
  the outcome carries;
* :class:`StepRequired`: the password was right, but another step must pass before a session
  starts (the second factors of issue 12). Nothing returns it yet.

Its collaborators are built once, in ``create_app``, and handed in: the account store, the hasher,
the throttle, the known-device registry and the device-cookie signer, and the audit sink. It keeps
no clock: the throttle and the registry keep time with theirs, and the audit sink with its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from authsvc.rules.passwords import normalize_password
from authsvc.rules.usernames import normalize_username

if TYPE_CHECKING:
    from authsvc.core.accounts import Account, AccountStore
    from authsvc.core.devices import DeviceCookies, DeviceRegistry
    from authsvc.core.hashing import Hasher
    from authsvc.core.throttle import Throttle

TOO_LONG = "password_too_long"


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


@dataclass(frozen=True)
class FlowState:
    """Where a sign-in stands between two steps, for the step that follows (issue 12's second
    factors will return it in :class:`StepRequired`, keep it in the signed session between the two
    requests, and hand it back with the code).

    ``passed`` names the steps already passed, in order (the password is always the first); the
    rest is what the last step needs to finish as :class:`SignedIn` would have: the account, the
    remember-me choice, and the known device the password step used (its id: not a credential, the
    browser's own cookie carries it). No password and no hash is ever kept here.
    """

    account_id: int
    remember: bool
    device: str | None
    passed: tuple[str, ...] = ("password",)


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
                 max_username_length: int, max_password_length: int) -> None:
        self.accounts = accounts
        self.hasher = hasher
        self.throttle = throttle
        self.known_devices = known_devices
        self.device_cookies = device_cookies
        self.audit = audit
        self.max_username_length = max_username_length
        self.max_password_length = max_password_length

    def attempt(self, username: str, password: str, *, device: str | None = None,
                remember: bool = False) -> Outcome:
        """Sign in with ``username`` and ``password`` as typed (the view has bounded their size and
        refused what is not stream-safe: :func:`authsvc.web.forms.field`).

        ``device`` is the id in a device cookie validly signed for this account
        (:func:`authsvc.web.limiter.signed_device`), or None; it counts as a known device only while the
        account's registry holds it. ``remember`` is the remember-me choice, carried to the outcome.

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
            device_id = self.known_devices.remember(account.id, known)  # the same id, or a new one (cap: LRU out)
            cookie = self.device_cookies.issue(key, device_id) if device_id is not None else None
        # Recorded here, once the password step is done; with a second step it moves to that step.
        self.audit.emit("login_success", remembered=remember, known_device=known is not None, user_id=account.id)
        return SignedIn(account, remember, known is not None, cookie)

    def confirm_password(self, account: Account, password: str) -> Confirmed | Refused | Failed:
        """Check a signed-in user's current password before a password change.

        It goes through the login throttle's anonymous bucket with its gate held, so a stolen
        session is no faster an oracle for the password than the login form, and parallel changes
        cannot overrun the count. A password too long to be anyone's counts as a wrong one, found
        without argon2. Raises what :meth:`attempt` raises.
        """
        password = normalize_password(password)
        with self.throttle.attempt(account.username_key, None) as attempt:
            if not attempt.verdict.allowed:
                self.audit.emit("password_change_throttled", reason=attempt.verdict.reason)
                return Refused(attempt.verdict.reason, attempt.verdict.retry_after)
            correct = len(password) <= self.max_password_length and \
                self.hasher.verify(account.password_hash, password, anonymous=False).ok  # signed in
            if not correct:
                attempt.record_failure()
        if not correct:
            self.audit.emit("password_change_failed", reason="bad_current_password")
            return Failed("bad_current_password")
        return Confirmed(account)
