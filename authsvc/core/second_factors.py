"""Which second factors an account has: the one question the login flow asks about them.

Each kind of factor is a *source* with two methods, ``count(user_id)`` and ``remove_all(user_id)``;
:class:`SecondFactors` holds one source per kind. Today those are ``"totp"``
(:class:`authsvc.core.totp.TotpStore`) and ``"passkey"`` (:class:`authsvc.core.passkeys.PasskeyStore`,
counted even where the settings give no relying party to use them with). Recovery codes are not a kind: they stand in for a factor during the second
step, but an account with only recovery codes has no second step to take.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

TOTP = "totp"
PASSKEY = "passkey"


class FactorSource(Protocol):
    def count(self, user_id: int) -> int: ...

    def remove_all(self, user_id: int) -> int: ...


class SecondFactors:
    """One source per kind of second factor, asked in the order given."""

    def __init__(self, sources: Mapping[str, FactorSource]) -> None:
        self.sources = dict(sources)

    def counts(self, user_id: int) -> dict[str, int]:
        """How many of each kind the account has (0 included), for the CLI and the account page."""
        return {kind: source.count(user_id) for kind, source in self.sources.items()}

    def kinds(self, user_id: int) -> frozenset[str]:
        """The kinds the account has at least one of; empty: no second step."""
        return frozenset(kind for kind, count in self.counts(user_id).items() if count)

    def remove_all(self, user_id: int) -> int:
        """Remove every factor of every kind (``authsvc user mfa-reset``); how many went."""
        return sum(source.remove_all(user_id) for source in self.sources.values())
