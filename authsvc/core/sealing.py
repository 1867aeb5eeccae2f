"""Secrets the service must read back, sealed at rest: AES-256-GCM under a key derived from the
secret key.

Signing (:mod:`authsvc.core.signing`) proves a value was made here; some values must also stay
unreadable to whoever reads the database or a cookie: an authenticator app's secret is a
password-equivalent the service has to use again at every sign-in, so it cannot be hashed.

Each purpose derives its own 256-bit key with HKDF-SHA-256 from ``AUTHSVC_SECRET_KEY`` under its
own ``info`` label, so a key for one purpose opens nothing of another's, and none of them is the
signing key. Every sealed value binds a ``context`` (the account it belongs to) as associated
data: a sealed secret copied to another account's row does not open.

Key rotation works as for signing: the current key seals, the current key and then each of
``AUTHSVC_SECRET_KEY_FALLBACKS`` open. :meth:`Sealer.open` says when a fallback key opened a value,
so the caller seals it again under the current key (``authsvc mfa reseal`` does it for every
value at once, before the old key leaves the fallbacks).

Format: ``0x01 | 12-byte random nonce | ciphertext and 16-byte tag``. Random 96-bit nonces are
safe for far more values than one service seals under one key (NIST SP 800-38D: 2^32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16


def derive_key(secret: str, info: bytes) -> bytes:
    """The 256-bit key for ``info``'s purpose, from the secret key (HKDF-SHA-256, RFC 5869). The
    secret key is already high-entropy (``authsvc check`` refuses a weak one), so no salt is needed."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Opened:
    """A value :meth:`Sealer.open` could open. ``stale``: a fallback key opened it; seal it again."""

    plaintext: bytes
    stale: bool


class Sealer:
    """Seal and open values of one purpose (``info``, e.g. ``b"authsvc.totp-secret.v1"``)."""

    def __init__(self, secret: str, fallbacks: tuple[str, ...], info: bytes) -> None:
        self._current = AESGCM(derive_key(secret, info))
        self._fallbacks = tuple(AESGCM(derive_key(key, info)) for key in fallbacks)

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._current.encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> Opened | None:
        """The plaintext, or None when no key opens it for ``context`` (another key, another
        account, a changed byte, not a sealed value at all)."""
        if not isinstance(sealed, (bytes, bytearray, memoryview)):
            return None
        sealed = bytes(sealed)
        if len(sealed) < 1 + NONCE_BYTES + TAG_BYTES or sealed[:1] != VERSION:
            return None
        nonce, body = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        for index, aead in enumerate((self._current, *self._fallbacks)):
            try:
                return Opened(aead.decrypt(nonce, body, context), stale=index > 0)
            except InvalidTag:
                continue
        return None
