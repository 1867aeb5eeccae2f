"""Link each rotated remember-me token to its successor, record why a token was revoked and when a
session was first used, so that a rotated token presented again can be told apart: a response that
never reached the browser (the successor was never used) or theft (it was).

Sessions that exist at the upgrade count as used (``used_at`` = their last-seen time): nothing is
known about them, and "used" is the answer that never lets a copied token through. Tokens rotated
before the upgrade have no successor recorded and are judged as before (replay).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"  # after the known-device registry (fix/devices): one line of history
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("used_at", sa.Float, nullable=True))
    op.execute("UPDATE sessions SET used_at = last_seen_at")
    with op.batch_alter_table("remember_tokens") as batch:
        batch.add_column(sa.Column("successor_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("revoke_reason", sa.String(32), nullable=True))
        batch.create_foreign_key("fk_remember_tokens_successor_id", "remember_tokens", ["successor_id"], ["id"],
                                 ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_constraint("fk_remember_tokens_successor_id", type_="foreignkey")
        batch.drop_column("revoke_reason")
        batch.drop_column("successor_id")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("used_at")
