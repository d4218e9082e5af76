"""PostgreSQL's own behaviour: migrations under concurrent starts, and fleet coordination between
replicas (each `PostgresStore` here is what one bot process opens; two of them are two replicas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from bot.app import open_core
from bot.config import Settings
from core.conversation import Message
from core.events import TurnFailed
from core.inbound import ConversationRef
from core.router import BROKEN_REPLY
from core.sessions import SessionManager
from core.storage import open_store
from core.storage.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from core.storage.migrations import SchemaTooNewError
from core.storage.postgres import PostgresStore
from core.storage.postgres.fleet import MEMBER_LOCK_CLASS
from core.storage.postgres.schema import MIGRATIONS, migrate
from core.tokens import TokenCounter
from tests.corekit import collect, done
from tests.fakes.llm_server import FakeLLMServer, Reply
from tests.pgserver import PostgresServer

REF = ConversationRef("slack", "T1", "C1", "1700000000.0001")
OTHER = ConversationRef("slack", "T1", "C1", "1700000000.0002")

THIS_DATABASE = "database = (SELECT oid FROM pg_database WHERE datname = current_database())"

Replicas = Callable[[int], Awaitable[list[PostgresStore]]]


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[Replicas]:
    """`await replicas(n)`: n opened stores on one database, closed at the end."""
    stack = AsyncExitStack()

    async def make(n: int) -> list[PostgresStore]:
        stores = [PostgresStore(postgres_url, pool_size=4) for _ in range(n)]
        await asyncio.gather(*(s.open() for s in stores))  # opened together: migrations race
        for store in stores:
            stack.push_async_callback(store.close)
        return stores

    async with stack:
        yield make


async def run_sql(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def finished(task: asyncio.Task[object], within_s: float = 0.3) -> bool:
    """Whether `task` completes within `within_s` (false: it is still waiting)."""
    done, _ = await asyncio.wait({task}, timeout=within_s)
    return bool(done)


# Migrations


def test_migrations_match_sqlite_versions_and_names() -> None:
    assert [(m.version, m.name) for m in MIGRATIONS] == [(m.version, m.name) for m in SQLITE_MIGRATIONS]


async def test_replicas_starting_together_migrate_once(postgres_url: str, replicas: Replicas) -> None:
    await replicas(4)
    rows = await run_sql(postgres_url, "SELECT version, name FROM schema_version ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    tables = {r[0] for r in await run_sql(postgres_url, "SELECT tablename FROM pg_tables")}
    assert {
        "sessions",
        "messages",
        "turns",
        "events_seen",
        "usage",
        "usage_rollup",
        "reports_posted",
    } <= tables


async def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    store = open_store(postgres_url)
    await store.open()
    await store.close()
    await run_sql(postgres_url, "INSERT INTO schema_version VALUES (99, 'from the future', 0)")
    with pytest.raises(SchemaTooNewError):
        await open_store(postgres_url).open()


async def test_delivery_migration_applies_to_existing_turns(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await migrate(conn, MIGRATIONS[:4]) == 4
        session = await conn.fetchval(
            "INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)"
            " VALUES ($1, $2, $3, $4, $5, 0) RETURNING id",
            *(REF.key, REF.platform, REF.workspace, REF.channel, REF.thread),
        )
        turn = await conn.fetchval(
            "INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread,"
            " sender_id, text, event_id, status, created_at, updated_at, owner)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'U1', 'old', 'e1', 'done', 1e9, 1e9, 0) RETURNING id",
            *(session, REF.key, REF.platform, REF.workspace, REF.channel, REF.thread),
        )
    finally:
        await conn.close()
    store = open_store(postgres_url)
    await store.open()
    try:
        old = await store.get_turn(turn)
        assert old is not None
        assert (old.reply_address, old.is_dm, old.sender_name, old.answer, old.delivered_at) == (
            "",
            False,
            "",
            None,
            None,
        )
        assert await store.undelivered_turns("slack", datetime(2000, 1, 1, tzinfo=UTC)) == []
        assert old.shown == ()
    finally:
        await store.close()
    rows = await run_sql(postgres_url, "SELECT MAX(version) FROM schema_version")
    assert rows[0][0] == MIGRATIONS[-1].version


# Fleet: one event, one claim


async def test_an_event_delivered_to_every_replica_is_claimed_once(replicas: Replicas) -> None:
    stores = await replicas(3)
    wins = await asyncio.gather(*(s.claim_event("slack", f"ev{n}") for n in range(50) for s in stores))
    assert sum(wins) == 50


async def test_an_event_admitted_by_every_replica_gets_one_turn(replicas: Replicas) -> None:
    stores = await replicas(3)
    # Each event opens a new conversation, so the replicas also race to open its session.
    refs = [ConversationRef("slack", "T1", "C2", str(n)) for n in range(30)]
    turns = await asyncio.gather(
        *(s.admit_turn(ref, "U1", "hi", f"ev-{ref.thread}") for ref in refs for s in stores)
    )
    admitted = [t for t in turns if t is not None]
    assert sorted(t.event_id for t in admitted) == sorted(f"ev-{ref.thread}" for ref in refs)
    more = await asyncio.gather(
        *(
            s.admit_turn(ref, "U1", "again", f"ev-{ref.thread}-{n}")
            for ref in refs
            for n, s in enumerate(stores)
        )
    )
    for ref in refs:
        sessions = {t.session_id for t in [*admitted, *more] if t is not None and t.ref == ref}
        assert sessions == {(await stores[0].current_session(ref)).id}


async def test_undelivered_turns_of_a_replica_that_is_gone_are_taken_over_once(replicas: Replicas) -> None:
    a, b, c = await replicas(3)
    since = datetime.now(UTC) - timedelta(minutes=1)
    turn = await a.admit_turn(REF, "U1", "hi", "e1", reply_address="C1/1", sender_name="Ada")
    assert turn is not None
    await a.set_turn_answer(turn.id, "done", "hello!")
    assert await b.undelivered_turns("slack", since) == []  # a is alive: it delivers its own answer
    await a.close()
    taken = await asyncio.gather(b.undelivered_turns("slack", since), c.undelivered_turns("slack", since))
    assert sorted(len(t) for t in taken) == [0, 1]
    (adopted,) = taken[0] + taken[1]
    assert (adopted.id, adopted.answer, adopted.reply_address, adopted.sender_name) == (
        turn.id,
        "hello!",
        "C1/1",
        "Ada",
    )


async def test_replicas_opening_one_conversation_get_one_session(replicas: Replicas) -> None:
    stores = await replicas(3)
    sessions = await asyncio.gather(*(s.current_session(REF) for s in stores for _ in range(5)))
    assert len({s.id for s in sessions}) == 1
    fresh = await asyncio.gather(*(s.start_new_session(REF) for s in stores))
    assert len({s.id for s in fresh}) == 3
    assert (await stores[0].current_session(REF)).id in {s.id for s in fresh}


# Fleet: one turn at a time per conversation, in order


async def test_a_conversation_runs_in_one_replica_at_a_time(replicas: Replicas) -> None:
    a, b = await replicas(2)
    session = await a.current_session(REF)
    t1 = await a.add_turn(session.id, REF, "U1", "first", "e1")
    t2 = await b.add_turn(session.id, REF, "U1", "second", "e2")
    order: list[str] = []
    async with a.hold_conversation(REF.key, t1.id):
        waiting = asyncio.create_task(_hold(b, REF, t2.id, order, "b"))
        assert not await finished(waiting)  # b waits while a holds the conversation
        other = await b.add_turn((await b.current_session(OTHER)).id, OTHER, "U2", "elsewhere", "e3")
        async with b.hold_conversation(OTHER.key, other.id):  # other conversations are not blocked
            order.append("b-other")
        order.append("a")
        await a.set_turn_status(t1.id, "done")
    await asyncio.wait_for(waiting, 2.0)  # woken by the release notification
    assert order == ["b-other", "a", "b"]


async def test_a_newer_turn_waits_for_an_older_one_in_another_replica(replicas: Replicas) -> None:
    a, b = await replicas(2)
    session = await a.current_session(REF)
    older = await a.add_turn(session.id, REF, "U1", "first", "e1")  # accepted by a, not started yet
    newer = await b.add_turn(session.id, REF, "U1", "second", "e2")
    order: list[str] = []
    waiting = asyncio.create_task(_hold(b, REF, newer.id, order, "newer"))
    assert not await finished(waiting)  # the conversation is free, but an older turn comes first
    async with a.hold_conversation(REF.key, older.id):
        order.append("older")
        await a.set_turn_status(older.id, "done")
    await asyncio.wait_for(waiting, 2.0)
    assert order == ["older", "newer"]


async def test_within_one_replica_turns_run_in_turn_order_whoever_asks_first(replicas: Replicas) -> None:
    (a,) = await replicas(1)
    session = await a.current_session(REF)
    turns = [await a.add_turn(session.id, REF, "U1", f"message {n}", f"e{n}") for n in range(3)]
    order: list[str] = []
    # The newest asks first, then the others: each waits for the turns stored before it.
    runs = [asyncio.create_task(_hold(a, REF, t.id, order, t.text)) for t in reversed(turns)]
    await asyncio.wait_for(asyncio.gather(*runs), 10)
    assert order == ["message 0", "message 1", "message 2"]


async def test_a_turn_stuck_running_in_a_live_replica_does_not_hold_the_conversation(
    replicas: Replicas,
) -> None:
    a, b = await replicas(2)
    session = await a.current_session(REF)
    stuck = await a.add_turn(session.id, REF, "U1", "its end was never recorded", "e1")
    await a.set_turn_status(stuck.id, "running")  # but a holds nothing: it is not really running
    newer = await b.add_turn(session.id, REF, "U1", "next", "e2")
    async with asyncio.timeout(2.0), b.hold_conversation(REF.key, newer.id):
        pass


async def test_turns_of_a_replica_that_is_gone_block_nobody_and_are_taken_over_once(
    replicas: Replicas,
) -> None:
    a, b, c = await replicas(3)
    session = await a.current_session(REF)
    left = await a.add_turn(session.id, REF, "U1", "lost in a crash", "e1")
    await a.set_turn_status(left.id, "running")
    assert await b.unfinished_turns() == []  # a is alive: its turn is in flight, not left over
    await a.close()  # gone: from the database's side a crash looks the same (its connections end)
    newer = await b.add_turn(session.id, REF, "U1", "next", "e2")
    async with asyncio.timeout(2.0), b.hold_conversation(REF.key, newer.id):
        pass  # not blocked by the dead replica's turn
    taken = await asyncio.gather(b.unfinished_turns("slack"), c.unfinished_turns("slack"))
    assert sorted(len(t) for t in taken) == [0, 1]  # exactly one replica takes it over
    assert [t.id for t in taken[0] + taken[1]] == [left.id]


async def test_a_lost_fleet_connection_releases_locks_and_reconnects(
    postgres_url: str, replicas: Replicas
) -> None:
    a, b = await replicas(2)
    session = await a.current_session(REF)
    t1 = await a.add_turn(session.id, REF, "U1", "first", "e1")
    t2 = await b.add_turn(session.id, REF, "U1", "second", "e2")
    async with a.hold_conversation(REF.key, t1.id):
        await run_sql(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
            f" AND objid = {a.owner} AND classid = {MEMBER_LOCK_CLASS} AND {THIS_DATABASE}",
        )
        await a.set_turn_status(t1.id, "done")
        # The server dropped a's conversation lock with its connection: b is not held back by it.
        async with asyncio.timeout(3.0), b.hold_conversation(REF.key, t2.id):
            await b.set_turn_status(t2.id, "done")
    for _ in range(50):  # a reattaches under the same member number
        if await _member_alive(postgres_url, a.owner):
            break
        await asyncio.sleep(0.1)
    assert await _member_alive(postgres_url, a.owner)
    assert await a.ready()  # /readyz: back in the fleet
    t3 = await a.add_turn(session.id, REF, "U1", "third", "e3")
    async with asyncio.timeout(3.0), a.hold_conversation(REF.key, t3.id):
        pass  # and works as before


# Fleet: memory copies stay current


async def test_a_replica_sees_what_another_replica_added_before_its_turn(replicas: Replicas) -> None:
    a, b = await replicas(2)
    counter = TokenCounter()
    on_a, on_b = SessionManager(a, counter), SessionManager(b, counter)
    state_a, state_b = await on_a.get(REF), await on_b.get(REF)
    t1 = await a.add_turn(state_a.id, REF, "U1", "hello", "e1")
    async with on_a.turn_slot(state_a, t1):
        await on_a.append(
            state_a, [Message.user("hello"), Message.assistant("hi!")], turn_id=t1.id, turn_status="done"
        )
    t2 = await b.add_turn(state_b.id, REF, "U1", "again", "e2")
    assert state_b.messages() == []  # b's copy is stale until its turn starts
    async with on_b.turn_slot(state_b, t2):
        assert [m.text for m in state_b.messages()] == ["hello", "hi!"]
        await b.set_turn_status(t2.id, "done")
    await on_a.set_model(REF, "openai:gpt-5.4-mini")
    await b.start_new_session(REF)  # `new` on replica b
    t3 = await a.add_turn(state_a.id, REF, "U1", "fresh start?", "e3")
    async with on_a.turn_slot(state_a, t3):
        assert state_a.messages() == [] and state_a.record.model is None
        assert state_a.id != t1.session_id


async def _hold(
    store: PostgresStore, ref: ConversationRef, turn_id: int, order: list[str], name: str
) -> None:
    async with store.hold_conversation(ref.key, turn_id):
        order.append(name)
        await store.set_turn_status(turn_id, "done")


async def _member_alive(url: str, member: int) -> bool:
    rows = await run_sql(
        url,
        f"SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = {MEMBER_LOCK_CLASS}"
        f" AND objid = {member} AND {THIS_DATABASE}",
    )
    return bool(rows)


# The database going away under a running bot


async def test_the_bot_says_so_while_the_database_is_down_and_recovers_after(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings], private_postgres: PostgresServer
) -> None:
    server = private_postgres  # its own server: this test stops it
    url = await asyncio.to_thread(server.new_database)
    llm_server.script("anthropic", Reply.text("Before the outage."), Reply.text("After it."))
    async with open_core(settings_for(database_url=url)) as core:
        assert done(await collect(core.router, "first question")).text == "Before the outage."
        await asyncio.to_thread(server.shut_down)
        during = await collect(core.router, "anyone home?")
        assert during == [TurnFailed("internal_error", BROKEN_REPLY)]
        assert not await core.store.ready()  # /readyz: 503 while the database is away
        await asyncio.to_thread(server.start_again)
        for _ in range(100):
            if await core.store.ready():
                break
            await asyncio.sleep(0.1)
        assert await core.store.ready()
        after = await collect(core.router, "second question")
    assert done(after).text == "After it."
    history = [m["content"] for m in llm_server.bodies("anthropic")[-1]["messages"]]
    assert len(history) == 3  # the first exchange survived the outage; the failed one left nothing
