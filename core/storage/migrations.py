"""Versioned SQLite schema.

`MIGRATIONS` is append-only: never edit a migration that has shipped, add a new one. Each migration runs
in its own `BEGIN IMMEDIATE` transaction together with its `schema_version` row, so a crash mid-migration
leaves the database at the previous version (SQLite DDL is transactional) and re-opening is a no-op.

Timestamps are unix epoch seconds (REAL, UTC): numeric range scans on `usage.ts` are fast and unambiguous,
and the store converts them to timezone-aware UTC datetimes at the edge.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import aiosqlite

from core.storage.usage_sql import ROLLUP_BUCKET_SECONDS, ROLLUPS, SUM_COLUMNS


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


_STATUSES = "'pending', 'running', 'done', 'failed', 'cancelled', 'interrupted'"

_INITIAL: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_key TEXT    NOT NULL,
        platform         TEXT    NOT NULL,
        workspace        TEXT    NOT NULL,
        channel          TEXT    NOT NULL,
        thread           TEXT    NOT NULL,
        model            TEXT,
        summary          TEXT    NOT NULL DEFAULT '',
        summary_tokens   INTEGER NOT NULL DEFAULT 0,
        created_at       REAL    NOT NULL,
        closed_at        REAL
    )
    """,
    # At most one open session per conversation, enforced by the database rather than by callers.
    "CREATE UNIQUE INDEX sessions_open_key ON sessions (conversation_key) WHERE closed_at IS NULL",
    """
    CREATE TABLE messages (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        role       TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
        content    TEXT    NOT NULL,
        tokens     INTEGER NOT NULL DEFAULT 0,
        compacted  INTEGER NOT NULL DEFAULT 0 CHECK (compacted IN (0, 1)),
        created_at REAL    NOT NULL
    )
    """,
    # Serves load_messages (session_id, compacted = 0 ORDER BY id) and compact (session_id, id <= ?).
    "CREATE INDEX messages_session_live ON messages (session_id, compacted, id)",
    f"""
    CREATE TABLE turns (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id       INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        conversation_key TEXT    NOT NULL,
        platform         TEXT    NOT NULL,
        workspace        TEXT    NOT NULL,
        channel          TEXT    NOT NULL,
        thread           TEXT    NOT NULL,
        sender_id        TEXT    NOT NULL,
        text             TEXT    NOT NULL,
        event_id         TEXT    NOT NULL,
        status           TEXT    NOT NULL CHECK (status IN ({_STATUSES})),
        created_at       REAL    NOT NULL,
        updated_at       REAL    NOT NULL
    )
    """,
    # Partial index: almost every turn is finished, so this stays tiny while making the startup
    # "what was interrupted?" scan independent of history size.
    "CREATE INDEX turns_unfinished ON turns (status, id) WHERE status IN ('pending', 'running')",
    # Foreign keys need an index on the child column or every session delete scans the table.
    "CREATE INDEX turns_session ON turns (session_id)",
    """
    CREATE TABLE events_seen (
        platform TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at  REAL NOT NULL,
        PRIMARY KEY (platform, event_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX events_seen_at ON events_seen (seen_at)",
    # Accounting tables are append-only logs with no foreign keys: usage must survive session cleanup.
    """
    CREATE TABLE usage (
        id                 INTEGER PRIMARY KEY,
        ts                 REAL    NOT NULL,
        provider           TEXT    NOT NULL,
        model              TEXT    NOT NULL,
        platform           TEXT    NOT NULL,
        workspace          TEXT    NOT NULL,
        channel            TEXT    NOT NULL,
        user_id            TEXT    NOT NULL,
        session_id         INTEGER,
        input_tokens       INTEGER NOT NULL DEFAULT 0,
        output_tokens      INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd           REAL,
        latency_ms         REAL    NOT NULL DEFAULT 0,
        ok                 INTEGER NOT NULL DEFAULT 1 CHECK (ok IN (0, 1)),
        error              TEXT    NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX usage_ts ON usage (ts)",
    "CREATE INDEX usage_user_ts ON usage (user_id, ts)",
    """
    CREATE TABLE tool_calls (
        id          INTEGER PRIMARY KEY,
        ts          REAL    NOT NULL,
        session_id  INTEGER,
        platform    TEXT    NOT NULL,
        user_id     TEXT    NOT NULL,
        tool        TEXT    NOT NULL,
        ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
        duration_ms REAL    NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX tool_calls_ts ON tool_calls (ts)",
)

# Usage is pre-aggregated into 15-minute buckets, kept current by triggers in the same transaction as
# each usage insert: `usage_rollup` per (platform, provider, model) for totals and the 14-day history,
# `usage_rollup_fine` adding workspace, channel and user for the per-channel and per-user breakdowns.
# Every real UTC offset is a multiple of 15 minutes, so any local day is a whole number of buckets: a
# report reads rollup rows, not usage rows, however many millions there are. Usage is append-only, so
# there is no delete/update trigger (if usage is ever pruned, the rollups keep the history).
_BUCKET = f"CAST({{ts}} / {ROLLUP_BUCKET_SECONDS} AS INTEGER) * {ROLLUP_BUCKET_SECONDS}"


def _rollup(table: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """DDL for one rollup table: the table, its insert trigger, and a backfill from existing usage.

    Part of migration 2: frozen once shipped. A different rollup needs a new migration."""
    key_list = ", ".join(keys)
    sums = ", ".join(SUM_COLUMNS)
    key_defs = "".join(f"{k} TEXT NOT NULL, " for k in keys)
    sum_defs = ", ".join(f"{c} {'REAL' if c == 'cost_usd' else 'INTEGER'} NOT NULL" for c in SUM_COLUMNS)
    updates = ", ".join(f"{c} = {c} + excluded.{c}" for c in SUM_COLUMNS)
    new_keys = ", ".join(f"NEW.{k}" for k in keys)
    return (
        f"CREATE TABLE {table} (bucket INTEGER NOT NULL, {key_defs}{sum_defs},"
        f" PRIMARY KEY (bucket, {key_list})) WITHOUT ROWID",
        f"""
        CREATE TRIGGER {table}_insert AFTER INSERT ON usage BEGIN
            INSERT INTO {table} (bucket, {key_list}, {sums})
            VALUES ({_BUCKET.format(ts="NEW.ts")}, {new_keys}, 1, 1 - NEW.ok,
                NEW.input_tokens, NEW.output_tokens, NEW.cache_read_tokens, NEW.cache_write_tokens,
                COALESCE(NEW.cost_usd, 0.0), NEW.cost_usd IS NULL)
            ON CONFLICT (bucket, {key_list}) DO UPDATE SET {updates};
        END
        """,
        f"""
        INSERT INTO {table} (bucket, {key_list}, {sums})
        SELECT {_BUCKET.format(ts="ts")} AS b, {key_list}, COUNT(*), SUM(1 - ok),
               SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
               COALESCE(SUM(cost_usd), 0.0), COUNT(*) - COUNT(cost_usd)
        FROM usage GROUP BY b, {key_list}
        """,
    )


_REPORTS: tuple[str, ...] = (
    # One row per (local day, destination) whose report was claimed: the database, not the scheduler,
    # decides what has been posted, so restarts and replicas never post a day twice.
    """
    CREATE TABLE reports_posted (
        day         TEXT NOT NULL,
        destination TEXT NOT NULL,
        posted_at   REAL NOT NULL,
        PRIMARY KEY (day, destination)
    ) WITHOUT ROWID
    """,
    *(statement for table, keys in ROLLUPS for statement in _rollup(table, keys)),
    # Distinct conversations per day are counted from usage itself: cover them with an index.
    "CREATE INDEX usage_ts_session ON usage (ts, session_id)",
    # Covering index for the report's tool stats; it supersedes the plain ts index.
    "CREATE INDEX tool_calls_ts_tool ON tool_calls (ts, tool, ok)",
    "DROP INDEX tool_calls_ts",
)

_FLEET: tuple[str, ...] = (
    # Which process accepted a turn (0 = this single process). SQLite serves one process, so the
    # column only keeps the schema in step with PostgreSQL, where replicas recover only the turns of
    # processes that are gone.
    "ALTER TABLE turns ADD COLUMN owner INTEGER NOT NULL DEFAULT 0",
    # Turn order within a conversation ("is an older turn still unfinished?").
    "CREATE INDEX turns_conversation_unfinished ON turns (conversation_key, id)"
    " WHERE status IN ('pending', 'running')",
)

_LINKS: tuple[str, ...] = (
    # Which conversation a platform message belongs to, where the platform does not say so itself
    # (a Telegram reply to one of the bot's group messages): kept in the database so replies continue
    # their conversation after a restart and on any replica.
    """
    CREATE TABLE message_links (
        platform   TEXT NOT NULL,
        chat       TEXT NOT NULL,
        message_id TEXT NOT NULL,
        thread     TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (platform, chat, message_id)
    ) WITHOUT ROWID
    """,
)

_DELIVERY: tuple[str, ...] = (
    # Where and to whom to answer (the adapter's opaque reply address), so a turn can be answered after
    # a restart; its final answer, and when that answer landed on the platform. Existing turns have no
    # answer, so they are never taken for undelivered.
    "ALTER TABLE turns ADD COLUMN reply_address TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE turns ADD COLUMN is_dm INTEGER NOT NULL DEFAULT 0 CHECK (is_dm IN (0, 1))",
    "ALTER TABLE turns ADD COLUMN sender_name TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE turns ADD COLUMN answer TEXT",
    "ALTER TABLE turns ADD COLUMN delivered_at REAL",
    # Finished but not delivered: a handful of rows at any time, whatever the history's size.
    "CREATE INDEX turns_undelivered ON turns (platform, id)"
    " WHERE answer IS NOT NULL AND delivered_at IS NULL",
)

_SHOWN: tuple[str, ...] = (
    # The messages a turn's answer was shown in so far (ids, one per line): an answer shown again after
    # a crash removes the ones the killed process left half-written.
    "ALTER TABLE turns ADD COLUMN shown TEXT NOT NULL DEFAULT ''",
)

_CHOICE_STATUSES = "'pending', 'approved', 'denied', 'expired', 'cancelled'"

_BUTTONS: tuple[str, ...] = (
    # A tool call waiting for a person, kept in the database so an approval survives a restart and can
    # be decided on any replica. No foreign key to turns: the audit trail of a choice must not depend
    # on its turn's history being kept.
    f"""
    CREATE TABLE choices (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        turn_id          INTEGER NOT NULL,
        conversation_key TEXT    NOT NULL,
        call_id          TEXT    NOT NULL,
        tool             TEXT    NOT NULL,
        arguments        TEXT    NOT NULL,
        step             TEXT    NOT NULL,
        requested_by     TEXT    NOT NULL,
        status           TEXT    NOT NULL CHECK (status IN ({_CHOICE_STATUSES})),
        created_at       REAL    NOT NULL,
        expires_at       REAL    NOT NULL,
        decided_by       TEXT    NOT NULL DEFAULT '',
        decided_by_name  TEXT    NOT NULL DEFAULT '',
        decided_at       REAL,
        message_id       TEXT    NOT NULL DEFAULT '',
        ran_at           REAL
    )
    """,
    "CREATE INDEX choices_turn ON choices (turn_id)",
    # "Always allow here": one row per conversation and tool.
    """
    CREATE TABLE tool_grants (
        conversation_key TEXT NOT NULL,
        tool             TEXT NOT NULL,
        granted_by       TEXT NOT NULL,
        created_at       REAL NOT NULL,
        PRIMARY KEY (conversation_key, tool)
    ) WITHOUT ROWID
    """,
    # Append-only like usage: no foreign keys, it must outlive any cleanup of conversations.
    """
    CREATE TABLE audit (
        id               INTEGER PRIMARY KEY,
        ts               REAL    NOT NULL,
        platform         TEXT    NOT NULL,
        conversation_key TEXT    NOT NULL,
        turn_id          INTEGER,
        asked_by         TEXT    NOT NULL,
        tool             TEXT    NOT NULL,
        arguments        TEXT    NOT NULL,
        decision         TEXT    NOT NULL,
        decided_by       TEXT    NOT NULL DEFAULT '',
        waited_ms        REAL    NOT NULL DEFAULT 0,
        duration_ms      REAL    NOT NULL DEFAULT 0,
        outcome          TEXT    NOT NULL,
        detail           TEXT    NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX audit_ts ON audit (ts)",
    # One rating per person and answer: a second click replaces the first.
    """
    CREATE TABLE ratings (
        turn_id INTEGER NOT NULL,
        user_id TEXT    NOT NULL,
        rating  INTEGER NOT NULL CHECK (rating IN (-1, 1)),
        ts      REAL    NOT NULL,
        PRIMARY KEY (turn_id, user_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX ratings_ts ON ratings (ts)",
    # The turn a regenerate replaces, and the model that wrote each answer (ratings per model).
    "ALTER TABLE turns ADD COLUMN regenerates INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE turns ADD COLUMN model TEXT NOT NULL DEFAULT ''",
    # A conversation's latest turn (regenerate): the unfinished-turns index is partial, this one is not.
    "CREATE INDEX turns_conversation ON turns (conversation_key, id)",
    "ALTER TABLE usage ADD COLUMN regeneration INTEGER NOT NULL DEFAULT 0 CHECK (regeneration IN (0, 1))",
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(1, "initial schema", _INITIAL),
    Migration(2, "reports: posted days, usage rollup", _REPORTS),
    Migration(3, "fleet: turn owners, conversation order", _FLEET),
    Migration(4, "message links: reply chains", _LINKS),
    Migration(5, "delivery: reply addresses, answers, delivered turns", _DELIVERY),
    Migration(6, "delivery: messages each answer was shown in", _SHOWN),
    Migration(7, "buttons: choices, grants, audit, ratings", _BUTTONS),
)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""


class SchemaTooNewError(RuntimeError):
    """The database was migrated by a newer release; refuse to run rather than corrupt it."""


async def schema_version(conn: aiosqlite.Connection) -> int:
    """The highest applied migration version (0 for a fresh database)."""
    async with conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None else 0


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply pending migrations in order, one transaction each; return the resulting version.

    `conn` must be in autocommit mode (isolation_level=None) so the explicit BEGIN/COMMIT here are the
    only transaction boundaries.
    """
    _check_ordered(migrations)
    await conn.execute(_VERSION_TABLE)
    latest = migrations[-1].version if migrations else 0
    current = await schema_version(conn)
    if current > latest:
        raise SchemaTooNewError(f"database schema is version {current}, this release only knows {latest}")
    for migration in migrations:
        if migration.version <= current:
            continue
        await _apply(conn, migration)
    return await schema_version(conn)


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    # IMMEDIATE takes the write lock up front, so the version re-check below is authoritative even if
    # another process is migrating the same file at the same moment.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        if await schema_version(conn) >= migration.version:
            await conn.rollback()
            return
        for statement in migration.statements:
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.name, time.time()),
        )
    except BaseException:
        await conn.rollback()
        raise
    await conn.commit()


def _check_ordered(migrations: Sequence[Migration]) -> None:
    expected = list(range(1, len(migrations) + 1))
    if [m.version for m in migrations] != expected:
        raise ValueError("migrations must be numbered 1, 2, 3... in order with no gaps")
