"""Link each remember-me token to the session it started, so ending that session from the account
page also ends the cookie that would silently restore it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("remember_tokens") as batch:
        batch.add_column(sa.Column("session_id", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_remember_tokens_session_id", "sessions", ["session_id"], ["id"],
                                 ondelete="SET NULL")
        batch.create_index("ix_remember_session", ["session_id"])


def downgrade() -> None:
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_index("ix_remember_session")
        batch.drop_constraint("fk_remember_tokens_session_id", type_="foreignkey")
        batch.drop_column("session_id")
