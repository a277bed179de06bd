"""ClickHouse DDL and Alembic migrations, shipped in the wheel as package data."""
