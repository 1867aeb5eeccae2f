"""Mark a token family as revoked on the code it came from, so tokens saved after the revocation are
born revoked.

A family (the tokens issued from one authorization code and their rotations) is revoked when its
code or one of its refresh tokens is used twice, or when the client revokes a token (RFC 7009).
Until this revision the revocation only marked the token rows that existed then. If two requests
presented one refresh token at once, the loser could revoke the family just before the winner saved
its new pair, and that pair lived on. The code row is the family's anchor. It stays until the
family's last token is purged. Saving a token and revoking the family now meet on that row.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"  # after each client's scope list
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oidc_codes") as batch:
        batch.add_column(sa.Column("family_revoked_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("oidc_codes") as batch:
        batch.drop_column("family_revoked_at")
