"""An account's sign-out generation, stamped on every session and remember-me token it makes.

Signing an account out everywhere (a password change, ``authsvc sessions revoke``, a remember-me
theft, a second-factor change, ``authsvc user mfa-reset``) revoked the sessions and tokens it found;
a remember-me restore or sign-in whose check came before and whose session or successor token was
written after was not among them, and lived on (found by review, session 13). Now the sign-out adds
one to ``users.sign_out_generation`` first, and a session or token is good only while its own
``generation`` (the account's when its sign-in or restore read the credential) is the account's:
whatever such a racer writes carries the old one. Rows from before this revision are generation 0,
as every account is.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"  # after the sign-in times
branch_labels = None
depends_on = None

TABLES = (("users", "sign_out_generation"), ("sessions", "generation"), ("remember_tokens", "generation"))


def upgrade() -> None:
    for table, column in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(column, sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    for table, column in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column(column)
