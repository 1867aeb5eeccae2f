"""Signed values: one place that says which keys and which digest sign what.

All signing uses HMAC-SHA-256 (Flask's default for its session is SHA-1, ASVS appendix C "legacy"),
with the current key plus ``AUTHSVC_SECRET_KEY_FALLBACKS`` accepted for verification during a key
rotation, and a distinct salt per purpose so a value made for one cookie is refused as another.
"""

from __future__ import annotations

import hashlib

from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

SIGNER = {"key_derivation": "hmac", "digest_method": hashlib.sha256}


def keys(secret: str, fallbacks: tuple[str, ...]) -> list[str]:
    """itsdangerous key list: oldest first, the signing key last."""
    return [*reversed(fallbacks), secret]


def serializer(secret: str, fallbacks: tuple[str, ...], salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(keys(secret, fallbacks), salt=salt, signer_kwargs=SIGNER)


def timed_serializer(secret: str, fallbacks: tuple[str, ...], salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys(secret, fallbacks), salt=salt, signer_kwargs=SIGNER)


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, signed with HMAC-SHA-256 under authsvc's own salt."""

    salt = "authsvc.session"
    digest_method = staticmethod(hashlib.sha256)
