"""Signed values: one place that says which keys and which digest sign what.

All signing uses HMAC-SHA-256 (Flask's default for its session is SHA-1, ASVS appendix C "legacy"),
with the current key plus ``AUTHSVC_SECRET_KEY_FALLBACKS`` accepted for verification during a key
rotation, and a distinct salt per purpose so a value made for one cookie is refused as another.
"""

from __future__ import annotations

import hashlib

from itsdangerous import (
    BadData,
    Signer,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes

SIGNER = {"key_derivation": "hmac", "digest_method": hashlib.sha256}


class _CanonicalSignature:
    """Accept a signature only in the exact text itsdangerous writes. Its base64 decoder skips
    characters outside the alphabet, extra padding and the unused low bits of the last character,
    so without this ``sig==``, ``sig`` + a non-ASCII character, or ``sig`` with its last letter
    nudged would all verify: a changed cookie would still authenticate (ASVS 9.1.1)."""

    def verify_signature(self, value, sig) -> bool:
        sig = want_bytes(sig)
        try:
            canonical = base64_encode(base64_decode(sig)) == sig
        except BadData:
            return False
        return canonical and super().verify_signature(value, sig)


class StrictSigner(_CanonicalSignature, Signer):
    pass


class StrictTimestampSigner(_CanonicalSignature, TimestampSigner):
    pass


def keys(secret: str, fallbacks: tuple[str, ...]) -> list[str]:
    """itsdangerous key list: oldest first, the signing key last."""
    return [*reversed(fallbacks), secret]


def serializer(secret: str, fallbacks: tuple[str, ...], salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(keys(secret, fallbacks), salt=salt, signer=StrictSigner, signer_kwargs=SIGNER)


def timed_serializer(secret: str, fallbacks: tuple[str, ...], salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(keys(secret, fallbacks), salt=salt, signer=StrictTimestampSigner,
                                  signer_kwargs=SIGNER)
