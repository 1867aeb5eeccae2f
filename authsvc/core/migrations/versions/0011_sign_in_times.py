"""When the user really signed in, kept where OpenID Connect needs it: ``auth_time`` and a
re-authentication a client asked for.

* ``remember_tokens.signed_in_at``: when the sign-in that issued the chain's first cookie happened;
  every successor keeps it. A session restored from remember-me proves no factor (its
  ``authenticated_at`` stays empty), and until this revision an ID token reported the restore as
  ``auth_time``: a client judging freshness by it took a cookie days old for a sign-in just now.
  Tokens issued before this revision have none (their restores report the session's start, as
  before) and end within ``remember_lifetime_days``.
* ``sessions.reauth_asked_at``: when an authorization request (``prompt=login``, ``max_age``) sent
  this session's browser to sign in again. Until a sign-in after it, this session gets no code:
  loading the request again without those parameters is the same request.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"  # after the family's revocation mark
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("remember_tokens") as batch:
        batch.add_column(sa.Column("signed_in_at", sa.Float, nullable=True))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("reauth_asked_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("reauth_asked_at")
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_column("signed_in_at")
