"""The PostgreSQL store (asyncpg): several bot replicas can share one database."""

from core.storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
