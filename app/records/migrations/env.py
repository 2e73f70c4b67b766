"""Alembic's entry point. The service runs it with an open connection (`app.records.database`),
so no URL is read here; `alembic` itself is not needed on the command line."""

from alembic import context

from app.records.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
