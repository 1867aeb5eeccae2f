"""The known-device registry: a device cookie counts as known only while its id is registered to
the account, at most throttle.max_devices_per_account per account (security review, finding 1).

Device cookies issued before this revision are not registered: each browser is anonymous until
its next successful login registers it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_devices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("device_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float, nullable=False),
        sa.UniqueConstraint("user_id", "device_hash", name="uq_known_devices_user_device"),
    )


def downgrade() -> None:
    op.drop_table("known_devices")
