"""Signing an account out everywhere: its server-side sessions, its remember-me tokens and its
known devices, ended together.

Every event that must take away an account's ways back in uses this one place: a password change
(account page, ``authsvc user passwd``), ``authsvc user disable``, ``authsvc sessions revoke``, a
replayed remember-me token (theft), ``authsvc user mfa-reset``, and a second-factor change (ASVS
V7.4.3). They differ only in what they keep, which the caller says:

* ``keep_session``: the session making the change stays (the account page's own browser);
* ``keep_remember``: that session's remember-me token stays too (a factor change: the password the
  token was issued under is unchanged), else every token ends (a password change: this browser's
  was issued under the old password);
* ``forget_devices``: known devices are forgotten (every case but the second factors, where the
  password a device cookie buys attempts at is what it was).

The account's sign-out generation goes up first (:meth:`AccountStore.next_sign_out_generation`):
a restore or sign-in that read the credential before, and writes its session or successor token
after the revocations below, stamps it with the old generation, which no longer counts. The
revocations then end what exists (and tell the verify cache and the back-channel sender).

The stores report the ended sessions themselves (verify cache, back-channel logout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authsvc.core.accounts import AccountStore
from authsvc.core.devices import DeviceRegistry
from authsvc.core.remember import RememberStore
from authsvc.core.sessions import SessionStore

# The revoke_reason of the sessions and remember-me tokens a second-factor change ends.
FACTOR_CHANGED = "factor_changed"


@dataclass(frozen=True)
class SignedOut:
    sessions: int
    remembered: int  # remember-me cookies that can no longer restore a session
    generation: int = field(default=0, compare=False)  # the account's sign-out generation after it


class AccountSignOut:
    def __init__(self, accounts: AccountStore, sessions: SessionStore, remember: RememberStore,
                 known_devices: DeviceRegistry) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.remember = remember
        self.known_devices = known_devices

    def everywhere(self, user_id: int, reason: str, *, keep_session: int | None = None,
                   keep_remember: bool = False, forget_devices: bool = True) -> SignedOut:
        """End the account's sessions and remember-me tokens (``reason`` is their revoke_reason),
        but what the caller keeps; forget its known devices unless told not to."""
        generation = self.accounts.next_sign_out_generation(user_id, keep_session=keep_session,
                                                            keep_remember=keep_remember)
        sessions = self.sessions.revoke_all(user_id, reason, except_id=keep_session)
        tokens = self.remember.revoke_all(user_id, reason,
                                          except_session_id=keep_session if keep_remember else None)
        if forget_devices:
            self.known_devices.forget_all(user_id)
        return SignedOut(sessions, tokens, generation)
