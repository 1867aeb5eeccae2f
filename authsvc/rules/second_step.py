"""The second step's decisions: what a typed code is, whether a TOTP time step may be accepted,
whether a pending sign-in still stands, and whether a change needs a fresh authentication.

Pure functions of plain values (strings, numbers, times passed in), standard library only. The
stores (:mod:`authsvc.core.totp`, :mod:`authsvc.core.recovery_codes`) and the login flow
(:mod:`authsvc.core.login_flow`) do the I/O around them.

Codes (RFC 6238 with what every authenticator app supports): 6 digits, 30-second steps, HMAC-SHA-1,
one step of clock drift either way. A code is accepted once per account: only a step later than
the last accepted one counts (:func:`step_verdict`), so the same code twice, or an older code after
a newer one, is refused however fast it comes back.

Recovery codes: 24 characters of Crockford's base32 (120 bits from the CSPRNG: over the 112 bits at
which ASVS 5.0 V6.5.2 lets a lookup secret be stored with a plain SHA-256), shown in six groups of
four. Typing is forgiving where it cannot help a guesser: case, spaces and hyphens do not matter,
and Crockford's look-alikes (``i`` and ``l`` for ``1``, ``o`` for ``0``) read as what they look like.
"""

from __future__ import annotations

import math
from typing import Final

TOTP_DIGITS: Final = 6
TOTP_PERIOD_SECONDS: Final = 30
TOTP_DRIFT_STEPS: Final = 1          # RFC 6238 section 5.2: at most one step either way

# Longer than any code typed with separators: refused before anything looks at it.
MAX_CODE_INPUT: Final = 64

RECOVERY_ALPHABET: Final = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32: no i, l, o, u
RECOVERY_LENGTH: Final = 24          # 24 x 5 = 120 bits
RECOVERY_GROUP: Final = 4
_LOOK_ALIKES = str.maketrans({"i": "1", "l": "1", "o": "0"})
_SEPARATORS = str.maketrans({" ": None, "-": None})  # ASCII space and hyphen-minus only

# The kinds :func:`read_code` tells apart.
TOTP: Final = "totp"
RECOVERY: Final = "recovery"
MALFORMED: Final = "malformed"

# :func:`step_verdict`'s answers.
ACCEPTED: Final = "accepted"
REUSED: Final = "reused"
OUT_OF_WINDOW: Final = "out_of_window"

# :func:`pending_verdict`'s answers.
LIVE: Final = "live"
BINDING_CHANGED: Final = "binding_changed"
EXPIRED: Final = "expired"
CHANGED_SINCE: Final = "password_changed"  # the password, since the password step
FACTOR_ADDED: Final = "factor_added"


def _compact(raw: object) -> str | None:
    """``raw`` without the spaces and hyphens people type between groups; None for what is not a
    string of a plausible length."""
    if not isinstance(raw, str) or len(raw) > MAX_CODE_INPUT:
        return None
    return raw.translate(_SEPARATORS)


def totp_code(raw: object) -> str | None:
    """The six ASCII digits of a typed authenticator code, or None.

    Only ``0``-``9``: full-width digits, other scripts' digits, superscripts and control characters
    are refused, not normalised (no authenticator app shows them, and ``int()`` would accept
    several)."""
    code = _compact(raw)
    if code is None or len(code) != TOTP_DIGITS or not (code.isascii() and code.isdigit()):
        return None
    return code


def recovery_code(raw: object) -> str | None:
    """The canonical form of a typed recovery code (24 lower-case characters of
    :data:`RECOVERY_ALPHABET`, no separators), or None."""
    code = _compact(raw)
    if code is None or not code.isascii():
        return None
    code = code.lower().translate(_LOOK_ALIKES)
    if len(code) != RECOVERY_LENGTH or any(c not in RECOVERY_ALPHABET for c in code):
        return None
    return code


def format_recovery_code(canonical: str) -> str:
    """A canonical recovery code as shown once to its owner: groups of four joined by hyphens."""
    return "-".join(canonical[i:i + RECOVERY_GROUP] for i in range(0, len(canonical), RECOVERY_GROUP))


def read_code(raw: object) -> tuple[str, str]:
    """What the one ``code`` field of the second step holds: ``("totp", digits)``,
    ``("recovery", canonical)`` or ``("malformed", "")``. The two formats cannot be confused: a
    recovery code is 24 characters long, an authenticator code 6."""
    digits = totp_code(raw)
    if digits is not None:
        return TOTP, digits
    canonical = recovery_code(raw)
    if canonical is not None:
        return RECOVERY, canonical
    return MALFORMED, ""


def time_step(now: float, period: int = TOTP_PERIOD_SECONDS) -> int | None:
    """RFC 6238's time step ``T = floor(now / period)``, or None for a time that has none
    (negative, infinite, NaN)."""
    if not (isinstance(now, (int, float)) and math.isfinite(now) and now >= 0) or period < 1:
        return None
    return math.floor(now / period)


def candidate_steps(now: float, period: int = TOTP_PERIOD_SECONDS,
                    drift: int = TOTP_DRIFT_STEPS) -> tuple[int, ...]:
    """The steps a code typed at ``now`` (the server's clock: ASVS V6.5.8) may belong to, oldest
    first: the current one and ``drift`` either side."""
    current = time_step(now, period)
    if current is None:
        return ()
    return tuple(range(max(0, current - drift), current + drift + 1))


def step_verdict(step: int, last_step: int, now: float, period: int = TOTP_PERIOD_SECONDS,
                 drift: int = TOTP_DRIFT_STEPS) -> str:
    """May a code that matched ``step`` sign in, when ``last_step`` is the account's last accepted
    step? :data:`ACCEPTED` only for a step within ``drift`` of now and later than ``last_step``;
    :data:`REUSED` for one at or before ``last_step`` (this code, or an older one, was used: on any
    instance, since ``last_step`` is shared); :data:`OUT_OF_WINDOW` otherwise."""
    current = time_step(now, period)
    if current is None or not abs(step - current) <= drift:
        return OUT_OF_WINDOW
    if step <= last_step:
        return REUSED
    return ACCEPTED


def pending_verdict(started_at: float, now: float, lifetime_seconds: float, bound_to: str, binding: str) -> str:
    """Does a sign-in waiting for its second step still stand? :data:`LIVE`, or why not:
    :data:`BINDING_CHANGED` (presented by another client than the one that passed the password:
    the same binding as strong session protection) or :data:`EXPIRED` (older than
    ``lifetime_seconds``, or started implausibly far in the future; NaN counts as expired)."""
    if not bound_to or bound_to != binding:
        return BINDING_CHANGED
    if not (now - started_at < lifetime_seconds and started_at - now < lifetime_seconds):
        return EXPIRED
    return LIVE


def account_verdict(password_changed_at: float, started_at: float, set_up: bool, has_factor: bool) -> str:
    """Does the account still stand behind a sign-in waiting for its second step? :data:`LIVE`, or
    why not: :data:`CHANGED_SINCE` (the password that passed the first step is not the account's
    any more: its owner or an admin changed it since, and whoever still has the old one must not
    finish) or :data:`FACTOR_ADDED` (a flow setting up the account's first factor, for an account
    that has one now: the factor its owner added decides, not the one this flow would add).
    Strictly after: an account created, or a password set, in the same instant as the sign-in
    started is the password that passed."""
    if not password_changed_at <= started_at:  # NaN: changed, as far as anyone can tell
        return CHANGED_SINCE
    if set_up and has_factor:
        return FACTOR_ADDED
    return LIVE


def step_up_due(authenticated_at: float | None, now: float, window_seconds: float) -> bool:
    """Must the user prove a factor again before a sensitive change (adding or removing a factor,
    new recovery codes)? Yes unless this session authenticated within ``window_seconds``. A
    session restored from a remember-me cookie has no ``authenticated_at``: always due."""
    if authenticated_at is None:
        return True
    return not (now - authenticated_at < window_seconds and authenticated_at - now < window_seconds)


# A passkey refused in the second step for one of these reasons may be an attack on this sign-in
# (an assertion made for another origin or relying party, for another challenge, or another user's
# credential): the pending flow ends rather than waiting for another try. The other reasons (a
# malformed answer, a missing PIN, an unknown or replayed credential) count like a wrong code.
PASSKEY_TAMPERING: Final = frozenset({"origin", "rp_id", "challenge", "user_mismatch"})


def passkey_ends_flow(reason: str) -> bool:
    """Does a passkey refused for ``reason`` (a :class:`authsvc.core.passkeys.PasskeyFailed`
    reason) end the pending second step?"""
    return reason in PASSKEY_TAMPERING
