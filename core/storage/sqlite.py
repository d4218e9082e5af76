"""SQLite implementation of `Store` (aiosqlite, WAL).

One connection per store. aiosqlite runs every call on its own thread in order, but an `await` between
two statements lets another coroutine slip a statement into our open transaction (and have it rolled
back with ours, or see our half-written rows). So every database access holds `self._lock`; reads too,
because a read on the same connection would otherwise observe uncommitted rows of an in-flight write
(e.g. an assistant tool_use whose tool_result is not inserted yet).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiosqlite

from core.conversation import Message, message_from_json, message_to_json
from core.inbound import ConversationRef
from core.storage.base import (
    SessionRecord,
    StoredMessage,
    ToolCallRecord,
    TurnRecord,
    TurnStatus,
    UsageRecord,
    UsageTotals,
)
from core.storage.migrations import migrate

log = logging.getLogger(__name__)

MEMORY = ":memory:"

_SESSION_COLUMNS = "id, platform, workspace, channel, thread, model, summary, summary_tokens, created_at"
_TURN_COLUMNS = (
    "id, session_id, platform, workspace, channel, thread, sender_id, text, event_id, status, created_at"
)
_INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, role, content, tokens, created_at) VALUES (?, ?, ?, ?, ?)"
)
_SET_TURN_STATUS = "UPDATE turns SET status = ?, updated_at = ? WHERE id = ?"


def to_epoch(moment: datetime) -> float:
    """UTC epoch seconds. Naive datetimes are rejected: guessing their zone silently skews accounting."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass a timezone-aware datetime")
    return moment.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class SQLiteStore:
    """`Store` backed by one SQLite file (or ":memory:")."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    # Lifecycle

    async def open(self) -> None:
        async with self._lock:  # two concurrent open() calls must not create two connections
            if self._conn is not None:
                return
            if self.path != MEMORY:
                # Trivially fast, but it is filesystem I/O, so keep it off the event loop anyway.
                await asyncio.to_thread(Path(self.path).parent.mkdir, parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so only our explicit BEGIN IMMEDIATE opens transactions.
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await self._configure(conn)
                await migrate(conn)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        # busy_timeout first: switching to WAL needs a lock another process may be holding.
        await conn.execute("PRAGMA busy_timeout = 5000")
        async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
            row = await cursor.fetchone()
        mode = str(row[0]).lower() if row else "?"
        if self.path != MEMORY and mode != "wal":
            log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", self.path, mode)
        # NORMAL is durable against application crashes in WAL mode; only an OS crash can lose the
        # last commits, never corrupt the file.
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is None:
                return
            try:
                await conn.execute("PRAGMA optimize")  # cheap; keeps planner statistics fresh
            finally:
                await conn.close()

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive use of the connection for reads and single-statement (autocommit) writes."""
        async with self._lock:
            if self._conn is None:
                raise RuntimeError("store is not open; await store.open() first")
            yield self._conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: all statements inside commit together or not at all."""
        async with self._locked() as conn:
            try:
                # BEGIN is inside the try: if we are cancelled while awaiting it, the worker thread still
                # runs it, and the rollback queued behind it (aiosqlite runs calls in FIFO order) undoes
                # it, instead of leaving the shared connection stuck inside a transaction.
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
            except BaseException:
                # sqlite3's rollback() checks in_transaction when it runs, so it is a no-op if BEGIN
                # failed (busy) or SQLite already rolled back on its own (e.g. disk full).
                await conn.rollback()
                raise
            await conn.commit()

    # Events

    async def claim_event(self, platform: str, event_id: str) -> bool:
        async with self._locked() as conn:
            inserted = await _run(
                conn,
                "INSERT OR IGNORE INTO events_seen (platform, event_id, seen_at) VALUES (?, ?, ?)",
                (platform, event_id, time.time()),
            )
        return inserted == 1

    async def prune_events(self, older_than: datetime) -> int:
        """Forget event ids first seen before `older_than` (platforms stop redelivering after a while).
        Returns how many were removed."""
        async with self._locked() as conn:
            return await _run(conn, "DELETE FROM events_seen WHERE seen_at < ?", (to_epoch(older_than),))

    # Sessions

    async def current_session(self, ref: ConversationRef) -> SessionRecord:
        async with self._locked() as conn:
            found = await _open_session(conn, ref.key)
        if found is not None:
            return found
        # Check-then-insert inside one IMMEDIATE transaction: the write lock makes it atomic across
        # coroutines (our lock) and processes (SQLite's lock); the partial unique index backs it up.
        async with self._transaction() as conn:
            found = await _open_session(conn, ref.key)
            if found is None:
                found = await _insert_session(conn, ref)
        return found

    async def start_new_session(self, ref: ConversationRef) -> SessionRecord:
        async with self._transaction() as conn:
            await _run(
                conn,
                "UPDATE sessions SET closed_at = ? WHERE conversation_key = ? AND closed_at IS NULL",
                (time.time(), ref.key),
            )
            return await _insert_session(conn, ref)

    async def get_session(self, session_id: int) -> SessionRecord | None:
        """A session by id, open or closed (None if unknown)."""
        async with self._locked() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            )
        return next((_session(row) for row in rows), None)

    async def set_session_model(self, session_id: int, model: str | None) -> None:
        async with self._locked() as conn:
            sql = "UPDATE sessions SET model = ? WHERE id = ?"
            await _update_one(conn, sql, (model, session_id), "session")

    async def load_messages(self, session_id: int) -> list[StoredMessage]:
        async with self._locked() as conn:
            rows = await conn.execute_fetchall(
                "SELECT id, content, tokens FROM messages WHERE session_id = ? AND compacted = 0 ORDER BY id",
                (session_id,),
            )
        return [StoredMessage(int(row[0]), message_from_json(str(row[1])), int(row[2])) for row in rows]

    async def append_messages(
        self,
        session_id: int,
        messages: Sequence[tuple[Message, int]],
        *,
        turn_id: int | None = None,
        turn_status: TurnStatus | None = None,
    ) -> list[int]:
        if (turn_id is None) != (turn_status is None):
            raise ValueError("turn_id and turn_status must be given together")
        # Serialise before taking the write lock: a bad message fails fast and holds nothing.
        rows = [(session_id, m.role, message_to_json(m), tokens) for m, tokens in messages]
        ids: list[int] = []
        async with self._transaction() as conn:
            now = time.time()
            for row in rows:
                ids.append(await _insert(conn, _INSERT_MESSAGE, (*row, now)))
            if turn_id is not None:
                await _update_one(conn, _SET_TURN_STATUS, (turn_status, now, turn_id), "turn")
        return ids

    async def compact(
        self, session_id: int, through_message_id: int, summary: str, summary_tokens: int
    ) -> None:
        async with self._transaction() as conn:
            await _update_one(
                conn,
                "UPDATE sessions SET summary = ?, summary_tokens = ? WHERE id = ?",
                (summary, summary_tokens, session_id),
                "session",
            )
            await _run(
                conn,
                "UPDATE messages SET compacted = 1 WHERE session_id = ? AND compacted = 0 AND id <= ?",
                (session_id, through_message_id),
            )

    # Turns

    async def add_turn(
        self, session_id: int, ref: ConversationRef, sender_id: str, text: str, event_id: str
    ) -> TurnRecord:
        now = time.time()
        async with self._locked() as conn:
            turn_id = await _insert(
                conn,
                "INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread,"
                " sender_id, text, event_id, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, ref.key, *_parts(ref), sender_id, text, event_id, "pending", now, now),
            )
        return TurnRecord(turn_id, session_id, ref, sender_id, text, event_id, "pending", from_epoch(now))

    async def set_turn_status(self, turn_id: int, status: TurnStatus) -> None:
        async with self._locked() as conn:
            await _update_one(conn, _SET_TURN_STATUS, (status, time.time(), turn_id), "turn")

    async def unfinished_turns(self, platform: str | None = None) -> list[TurnRecord]:
        # The IN list must match the partial index's WHERE clause verbatim for SQLite to use it.
        sql = f"SELECT {_TURN_COLUMNS} FROM turns WHERE status IN ('pending', 'running')"
        params: tuple[str, ...] = ()
        if platform is not None:
            sql += " AND platform = ?"
            params = (platform,)
        async with self._locked() as conn:
            rows = await conn.execute_fetchall(sql + " ORDER BY id", params)
        return [_turn(row) for row in rows]

    # Accounting

    async def record_usage(self, record: UsageRecord) -> None:
        r = record
        async with self._locked() as conn:
            await _insert(
                conn,
                "INSERT INTO usage (ts, provider, model, platform, workspace, channel, user_id, session_id,"
                " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                " cost_usd, latency_ms, ok, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *(to_epoch(r.ts), r.provider, r.model, r.platform, r.workspace, r.channel),
                    *(r.user_id, r.session_id, r.input_tokens, r.output_tokens),
                    *(r.cache_read_tokens, r.cache_write_tokens, r.cost_usd, r.latency_ms),
                    *(int(r.ok), r.error),
                ),
            )

    async def record_tool_call(self, record: ToolCallRecord) -> None:
        r = record
        async with self._locked() as conn:
            await _insert(
                conn,
                "INSERT INTO tool_calls (ts, session_id, platform, user_id, tool, ok, duration_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (to_epoch(r.ts), r.session_id, r.platform, r.user_id, r.tool, int(r.ok), r.duration_ms),
            )

    async def usage_totals(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        user_id: str | None = None,
        platform: str | None = None,
    ) -> list[UsageTotals]:
        where = ["ts >= ?"]
        params: list[Any] = [to_epoch(since)]
        for clause, value in (("ts < ?", until), ("user_id = ?", user_id), ("platform = ?", platform)):
            if value is not None:
                where.append(clause)
                params.append(to_epoch(value) if isinstance(value, datetime) else value)
        sql = (
            "SELECT provider || ':' || model AS qualified, COUNT(*),"
            " SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),"
            " COALESCE(SUM(cost_usd), 0.0) AS cost, COUNT(*) - COUNT(cost_usd)"
            f" FROM usage WHERE {' AND '.join(where)}"
            " GROUP BY qualified ORDER BY cost DESC, qualified"
        )
        async with self._locked() as conn:
            rows = await conn.execute_fetchall(sql, params)
        return [_totals(row) for row in rows]


# Row helpers (module-level so they are usable inside either context manager)


async def _open_session(conn: aiosqlite.Connection, key: str) -> SessionRecord | None:
    rows = await conn.execute_fetchall(
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE conversation_key = ? AND closed_at IS NULL", (key,)
    )
    return next((_session(row) for row in rows), None)


async def _insert_session(conn: aiosqlite.Connection, ref: ConversationRef) -> SessionRecord:
    now = time.time()
    session_id = await _insert(
        conn,
        "INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (ref.key, *_parts(ref), now),
    )
    return SessionRecord(session_id, ref, None, "", 0, from_epoch(now))


async def _update_one(conn: aiosqlite.Connection, sql: str, params: Sequence[Any], what: str) -> None:
    """Run an UPDATE that must hit exactly one row; an unknown id is a caller bug, not a silent no-op."""
    if await _run(conn, sql, params) != 1:
        raise LookupError(f"no {what} with id {params[-1]!r}")


# Each helper is one trip to aiosqlite's worker thread (a cursor's execute + close would be two): the
# trips, not SQLite itself, are most of a turn's storage cost.


async def _run(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    """Execute one INSERT/UPDATE/DELETE and return how many rows it changed."""
    return len(list(await conn.execute_fetchall(sql + " RETURNING 1", params)))


async def _insert(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    """Execute one INSERT and return the new row id."""
    row = await conn.execute_insert(sql, params)
    if row is None:  # cannot happen after a successful INSERT; keeps the type honest
        raise RuntimeError("INSERT did not produce a row id")
    return int(row[0])


def _session(row: sqlite3.Row) -> SessionRecord:
    # Rebuild the ref from its stored parts, not from the key: the key escapes "|" and is lossy.
    ref = ConversationRef(str(row[1]), str(row[2]), str(row[3]), str(row[4]))
    model = None if row[5] is None else str(row[5])
    return SessionRecord(int(row[0]), ref, model, str(row[6]), int(row[7]), from_epoch(float(row[8])))


def _turn(row: sqlite3.Row) -> TurnRecord:
    ref = ConversationRef(str(row[2]), str(row[3]), str(row[4]), str(row[5]))
    status = cast(TurnStatus, str(row[9]))  # guaranteed by the CHECK constraint
    created = from_epoch(float(row[10]))
    return TurnRecord(int(row[0]), int(row[1]), ref, str(row[6]), str(row[7]), str(row[8]), status, created)


def _totals(row: sqlite3.Row) -> UsageTotals:
    tokens = (int(row[2]), int(row[3]), int(row[4]), int(row[5]))
    return UsageTotals(str(row[0]), int(row[1]), *tokens, float(row[6]), int(row[7]))


def _parts(ref: ConversationRef) -> tuple[str, str, str, str]:
    return (ref.platform, ref.workspace, ref.channel, ref.thread)
