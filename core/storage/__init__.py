"""Persistence: the `Store` protocol, its record types and the `open_store` factory."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from core.storage.base import (
    SessionHead,
    SessionRecord,
    Store,
    StoredMessage,
    StoreUnavailableError,
    ToolCallRecord,
    ToolCallTotals,
    TurnRecord,
    TurnStatus,
    UsageDimension,
    UsageGroup,
    UsageRecord,
    UsageTotals,
)
from core.storage.sqlite import MEMORY, SQLiteStore

__all__ = [
    "SQLiteStore",
    "SessionHead",
    "SessionRecord",
    "Store",
    "StoreUnavailableError",
    "StoredMessage",
    "ToolCallRecord",
    "ToolCallTotals",
    "TurnRecord",
    "TurnStatus",
    "UsageDimension",
    "UsageGroup",
    "UsageRecord",
    "UsageTotals",
    "describe_database",
    "is_postgres_url",
    "open_store",
    "postgres_dsn_from_url",
    "sqlite_path_from_url",
]

_ACCEPTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite+aiosqlite:///..., "
    "sqlite:///:memory:, a plain file path, or postgresql://user:password@host:5432/dbname"
)
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def open_store(database_url: str, *, pool_size: int = 10) -> Store:
    """A store for DATABASE_URL, not yet connected: the caller awaits `.open()`. `pool_size` caps the
    PostgreSQL connections of this process (plus one for fleet coordination)."""
    if is_postgres_url(database_url):
        from core.storage.postgres import PostgresStore  # asyncpg is imported only when it is used

        return PostgresStore(postgres_dsn_from_url(database_url), pool_size=pool_size)
    return SQLiteStore(sqlite_path_from_url(database_url))


def describe_database(database_url: str) -> str:
    """Where the data lives, for startup lines and logs: never the password."""
    if is_postgres_url(database_url):
        parts = urlsplit(postgres_dsn_from_url(database_url))
        user = f"{parts.username}@" if parts.username else ""
        port = f":{parts.port}" if parts.port else ""
        return f"PostgreSQL {user}{parts.hostname or 'localhost'}{port}{parts.path}"
    return f"SQLite {sqlite_path_from_url(database_url)}"


def is_postgres_url(database_url: str) -> bool:
    match = _SCHEME.match(database_url.strip())
    return match is not None and match.group(1).lower() in _POSTGRES_SCHEMES


def postgres_dsn_from_url(database_url: str) -> str:
    """The DSN asyncpg takes (`postgresql://...`); ValueError with a reason that never quotes the URL."""
    url = database_url.strip()
    match = _SCHEME.match(url)
    if match is None or match.group(1).lower() not in _POSTGRES_SCHEMES:
        raise ValueError(f"DATABASE_URL is not a PostgreSQL URL; use {_ACCEPTED}")
    rest = url[match.end() :]
    if not rest or rest.startswith("?"):
        raise ValueError("DATABASE_URL: the postgresql URL names no host or database")
    return "postgresql://" + rest


def sqlite_path_from_url(database_url: str) -> str:
    """The SQLite file path (or ":memory:") a sqlite DATABASE_URL names; ValueError with a readable reason.

    Errors quote at most the URL scheme, never the rest, which may hold credentials.
    """
    url = database_url.strip()
    if not url:
        raise ValueError(f"DATABASE_URL is empty; use {_ACCEPTED}")
    match = _SCHEME.match(url)
    if match is None:
        if "://" in url:  # looks like a URL but the scheme is garbled: do not echo it
            raise ValueError(f"DATABASE_URL is not a valid URL; use {_ACCEPTED}")
        return os.path.expanduser(url)  # a bare filesystem path
    scheme = match.group(1).lower()
    if scheme not in _SQLITE_SCHEMES:
        raise ValueError(f"DATABASE_URL: unsupported scheme {scheme!r}; use {_ACCEPTED}")
    rest = url[match.end() :]
    if rest in (MEMORY, "/" + MEMORY):
        return MEMORY
    if "?" in rest or "#" in rest:
        raise ValueError(f"DATABASE_URL: query parameters are not supported in sqlite URLs; use {_ACCEPTED}")
    if not rest.startswith("/"):
        # sqlite://host/x.db: SQLite has no host; the usual slip is one slash too few.
        raise ValueError(f"DATABASE_URL: a sqlite URL has no host part; use {_ACCEPTED}")
    path = rest[1:]  # "sqlite:///rel.db" -> "rel.db"; "sqlite:////abs.db" -> "/abs.db"
    if not path:
        raise ValueError(f"DATABASE_URL: the sqlite URL names no file; use {_ACCEPTED}")
    return path
