"""Which authentication methods a session records, as RFC 8176 "amr" values.

A session keeps the methods its sign-in used; apps read them in ``X-Auth-Methods`` (``/auth/verify``)
and ``methods`` (``/api/v1/session``). The values are RFC 8176's:

* ``pwd``: the password;
* ``otp``: a one-time code: an authenticator app's (TOTP) or a recovery code (RFC 8176 has no
  value for a lookup secret; both are single-use codes from something the user holds);
* ``hwk`` / ``swk``: a proof of possession of a hardware- or software-secured key (a passkey);
* ``user``: a user-presence test (WebAuthn asks one of every passkey assertion); no factor by itself;
* ``mfa``: more than one factor was used (something known and something held or inherent), or a
  passkey whose authenticator verified its user (a PIN or biometric on the authenticator: the key is
  multi-factor on its own; :func:`authsvc.rules.passkeys.passkey_methods` says so with ``mfa``).

``mfa`` is computed again whenever a list is recorded or read back (:func:`session_methods`): two
factors earn it, and the only claim of it taken as given is a key's (``hwk``/``swk`` with ``mfa``),
so a list without a key cannot claim it without the factors that earn it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

ONE_TIME_CODE: Final = "otp"
HARDWARE_KEY: Final = "hwk"
SOFTWARE_KEY: Final = "swk"
USER_PRESENT: Final = "user"
MULTI_FACTOR: Final = "mfa"
# What a sign-in with the password alone records (and what sessions from before methods were kept say).
PASSWORD_ONLY: Final = ("pwd",)

# The factor each RFC 8176 value proves; None for values that are no factor by themselves.
FACTOR: Final[dict[str, str | None]] = {
    "pwd": "knowledge", "pin": "knowledge", "kba": "knowledge",
    "otp": "possession", "hwk": "possession", "swk": "possession", "sc": "possession",
    "sms": "possession", "tel": "possession", "pop": "possession",
    "fpt": "inherence", "face": "inherence", "iris": "inherence", "retina": "inherence", "vbm": "inherence",
    "user": None, "geo": None, "rba": None, "mca": None, "wia": None, "mfa": None,
}
KEYS: Final = frozenset({HARDWARE_KEY, SOFTWARE_KEY})
MAX_STORED: Final = 128  # longest stored list read (the column is 64 characters; anything longer is not ours)


def is_multi_factor(methods: Iterable[str]) -> bool:
    """Two different factors, or a key whose authenticator verified its user (``hwk``/``swk``
    given together with ``mfa``)."""
    used = set(methods)
    factors = {FACTOR.get(m) for m in used} - {None}
    return len(factors) >= 2 or bool(used & KEYS and MULTI_FACTOR in used)


def session_methods(used: Iterable[str]) -> tuple[str, ...]:
    """The methods a session records for a sign-in that ``used`` these (in order): each known value
    once, in the order first used, then ``mfa`` when :func:`is_multi_factor`. Unknown values are
    dropped, and so is a given ``mfa`` that nothing earns."""
    used = list(used)
    seen: list[str] = []
    for method in used:
        if method in FACTOR and method != MULTI_FACTOR and method not in seen:
            seen.append(method)
    if is_multi_factor([*seen, *(m for m in used if m == MULTI_FACTOR)]):
        seen.append(MULTI_FACTOR)
    return tuple(seen)


def format_methods(methods: Iterable[str]) -> str:
    """As stored and as sent in ``X-Auth-Methods``: comma-separated, no spaces."""
    return ",".join(methods)


def parse_methods(stored: object) -> tuple[str, ...]:
    """A stored list back into :func:`session_methods`' form. What is not a known value is
    dropped, ``mfa`` is derived again, and anything but a short string reads as no methods."""
    if not isinstance(stored, str) or len(stored) > MAX_STORED:
        return ()
    return session_methods(stored.split(","))
