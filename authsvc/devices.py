"""Known-device cookies (OWASP "device cookies"): proof that this browser logged in to this
account before, so its attempts are counted apart from an attacker's.

The cookie is signed with the secret key under its own salt and names the account by hash, so it
is useless for another account and cannot be forged. It carries no session and grants nothing by
itself: it only selects the throttle bucket.
"""

from __future__ import annotations

import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from authsvc.throttle import account_hash


class DeviceCookies:
    def __init__(self, serializer: URLSafeTimedSerializer, lifetime_days: int) -> None:
        self.serializer = serializer
        self.max_age = lifetime_days * 86400

    def issue(self, username_key: str, device_id: str | None = None) -> str:
        return self.serializer.dumps({"a": account_hash(username_key), "d": device_id or secrets.token_urlsafe(16)})

    def device_for(self, cookie: str | None, username_key: str) -> str | None:
        """The device id if ``cookie`` is a valid device cookie for this account, else None."""
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
