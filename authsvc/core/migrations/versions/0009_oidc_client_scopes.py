"""Each OpenID client's scope list (ASVS V10.4.11): what it may ask for at the authorization request.

Clients registered before this revision could ask for every scope the provider offered, so they get
all of them (``openid profile groups offline_access``) and keep working as they did; narrow one by
registering it again with ``authsvc oidc client add --scopes``. The column then has no default: every
new client is given its list by ``authsvc oidc client add`` (``openid profile`` unless told).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-14
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"  # after the OpenID Provider
branch_labels = None
depends_on = None

# authsvc.rules.oidc_requests.LEGACY_CLIENT_SCOPES, written out: a migration never changes with the code.
BEFORE = "openid profile groups offline_access"


def upgrade() -> None:
    with op.batch_alter_table("oidc_clients") as batch:
        batch.add_column(sa.Column("scopes", sa.String(512), nullable=False, server_default=BEFORE))
    with op.batch_alter_table("oidc_clients") as batch:
        batch.alter_column("scopes", server_default=None, existing_type=sa.String(512), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_clients") as batch:
        batch.drop_column("scopes")
