"""Storage: SQLAlchemy 2 (async) models, one repository per aggregate, Alembic migrations."""
