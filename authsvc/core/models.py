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
