"""ID token signing keys: made, sealed at rest, rotated, published.

The private half is PKCS#8 DER sealed with AES-256-GCM under a key derived from the secret key
(:mod:`authsvc.core.sealing`, its own purpose label, the kid bound in as associated data), so a
copy of the database alone signs nothing. The newest key that is not retired signs; ``rotate``
makes a new one and retires the others, which stay in the JWKS until every ID token they signed
has expired (``retired_at + oidc.id_token_lifetime_seconds``), then drop out.

Only asymmetric algorithms exist here (ES256, RS256: the policy picks). A verifier given this JWKS
can never be talked into HS256 with the public key as the secret or into ``none``: the keys carry
their ``alg`` and ``use``, and tests/security/test_oidc_flow.py tries both.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.engine import Engine

from authsvc.core.models import oidc_signing_keys
from authsvc.core.sealing import Sealer

SEALING_INFO = b"authsvc.oidc-signing-key.v1"
ALGORITHMS = ("ES256", "RS256")


class SigningKeyUnavailable(RuntimeError):
    """The signing key does not open with the configured secret keys (the message says what to do).
    The token endpoint answers 503 ``temporarily_unavailable`` before a code is spent."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: object  # a cryptography private key
    created_at: float


def _generate(alg: str):
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unsupported ID token algorithm {alg!r}: ES256 or RS256")


def _public_jwk(private_key, alg: str, kid: str) -> dict:
    public = private_key.public_key()
    jwk = (ECKey if alg == "ES256" else RSAKey).import_key(public)
    data = jwk.as_dict(private=False)
    data.update({"kid": kid, "alg": alg, "use": "sig"})
    return data


class SigningKeys:
    def __init__(self, engine: Engine, sealer: Sealer, clock: Callable[[], float], *, alg: str,
                 id_token_lifetime: int) -> None:
        self.engine = engine
        self.sealer = sealer
        self.clock = clock
        self.alg = alg
        self.id_token_lifetime = id_token_lifetime

    def _add(self, conn, alg: str) -> str:
        kid = secrets.token_urlsafe(12)
        key = _generate(alg)
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        conn.execute(oidc_signing_keys.insert().values(
            kid=kid, alg=alg, private_key=self.sealer.seal(der, kid.encode("ascii")),
            public_jwk=json.dumps(_public_jwk(key, alg, kid), sort_keys=True), created_at=self.clock()))
        return kid

    def rotate(self) -> str:
        """A new key of the policy's algorithm signs from now on; the others are retired (still
        published until the ID tokens they signed have expired). Returns the new kid."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(oidc_signing_keys.update().where(oidc_signing_keys.c.retired_at.is_(None)).values(
                retired_at=now))
            return self._add(conn, self.alg)

    def ensure(self) -> None:
        """Make the first key when there is none, without opening any: the JWKS publishes the
        public halves (stored in clear) even when the private one does not open."""
        if self._newest() is None:
            with self.engine.begin() as conn:
                self._add(conn, self.alg)

    def current(self) -> SigningKey:
        """The signing key (made on first use when there is none). Fails closed when no configured
        secret key opens it (:class:`SigningKeyUnavailable`): ID tokens are never signed with
        anything else."""
        row = self._newest()
        if row is None:
            self.ensure()
            row = self._newest()
        opened = self.sealer.open(row.private_key, row.kid.encode("ascii"))
        if opened is None:
            raise SigningKeyUnavailable("the OpenID signing key does not open with AUTHSVC_SECRET_KEY or its fallbacks; "
                               "put the old key back in AUTHSVC_SECRET_KEY_FALLBACKS or run `authsvc oidc keys rotate`")
        key = serialization.load_der_private_key(opened.plaintext, password=None)
        return SigningKey(row.kid, row.alg, key, row.created_at)

    def _newest(self):
        with self.engine.connect() as conn:
            return conn.execute(oidc_signing_keys.select().where(oidc_signing_keys.c.retired_at.is_(None))
                                .order_by(oidc_signing_keys.c.created_at.desc(), oidc_signing_keys.c.id.desc())
                                .limit(1)).first()

    def jwks(self) -> dict:
        """The published keys: the current ones and those retired less than an ID token's lifetime ago."""
        since = self.clock() - self.id_token_lifetime
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(oidc_signing_keys.c.public_jwk).where(sa.or_(
                oidc_signing_keys.c.retired_at.is_(None), oidc_signing_keys.c.retired_at > since,
            )).order_by(oidc_signing_keys.c.created_at.desc(), oidc_signing_keys.c.id.desc())).all()
        return {"keys": [json.loads(r.public_jwk) for r in rows]}

    def purge(self) -> int:
        """Delete keys no longer published."""
        since = self.clock() - self.id_token_lifetime
        with self.engine.begin() as conn:
            return conn.execute(oidc_signing_keys.delete().where(
                oidc_signing_keys.c.retired_at.is_not(None), oidc_signing_keys.c.retired_at <= since)).rowcount
