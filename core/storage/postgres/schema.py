"""Versioned PostgreSQL schema: the same tables, versions and names as the SQLite schema
(core/storage/migrations.py), in PostgreSQL's types.

`MIGRATIONS` is append-only, like SQLite's: a change is a new version in both files. Timestamps stay
epoch seconds (DOUBLE PRECISION) as in SQLite, so the report SQL (core/storage/usage_sql.py) and the
15-minute bucket arithmetic are shared. Each migration runs in one transaction (PostgreSQL DDL is
transactional) while the migrating process holds an advisory lock, so replicas starting together
migrate once.
"""

from __future__ import annotations

import time
from typing import Any, Final, TypeAlias

from asyncpg import Connection
from asyncpg.pool import PoolConnectionProxy

from core.storage.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from core.storage.migrations import Migration, SchemaTooNewError
from core.storage.usage_sql import ROLLUP_BUCKET_SECONDS, ROLLUPS, SUM_COLUMNS

# A pooled connection or a plain one: both run queries the same way.
AnyConnection: TypeAlias = "Connection[Any] | PoolConnectionProxy[Any]"
_STATUSES = "'pending', 'running', 'done', 'failed', 'cancelled', 'interrupted'"

_INITIAL: tuple[str, ...] = (
    """
    CREATE TABLE sessions (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        conversation_key TEXT    NOT NULL,
        platform         TEXT    NOT NULL,
        workspace        TEXT    NOT NULL,
        channel          TEXT    NOT NULL,
        thread           TEXT    NOT NULL,
        model            TEXT,
        summary          TEXT    NOT NULL DEFAULT '',
        summary_tokens   INTEGER NOT NULL DEFAULT 0,
        created_at       DOUBLE PRECISION NOT NULL,
        closed_at        DOUBLE PRECISION
    )
    """,
    "CREATE UNIQUE INDEX sessions_open_key ON sessions (conversation_key) WHERE closed_at IS NULL",
    """
    CREATE TABLE messages (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id BIGINT   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        role       TEXT     NOT NULL CHECK (role IN ('user', 'assistant')),
        content    TEXT     NOT NULL,
        tokens     INTEGER  NOT NULL DEFAULT 0,
        compacted  SMALLINT NOT NULL DEFAULT 0 CHECK (compacted IN (0, 1)),
        created_at DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX messages_session_live ON messages (session_id, compacted, id)",
    f"""
    CREATE TABLE turns (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        session_id       BIGINT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        conversation_key TEXT   NOT NULL,
        platform         TEXT   NOT NULL,
        workspace        TEXT   NOT NULL,
        channel          TEXT   NOT NULL,
        thread           TEXT   NOT NULL,
        sender_id        TEXT   NOT NULL,
        text             TEXT   NOT NULL,
        event_id         TEXT   NOT NULL,
        status           TEXT   NOT NULL CHECK (status IN ({_STATUSES})),
        created_at       DOUBLE PRECISION NOT NULL,
        updated_at       DOUBLE PRECISION NOT NULL
    )
    """,
    "CREATE INDEX turns_unfinished ON turns (status, id) WHERE status IN ('pending', 'running')",
    "CREATE INDEX turns_session ON turns (session_id)",
    """
    CREATE TABLE events_seen (
        platform TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seen_at  DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (platform, event_id)
    )
    """,
    "CREATE INDEX events_seen_at ON events_seen (seen_at)",
    """
    CREATE TABLE usage (
        id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts                 DOUBLE PRECISION NOT NULL,
        provider           TEXT     NOT NULL,
        model              TEXT     NOT NULL,
        platform           TEXT     NOT NULL,
        workspace          TEXT     NOT NULL,
        channel            TEXT     NOT NULL,
        user_id            TEXT     NOT NULL,
        session_id         BIGINT,
        input_tokens       INTEGER  NOT NULL DEFAULT 0,
        output_tokens      INTEGER  NOT NULL DEFAULT 0,
        cache_read_tokens  INTEGER  NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER  NOT NULL DEFAULT 0,
        cost_usd           DOUBLE PRECISION,
        latency_ms         DOUBLE PRECISION NOT NULL DEFAULT 0,
        ok                 SMALLINT NOT NULL DEFAULT 1 CHECK (ok IN (0, 1)),
        error              TEXT     NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX usage_ts ON usage (ts)",
    "CREATE INDEX usage_user_ts ON usage (user_id, ts)",
    """
    CREATE TABLE tool_calls (
        id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts          DOUBLE PRECISION NOT NULL,
        session_id  BIGINT,
        platform    TEXT     NOT NULL,
        user_id     TEXT     NOT NULL,
        tool        TEXT     NOT NULL,
        ok          SMALLINT NOT NULL CHECK (ok IN (0, 1)),
        duration_ms DOUBLE PRECISION NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX tool_calls_ts ON tool_calls (ts)",
)

_BUCKET = f"(floor({{ts}} / {ROLLUP_BUCKET_SECONDS})::BIGINT * {ROLLUP_BUCKET_SECONDS})"


def _rollup(table: str, keys: tuple[str, ...]) -> tuple[str, ...]:
    """One rollup table, the trigger that keeps it current and a backfill (migration 2: frozen)."""
    key_list = ", ".join(keys)
    sums = ", ".join(SUM_COLUMNS)
    key_defs = "".join(f"{k} TEXT NOT NULL, " for k in keys)
    sum_defs = ", ".join(
        f"{c} {'DOUBLE PRECISION' if c == 'cost_usd' else 'BIGINT'} NOT NULL" for c in SUM_COLUMNS
    )
    # Concurrent inserts into one bucket from several replicas are safe: ON CONFLICT DO UPDATE locks
    # the bucket row until the inserting transaction commits.
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in SUM_COLUMNS)
    new_keys = ", ".join(f"NEW.{k}" for k in keys)
    return (
        f"CREATE TABLE {table} (bucket BIGINT NOT NULL, {key_defs}{sum_defs},"
        f" PRIMARY KEY (bucket, {key_list}))",
        f"""
        CREATE FUNCTION {table}_insert() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {table} (bucket, {key_list}, {sums})
            VALUES ({_BUCKET.format(ts="NEW.ts")}, {new_keys}, 1, 1 - NEW.ok,
                NEW.input_tokens, NEW.output_tokens, NEW.cache_read_tokens, NEW.cache_write_tokens,
                COALESCE(NEW.cost_usd, 0.0), CASE WHEN NEW.cost_usd IS NULL THEN 1 ELSE 0 END)
            ON CONFLICT (bucket, {key_list}) DO UPDATE SET {updates};
            RETURN NULL;
        END
        $$
        """,
        f"CREATE TRIGGER {table}_insert AFTER INSERT ON usage FOR EACH ROW EXECUTE FUNCTION {table}_insert()",
        f"""
        INSERT INTO {table} (bucket, {key_list}, {sums})
        SELECT {_BUCKET.format(ts="ts")} AS b, {key_list}, COUNT(*), SUM(1 - ok),
               SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),
               COALESCE(SUM(cost_usd), 0.0), COUNT(*) - COUNT(cost_usd)
        FROM usage GROUP BY b, {key_list}
        """,
    )


_REPORTS: tuple[str, ...] = (
    """
    CREATE TABLE reports_posted (
        day         TEXT NOT NULL,
        destination TEXT NOT NULL,
        posted_at   DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (day, destination)
    )
    """,
    *(statement for table, keys in ROLLUPS for statement in _rollup(table, keys)),
    "CREATE INDEX usage_ts_session ON usage (ts, session_id)",
    "CREATE INDEX tool_calls_ts_tool ON tool_calls (ts, tool, ok)",
    "DROP INDEX tool_calls_ts",
)

_FLEET: tuple[str, ...] = (
    # The replica that accepted a turn. Each process draws a member number when it opens the store and
    # holds an advisory lock on it for as long as it lives (core/storage/postgres/fleet.py), so "is the
    # owner still alive?" is a pg_locks lookup and the server forgets a crashed replica by itself.
    "ALTER TABLE turns ADD COLUMN owner BIGINT NOT NULL DEFAULT 0",
    "CREATE SEQUENCE fleet_members",
    "CREATE INDEX turns_conversation_unfinished ON turns (conversation_key, id)"
    " WHERE status IN ('pending', 'running')",
)

_LINKS: tuple[str, ...] = (
    """
    CREATE TABLE message_links (
        platform   TEXT NOT NULL,
        chat       TEXT NOT NULL,
        message_id TEXT NOT NULL,
        thread     TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (platform, chat, message_id)
    )
    """,
)

_DELIVERY: tuple[str, ...] = (
    # Adding columns with constant defaults rewrites no rows (PostgreSQL 11+): fast on any history.
    "ALTER TABLE turns ADD COLUMN reply_address TEXT NOT NULL DEFAULT '',"
    " ADD COLUMN is_dm BOOLEAN NOT NULL DEFAULT false,"
    " ADD COLUMN sender_name TEXT NOT NULL DEFAULT '',"
    " ADD COLUMN answer TEXT,"
    " ADD COLUMN delivered_at DOUBLE PRECISION",
    "CREATE INDEX turns_undelivered ON turns (platform, id)"
    " WHERE answer IS NOT NULL AND delivered_at IS NULL",
)

_SHOWN: tuple[str, ...] = ("ALTER TABLE turns ADD COLUMN shown TEXT NOT NULL DEFAULT ''",)

_CHOICE_STATUSES = "'pending', 'approved', 'denied', 'expired', 'cancelled'"

_BUTTONS: tuple[str, ...] = (
    f"""
    CREATE TABLE choices (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        turn_id          BIGINT NOT NULL,
        conversation_key TEXT   NOT NULL,
        call_id          TEXT   NOT NULL,
        tool             TEXT   NOT NULL,
        arguments        TEXT   NOT NULL,
        step             TEXT   NOT NULL,
        requested_by     TEXT   NOT NULL,
        status           TEXT   NOT NULL CHECK (status IN ({_CHOICE_STATUSES})),
        created_at       DOUBLE PRECISION NOT NULL,
        expires_at       DOUBLE PRECISION NOT NULL,
        decided_by       TEXT   NOT NULL DEFAULT '',
        decided_by_name  TEXT   NOT NULL DEFAULT '',
        decided_at       DOUBLE PRECISION,
        message_id       TEXT   NOT NULL DEFAULT '',
        ran_at           DOUBLE PRECISION
    )
    """,
    "CREATE INDEX choices_turn ON choices (turn_id)",
    """
    CREATE TABLE tool_grants (
        conversation_key TEXT NOT NULL,
        tool             TEXT NOT NULL,
        granted_by       TEXT NOT NULL,
        created_at       DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (conversation_key, tool)
    )
    """,
    """
    CREATE TABLE audit (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts               DOUBLE PRECISION NOT NULL,
        platform         TEXT   NOT NULL,
        conversation_key TEXT   NOT NULL,
        turn_id          BIGINT,
        asked_by         TEXT   NOT NULL,
        tool             TEXT   NOT NULL,
        arguments        TEXT   NOT NULL,
        decision         TEXT   NOT NULL,
        decided_by       TEXT   NOT NULL DEFAULT '',
        waited_ms        DOUBLE PRECISION NOT NULL DEFAULT 0,
        duration_ms      DOUBLE PRECISION NOT NULL DEFAULT 0,
        outcome          TEXT   NOT NULL,
        detail           TEXT   NOT NULL DEFAULT ''
    )
    """,
    "CREATE INDEX audit_ts ON audit (ts)",
    """
    CREATE TABLE ratings (
        turn_id BIGINT   NOT NULL,
        user_id TEXT     NOT NULL,
        rating  SMALLINT NOT NULL CHECK (rating IN (-1, 1)),
        ts      DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (turn_id, user_id)
    )
    """,
    "CREATE INDEX ratings_ts ON ratings (ts)",
    # Constant defaults: no table rewrite (PostgreSQL 11+).
    "ALTER TABLE turns ADD COLUMN regenerates BIGINT NOT NULL DEFAULT 0,"
    " ADD COLUMN model TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX turns_conversation ON turns (conversation_key, id)",
    "ALTER TABLE usage ADD COLUMN regeneration BOOLEAN NOT NULL DEFAULT false",
)

# The same versions and names as SQLite's (defined there once), with PostgreSQL's statements.
MIGRATIONS: Final[tuple[Migration, ...]] = tuple(
    Migration(sqlite.version, sqlite.name, statements)
    for sqlite, statements in zip(
        SQLITE_MIGRATIONS, (_INITIAL, _REPORTS, _FLEET, _LINKS, _DELIVERY, _SHOWN, _BUTTONS), strict=True
    )
)

# Advisory lock keys (two-int form: class, key). The classes keep this app's locks apart from anyone
# else's in the same database.
MIGRATION_LOCK: Final = (0x5EA7, 0)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL
)
"""


async def schema_version(conn: AnyConnection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))


async def migrate(conn: AnyConnection, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply pending migrations in order, one transaction each; return the resulting version."""
    latest = migrations[-1].version if migrations else 0
    await conn.execute("SELECT pg_advisory_lock($1, $2)", *MIGRATION_LOCK)
    try:
        await conn.execute(_VERSION_TABLE)
        current = await schema_version(conn)
        if current > latest:
            raise SchemaTooNewError(f"database schema is version {current}, this release only knows {latest}")
        for migration in migrations:
            if migration.version <= current:
                continue
            async with conn.transaction():
                for statement in migration.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    time.time(),
                )
        return await schema_version(conn)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", *MIGRATION_LOCK)
