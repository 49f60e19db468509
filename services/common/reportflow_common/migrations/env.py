"""Alembic environment: the URL comes from reportflow-migrate, never from an ini file."""
from alembic import context
from sqlalchemy import create_engine, pool

from reportflow_common.db import Base

config = context.config
url = config.attributes["database_url"]

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
