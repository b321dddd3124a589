"""The node's state store (sqlmodel over SQLite or PostgreSQL)."""
