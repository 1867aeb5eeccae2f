"""Alembic environment for authsvc. Run through `authsvc db upgrade` (see authsvc.core.db), which hands
in the connection; there is no alembic.ini to keep in step with the service's configuration."""

from alembic import context

from authsvc.core.models import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
