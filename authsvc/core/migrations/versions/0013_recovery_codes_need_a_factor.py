"""Recovery codes of accounts without a second factor are void.

Recovery codes stand in for a factor in the second step. Until session 13 an account without one
could generate them: whoever held its password (a reused one, say) made ten, and they passed the
second step of the authenticator app or passkey the owner added later to lock them out (found by
review). Generating them now needs a factor, and removing the last factor voids them (session
12); this revision voids the codes such accounts hold from before. Nothing comes back on downgrade.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"  # after the sign-out generation
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = sa.MetaData()
    codes = sa.Table("recovery_codes", meta, sa.Column("user_id", sa.Integer))
    totp = sa.Table("totp_factors", meta, sa.Column("user_id", sa.Integer))
    passkeys = sa.Table("passkeys", meta, sa.Column("user_id", sa.Integer))
    op.execute(codes.delete().where(
        ~codes.c.user_id.in_(sa.select(totp.c.user_id)), ~codes.c.user_id.in_(sa.select(passkeys.c.user_id))))


def downgrade() -> None:
    """Nothing to undo: the codes are gone, and no schema changed."""
