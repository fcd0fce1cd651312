"""The system of record: SQLAlchemy 2 (async) with Alembic; SQLite embedded, Postgres in production."""
