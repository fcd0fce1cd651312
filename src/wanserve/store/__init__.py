"""The system of record: SQLAlchemy 2 (async) + Alembic; SQLite embedded, Postgres in prod."""
