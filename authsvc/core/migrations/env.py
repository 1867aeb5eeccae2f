"""Alembic environment for authsvc. Run through `authsvc db upgrade` (see authsvc.core.db), which hands
in the connection; there is no alembic.ini to keep in step with the service's configuration."""

from alembic import context

from authsvc.core.models import metadata

connection = context.config.attributes["connection"]
if connection.dialect.name == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
    # A table rebuild would cascade-delete every row that names the rebuilt table's rows.
    raise RuntimeError("SQLite is migrated with foreign keys off: use authsvc.core.db.upgrade or downgrade")
context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
