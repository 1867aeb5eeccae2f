"""Known devices (OWASP "device cookies"): proof that this browser logged in to this account
before, so its attempts are counted apart from an attacker's.

Two halves, both needed for a browser to count as known:

* :class:`DeviceCookies`: the cookie, signed with the secret key under its own salt, naming the
  account by hash and carrying a random device id. It cannot be forged and is useless for another
  account. It carries no session and grants nothing by itself.
* :class:`DeviceRegistry`: the server's list of each account's device ids (table
  ``known_devices``, ids stored as SHA-256 digests), at most ``throttle.max_devices_per_account``
  per account; registering one more forgets the least recently used (:func:`evictions`). A cookie
  whose id is not (or no longer) registered is an anonymous login like any other.

Without the registry every successful login minted a new known device, and one account holder
could hold any number of them, each a separate budget past the per-client limit (security review
of December 2026, finding 1). The cap bounds what one account's devices can cost; the per-client
and per-device limits (:mod:`authsvc.web.limiter`) bound each of them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.engine import Engine

from authsvc.core.models import known_devices, users
from authsvc.core.throttle import account_hash


class DeviceCookies:
    def __init__(self, serializer: URLSafeTimedSerializer, lifetime_days: int) -> None:
        self.serializer = serializer
        self.max_age = lifetime_days * 86400

    def issue(self, username_key: str, device_id: str) -> str:
        return self.serializer.dumps({"a": account_hash(username_key), "d": device_id})

    def device_for(self, cookie: str | None, username_key: str) -> str | None:
        """The device id if ``cookie`` is a valid device cookie for this account, else None.
        Valid is not known: :meth:`DeviceRegistry.is_known` says whether the id is registered."""
        if not cookie or len(cookie) > 512:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except (BadSignature, ValueError, UnicodeError, TypeError):
            return None
        if not isinstance(data, dict) or data.get("a") != account_hash(username_key):
            return None
        device = data.get("d")
        return device if isinstance(device, str) and 16 <= len(device) <= 32 else None


def new_device_id() -> str:
    return secrets.token_urlsafe(16)


def device_digest(device_id: str) -> bytes:
    """What the registry stores for a device id (never the id itself)."""
    return hashlib.sha256(b"authsvc-device\0" + device_id.encode("utf-8", "surrogatepass")).digest()


def evictions(devices: Sequence[tuple[int, float]], cap: int) -> list[int]:
    """Which of an account's registered devices, as ``(row id, last used)``, to forget so that at
    most ``cap`` remain: the least recently used; between equal times, the older row (lower id).
    With ``cap`` 0 every one goes."""
    newest_first = sorted(devices, key=lambda d: (d[1], d[0]), reverse=True)
    return sorted(row_id for row_id, _ in newest_first[max(0, cap):])


_KNOWN = (sa.select(known_devices.c.id)
          .select_from(known_devices.join(users, users.c.id == known_devices.c.user_id))
          .where(users.c.username_key == sa.bindparam("key"),
                 known_devices.c.device_hash == sa.bindparam("digest"),
                 known_devices.c.last_used_at > sa.bindparam("since")))


class DeviceRegistry:
    """The server-side half of known devices. ``clock`` is the app's (tests move it)."""

    def __init__(self, engine: Engine, clock: Callable[[], float], max_per_account: int,
                 lifetime_days: int) -> None:
        self.engine = engine
        self.clock = clock
        self.max_per_account = max_per_account
        self.lifetime_seconds = lifetime_days * 86400

    def is_known(self, username_key: str, device_id: str) -> bool:
        """Is ``device_id`` registered to the account ``username_key`` names (and used within the
        cookie lifetime)? One indexed read; only asked for a cookie whose signature is valid."""
        with self.engine.connect() as conn:
            row = conn.execute(_KNOWN, {"key": username_key, "digest": device_digest(device_id),
                                        "since": self.clock() - self.lifetime_seconds}).first()
        return row is not None

    def remember(self, user_id: int, device_id: str | None) -> str | None:
        """After a successful login: the device id for the browser's cookie, registered.

        A known device (``device_id`` given and registered) keeps its id; anything else gets a new
        one, and the account's least recently used devices beyond the cap are forgotten. Returns
        None when the cap is 0 (no known devices at all)."""
        if self.max_per_account == 0:
            return None
        now = self.clock()
        if device_id is not None and self._touch(user_id, device_id, now):
            return device_id
        device_id = new_device_id()
        with self.engine.begin() as conn:
            # The user's row, locked on PostgreSQL (SQLite serialises writers anyway), so two
            # parallel registrations cannot both stay under the cap and together exceed it.
            conn.execute(sa.select(users.c.id).where(users.c.id == user_id).with_for_update())
            conn.execute(known_devices.insert().values(user_id=user_id, device_hash=device_digest(device_id),
                                                       created_at=now, last_used_at=now))
            rows = conn.execute(sa.select(known_devices.c.id, known_devices.c.last_used_at)
                                .where(known_devices.c.user_id == user_id)).all()
            stale = now - self.lifetime_seconds
            gone = [r.id for r in rows if r.last_used_at <= stale]
            gone += evictions([(r.id, r.last_used_at) for r in rows if r.last_used_at > stale], self.max_per_account)
            if gone:
                conn.execute(known_devices.delete().where(known_devices.c.id.in_(gone)))
        return device_id

    def _touch(self, user_id: int, device_id: str, now: float) -> bool:
        """Mark a registered device used now; False if it is not registered (any more)."""
        with self.engine.begin() as conn:
            return conn.execute(known_devices.update().where(
                known_devices.c.user_id == user_id, known_devices.c.device_hash == device_digest(device_id),
            ).values(last_used_at=now)).rowcount > 0

    def forget_all(self, user_id: int) -> int:
        """Every device of the account stops being known (password change, disable, revoke all):
        whoever minted device cookies with the old password keeps no budget of its own."""
        with self.engine.begin() as conn:
            return conn.execute(known_devices.delete().where(known_devices.c.user_id == user_id)).rowcount

    def purge(self) -> int:
        """Delete every device unused for the cookie lifetime (no longer known: :meth:`is_known`
        ignores them), also of accounts that never sign in again (``authsvc sessions purge``)."""
        with self.engine.begin() as conn:
            return conn.execute(known_devices.delete().where(
                known_devices.c.last_used_at <= self.clock() - self.lifetime_seconds)).rowcount

    def count(self, user_id: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(known_devices)
                                .where(known_devices.c.user_id == user_id)).scalar_one()
