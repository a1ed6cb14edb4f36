"""Alembic migrations of the relational state; run through `ragserve.relational.migrate`, not alembic.ini."""
