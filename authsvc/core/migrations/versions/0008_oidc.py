"""The OpenID Provider (issue 19): clients, authorization codes, access/refresh tokens, ID token
signing keys, consents and each account's OpenID subject. Every credential is a SHA-256 digest of
a 256-bit random value; signing keys' private halves are sealed (authsvc.core.sealing).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"  # after groups
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oidc_clients",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False, unique=True),
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("redirect_uris", sa.String(8192), nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("trusted", sa.Boolean, nullable=False),
        sa.Column("require_mfa", sa.Boolean, nullable=False),
        sa.Column("post_logout_redirect_uris", sa.String(8192), nullable=False),
        sa.Column("backchannel_logout_uri", sa.String(2048), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "oidc_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("scope", sa.String(512), nullable=False),
        sa.Column("nonce", sa.String(512), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        sa.Column("auth_time", sa.Float, nullable=False),
        sa.Column("methods", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.create_index("ix_oidc_codes_expires", "oidc_codes", ["expires_at"])
    op.create_table(
        "oidc_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("family_id", sa.Integer, nullable=False),
        sa.Column("access_hash", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("refresh_hash", sa.LargeBinary(32), nullable=True, unique=True),
        sa.Column("scope", sa.String(512), nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
        sa.Column("access_expires_at", sa.Float, nullable=False),
        sa.Column("refresh_expires_at", sa.Float, nullable=True),
        sa.Column("rotated_at", sa.Float, nullable=True),
        sa.Column("revoked_at", sa.Float, nullable=True),
        sa.Column("revoke_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_oidc_tokens_family", "oidc_tokens", ["family_id"])
    op.create_index("ix_oidc_tokens_session", "oidc_tokens", ["session_id"])
    op.create_table(
        "oidc_signing_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kid", sa.String(64), nullable=False, unique=True),
        sa.Column("alg", sa.String(8), nullable=False),
        sa.Column("private_key", sa.LargeBinary(8192), nullable=False),
        sa.Column("public_jwk", sa.String(4096), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("retired_at", sa.Float, nullable=True),
    )
    op.create_table(
        "oidc_consents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("user_id", "client_id", name="uq_oidc_consents_user_client"),
    )
    op.create_table(
        "oidc_subjects",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("subject", sa.String(64), nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("oidc_subjects")
    op.drop_table("oidc_consents")
    op.drop_table("oidc_signing_keys")
    op.drop_index("ix_oidc_tokens_session", table_name="oidc_tokens")
    op.drop_index("ix_oidc_tokens_family", table_name="oidc_tokens")
    op.drop_table("oidc_tokens")
    op.drop_index("ix_oidc_codes_expires", table_name="oidc_codes")
    op.drop_table("oidc_codes")
    op.drop_table("oidc_clients")
