"""Store tests, on both backends.

Most tests only use the `Store` protocol through the `store` / `make_store` fixtures, which run them on
a SQLite file, SQLite in memory and a real PostgreSQL server (tests/pgserver.py). Tests that inspect
SQLite itself (pragmas, schema_version, migrations) build a `SQLiteStore` on a tmp_path file directly;
PostgreSQL's own (migrations, fleet coordination) are in tests/test_store_postgres.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from core.conversation import ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock
from core.inbound import ConversationRef
from core.storage import (
    SQLiteStore,
    Store,
    StoreUnavailableError,
    ToolCallRecord,
    UsageRecord,
    UsageTotals,
    describe_database,
    open_store,
    postgres_dsn_from_url,
    sqlite_path_from_url,
)
from core.storage.migrations import MIGRATIONS, Migration, SchemaTooNewError, migrate
from core.storage.postgres import PostgresStore
from tests.ports import free_port

StoreFactory = Callable[[], Store]

PERSISTENT_BACKENDS = ["sqlite-file", "postgres"]
ALL_BACKENDS = [*PERSISTENT_BACKENDS, "sqlite-memory"]

REF = ConversationRef("slack", "T1", "C1", "1700000000.0001")
OTHER_REF = ConversationRef("discord", "G1", "C9")


# Fixtures and helpers


@pytest.fixture(params=PERSISTENT_BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of unopened stores that all point at the same database (for re-open tests)."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return lambda: open_store(url)
    path = str(tmp_path / "missing-dir" / "bot.db")  # the parent does not exist yet: open() creates it
    return lambda: SQLiteStore(path)


@pytest.fixture(params=ALL_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        opened: Store = open_store(request.getfixturevalue("postgres_url"))
    else:
        opened = SQLiteStore(":memory:" if request.param == "sqlite-memory" else str(tmp_path / "bot.db"))
    await opened.open()
    yield opened
    await opened.close()


@asynccontextmanager
async def opened(factory: StoreFactory) -> AsyncIterator[Store]:
    instance = factory()
    await instance.open()
    try:
        yield instance
    finally:
        await instance.close()


async def query(path: Path | str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Inspect a database file through an independent connection."""
    async with aiosqlite.connect(path) as conn:
        rows = await conn.execute_fetchall(sql, params)
    return [tuple(row) for row in rows]


async def status_of(store: Store, turn_id: int) -> str:
    turn = await store.get_turn(turn_id)
    assert turn is not None
    return turn.status


def assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1)


def tool_pair(n: int) -> list[tuple[Message, int]]:
    use = Message("assistant", (ToolUseBlock(f"call_{n}", "search", {"q": n}),))
    result = Message("user", (ToolResultBlock(f"call_{n}", f"result {n}"),))
    return [(use, 10), (result, 5)]


T0 = datetime(2025, 1, 1, tzinfo=UTC)


def usage(
    hours: float = 0,
    *,
    provider: str = "anthropic",
    model: str = "claude",
    user_id: str = "U1",
    platform: str = "slack",
    cost: float | None = 0.01,
    tokens: tuple[int, int, int, int] = (100, 10, 1, 2),
) -> UsageRecord:
    return UsageRecord(
        ts=T0 + timedelta(hours=hours),
        provider=provider,
        model=model,
        platform=platform,
        workspace="T1",
        channel="C1",
        user_id=user_id,
        session_id=None,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        cost_usd=cost,
        latency_ms=123.0,
    )


# Lifecycle, pragmas and migrations (SQLite-specific)


async def test_migrations_apply_once_and_reopen_is_noop(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    versions_sql = "SELECT version, name, applied_at FROM schema_version ORDER BY version"
    async with opened(lambda: SQLiteStore(str(path))):
        pass
    first = await query(path, versions_sql)
    assert [r[0] for r in first] == [m.version for m in MIGRATIONS]
    async with opened(lambda: SQLiteStore(str(path))):
        pass
    assert await query(path, versions_sql) == first  # re-open applied nothing (applied_at unchanged)
    tables = {r[0] for r in await query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"sessions", "messages", "turns", "events_seen", "usage", "tool_calls"} <= tables


async def test_failed_migration_rolls_back_and_keeps_version(tmp_path: Path) -> None:
    good = Migration(1, "one", ("CREATE TABLE a (x INTEGER)",))
    bad = Migration(2, "two", ("CREATE TABLE b (x INTEGER)", "THIS IS NOT SQL"))
    async with aiosqlite.connect(tmp_path / "m.db", isolation_level=None) as conn:
        assert await migrate(conn, [good]) == 1
        assert await migrate(conn, [good]) == 1  # idempotent
        with pytest.raises(sqlite3.OperationalError):
            await migrate(conn, [good, bad])
        names = {r[0] for r in await conn.execute_fetchall("SELECT name FROM sqlite_master")}
        assert "a" in names
        assert "b" not in names  # the half-applied migration's DDL was rolled back
        assert await migrate(conn, [good]) == 1
        with pytest.raises(ValueError, match="numbered"):
            await migrate(conn, [bad])


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    instance = SQLiteStore(str(path))
    await instance.open()
    await instance.close()
    async with aiosqlite.connect(path) as conn:
        await conn.execute("INSERT INTO schema_version VALUES (999, 'future', 0)")
        await conn.commit()
    with pytest.raises(SchemaTooNewError):
        await SQLiteStore(str(path)).open()


async def test_pragmas_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bot.db"
    instance = SQLiteStore(str(path))
    await instance.open()
    try:
        assert path.exists()  # parent directories were created
        assert await query(path, "PRAGMA journal_mode") == [("wal",)]  # persisted in the file
        conn = instance._conn
        assert conn is not None
        for pragma, expected in (("foreign_keys", 1), ("synchronous", 1), ("busy_timeout", 5000)):
            rows = list(await conn.execute_fetchall(f"PRAGMA {pragma}"))
            assert rows[0][0] == expected, pragma
    finally:
        await instance.close()


async def test_open_close_are_idempotent_and_closed_store_refuses(tmp_path: Path) -> None:
    instance = SQLiteStore(str(tmp_path / "bot.db"))
    await instance.open()
    await instance.open()
    await instance.close()
    await instance.close()
    with pytest.raises(RuntimeError, match="not open"):
        await instance.claim_event("slack", "e1")


async def test_invalid_turn_status_is_rejected_atomically(tmp_path: Path) -> None:
    instance = SQLiteStore(str(tmp_path / "bot.db"))
    await instance.open()
    try:
        session = await instance.current_session(REF)
        turn = await instance.add_turn(session.id, REF, "U1", "hi", "e1")
        with pytest.raises(sqlite3.IntegrityError):
            await instance.append_messages(
                session.id,
                [(Message.assistant("x"), 1)],
                turn_id=turn.id,
                turn_status="bogus",  # type: ignore[arg-type]
            )
        assert await instance.load_messages(session.id) == []
        assert (await instance.get_turn(turn.id)) == turn
        with pytest.raises(sqlite3.IntegrityError):  # foreign keys are enforced
            await instance.append_messages(12345, [(Message.user("orphan"), 1)])
    finally:
        await instance.close()


async def test_record_tool_call_and_prune_events(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    instance = SQLiteStore(str(path))
    await instance.open()
    try:
        now = datetime.now(UTC)
        await instance.record_tool_call(ToolCallRecord(now, None, "slack", "U1", "search", True, 12.5))
        await instance.record_tool_call(ToolCallRecord(now, 7, "slack", "U1", "fetch", False, 3.0))
        assert await instance.claim_event("slack", "e1")
        assert await instance.prune_events(now - timedelta(hours=1)) == 0
        assert not await instance.claim_event("slack", "e1")
        assert await instance.prune_events(datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert await instance.claim_event("slack", "e1")  # forgotten, so claimable again
        with pytest.raises(ValueError, match="naive"):
            await instance.prune_events(datetime(2025, 1, 1))
    finally:
        await instance.close()
    rows = await query(path, "SELECT session_id, tool, ok, duration_ms FROM tool_calls ORDER BY id")
    assert rows == [(None, "search", 1, 12.5), (7, "fetch", 0, 3.0)]


# Events


async def test_ready_when_open(store: Store) -> None:
    assert await store.ready()


async def test_claim_event_dedupes(store: Store) -> None:
    assert await store.claim_event("slack", "e1")
    assert not await store.claim_event("slack", "e1")
    assert await store.claim_event("discord", "e1")  # ids are scoped per platform
    results = await asyncio.gather(*(store.claim_event("slack", "e2") for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]


async def test_claim_event_survives_reopen(make_store: StoreFactory) -> None:
    async with opened(make_store) as first:
        assert await first.claim_event("slack", "e1")
    async with opened(make_store) as second:
        assert not await second.claim_event("slack", "e1")


# Sessions


async def test_message_links_round_trip_update_and_survive_reopen(make_store: StoreFactory) -> None:
    async with opened(make_store) as first:
        assert await first.linked_thread("telegram", "-100", "55") is None
        await first.link_message("telegram", "-100", "55", "7")
        await first.link_message("telegram", "-100", "56", "7")
        await first.link_message("telegram", "-100", "56", "9")  # linked again: the latest wins
        await first.link_message("telegram", "-200", "55", "1")  # another chat
    async with opened(make_store) as second:
        assert await second.linked_thread("telegram", "-100", "55") == "7"
        assert await second.linked_thread("telegram", "-100", "56") == "9"
        assert await second.linked_thread("telegram", "-200", "55") == "1"
        assert await second.linked_thread("slack", "-100", "55") is None


async def test_current_session_is_race_safe(store: Store) -> None:
    sessions = await asyncio.gather(*(store.current_session(REF) for _ in range(20)))
    assert len({s.id for s in sessions}) == 1
    again = await store.current_session(REF)
    assert again == sessions[0]
    assert again.ref == REF
    assert (again.model, again.summary, again.summary_tokens) == (None, "", 0)
    assert_utc(again.created_at)
    assert (await store.current_session(OTHER_REF)).id != again.id


async def test_current_session_is_race_safe_across_connections(make_store: StoreFactory) -> None:
    # Two store instances on one file stand in for two processes sharing the database.
    async with opened(make_store) as a, opened(make_store) as b:
        sessions = await asyncio.gather(*(s.current_session(REF) for _ in range(10) for s in (a, b)))
    assert len({s.id for s in sessions}) == 1


async def test_ref_parts_round_trip(store: Store) -> None:
    ref = ConversationRef("telegram", "", "-100123", "")
    session = await store.current_session(ref)
    assert session.ref == ref
    assert (await store.current_session(ref)).ref == ref


async def test_start_new_session_keeps_old_messages(store: Store) -> None:
    old = await store.current_session(REF)
    await store.append_messages(old.id, [(Message.user("hello"), 3), (Message.assistant("hi"), 2)])
    await store.set_session_model(old.id, "openai:gpt-4o")
    new = await store.start_new_session(REF)
    assert new.id != old.id
    assert new.ref == REF
    assert new.model is None  # a fresh session starts on the default model
    assert_utc(new.created_at)
    assert await store.load_messages(new.id) == []
    assert [m.message.text for m in await store.load_messages(old.id)] == ["hello", "hi"]
    assert (await store.current_session(REF)).id == new.id
    assert (await store.current_session(OTHER_REF)).id not in (old.id, new.id)


async def test_start_new_session_without_open_session(store: Store) -> None:
    first = await store.start_new_session(REF)
    assert (await store.current_session(REF)).id == first.id


async def test_set_session_model(store: Store) -> None:
    session = await store.current_session(REF)
    await store.set_session_model(session.id, "anthropic:claude-sonnet")
    assert (await store.current_session(REF)).model == "anthropic:claude-sonnet"
    await store.set_session_model(session.id, None)
    assert (await store.current_session(REF)).model is None
    with pytest.raises(LookupError):
        await store.set_session_model(999_999, "x")


# Messages


async def test_append_load_round_trip_every_block(store: Store) -> None:
    session = await store.current_session(REF)
    messages = [
        Message("user", (TextBlock("look ü 🙂"), ImageBlock("image/png", data_b64="iVBORw0KGgo="))),
        Message("user", (ImageBlock("image/jpeg", url="https://example.com/a.jpg"),)),
        Message(
            "assistant",
            (
                TextBlock("checking"),
                ToolUseBlock("tu_1", "search", {"q": "x", "opts": {"n": 3, "tags": ["a", None, 1.5]}}),
                ToolUseBlock("tu_2", "noop", {}),
            ),
        ),
        Message("user", (ToolResultBlock("tu_1", "found"), ToolResultBlock("tu_2", "boom", is_error=True))),
        Message.assistant(""),
    ]
    ids = await store.append_messages(session.id, [(m, i * 7) for i, m in enumerate(messages)])
    assert ids == sorted(ids)
    assert len(set(ids)) == len(messages)
    loaded = await store.load_messages(session.id)
    assert [s.id for s in loaded] == ids
    assert [s.message for s in loaded] == messages
    assert [s.tokens for s in loaded] == [i * 7 for i in range(len(messages))]
    more = await store.append_messages(session.id, tool_pair(1))
    assert min(more) > max(ids)
    assert await store.append_messages(session.id, []) == []


async def test_append_sets_turn_status_with_messages(store: Store) -> None:
    session = await store.current_session(REF)
    turn = await store.add_turn(session.id, REF, "U1", "search please", "ev1")
    await store.set_turn_status(turn.id, "running")
    await store.append_messages(session.id, tool_pair(1), turn_id=turn.id, turn_status="running")
    assert await status_of(store, turn.id) == "running"
    await store.append_messages(
        session.id, [(Message.assistant("done"), 1)], turn_id=turn.id, turn_status="done"
    )
    assert await status_of(store, turn.id) == "done"
    assert len(await store.load_messages(session.id)) == 3


async def test_append_is_atomic_when_serialisation_fails(store: Store) -> None:
    session = await store.current_session(REF)
    turn = await store.add_turn(session.id, REF, "U1", "hi", "ev1")
    unserialisable = Message("user", (ToolResultBlock("tu_1", "ok"),)), 1
    broken = Message("assistant", (ToolUseBlock("tu_1", "x", {"bad": object()}),)), 1
    with pytest.raises(TypeError):
        await store.append_messages(session.id, [unserialisable, broken], turn_id=turn.id, turn_status="done")
    assert await store.load_messages(session.id) == []
    assert await status_of(store, turn.id) == "pending"


async def test_append_rolls_back_when_turn_update_fails(store: Store) -> None:
    # The messages are inserted before the turn update fails, so this exercises a real rollback.
    session = await store.current_session(REF)
    await store.append_messages(session.id, [(Message.user("kept"), 1)])
    with pytest.raises(LookupError):
        await store.append_messages(session.id, tool_pair(1), turn_id=999_999, turn_status="done")
    assert [m.message.text for m in await store.load_messages(session.id)] == ["kept"]
    with pytest.raises(ValueError, match="together"):
        await store.append_messages(session.id, tool_pair(2), turn_id=1)


async def test_concurrent_readers_never_see_half_a_tool_pair(store: Store) -> None:
    session = await store.current_session(REF)

    async def reader() -> list[int]:
        return [len(await store.load_messages(session.id)) for _ in range(5)]

    writes = [store.append_messages(session.id, tool_pair(n)) for n in range(20)]
    results = await asyncio.gather(*writes, *(reader() for _ in range(10)))
    lengths = [n for r in results[len(writes) :] for n in r]
    assert all(n % 2 == 0 for n in lengths)
    history = [s.message for s in await store.load_messages(session.id)]
    assert len(history) == 40
    for use, result in zip(history[::2], history[1::2], strict=True):
        assert use.tool_uses[0].id == result.tool_results[0].tool_use_id


async def test_cancelled_append_is_all_or_nothing(store: Store) -> None:
    # Cancel at varying points (waiting for the lock, during BEGIN, between INSERTs, during COMMIT): the
    # append must land whole or not at all, and the shared connection must not be left in a transaction.
    session = await store.current_session(REF)
    turn = await store.add_turn(session.id, REF, "U1", "hi", "ev1")
    batch = [(Message.user(str(i)), 1) for i in range(6)]
    for attempt in range(40):
        before = len(await store.load_messages(session.id))
        task = asyncio.create_task(
            store.append_messages(session.id, batch, turn_id=turn.id, turn_status="running")
        )
        await asyncio.sleep(attempt * 0.00005)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert len(await store.load_messages(session.id)) - before in (0, len(batch))
    assert await store.claim_event("slack", "after-cancel")  # the connection is still usable


async def test_compact(store: Store) -> None:
    session = await store.current_session(REF)
    other = await store.current_session(OTHER_REF)
    ids = await store.append_messages(session.id, [(Message.user(f"m{i}"), 1) for i in range(5)])
    await store.append_messages(other.id, [(Message.user("elsewhere"), 1)])
    await store.compact(session.id, ids[2], "summary of m0..m2", 42)
    assert [m.message.text for m in await store.load_messages(session.id)] == ["m3", "m4"]
    current = await store.current_session(REF)
    assert (current.summary, current.summary_tokens) == ("summary of m0..m2", 42)
    assert len(await store.load_messages(other.id)) == 1  # other sessions are untouched
    await store.compact(session.id, ids[1], "resummarised", 7)  # an older bound never revives messages
    assert [m.message.text for m in await store.load_messages(session.id)] == ["m3", "m4"]
    assert (await store.current_session(REF)).summary == "resummarised"
    with pytest.raises(LookupError):
        await store.compact(999_999, ids[4], "nope", 1)
    assert len(await store.load_messages(session.id)) == 2


# Turns


async def test_turns_round_trip_and_unfinished_filter(make_store: StoreFactory) -> None:
    async with opened(make_store) as store:
        session = await store.current_session(REF)
        other = await store.current_session(OTHER_REF)
        t1 = await store.add_turn(session.id, REF, "U1", "first", "ev1")
        t2 = await store.add_turn(other.id, OTHER_REF, "U2", "second", "ev2")
        t3 = await store.add_turn(session.id, REF, "U1", "third", "ev3")
        t4 = await store.add_turn(session.id, REF, "U1", "fourth", "ev4")
        fields = (t1.status, t1.ref, t1.sender_id, t1.text, t1.event_id)
        assert fields == ("pending", REF, "U1", "first", "ev1")
        assert_utc(t1.created_at)
        await store.set_turn_status(t2.id, "running")
        await store.set_turn_status(t3.id, "done")
        await store.set_turn_status(t4.id, "failed")
        assert await store.get_turn(t1.id) == t1
        assert await store.get_turn(999_999) is None
        with pytest.raises(LookupError):
            await store.set_turn_status(999_999, "done")
        # This process's own turns are in its hands, not left over.
        assert await store.unfinished_turns() == []
    # Another process (a restart) takes over what the first one left unfinished.
    async with opened(make_store) as later, opened(make_store) as rival:
        assert [t.id for t in await later.unfinished_turns("discord")] == [t2.id]
        assert await later.unfinished_turns("telegram") == []
        unfinished = await later.unfinished_turns()
        assert [(t.id, t.status) for t in unfinished] == [(t1.id, "pending")]
        assert unfinished[0] == t1
        assert await rival.unfinished_turns() == []  # already taken over: never handed out twice


async def test_unfinished_turns_survive_reopen(make_store: StoreFactory) -> None:
    async with opened(make_store) as first:
        session = await first.current_session(REF)
        pending = await first.add_turn(session.id, REF, "U1", "lost?", "ev1")
        running = await first.add_turn(session.id, REF, "U1", "mid-flight", "ev2")
        await first.set_turn_status(running.id, "running")
        done = await first.add_turn(session.id, REF, "U1", "fine", "ev3")
        await first.set_turn_status(done.id, "done")
    async with opened(make_store) as second:
        turns = await second.unfinished_turns()
        assert [t.id for t in turns] == [pending.id, running.id]
        assert turns[0] == pending
        assert (await second.current_session(REF)).id == session.id


# Accounting


async def test_usage_totals_sums_and_orders_by_cost(store: Store) -> None:
    await store.record_usage(usage(cost=0.5))
    await store.record_usage(usage(1, cost=0.25))
    await store.record_usage(usage(2, cost=None))  # unknown price: counted, never treated as zero
    await store.record_usage(usage(provider="openai", model="gpt-4o", cost=2.0, tokens=(1, 2, 3, 4)))
    await store.record_usage(usage(provider="openai", model="mini", cost=None))
    totals = await store.usage_totals(T0)
    assert totals == [
        UsageTotals("openai:gpt-4o", 1, 1, 2, 3, 4, 2.0, 0),
        UsageTotals("anthropic:claude", 3, 300, 30, 3, 6, pytest.approx(0.75), 1),  # type: ignore[arg-type]
        UsageTotals("openai:mini", 1, 100, 10, 1, 2, 0.0, 1),
    ]


async def test_usage_totals_range_is_half_open(store: Store) -> None:
    for hour in range(5):
        await store.record_usage(usage(hour, cost=1.0))
    assert [t.calls for t in await store.usage_totals(T0 + timedelta(hours=1))] == [4]
    window = await store.usage_totals(T0 + timedelta(hours=1), T0 + timedelta(hours=3))
    assert [(t.calls, t.cost_usd) for t in window] == [(2, 2.0)]  # hours 1 and 2; 3 is excluded
    assert await store.usage_totals(T0 + timedelta(hours=5)) == []
    # The same instants expressed in another zone select the same rows.
    plus_two = timezone(timedelta(hours=2))
    shifted = await store.usage_totals((T0 + timedelta(hours=1)).astimezone(plus_two))
    assert [t.calls for t in shifted] == [4]
    with pytest.raises(ValueError, match="naive"):
        await store.usage_totals(datetime(2025, 1, 1))


async def test_usage_totals_filters(store: Store) -> None:
    await store.record_usage(usage(user_id="U1", platform="slack", cost=1.0))
    await store.record_usage(usage(user_id="U2", platform="slack", cost=2.0))
    await store.record_usage(usage(user_id="U1", platform="discord", cost=4.0))
    assert [t.cost_usd for t in await store.usage_totals(T0, user_id="U1")] == [5.0]
    assert [t.cost_usd for t in await store.usage_totals(T0, platform="slack")] == [3.0]
    assert [t.cost_usd for t in await store.usage_totals(T0, user_id="U1", platform="slack")] == [1.0]
    assert await store.usage_totals(T0, user_id="nobody") == []
    failed = replace(usage(user_id="U3"), ok=False, error="timeout", cost_usd=None)
    await store.record_usage(failed)
    assert [(t.calls, t.unpriced_calls) for t in await store.usage_totals(T0, user_id="U3")] == [(1, 1)]


# open_store


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/bot.db", "data/bot.db"),
        ("sqlite:////var/lib/bot/bot.db", "/var/lib/bot/bot.db"),
        ("sqlite+aiosqlite:///data/bot.db", "data/bot.db"),
        ("sqlite+aiosqlite:////abs/bot.db", "/abs/bot.db"),
        ("SQLite:///Data/Bot.db", "Data/Bot.db"),
        ("sqlite://:memory:", ":memory:"),
        ("sqlite:///:memory:", ":memory:"),
        ("  sqlite:///data/bot.db\n", "data/bot.db"),
        ("data/bot.db", "data/bot.db"),
        ("/abs/bot.db", "/abs/bot.db"),
        (":memory:", ":memory:"),
    ],
)
def test_sqlite_path_from_url(url: str, path: str) -> None:
    assert sqlite_path_from_url(url) == path


def test_bare_path_expands_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert sqlite_path_from_url("~/bot.db") == str(tmp_path / "bot.db")


@pytest.mark.parametrize(
    "url",
    ["postgresql://bot:hunter2@db/bot", "postgres://bot:hunter2@db/bot", "postgresql+asyncpg://bot@db/bot"],
)
def test_postgres_urls_select_the_postgres_store(url: str) -> None:
    store = open_store(url, pool_size=3)
    assert isinstance(store, PostgresStore) and store.shared
    assert postgres_dsn_from_url(url).startswith("postgresql://bot")


@pytest.mark.parametrize(
    ("url", "described"),
    [
        ("postgresql://bot:hunter2@db.internal:6543/teammate", "PostgreSQL bot@db.internal:6543/teammate"),
        ("postgres://db/bot", "PostgreSQL db/bot"),
        ("sqlite:///data/bot.db", "SQLite data/bot.db"),
    ],
)
def test_describe_database_never_shows_the_password(url: str, described: str) -> None:
    assert describe_database(url) == described


@pytest.mark.parametrize("url", ["postgresql://", "postgres://?sslmode=require"])
def test_postgres_url_without_host_or_database_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="names no host or database"):
        open_store(url)


async def test_unreachable_postgres_is_a_readable_error_without_the_password() -> None:
    store = open_store(f"postgresql://bot:hunter2@127.0.0.1:{free_port()}/bot")
    with pytest.raises(StoreUnavailableError) as info:
        await store.open()
    assert "cannot connect to PostgreSQL" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("mysql://bot:hunter2@db/bot", "unsupported scheme 'mysql'"),
        ("", "empty"),
        ("sqlite://hunter2@host/bot.db", "no host"),
        ("sqlite:///", "names no file"),
        ("sqlite:///bot.db?mode=hunter2", "query parameters"),
        ("we!rd://user:hunter2@x", "not a valid URL"),
    ],
)
def test_bad_urls_are_readable_and_hide_secrets(url: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        open_store(url)
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert reason in message
    assert "hunter2" not in message
    assert "sqlite:///" in message  # tells the user what would work


async def test_open_store_relative_url_creates_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    async with opened(lambda: open_store("sqlite:///data/bot.db")) as instance:
        assert await instance.claim_event("slack", "e1")
    assert (tmp_path / "data" / "bot.db").exists()


async def test_open_store_absolute_url_and_memory(tmp_path: Path) -> None:
    async with opened(lambda: open_store(f"sqlite:///{tmp_path}/abs.db")) as instance:
        assert isinstance(instance, SQLiteStore)
        assert instance.path == str(tmp_path / "abs.db")
        await instance.current_session(REF)
    async with opened(lambda: open_store("sqlite:///:memory:")) as memory:
        assert (await memory.current_session(REF)).ref == REF
