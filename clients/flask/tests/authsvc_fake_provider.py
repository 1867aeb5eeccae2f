"""A fake OpenID Connect provider on a loopback port (a real HTTP server in a thread), standing in
for authsvc's: discovery, JWKS and a token endpoint that checks the PKCE verifier. The test plays
the browser: it reads the authorization request the app makes and has the provider issue a code
for it, with ID token claims the test may spoil."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

CLIENT_ID = "microblog"
PROVIDER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})   # once: key generation is slow


@dataclass
class FakeProvider:
    base: str = ""
    key: RSAKey = field(default_factory=lambda: PROVIDER_KEY)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    issuer: str | None = None        # the discovery document's issuer (default: base)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    iss_supported: bool = False      # advertise RFC 9207's iss in authorization responses (authsvc does)
    jwks_fetches: int = 0
    jwks_stall: float = 0.0          # seconds the JWKS answer takes (a stalled provider)

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, alg: str = "RS256") -> str:
        signer = key or self.key
        return jwt.encode({"alg": alg, "kid": signer.kid}, claims, signer)

    def claims(self, expected_nonce: str | None, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.base, "sub": "s-7f3a", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": expected_nonce, "preferred_username": "alice", "amr": ["pwd", "otp", "mfa"],
                  "groups": ["staff"], "sid": "sid-1"}
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def issue_code(self, authorize_url: str, *, id_token: str | None = None, **changes: Any) -> tuple[str, str]:
        """(code, state) for the authorization request at ``authorize_url``; the ID token has the
        request's nonce unless ``changes`` or ``id_token`` say otherwise."""
        params = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"params": params,
                            "id_token": id_token or self.sign(self.claims(params.get("nonce"), **changes))}
        return code, params["state"]

    def logout_token(self, key: RSAKey | None = None, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.base, "aud": CLIENT_ID, "iat": now, "jti": secrets.token_hex(8), "sid": "sid-1",
                  "sub": "s-7f3a", "events": {"http://schemas.openid.net/event/backchannel-logout": {}}}
        claims.update(changes)
        return self.sign({k: v for k, v in claims.items() if v is not None}, key)

    def app(self) -> Flask:
        app = Flask("fake_provider")

        @app.get("/.well-known/openid-configuration")
        def discovery():
            return jsonify(issuer=self.issuer or self.base, authorization_endpoint=f"{self.base}/oauth/authorize",
                           token_endpoint=f"{self.base}/oauth/token", jwks_uri=f"{self.base}/oauth/jwks",
                           response_types_supported=["code"], subject_types_supported=["pairwise"],
                           id_token_signing_alg_values_supported=["RS256"], code_challenge_methods_supported=["S256"],
                           backchannel_logout_supported=True, backchannel_logout_session_supported=True,
                           **({"authorization_response_iss_parameter_supported": True} if self.iss_supported else {}))

        @app.get("/oauth/jwks")
        def jwks():
            self.jwks_fetches += 1
            time.sleep(self.jwks_stall)
            return jsonify(KeySet([self.key]).as_dict(private=False))

        @app.post("/oauth/token")
        def token():
            form = request.form.to_dict()
            self.token_requests.append(form)
            grant = self.codes.pop(form.get("code", ""), None)   # single use
            if grant is None:
                return jsonify(error="invalid_grant"), 400
            params = grant["params"]
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if params.get("code_challenge_method") != "S256" or challenge != params.get("code_challenge"):
                return jsonify(error="invalid_grant", error_description="PKCE"), 400
            if form.get("redirect_uri") != params.get("redirect_uri") or form.get("client_id") != CLIENT_ID:
                return jsonify(error="invalid_grant"), 400
            return jsonify(access_token=secrets.token_urlsafe(16), token_type="Bearer", expires_in=300,
                           id_token=grant["id_token"])

        return app


class Running:
    def __init__(self, provider: FakeProvider):
        self.server = make_server("127.0.0.1", 0, provider.app(), threaded=True)
        provider.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
