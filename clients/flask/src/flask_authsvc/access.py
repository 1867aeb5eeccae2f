"""What ``@authsvc.required(groups=..., mfa=...)`` decides: a pure function of the identity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from flask_authsvc.identity import Identity

ALLOWED: Final = "allowed"
LOGIN: Final = "login"          # nobody signed in: off to authsvc's login page
FORBIDDEN: Final = "forbidden"  # signed in, in none of the groups: 403 (signing in again changes nothing)
STEP_UP: Final = "step_up"      # signed in without a second factor: the step-up response


def access_verdict(identity: Identity | None, *, groups: Sequence[str] = (), mfa: bool = False) -> str:
    """``groups``: the user must be in at least one of them (none given: no group needed).
    ``mfa``: authsvc must have judged the sign-in multi-factor (``mfa`` in ``X-Auth-Methods``).
    A missing group is decided before a missing factor: a step-up would not add a group."""
    if identity is None:
        return LOGIN
    if groups and not identity.in_any_group(groups):
        return FORBIDDEN
    if mfa and not identity.mfa:
        return STEP_UP
    return ALLOWED
