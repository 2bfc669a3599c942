"""Alembic environment for the OMS schema (run programmatically by persistence.migrate)."""
