"""Passkeys: WebAuthn credentials (table ``passkeys``, several per account) and each account's
random WebAuthn user handle (table ``passkey_users``, made at the account's first registration).
The signature counter is a BigInteger: authenticators count to 2**32 - 1, past PostgreSQL's integer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"  # after the second factors (TOTP, recovery codes)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(1023), nullable=False, unique=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("sign_count", sa.BigInteger, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("transports", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=True),
    )
    op.create_index("ix_passkeys_user", "passkeys", ["user_id"])
    op.create_table(
        "passkey_users",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("handle", sa.LargeBinary(32), nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("passkey_users")
    op.drop_index("ix_passkeys_user", table_name="passkeys")
    op.drop_table("passkeys")
