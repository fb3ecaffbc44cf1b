"""Ratchet's own store: SQLModel tables (SQLite by default, PostgreSQL by URL) and columnar samples."""
