"""When the user really signed in, kept where OpenID Connect needs it (``auth_time``, a
re-authentication a client asked for), and a session's ``sid`` kept through a new token.

* ``remember_tokens.signed_in_at``: when the sign-in that issued the chain's first cookie happened;
  every successor keeps it. A session restored from remember-me proves no factor (its
  ``authenticated_at`` stays empty), and until this revision an ID token reported the restore as
  ``auth_time``: a client judging freshness by it took a cookie days old for a sign-in just now.
  Tokens issued before this revision have none (their restores report the session's start, as
  before) and end within ``remember_lifetime_days``.
* ``sessions.reauth_asked_at``: when an authorization request (``prompt=login``, ``max_age``) sent
  this session's browser to sign in again. Until a sign-in after it, this session gets no code:
  loading the request again without those parameters is the same request.
* ``sessions.sid_hash``: the token digest the session's OpenID ``sid`` is derived from, kept when a
  step-up gives the session a new token (ASVS V7.2.4: a copy of the old cookie gets nothing of the
  fresh authentication), so clients still recognise the session in a logout token. Empty until the
  first new token: the ``sid`` comes from ``token_hash``, as before.

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
        batch.add_column(sa.Column("sid_hash", sa.LargeBinary(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("sid_hash")
        batch.drop_column("reauth_asked_at")
    with op.batch_alter_table("remember_tokens") as batch:
        batch.drop_column("signed_in_at")
