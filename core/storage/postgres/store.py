"""PostgreSQL implementation of `Store` (asyncpg), for one process or a fleet of replicas.

A connection pool serves queries; every write that must be atomic runs in one transaction on one pooled
connection. Uniqueness the fleet relies on is the database's: an event id, an open session per
conversation and a report day are unique keys, so replicas racing for them get one winner. Turn order
across replicas and taking over a dead replica's turns go through `Fleet` (fleet.py).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any

import asyncpg

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
from core.storage.postgres.fleet import OWNER_ALIVE_SQL, Fleet
from core.storage.postgres.schema import migrate
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

_OPEN_SESSION = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE conversation_key = $1 AND closed_at IS NULL"
_INSERT_SESSION = (
    "INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)"
    " VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (conversation_key) WHERE closed_at IS NULL DO NOTHING"
    f" RETURNING {SESSION_COLUMNS}"
)
_CLOSE_OPEN_SESSION = "UPDATE sessions SET closed_at = $1 WHERE conversation_key = $2 AND closed_at IS NULL"
_OPEN_SESSION_HEAD = (
    f"SELECT {SESSION_COLUMNS},"
    " (SELECT MAX(m.id) FROM messages m WHERE m.session_id = s.id AND m.compacted = 0)"
    " FROM sessions s WHERE conversation_key = $1 AND closed_at IS NULL"
)
# Messages (and optionally their turn's status, answer and model) in one statement. `locked` takes the session
# row first (the scalar subquery runs before any row is inserted), so appends to one session queue there:
# each append's ids are consecutive and id order is commit order (identity values are handed out per row,
# so two concurrent inserts would interleave). When a turn is named but missing, nothing is inserted.
_APPEND = """
WITH locked AS (SELECT id FROM sessions WHERE id = $1 FOR NO KEY UPDATE),
turn AS (
    UPDATE turns SET status = $6, updated_at = $5, answer = COALESCE($8::TEXT, answer),
        model = COALESCE($9::TEXT, model)
    WHERE id = $7::BIGINT RETURNING id
),
added AS (
    INSERT INTO messages (session_id, role, content, tokens, created_at)
    SELECT $1, m.role, m.content, m.tokens, $5
    FROM unnest($2::TEXT[], $3::TEXT[], $4::INTEGER[]) WITH ORDINALITY AS m (role, content, tokens, n)
    WHERE (SELECT COUNT(*) FROM locked) >= 0 AND ($7::BIGINT IS NULL OR EXISTS (SELECT 1 FROM turn))
    ORDER BY m.n
    RETURNING id
)
SELECT ARRAY(SELECT id FROM added ORDER BY id), (SELECT COUNT(*) FROM turn)
"""
_SET_TURN_STATUS = "UPDATE turns SET status = $1, updated_at = $2 WHERE id = $3"
_SET_TURN_ANSWER = "UPDATE turns SET status = $1, updated_at = $2, answer = $3 WHERE id = $4"
# Idempotent: a second delivery report keeps the first time.
_MARK_DELIVERED = "UPDATE turns SET delivered_at = COALESCE(delivered_at, $1) WHERE id = $2"
_ADD_SHOWN = "UPDATE turns SET shown = shown || $1 WHERE id = $2"
_INSERT_TURN = (
    "INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread,"
    " sender_id, text, event_id, status, created_at, updated_at, owner)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id"
)
# Claim the event, find or open the conversation's session and store the turn: one statement, so one
# round trip and atomic by itself. Nothing but the claim attempt happens when the event was already
# claimed (every later step needs a row from `claimed`). The session comes from this statement's
# snapshot when it is open there; otherwise it is inserted, and if another replica opened it meanwhile
# (not in our snapshot) the no-op DO UPDATE hands back that replica's row instead (READ COMMITTED
# locks and returns a conflicting row even when the snapshot cannot see it).
_ADMIT_TURN = """
WITH claimed AS (
    INSERT INTO events_seen (platform, event_id, seen_at) VALUES ($2, $8, $9)
    ON CONFLICT DO NOTHING RETURNING 1
),
found AS (
    SELECT id FROM sessions
    WHERE conversation_key = $1 AND closed_at IS NULL AND EXISTS (SELECT 1 FROM claimed)
),
opened AS (
    INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)
    SELECT $1, $2, $3, $4, $5, $9 WHERE EXISTS (SELECT 1 FROM claimed) AND NOT EXISTS (SELECT 1 FROM found)
    ON CONFLICT (conversation_key) WHERE closed_at IS NULL DO UPDATE SET model = sessions.model
    RETURNING id
),
session AS (SELECT id FROM found UNION ALL SELECT id FROM opened),
turn AS (
    INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread, sender_id, text,
        event_id, status, created_at, updated_at, owner, reply_address, is_dm, sender_name, regenerates)
    SELECT id, $1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $9, $10, $11, $12, $13, $14 FROM session
    RETURNING id, session_id
)
SELECT id, session_id FROM turn
"""
# Take over the turns of replicas that are gone. SKIP LOCKED: two replicas sweeping at once split the
# turns between them instead of both taking each.
_ADOPT = f"""
UPDATE turns SET owner = $1 WHERE id IN (
    SELECT t.id FROM turns t
    WHERE {{where}} AND t.owner <> $1 AND NOT {OWNER_ALIVE_SQL}
    FOR UPDATE SKIP LOCKED
) RETURNING {TURN_COLUMNS}
"""
_ADOPT_TURNS = _ADOPT.format(
    where="t.status IN ('pending', 'running') AND ($2::TEXT IS NULL OR t.platform = $2)"
)
# Finished turns whose answer never reached the platform; the first two terms are the partial index's.
_ADOPT_UNDELIVERED = _ADOPT.format(
    where="t.answer IS NOT NULL AND t.delivered_at IS NULL AND t.platform = $2 AND t.created_at >= $3"
)
_INSERT_USAGE = q.numbered(q.INSERT_USAGE_SQL)
_INSERT_TOOL_CALL = q.numbered(q.INSERT_TOOL_CALL_SQL)
_CLAIM_EVENT = q.numbered(q.CLAIM_EVENT_SQL)
_LINK_MESSAGE = q.numbered(q.LINK_MESSAGE_SQL)
_LINKED_THREAD = q.numbered(q.LINKED_THREAD_SQL)
_CLAIM_REPORT = q.numbered(q.CLAIM_REPORT_SQL)
_RELEASE_REPORT = q.numbered(q.RELEASE_REPORT_SQL)
_LAST_REPORTED = q.numbered(q.LAST_REPORTED_SQL)
_CONVERSATIONS = q.numbered(q.CONVERSATIONS_SQL)
_TOOL_TOTALS = q.numbered(q.TOOL_TOTALS_SQL)


class PostgresStore(ChoiceMethods):
    """`Store` on a PostgreSQL database shared by any number of bot processes."""

    shared = True

    def __init__(self, dsn: str, *, pool_size: int = 10) -> None:
        self._dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._fleet: Fleet | None = None
        self._stop_handlers: list[Callable[[str], object]] = []
        self._lock = asyncio.Lock()  # open / close only

    # Lifecycle

    async def open(self) -> None:
        async with self._lock:
            if self._pool is not None:
                return
            try:
                pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                # asyncpg's messages name host, port, user and database, never the password.
                raise StoreUnavailableError(f"cannot connect to PostgreSQL: {error}") from None
            except ValueError:
                # asyncpg could not parse the DSN (a port or option it rejects). Its message may quote
                # a piece of a mistyped URL, which can be the password: not repeated.
                raise StoreUnavailableError(
                    "DATABASE_URL: the PostgreSQL URL cannot be parsed (check the port and ?options); "
                    "write postgresql://user:password@host:5432/dbname"
                ) from None
            try:
                async with pool.acquire() as conn:
                    await migrate(conn)
                fleet = Fleet(self._connect, pool, self._stop_handlers)
                await fleet.start()
            except BaseException:
                await pool.close()
                raise
            self._pool, self._fleet = pool, fleet

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self._dsn)

    async def close(self) -> None:
        async with self._lock:
            pool, fleet = self._pool, self._fleet
            self._pool, self._fleet = None, None
            if fleet is not None:
                await fleet.close()
            if pool is not None:
                await pool.close()

    async def ready(self) -> bool:
        # Without the fleet connection this process can neither order turns nor prove it is alive.
        if not self._fleet_member().attached:
            return False
        try:
            return bool(await self._db().fetchval("SELECT 1") == 1)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    @property
    def owner(self) -> int:
        """This process's fleet member number (recorded on the turns it accepts)."""
        return self._fleet_member().member

    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not open; await store.open() first")
        return self._pool

    async def _fetch(self, sql: str, params: Sequence[Any], *, write: bool) -> list[Row]:
        return list(await self._db().fetch(_numbered(sql), *params))  # one statement: atomic by itself

    async def _change(self, sql: str, params: Sequence[Any]) -> int:
        return _count(await self._db().execute(_numbered(sql), *params))

    def _fleet_member(self) -> Fleet:
        if self._fleet is None:
            raise RuntimeError("store is not open; await store.open() first")
        return self._fleet

    # Events

    async def claim_event(self, platform: str, event_id: str) -> bool:
        return _count(await self._db().execute(_CLAIM_EVENT, platform, event_id, time.time())) == 1

    async def prune_events(self, older_than: datetime) -> int:
        status = await self._db().execute("DELETE FROM events_seen WHERE seen_at < $1", to_epoch(older_than))
        return _count(status)

    # Message links

    async def link_message(self, platform: str, chat: str, message_id: str, thread: str) -> None:
        await self._db().execute(_LINK_MESSAGE, platform, chat, message_id, thread, time.time())

    async def linked_thread(self, platform: str, chat: str, message_id: str) -> str | None:
        value = await self._db().fetchval(_LINKED_THREAD, platform, chat, message_id)
        return None if value is None else str(value)

    # Sessions

    async def current_session(self, ref: ConversationRef) -> SessionRecord:
        async with self._db().acquire() as conn:
            return await _open_session(conn, ref)

    async def session_head(self, ref: ConversationRef) -> SessionHead:
        row = await self._db().fetchrow(_OPEN_SESSION_HEAD, ref.key)
        if row is None:  # no open session: open one (it has no messages yet)
            return SessionHead(await self.current_session(ref), None)
        last = row[len(SESSION_COLUMNS.split(","))]
        return SessionHead(session_from_row(row), None if last is None else int(last))

    async def start_new_session(self, ref: ConversationRef) -> SessionRecord:
        for _ in range(3):
            try:
                async with self._db().acquire() as conn, conn.transaction():
                    await conn.execute(
                        _CLOSE_OPEN_SESSION,
                        time.time(),
                        ref.key,
                    )
                    row = await conn.fetchrow(_INSERT_SESSION, ref.key, *ref_parts(ref), time.time())
                if row is not None:
                    return session_from_row(row)
            except asyncpg.UniqueViolationError:
                pass  # another replica opened a session between our close and insert: close it too
        raise RuntimeError(f"could not open a new session for {ref.key}: too much contention")

    async def get_session(self, session_id: int) -> SessionRecord | None:
        """A session by id, open or closed (None if unknown)."""
        row = await self._db().fetchrow(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1", session_id)
        return None if row is None else session_from_row(row)

    async def set_session_model(self, session_id: int, model: str | None) -> None:
        status = await self._db().execute("UPDATE sessions SET model = $1 WHERE id = $2", model, session_id)
        _expect_one(status, "session", session_id)

    async def load_messages(self, session_id: int) -> list[StoredMessage]:
        rows = await self._db().fetch(
            "SELECT id, content, tokens FROM messages WHERE session_id = $1 AND compacted = 0 ORDER BY id",
            session_id,
        )
        return [StoredMessage(int(r[0]), message_from_json(str(r[1])), int(r[2])) for r in rows]

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
        # Serialise before touching the database: a bad message fails fast and holds nothing.
        roles = [m.role for m, _ in messages]
        contents = [message_to_json(m) for m, _ in messages]
        tokens = [t for _, t in messages]
        now = time.time()
        # One statement, so one round trip and atomic by itself.
        params = (session_id, roles, contents, tokens, now, turn_status, turn_id, answer, model)
        row = await self._db().fetchrow(_APPEND, *params)
        assert row is not None  # the final SELECT always yields one row
        if turn_id is not None and row[1] != 1:
            raise LookupError(f"no turn with id {turn_id!r}")  # and nothing was inserted
        return [int(i) for i in row[0]]

    async def compact(
        self, session_id: int, through_message_id: int, summary: str, summary_tokens: int
    ) -> None:
        async with self._db().acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE sessions SET summary = $1, summary_tokens = $2 WHERE id = $3",
                summary,
                summary_tokens,
                session_id,
            )
            _expect_one(status, "session", session_id)
            await conn.execute(
                "UPDATE messages SET compacted = 1 WHERE session_id = $1 AND compacted = 0 AND id <= $2",
                session_id,
                through_message_id,
            )

    # Turns

    async def add_turn(
        self, session_id: int, ref: ConversationRef, sender_id: str, text: str, event_id: str
    ) -> TurnRecord:
        now = time.time()
        turn_id = await self._db().fetchval(
            _INSERT_TURN,
            *(session_id, ref.key, *ref_parts(ref), sender_id, text, event_id),
            *("pending", now, now, self.owner),
        )
        return TurnRecord(
            int(turn_id), session_id, ref, sender_id, text, event_id, "pending", from_epoch(now)
        )

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
        row = await self._db().fetchrow(
            _ADMIT_TURN,
            *(ref.key, *ref_parts(ref), sender_id, text, event_id, now, self.owner),
            *(reply_address, is_dm, sender_name, regenerates),
        )
        if row is None:
            return None  # already claimed: a redelivery, or another replica got it first
        return TurnRecord(
            *(int(row[0]), int(row[1]), ref, sender_id, text, event_id, "pending", from_epoch(now)),
            reply_address=reply_address,
            is_dm=is_dm,
            sender_name=sender_name,
            regenerates=regenerates,
        )

    async def set_turn_status(self, turn_id: int, status: TurnStatus) -> None:
        _expect_one(await self._db().execute(_SET_TURN_STATUS, status, time.time(), turn_id), "turn", turn_id)

    async def set_turn_answer(self, turn_id: int, status: TurnStatus, answer: str) -> None:
        status_line = await self._db().execute(_SET_TURN_ANSWER, status, time.time(), answer, turn_id)
        _expect_one(status_line, "turn", turn_id)

    async def mark_delivered(self, turn_id: int) -> None:
        _expect_one(await self._db().execute(_MARK_DELIVERED, time.time(), turn_id), "turn", turn_id)

    async def add_shown_message(self, turn_id: int, message_id: str) -> None:
        status_line = await self._db().execute(_ADD_SHOWN, shown_entry(message_id), turn_id)
        _expect_one(status_line, "turn", turn_id)

    async def get_turn(self, turn_id: int) -> TurnRecord | None:
        row = await self._db().fetchrow(f"SELECT {TURN_COLUMNS} FROM turns WHERE id = $1", turn_id)
        return None if row is None else turn_from_row(row)

    async def unfinished_turns(self, platform: str | None = None) -> list[TurnRecord]:
        rows = await self._db().fetch(_ADOPT_TURNS, self.owner, platform)
        return sorted((turn_from_row(row) for row in rows), key=lambda turn: turn.id)

    async def undelivered_turns(self, platform: str, since: datetime) -> list[TurnRecord]:
        rows = await self._db().fetch(_ADOPT_UNDELIVERED, self.owner, platform, to_epoch(since))
        return sorted((turn_from_row(row) for row in rows), key=lambda turn: turn.id)

    async def request_stop(self, key: str) -> bool:
        return await self._fleet_member().request_stop(key)

    def on_stop_requested(self, handler: Callable[[str], object]) -> None:
        self._stop_handlers.append(handler)

    @asynccontextmanager
    async def hold_conversation(self, key: str, turn_id: int) -> AsyncIterator[None]:
        async with self._fleet_member().hold(key, turn_id):
            yield

    # Accounting

    async def record_usage(self, record: UsageRecord) -> None:
        r = record
        await self._db().execute(
            _INSERT_USAGE,
            *(to_epoch(r.ts), r.provider, r.model, r.platform, r.workspace, r.channel),
            *(r.user_id, r.session_id, r.input_tokens, r.output_tokens),
            *(r.cache_read_tokens, r.cache_write_tokens, r.cost_usd, r.latency_ms),
            *(int(r.ok), r.error, r.regeneration),
        )

    async def record_tool_call(self, record: ToolCallRecord) -> None:
        r = record
        await self._db().execute(
            _INSERT_TOOL_CALL,
            *(to_epoch(r.ts), r.session_id, r.platform, r.user_id, r.tool, int(r.ok), r.duration_ms),
        )

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
        return q.usage_totals(await self._db().fetch(q.numbered(sql), *params))

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
        return q.usage_groups(await self._db().fetch(q.numbered(sql), *params), len(by))

    async def count_conversations(self, since: datetime, until: datetime) -> int:
        return int(await self._db().fetchval(_CONVERSATIONS, to_epoch(since), to_epoch(until)))

    async def tool_totals(self, since: datetime, until: datetime) -> list[ToolCallTotals]:
        return q.tool_totals(await self._db().fetch(_TOOL_TOTALS, to_epoch(since), to_epoch(until)))

    # Reports

    async def claim_report(self, day: date, destination: str) -> bool:
        status = await self._db().execute(_CLAIM_REPORT, day.isoformat(), destination, time.time())
        return _count(status) == 1

    async def release_report(self, day: date, destination: str) -> None:
        await self._db().execute(_RELEASE_REPORT, day.isoformat(), destination)

    async def last_reported_day(self, destination: str) -> date | None:
        value = await self._db().fetchval(_LAST_REPORTED, destination)
        return None if value is None else date.fromisoformat(str(value))


async def _open_session(conn: asyncpg.Connection | Any, ref: ConversationRef) -> SessionRecord:
    """The open session, created if there is none. The partial unique index decides races: a replica
    whose insert loses reads the winner's row."""
    while True:
        row = await conn.fetchrow(_OPEN_SESSION, ref.key)
        if row is None:
            row = await conn.fetchrow(_INSERT_SESSION, ref.key, *ref_parts(ref), time.time())
        if row is not None:
            return session_from_row(row)


@functools.cache
def _numbered(sql: str) -> str:
    """The shared SQL's `?` placeholders numbered, once per statement text."""
    return q.numbered(sql)


def _count(status: str) -> int:
    """Rows changed, from a command status such as "INSERT 0 1" or "DELETE 3"."""
    return int(status.rsplit(" ", 1)[-1])


def _expect_one(status: str, what: str, key: object) -> None:
    """An UPDATE that must hit exactly one row; an unknown id is a caller bug, not a silent no-op."""
    if _count(status) != 1:
        raise LookupError(f"no {what} with id {key!r}")
