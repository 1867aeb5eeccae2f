"""The schema, as SQLAlchemy Core tables (the verify path needs one indexed query, not an ORM).

Times are Unix epoch seconds (float, UTC by definition). Secrets never stored in the clear:
session tokens, remember-me validators, device ids and recovery codes are stored as SHA-256 digests,
passwords as argon2id, authenticator-app secrets sealed with AES-256-GCM (authsvc.core.sealing).
Changing a table means a new alembic revision in ``authsvc/core/migrations/versions``.
"""

from sqlalchemy import (BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData,
                        String, Table, UniqueConstraint)

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),                  # as the admin typed it; never shown
    # The canonical name (authsvc.rules.usernames): what logins match and the only name authsvc shows or sends.
    Column("username_key", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("password_changed_at", Float, nullable=False),
    # One more at every sign-out everywhere (authsvc.core.sign_out): a session or remember-me token
    # stamped with another generation no longer counts, whenever it was written.
    Column("sign_out_generation", Integer, nullable=False, server_default="0"),
)

sessions = Table(
    "sessions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),       # absolute lifetime
    Column("remembered", Boolean, nullable=False, default=False),
    Column("client_ip", String(64), nullable=False, default=""),
    Column("user_agent", String(256), nullable=False, default=""),
    Column("revoked_at", Float, nullable=True),
    Column("revoke_reason", String(32), nullable=True),
    # First request made with the session after the one that started it (a remember token's
    # successor is "delivered" once its session is used: see authsvc.core.remember).
    Column("used_at", Float, nullable=True),
    # The RFC 8176 methods the sign-in used, comma-separated (authsvc.rules.auth_methods), and the
    # last time the user proved a factor in this session (sign-in or step-up; None when restored
    # from a remember-me cookie): a sensitive change needs it recent (authsvc.rules.second_step).
    Column("methods", String(64), nullable=False, server_default="pwd"),
    Column("authenticated_at", Float, nullable=True),
    # When an OpenID authorization request (prompt=login, max_age) sent this browser to sign in
    # again: no code for this session until a sign-in after it (authsvc.rules.oidc_requests).
    Column("reauth_asked_at", Float, nullable=True),
    # The token digest the OpenID sid comes from once a step-up gave the session a new token (its
    # first token's); None until then: token_hash.
    Column("sid_hash", LargeBinary(32), nullable=True),
    # The account's sign_out_generation when the sign-in or restore read its credential.
    Column("generation", Integer, nullable=False, server_default="0"),
)
Index("ix_sessions_user_live", sessions.c.user_id, sessions.c.revoked_at)
Index("ix_sessions_expires", sessions.c.expires_at)

remember_tokens = Table(
    "remember_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("selector", String(32), nullable=False, unique=True),
    Column("validator_hash", LargeBinary(32), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),        # fixed at first login; rotation never extends it
    Column("rotated_at", Float, nullable=True),         # set when used up; reuse after that = theft
    Column("revoked_at", Float, nullable=True),
    Column("client_ip", String(64), nullable=False, default=""),
    Column("user_agent", String(256), nullable=False, default=""),
    # The session this token started (login or restore): ending that session ends the token too.
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="SET NULL",
                                             name="fk_remember_tokens_session_id"), nullable=True),
    # The token this one was rotated into: presenting a rotated token again is judged by whether
    # its successor (or the session made with it) was ever used.
    Column("successor_id", Integer, ForeignKey("remember_tokens.id", ondelete="SET NULL",
                                               name="fk_remember_tokens_successor_id"), nullable=True),
    Column("revoke_reason", String(32), nullable=True),
    # The methods of the sign-in that issued the first token of this chain: a restored session carries them.
    Column("methods", String(64), nullable=False, server_default="pwd"),
    # When that sign-in happened (None: issued before revision 0011): a restored session's auth_time.
    Column("signed_in_at", Float, nullable=True),
    # The account's sign_out_generation when the chain's sign-in read the password; kept by successors.
    Column("generation", Integer, nullable=False, server_default="0"),
)
Index("ix_remember_user", remember_tokens.c.user_id)
Index("ix_remember_session", remember_tokens.c.session_id)

# Known devices (authsvc.core.devices): a device cookie counts as known only while its id is here, at
# most throttle.max_devices_per_account rows per user (the least recently used is forgotten).
known_devices = Table(
    "known_devices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("device_hash", LargeBinary(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=False),
    UniqueConstraint("user_id", "device_hash", name="uq_known_devices_user_device"),
)

# Passkeys (authsvc.core.passkeys): WebAuthn credentials, several per account. The credential id and
# the public key are what the authenticator gave at registration (neither is a secret: the public
# key only verifies, and it is never shown or logged). sign_count is the last counter accepted.
passkeys = Table(
    "passkeys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("credential_id", LargeBinary(1023), nullable=False, unique=True),   # WebAuthn: at most 1023 bytes
    Column("public_key", LargeBinary, nullable=False),                         # COSE_Key
    Column("sign_count", BigInteger, nullable=False, default=0),                # 0 to 2**32 - 1
    Column("name", String(64), nullable=False),
    Column("transports", String(128), nullable=False, default=""),             # comma-separated hints
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float, nullable=True),
)
Index("ix_passkeys_user", passkeys.c.user_id)

# Each account's WebAuthn user handle (user.id in the ceremonies, userHandle in a usernameless
# assertion): 32 random bytes made the first time the account registers a passkey, never the account
# id or name (WebAuthn section 14.6.1: the handle must not identify the user to anyone else).
passkey_users = Table(
    "passkey_users", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("handle", LargeBinary(32), nullable=False, unique=True),
)

# Authenticator-app codes (authsvc.core.totp): at most one per account. ``secret`` is sealed
# (AES-256-GCM under a key derived from the secret key, the account id bound in); ``last_step`` is
# the last accepted RFC 6238 time step: a code is accepted only for a later one, once, on any instance.
totp_factors = Table(
    "totp_factors", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("secret", LargeBinary(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_step", Integer, nullable=False),
)

# Recovery codes (authsvc.core.recovery_codes): ten per account, shown once, stored as SHA-256 of a
# 120-bit code; used once (``used_at``); generating new ones deletes the old.
recovery_codes = Table(
    "recovery_codes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", LargeBinary(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_code"),
)

# Groups (authsvc.core.groups) for access rules: a name in its normal form (authsvc.rules.groups), and
# who is in each. Removing a group or an account removes its memberships (ON DELETE CASCADE).
groups = Table(
    "groups", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

group_members = Table(
    "group_members", metadata,
    Column("group_id", Integer, ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
)
Index("ix_group_members_user", group_members.c.user_id)


# --- OpenID Provider (authsvc.core.oidc) ---------------------------------------------------------
# Every credential is stored as a SHA-256 digest of a 256-bit random value (client secrets, codes,
# access and refresh tokens): a leaked table gives nothing usable, and no argon2 is needed for
# values nobody chose. Signing keys' private halves are sealed (authsvc.core.sealing).

# Registered relying parties (`authsvc oidc client add`). redirect_uris and post_logout_redirect_uris
# are newline-separated exact strings (authsvc.rules.oidc_redirects); secret_hash is None for a
# public client (SPA, native app), which must use PKCE like every client.
oidc_clients = Table(
    "oidc_clients", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("secret_hash", LargeBinary(32), nullable=True),
    Column("name", String(128), nullable=False),
    Column("redirect_uris", String(8192), nullable=False),
    Column("public", Boolean, nullable=False, default=False),
    Column("trusted", Boolean, nullable=False, default=False),          # first-party: no consent page
    Column("require_mfa", Boolean, nullable=False, default=False),      # a one-factor session steps up first
    Column("post_logout_redirect_uris", String(8192), nullable=False, default=""),
    Column("backchannel_logout_uri", String(2048), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("scopes", String(512), nullable=False),  # what it may ask for, space-separated (0009)
)

# Authorization codes: at most oidc.code_lifetime_seconds (<= 60), used once (used_at set by one
# conditional write); a second use revokes every token issued from the code (family_id = code id).
oidc_codes = Table(
    "oidc_codes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("code_hash", LargeBinary(32), nullable=False, unique=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("redirect_uri", String(2048), nullable=False),
    Column("scope", String(512), nullable=False),
    Column("nonce", String(512), nullable=True),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("auth_time", Float, nullable=False),
    Column("methods", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float, nullable=True),
    # The family of tokens issued from this code was revoked (authsvc.core.oidc.store.TokenStore):
    # a token saved into it afterwards is saved revoked. The code row outlives its family's tokens.
    Column("family_revoked_at", Float, nullable=True),
)
Index("ix_oidc_codes_expires", oidc_codes.c.expires_at)

# Access and refresh tokens. family_id is the id of the code the first token came from: a refresh
# token used twice, or the code used twice, revokes the whole family. session_id ties the tokens
# to the browser session that authorised them: a session that ends (logout, password change,
# disable, `authsvc sessions revoke`, session cap) ends them at once (the check joins sessions).
oidc_tokens = Table(
    "oidc_tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("session_id", Integer, ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("family_id", Integer, nullable=False),
    Column("access_hash", LargeBinary(32), nullable=False, unique=True),
    Column("refresh_hash", LargeBinary(32), nullable=True, unique=True),
    Column("scope", String(512), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("access_expires_at", Float, nullable=False),
    Column("refresh_expires_at", Float, nullable=True),
    Column("rotated_at", Float, nullable=True),      # its refresh token was used (once is all it gets)
    Column("revoked_at", Float, nullable=True),
    Column("revoke_reason", String(32), nullable=True),
)
Index("ix_oidc_tokens_family", oidc_tokens.c.family_id)
Index("ix_oidc_tokens_session", oidc_tokens.c.session_id)

# ID token signing keys. private_key: PKCS#8 DER sealed under the secret key (the kid bound in);
# public_jwk: the JWKS entry. The newest unretired key signs; a retired key stays in the JWKS
# until every ID token it signed has expired (retired_at + oidc.id_token_lifetime_seconds).
oidc_signing_keys = Table(
    "oidc_signing_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kid", String(64), nullable=False, unique=True),
    Column("alg", String(8), nullable=False),
    Column("private_key", LargeBinary(8192), nullable=False),
    Column("public_jwk", String(4096), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("retired_at", Float, nullable=True),
)

# What a user allowed a (non-trusted) client, remembered until revoked: space-separated scopes.
oidc_consents = Table(
    "oidc_consents", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("scopes", String(512), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("user_id", "client_id", name="uq_oidc_consents_user_client"),
)

# Each account's OpenID subject: 32 random bytes (base64url), made at its first OIDC sign-in. Never
# the username or the row id; it survives a secret-key rotation, which an HMAC of the id would not.
oidc_subjects = Table(
    "oidc_subjects", metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False),
    Column("subject", String(64), nullable=False, unique=True),
)
