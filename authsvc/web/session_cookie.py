"""Flask's session cookie, signed the way authsvc signs every cookie (:mod:`authsvc.core.signing`)."""

from __future__ import annotations

import hashlib

from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from authsvc.core.signing import StrictTimestampSigner


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, signed with HMAC-SHA-256 under authsvc's own salt."""

    salt = "authsvc.session"
    digest_method = staticmethod(hashlib.sha256)

    def get_signing_serializer(self, app) -> URLSafeTimedSerializer | None:
        """Flask's own serializer for its session, built here with :class:`StrictTimestampSigner`
        through itsdangerous' public arguments (not by replacing ``.signer`` on a built one)."""
        if not app.secret_key:
            return None
        keys = [*app.config["SECRET_KEY_FALLBACKS"], app.secret_key]  # the last one signs
        return URLSafeTimedSerializer(keys, salt=self.salt, serializer=self.serializer,
                                      signer=StrictTimestampSigner,
                                      signer_kwargs={"key_derivation": self.key_derivation,
                                                     "digest_method": self.digest_method})
