"""Persistence: the `Store` protocol, its record types and the `open_store` factory."""

from __future__ import annotations

import os
import re

from core.storage.base import (
    SessionRecord,
    Store,
    StoredMessage,
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
    "SessionRecord",
    "Store",
    "StoredMessage",
    "ToolCallRecord",
    "ToolCallTotals",
    "TurnRecord",
    "TurnStatus",
    "UsageDimension",
    "UsageGroup",
    "UsageRecord",
    "UsageTotals",
    "open_store",
    "sqlite_path_from_url",
]

_ACCEPTED = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, sqlite+aiosqlite:///..., "
    "sqlite:///:memory:, or a plain file path"
)
_SQLITE_SCHEMES = ("sqlite", "sqlite+aiosqlite")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def open_store(database_url: str) -> Store:
    """A store for DATABASE_URL, not yet connected: the caller awaits `.open()`."""
    return SQLiteStore(sqlite_path_from_url(database_url))


def sqlite_path_from_url(database_url: str) -> str:
    """The SQLite file path (or ":memory:") a DATABASE_URL names; ValueError with a readable reason.

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
    if scheme.startswith("postgres"):
        raise ValueError("DATABASE_URL: PostgreSQL is not supported yet; use a sqlite:/// URL")
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
