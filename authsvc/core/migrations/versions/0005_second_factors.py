"""Second factors (issue 17): authenticator-app secrets and recovery codes, and the methods each
session and remember-me token was signed in with.

Sessions and tokens that exist at the upgrade were signed in with a password alone: ``methods`` is
``pwd`` for them (the server default). ``authenticated_at`` starts empty, so a session from before
asks for the password before its first sensitive change.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "totp_factors",
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("secret", sa.LargeBinary(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_step", sa.Integer, nullable=False),
    )
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
        sa.UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_code"),
    )
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("methods", sa.String(64), nullable=False, server_default="pwd"))
        batch.add_column(sa.Column("authenticated_at", sa.Float, nullable=True))
    with op.batch_alter_table("remember_tokens") as batch:
        batch.add_column(sa.Column("methods", sa.String(64), nullable=False, server_default="pwd"))


def downgrade() -> None:
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_column("methods")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("authenticated_at")
        batch.drop_column("methods")
    op.drop_table("recovery_codes")
    op.drop_table("totp_factors")
