"""SQLite implementation of `Store` (aiosqlite, WAL).

One connection per store; aiosqlite runs every call on its own thread, in order. A transaction spread
over several calls would let another coroutine's statement slip into it (or a read see half of it), so
every write transaction runs whole inside one call, through group commit (core/storage/group_commit.py),
and reads are single calls.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from core.conversation import Message, message_from_json, message_to_json
from core.inbound import ConversationRef
from core.storage import usage_sql as q
from core.storage.base import (
    SessionHead,
    SessionRecord,
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
from core.storage.choices_sql import ChoiceMethods
from core.storage.group_commit import GroupCommitter
from core.storage.migrations import migrate
from core.storage.rows import (
    SESSION_COLUMNS,
    TURN_COLUMNS,
    Row,
    from_epoch,
    ref_parts,
    session_from_row,
    shown_entry,
    to_epoch,
    turn_from_row,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

MEMORY = ":memory:"

# Owners of the stores open in this process: their unfinished turns are in flight, not left over.
_OPEN_OWNERS: set[int] = set()

_LAST_LIVE_MESSAGE = "SELECT MAX(id) FROM messages WHERE session_id = ? AND compacted = 0"
_INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, role, content, tokens, created_at) VALUES (?, ?, ?, ?, ?)"
)
_SET_TURN_STATUS = "UPDATE turns SET status = ?, updated_at = ? WHERE id = ?"
_SET_TURN_ANSWER = "UPDATE turns SET status = ?, updated_at = ?, answer = ? WHERE id = ?"
# A turn's end with its messages: an answer or model left None keeps what the turn had.
_END_TURN = (
    "UPDATE turns SET status = ?, updated_at = ?, answer = COALESCE(?, answer), model = COALESCE(?, model)"
    " WHERE id = ?"
)


class SQLiteStore(ChoiceMethods):
    """`Store` backed by one SQLite file (or ":memory:").

    Writes go through group commit (one transaction and one thread hop for everything queued at once);
    reads are single aiosqlite calls. Both run on aiosqlite's one thread in order, and a write
    transaction never spans two calls, so a read never sees half of a write.
    """

    shared = False  # one process per database file: memory copies of sessions are always current

    def __init__(self, path: str) -> None:
        self.path = path
        # Marks the turns this process accepts, so taking over unfinished turns never takes its own.
        self.owner = secrets.randbits(31) + 1
        self._conn: aiosqlite.Connection | None = None
        self._writer: GroupCommitter | None = None
        self._lock = asyncio.Lock()  # open / close only

    # Lifecycle

    async def open(self) -> None:
        async with self._lock:  # two concurrent open() calls must not create two connections
            if self._conn is not None:
                return
            try:
                if self.path != MEMORY:
                    # Trivially fast, but it is filesystem I/O, so keep it off the event loop anyway.
                    await asyncio.to_thread(Path(self.path).parent.mkdir, parents=True, exist_ok=True)
                conn = await self._connect()
            except (OSError, sqlite3.DatabaseError) as error:
                # Settings checks catch the usual slips (a directory, a file as folder); this is what only
                # opening finds: no permission, a file that is not SQLite, a full or read-only disk.
                log.debug("opening %s failed", self.path, exc_info=True)
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                raise StoreUnavailableError(
                    f"cannot open the SQLite database {self.path}: {reason}; check DATABASE_URL "
                    "and that the bot may write there"
                ) from None
            self._conn = conn
            self._writer = GroupCommitter(conn)
            _OPEN_OWNERS.add(self.owner)

    async def _connect(self, attempts: int = 5) -> aiosqlite.Connection:
        """Connect, configure and migrate. While another process opens or closes the same file (its
        WAL checkpoint or recovery), SQLite can answer "locked" without waiting for busy_timeout, so a
        locked open is retried a few times."""
        for attempt in range(1, attempts + 1):
            # isolation_level=None: autocommit, so only our explicit BEGIN IMMEDIATE opens transactions.
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                await self._configure(conn)
                await migrate(conn)
                return conn
            except sqlite3.OperationalError as error:
                await conn.close()
                if "locked" not in str(error) or attempt == attempts:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
            except BaseException:
                await conn.close()
                raise
        raise AssertionError("unreachable")

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
            conn, writer = self._conn, self._writer
            self._conn, self._writer = None, None
            if conn is None:
                return
            _OPEN_OWNERS.discard(self.owner)
            try:
                if writer is not None:
                    await writer.close()  # queued writes land before the connection closes
                try:
                    await conn.execute("PRAGMA optimize")  # cheap; keeps planner statistics fresh
                except sqlite3.OperationalError:  # another process holds the file: skip, it is optional
                    log.debug("PRAGMA optimize skipped: database busy")
            finally:
                await conn.close()

    async def ready(self) -> bool:
        return bool(await self._read("SELECT 1"))

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open; await store.open() first")
        return self._conn

    async def _write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open; await store.open() first")
        return await self._writer.write(op)

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(await self._connection().execute_fetchall(sql, params))

    async def _fetch(self, sql: str, params: Sequence[Any], *, write: bool) -> list[Row]:
        if write:  # a write's RETURNING rows are read inside its group-commit transaction
            return await self._write(lambda c: c.execute(sql, params).fetchall())
        return list(await self._read(sql, params))

    async def _change(self, sql: str, params: Sequence[Any]) -> int:
        return await self._write(lambda c: _changed(c, sql, params))

    @property
    def group_commit(self) -> GroupCommitter | None:
        """The write batcher (exposed for tests and benchmarks)."""
        return self._writer

    # Events

    async def claim_event(self, platform: str, event_id: str) -> bool:
        sql = q.CLAIM_EVENT_SQL
        params = (platform, event_id, time.time())
        return await self._write(lambda c: _changed(c, sql, params) == 1)

    async def prune_events(self, older_than: datetime) -> int:
        params = (to_epoch(older_than),)
        return await self._write(lambda c: _changed(c, "DELETE FROM events_seen WHERE seen_at < ?", params))

    # Message links

    async def link_message(self, platform: str, chat: str, message_id: str, thread: str) -> None:
        params = (platform, chat, message_id, thread, time.time())
        await self._write(lambda c: _changed(c, q.LINK_MESSAGE_SQL, params))

    async def linked_thread(self, platform: str, chat: str, message_id: str) -> str | None:
        rows = await self._read(q.LINKED_THREAD_SQL, (platform, chat, message_id))
        return str(rows[0][0]) if rows else None

    # Sessions

    async def current_session(self, ref: ConversationRef) -> SessionRecord:
        # Check-then-insert inside one IMMEDIATE transaction: the write lock makes it atomic across
        # coroutines and processes; the partial unique index backs it up. Going through group commit
        # (rather than a read first) lets a burst of new conversations share a few thread hops.
        return await self._write(lambda conn: _open_session(conn, ref))

    async def start_new_session(self, ref: ConversationRef) -> SessionRecord:
        def close_and_open(conn: sqlite3.Connection) -> SessionRecord:
            conn.execute(
                "UPDATE sessions SET closed_at = ? WHERE conversation_key = ? AND closed_at IS NULL",
                (time.time(), ref.key),
            )
            return _insert_session(conn, ref)

        return await self._write(close_and_open)

    async def session_head(self, ref: ConversationRef) -> SessionHead:
        def head(conn: sqlite3.Connection) -> SessionHead:
            record = _open_session(conn, ref)
            last = conn.execute(_LAST_LIVE_MESSAGE, (record.id,)).fetchone()[0]
            return SessionHead(record, None if last is None else int(last))

        return await self._write(head)

    async def get_session(self, session_id: int) -> SessionRecord | None:
        """A session by id, open or closed (None if unknown)."""
        rows = await self._read(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,))
        return next((session_from_row(row) for row in rows), None)

    async def set_session_model(self, session_id: int, model: str | None) -> None:
        sql = "UPDATE sessions SET model = ? WHERE id = ?"
        await self._write(lambda c: _update_one(c, sql, (model, session_id), "session"))

    async def load_messages(self, session_id: int) -> list[StoredMessage]:
        sql = "SELECT id, content, tokens FROM messages WHERE session_id = ? AND compacted = 0 ORDER BY id"
        # Batched with the writes: loading sessions is on every conversation's first turn, so a burst
        # of new conversations must not cost one thread hop each.
        rows = await self._write(lambda c: c.execute(sql, (session_id,)).fetchall())
        return [StoredMessage(int(row[0]), message_from_json(str(row[1])), int(row[2])) for row in rows]

    async def append_messages(
        self,
        session_id: int,
        messages: Sequence[tuple[Message, int]],
        *,
        turn_id: int | None = None,
        turn_status: TurnStatus | None = None,
        answer: str | None = None,
        model: str | None = None,
    ) -> list[int]:
        if (turn_id is None) != (turn_status is None):
            raise ValueError("turn_id and turn_status must be given together")
        if (answer is not None or model is not None) and turn_id is None:
            raise ValueError("an answer or model needs the turn_id (and turn_status) it belongs to")
        # Serialise before queueing: a bad message fails fast and holds nothing.
        rows = [(session_id, m.role, message_to_json(m), tokens) for m, tokens in messages]

        def append(conn: sqlite3.Connection) -> list[int]:
            now = time.time()
            ids = [_insert(conn, _INSERT_MESSAGE, (*row, now)) for row in rows]
            if turn_id is not None:
                _update_one(conn, _END_TURN, (turn_status, now, answer, model, turn_id), "turn")
            return ids

        return await self._write(append)

    async def compact(
        self, session_id: int, through_message_id: int, summary: str, summary_tokens: int
    ) -> None:
        def compact(conn: sqlite3.Connection) -> None:
            _update_one(
                conn,
                "UPDATE sessions SET summary = ?, summary_tokens = ? WHERE id = ?",
                (summary, summary_tokens, session_id),
                "session",
            )
            conn.execute(
                "UPDATE messages SET compacted = 1 WHERE session_id = ? AND compacted = 0 AND id <= ?",
                (session_id, through_message_id),
            )

        await self._write(compact)

    # Turns

    async def add_turn(
        self, session_id: int, ref: ConversationRef, sender_id: str, text: str, event_id: str
    ) -> TurnRecord:
        now = time.time()
        params = (
            *(session_id, ref.key, *ref_parts(ref), sender_id, text, event_id),
            *("pending", now, now, self.owner, "", 0, "", 0),
        )
        turn_id = await self._write(lambda c: _insert(c, _INSERT_TURN, params))
        return TurnRecord(turn_id, session_id, ref, sender_id, text, event_id, "pending", from_epoch(now))

    async def admit_turn(
        self,
        ref: ConversationRef,
        sender_id: str,
        text: str,
        event_id: str,
        *,
        reply_address: str = "",
        is_dm: bool = False,
        sender_name: str = "",
        regenerates: int = 0,
    ) -> TurnRecord | None:
        now = time.time()

        def admit(conn: sqlite3.Connection) -> TurnRecord | None:
            # One operation, so one transaction: the claim and the turn land together or not at all.
            if _changed(conn, q.CLAIM_EVENT_SQL, (ref.platform, event_id, now)) != 1:
                return None  # already claimed: a redelivery
            session = _open_session(conn, ref)
            params = (
                *(session.id, ref.key, *ref_parts(ref), sender_id, text, event_id),
                *("pending", now, now, self.owner, reply_address, int(is_dm), sender_name, regenerates),
            )
            return TurnRecord(
                *(_insert(conn, _INSERT_TURN, params), session.id, ref, sender_id, text, event_id),
                *("pending", from_epoch(now)),
                reply_address=reply_address,
                is_dm=is_dm,
                sender_name=sender_name,
                regenerates=regenerates,
            )

        return await self._write(admit)

    async def set_turn_status(self, turn_id: int, status: TurnStatus) -> None:
        params = (status, time.time(), turn_id)
        await self._write(lambda c: _update_one(c, _SET_TURN_STATUS, params, "turn"))

    async def set_turn_answer(self, turn_id: int, status: TurnStatus, answer: str) -> None:
        params = (status, time.time(), answer, turn_id)
        await self._write(lambda c: _update_one(c, _SET_TURN_ANSWER, params, "turn"))

    async def mark_delivered(self, turn_id: int) -> None:
        params = (time.time(), turn_id)
        await self._write(lambda c: _update_one(c, _MARK_DELIVERED, params, "turn"))

    async def add_shown_message(self, turn_id: int, message_id: str) -> None:
        params = (shown_entry(message_id), turn_id)
        await self._write(lambda c: _update_one(c, _ADD_SHOWN, params, "turn"))

    async def get_turn(self, turn_id: int) -> TurnRecord | None:
        rows = await self._read(f"SELECT {TURN_COLUMNS} FROM turns WHERE id = ?", (turn_id,))
        return next((turn_from_row(row) for row in rows), None)

    async def unfinished_turns(self, platform: str | None = None) -> list[TurnRecord]:
        # One process per file: a turn whose owner is not a store open in this process was left by an
        # earlier run. The IN list must match the partial index's WHERE clause verbatim for SQLite to
        # use it.
        live = sorted(_OPEN_OWNERS)
        where = f"status IN ('pending', 'running') AND owner NOT IN ({', '.join('?' * len(live))})"
        params: tuple[Any, ...] = tuple(live)
        if platform is not None:
            where += " AND platform = ?"
            params = (*live, platform)
        return await self._write(lambda conn: self._adopt(conn, where, params))

    async def undelivered_turns(self, platform: str, since: datetime) -> list[TurnRecord]:
        # The same ownership rule as unfinished_turns; the first two terms are the partial index's.
        live = sorted(_OPEN_OWNERS)
        where = (
            "answer IS NOT NULL AND delivered_at IS NULL AND platform = ? AND created_at >= ?"
            f" AND owner NOT IN ({', '.join('?' * len(live))})"
        )
        params = (platform, to_epoch(since), *live)
        return await self._write(lambda conn: self._adopt(conn, where, params))

    def _adopt(self, conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> list[TurnRecord]:
        """Take over the turns matching `where` (inside a write transaction), oldest first."""
        rows = conn.execute(f"SELECT {TURN_COLUMNS} FROM turns WHERE {where} ORDER BY id", params)
        turns = [turn_from_row(row) for row in rows.fetchall()]
        conn.executemany("UPDATE turns SET owner = ? WHERE id = ?", [(self.owner, t.id) for t in turns])
        return turns

    async def request_stop(self, key: str) -> bool:
        return False  # one process: every running turn is this process's own

    def on_stop_requested(self, handler: Callable[[str], object]) -> None:
        pass  # nobody else can ask

    @asynccontextmanager
    async def hold_conversation(self, key: str, turn_id: int) -> AsyncIterator[None]:
        yield  # one process: the session manager's per-conversation lock is all the order there is

    # Accounting

    async def record_usage(self, record: UsageRecord) -> None:
        r = record
        params = (
            *(to_epoch(r.ts), r.provider, r.model, r.platform, r.workspace, r.channel),
            *(r.user_id, r.session_id, r.input_tokens, r.output_tokens),
            *(r.cache_read_tokens, r.cache_write_tokens, r.cost_usd, r.latency_ms),
            *(int(r.ok), r.error, int(r.regeneration)),
        )
        await self._write(lambda c: _insert(c, q.INSERT_USAGE_SQL, params))

    async def record_tool_call(self, record: ToolCallRecord) -> None:
        r = record
        params = (to_epoch(r.ts), r.session_id, r.platform, r.user_id, r.tool, int(r.ok), r.duration_ms)
        await self._write(lambda c: _insert(c, q.INSERT_TOOL_CALL_SQL, params))

    async def usage_totals(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        user_id: str | None = None,
        platform: str | None = None,
    ) -> list[UsageTotals]:
        bounds = (to_epoch(since), None if until is None else to_epoch(until))
        sql, params = q.usage_totals_sql(*bounds, user_id=user_id, platform=platform)
        return q.usage_totals(await self._read(sql, params))

    async def usage_grouped(
        self,
        since: datetime,
        until: datetime,
        by: Sequence[UsageDimension],
        *,
        user_id: str | None = None,
        platform: str | None = None,
    ) -> list[UsageGroup]:
        span = (to_epoch(since), to_epoch(until))
        sql, params = q.grouped_usage_sql(*span, by, user_id=user_id, platform=platform)
        return q.usage_groups(await self._read(sql, params), len(by))

    async def count_conversations(self, since: datetime, until: datetime) -> int:
        rows = await self._read(q.CONVERSATIONS_SQL, (to_epoch(since), to_epoch(until)))
        return int(rows[0][0])

    async def tool_totals(self, since: datetime, until: datetime) -> list[ToolCallTotals]:
        return q.tool_totals(await self._read(q.TOOL_TOTALS_SQL, (to_epoch(since), to_epoch(until))))

    # Reports

    async def claim_report(self, day: date, destination: str) -> bool:
        params = (day.isoformat(), destination, time.time())
        return await self._write(lambda c: _changed(c, q.CLAIM_REPORT_SQL, params) == 1)

    async def release_report(self, day: date, destination: str) -> None:
        params = (day.isoformat(), destination)
        await self._write(lambda c: _changed(c, q.RELEASE_REPORT_SQL, params))

    async def last_reported_day(self, destination: str) -> date | None:
        rows = await self._read(q.LAST_REPORTED_SQL, (destination,))
        value = rows[0][0] if rows else None
        return None if value is None else date.fromisoformat(str(value))


# Row helpers. The write helpers run on the database thread, inside a group-commit transaction.

_OPEN_SESSION = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE conversation_key = ? AND closed_at IS NULL"
_INSERT_TURN = (
    "INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread,"
    " sender_id, text, event_id, status, created_at, updated_at, owner, reply_address, is_dm, sender_name,"
    " regenerates) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# Idempotent: a second delivery report keeps the first time.
_MARK_DELIVERED = "UPDATE turns SET delivered_at = COALESCE(delivered_at, ?) WHERE id = ?"
_ADD_SHOWN = "UPDATE turns SET shown = shown || ? WHERE id = ?"


def _open_session(conn: sqlite3.Connection, ref: ConversationRef) -> SessionRecord:
    """The conversation's open session, created if there is none (inside a write transaction)."""
    found = conn.execute(_OPEN_SESSION, (ref.key,)).fetchall()
    return session_from_row(found[0]) if found else _insert_session(conn, ref)


def _insert_session(conn: sqlite3.Connection, ref: ConversationRef) -> SessionRecord:
    now = time.time()
    session_id = _insert(
        conn,
        "INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (ref.key, *ref_parts(ref), now),
    )
    return SessionRecord(session_id, ref, None, "", 0, from_epoch(now))


def _update_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any], what: str) -> None:
    """Run an UPDATE that must hit exactly one row; an unknown id is a caller bug, not a silent no-op."""
    if _changed(conn, sql, params) != 1:
        raise LookupError(f"no {what} with id {params[-1]!r}")


def _changed(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    """Execute one INSERT/UPDATE/DELETE and return how many rows it changed."""
    return conn.execute(sql, params).rowcount


def _insert(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> int:
    """Execute one INSERT and return the new row id."""
    rowid = conn.execute(sql, params).lastrowid
    if rowid is None:  # cannot happen after a successful INSERT; keeps the type honest
        raise RuntimeError("INSERT did not produce a row id")
    return rowid
