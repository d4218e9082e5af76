"""Atomic admission (`admit_turn`) and durable delivery state (answer, delivered_at, `undelivered_turns`),
on both backends. The fixtures mirror tests/test_store.py's: `store` on a SQLite file, SQLite in memory
and PostgreSQL; `make_store` for re-open ("another process") tests on the persistent ones."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from core.conversation import Message
from core.inbound import ConversationRef
from core.storage import SQLiteStore, Store, TurnRecord, open_store
from core.storage.migrations import MIGRATIONS, migrate
from tests.test_store import (
    ALL_BACKENDS,
    OTHER_REF,
    PERSISTENT_BACKENDS,
    REF,
    StoreFactory,
    assert_utc,
    opened,
    query,
    tool_pair,
)


@pytest.fixture(params=PERSISTENT_BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        return lambda: open_store(url)
    path = str(tmp_path / "bot.db")
    return lambda: SQLiteStore(path)


@pytest.fixture(params=ALL_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        instance: Store = open_store(request.getfixturevalue("postgres_url"))
    else:
        instance = SQLiteStore(":memory:" if request.param == "sqlite-memory" else str(tmp_path / "bot.db"))
    await instance.open()
    yield instance
    await instance.close()


async def admit(
    store: Store, event_id: str, ref: ConversationRef = REF, *, reply_address: str = "", is_dm: bool = False
) -> TurnRecord:
    """An admitted turn (the event must be new)."""
    turn = await store.admit_turn(
        ref,
        "U1",
        f"text of {event_id}",
        event_id,
        reply_address=reply_address,
        is_dm=is_dm,
        sender_name="Ada",
    )
    assert turn is not None
    return turn


async def fetched(store: Store, turn_id: int) -> TurnRecord:
    turn = await store.get_turn(turn_id)
    assert turn is not None
    return turn


# Admission


async def test_admitted_turn_round_trips_everything(store: Store) -> None:
    turn = await store.admit_turn(
        REF, "U1", "hello", "ev1", reply_address="C1/1700000000.0001", is_dm=True, sender_name="Ada ü"
    )
    assert turn is not None
    session = await store.current_session(REF)
    assert (turn.session_id, turn.ref, turn.sender_id, turn.text, turn.event_id) == (
        session.id,
        REF,
        "U1",
        "hello",
        "ev1",
    )
    assert (turn.status, turn.reply_address, turn.is_dm, turn.sender_name) == (
        "pending",
        "C1/1700000000.0001",
        True,
        "Ada ü",
    )
    assert (turn.answer, turn.delivered_at) == (None, None)
    assert_utc(turn.created_at)
    assert await store.get_turn(turn.id) == turn
    plain = await admit(store, "ev2")  # the defaults
    assert (plain.reply_address, plain.is_dm, plain.session_id) == ("", False, session.id)
    assert await store.get_turn(plain.id) == plain
    legacy = await store.add_turn(session.id, REF, "U1", "old API", "ev3")  # add_turn still works
    assert await store.get_turn(legacy.id) == legacy


async def test_admit_uses_the_open_session_or_opens_one(store: Store) -> None:
    fresh = await admit(store, "ev1", OTHER_REF)  # no session yet: one is opened
    assert (await store.current_session(OTHER_REF)).id == fresh.session_id
    assert (await admit(store, "ev2", OTHER_REF)).session_id == fresh.session_id
    new = await store.start_new_session(OTHER_REF)
    assert (await admit(store, "ev3", OTHER_REF)).session_id == new.id
    assert (await admit(store, "ev4", REF)).session_id not in (fresh.session_id, new.id)


async def test_a_claimed_event_is_not_admitted_again(make_store: StoreFactory) -> None:
    async with opened(make_store) as first:
        turn = await admit(first, "ev1")
        assert await first.admit_turn(REF, "U1", "again", "ev1") is None
        assert not await first.claim_event("slack", "ev1")  # admission claims like claim_event
        assert await first.claim_event("slack", "ev2")
        assert await first.admit_turn(REF, "U1", "claimed before", "ev2") is None
        other = await admit(first, "ev1", OTHER_REF)  # event ids are per platform
    async with opened(make_store) as later:
        assert await later.admit_turn(REF, "U1", "after a restart", "ev1") is None
        # Nothing was written for the refused admissions: the only turns are the two admitted ones.
        assert [t.id for t in await later.unfinished_turns()] == [turn.id, other.id]


async def test_concurrent_admits_of_one_event_give_one_turn(make_store: StoreFactory) -> None:
    # Two instances on one database stand in for two processes (PostgreSQL: two replicas).
    async with opened(make_store) as a, opened(make_store) as b:
        results = await asyncio.gather(
            *(s.admit_turn(REF, "U1", "once", f"ev{n}") for n in range(5) for _ in range(4) for s in (a, b))
        )
        admitted = [r for r in results if r is not None]
        assert sorted(t.event_id for t in admitted) == [f"ev{n}" for n in range(5)]
        # New conversations admitted from both at once still share one open session each.
        refs = [ConversationRef("slack", "T1", "C2", str(n)) for n in range(5)]
        fresh = await asyncio.gather(
            *(s.admit_turn(ref, "U1", "hi", f"{ref.thread}-{s is a}") for ref in refs for s in (a, b))
        )
        for ref in refs:
            sessions = {t.session_id for t in fresh if t is not None and t.ref == ref}
            assert sessions == {(await a.current_session(ref)).id}
    async with opened(make_store) as later:
        left = await later.unfinished_turns()
        assert len(left) == 5 + 10
        assert sorted(t.id for t in left) == sorted(t.id for t in [*admitted, *fresh] if t is not None)


async def test_a_failed_admission_leaves_the_event_unclaimed(store: Store) -> None:
    # The turn insert fails after the claim (SQLite) or the statement is refused whole (PostgreSQL):
    # either way the claim does not survive without its turn.
    with pytest.raises((sqlite3.Error, asyncpg.DataError)):
        await store.admit_turn(REF, "U1", object(), "ev1")  # type: ignore[arg-type]
    assert (await admit(store, "ev1")).event_id == "ev1"


# Answers and delivery


async def test_answer_is_stored_with_the_final_messages(store: Store) -> None:
    turn = await admit(store, "ev1")
    await store.append_messages(turn.session_id, tool_pair(1), turn_id=turn.id, turn_status="running")
    assert (await fetched(store, turn.id)).answer is None
    final = [(Message.assistant("**Done.**"), 3)]
    await store.append_messages(
        turn.session_id, final, turn_id=turn.id, turn_status="done", answer="**Done.**"
    )
    stored = await fetched(store, turn.id)
    assert (stored.status, stored.answer, stored.delivered_at) == ("done", "**Done.**", None)
    await store.append_messages(turn.session_id, [], turn_id=turn.id, turn_status="done")
    assert (await fetched(store, turn.id)).answer == "**Done.**"  # no answer given: the answer stays
    assert len(await store.load_messages(turn.session_id)) == 3


async def test_answer_needs_a_turn_and_rolls_back_with_it(store: Store) -> None:
    session = await store.current_session(REF)
    with pytest.raises(ValueError, match="turn_id"):
        await store.append_messages(session.id, tool_pair(1), answer="orphan")
    with pytest.raises(LookupError):
        await store.append_messages(
            session.id, tool_pair(1), turn_id=999_999, turn_status="done", answer="nobody's"
        )
    assert await store.load_messages(session.id) == []


async def test_set_turn_answer(store: Store) -> None:
    turn = await admit(store, "ev1")
    await store.set_turn_answer(turn.id, "failed", "You are not allowed to use this bot.")
    stored = await fetched(store, turn.id)
    assert (stored.status, stored.answer) == ("failed", "You are not allowed to use this bot.")
    assert await store.load_messages(turn.session_id) == []
    with pytest.raises(LookupError):
        await store.set_turn_answer(999_999, "done", "x")


async def test_mark_delivered_is_idempotent(store: Store) -> None:
    turn = await admit(store, "ev1")
    await store.set_turn_answer(turn.id, "done", "hi")
    await store.mark_delivered(turn.id)
    first = (await fetched(store, turn.id)).delivered_at
    assert first is not None
    assert_utc(first)
    await asyncio.sleep(0.01)
    await store.mark_delivered(turn.id)
    assert (await fetched(store, turn.id)).delivered_at == first  # the first time stays
    with pytest.raises(LookupError):
        await store.mark_delivered(999_999)


async def test_undelivered_turns_of_a_previous_process_are_taken_over_once(make_store: StoreFactory) -> None:
    async with opened(make_store) as first:
        too_old = await admit(first, "ev0")
        await first.set_turn_answer(too_old.id, "done", "before since")
        await asyncio.sleep(0.02)
        since = datetime.now(UTC) - timedelta(milliseconds=5)
        lost = await admit(first, "ev1", reply_address="C1/ts", is_dm=True)
        await first.append_messages(
            lost.session_id,
            [(Message.assistant("answer 1"), 1)],
            turn_id=lost.id,
            turn_status="done",
            answer="answer 1",
        )
        refused = await admit(first, "ev2")
        await first.set_turn_answer(refused.id, "failed", "answer 2")
        delivered = await admit(first, "ev3")
        await first.set_turn_answer(delivered.id, "done", "answer 3")
        await first.mark_delivered(delivered.id)
        silent = await admit(first, "ev4")
        await first.set_turn_status(silent.id, "done")  # finished without an answer: nothing to deliver
        elsewhere = await admit(first, "ev5", OTHER_REF)
        await first.set_turn_answer(elsewhere.id, "done", "answer 5")
        waiting = await admit(
            first, "ev6", reply_address="C1/ts"
        )  # not finished: unfinished, not undelivered
        # The owner is alive (this process, or a live replica): its turns are not left over.
        assert await first.undelivered_turns("slack", since) == []
        async with opened(make_store) as live_rival:
            assert await live_rival.undelivered_turns("slack", since) == []
    async with opened(make_store) as later, opened(make_store) as rival:
        taken = await later.undelivered_turns("slack", since)
        assert [t.id for t in taken] == [lost.id, refused.id]  # oldest first
        assert (taken[0].answer, taken[0].status, taken[0].delivered_at) == ("answer 1", "done", None)
        assert (taken[0].reply_address, taken[0].is_dm, taken[0].sender_name) == ("C1/ts", True, "Ada")
        assert taken[0] == await later.get_turn(lost.id)
        assert await rival.undelivered_turns("slack", since) == []  # already taken over
        assert await later.undelivered_turns("slack", since) == []  # its own now: in its hands
        assert [t.id for t in await rival.undelivered_turns("discord", since)] == [elsewhere.id]
        unfinished = await rival.unfinished_turns()
        assert unfinished == [waiting]  # and unfinished turns carry the new columns too
        assert unfinished[0].reply_address == "C1/ts"
        await later.mark_delivered(lost.id)
    async with opened(make_store) as third:
        # Taken over but never delivered (the taker died too): handed out again; delivered: never.
        assert [t.id for t in await third.undelivered_turns("slack", since)] == [refused.id]
        # An earlier `since` reaches the older turn too (the other one is third's own by now).
        old = await third.undelivered_turns("slack", since - timedelta(hours=1))
        assert [t.id for t in old] == [too_old.id]
        with pytest.raises(ValueError, match="naive"):
            await third.undelivered_turns("slack", datetime(2025, 1, 1))


async def test_shown_messages_are_recorded_in_order(store: Store) -> None:
    turn = await admit(store, "ev1")
    assert (await fetched(store, turn.id)).shown == ()
    for message_id in ("1700000000.000100", "42", "1234567890123456789"):
        await store.add_shown_message(turn.id, message_id)
    assert (await fetched(store, turn.id)).shown == ("1700000000.000100", "42", "1234567890123456789")
    with pytest.raises(ValueError):
        await store.add_shown_message(turn.id, "two words")
    with pytest.raises(LookupError):
        await store.add_shown_message(999_999, "1")


# Migrations 5 and 6 (SQLite; PostgreSQL's is in tests/test_store_postgres.py)


async def test_delivery_migration_applies_to_existing_turns(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:4]) == 4
        await conn.execute(
            "INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)"
            " VALUES (?, ?, ?, ?, ?, 0)",
            (REF.key, REF.platform, REF.workspace, REF.channel, REF.thread),
        )
        for n, status in enumerate(("done", "pending")):
            await conn.execute(
                "INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread,"
                " sender_id, text, event_id, status, created_at, updated_at, owner)"
                " VALUES (1, ?, ?, ?, ?, ?, 'U1', 'old', ?, ?, ?, ?, 7)",
                (REF.key, REF.platform, REF.workspace, REF.channel, REF.thread, f"ev{n}", status, 1e9, 1e9),
            )
    async with opened(lambda: SQLiteStore(str(path))) as store:
        done = await fetched(store, 1)
        assert (done.reply_address, done.is_dm, done.sender_name, done.answer, done.delivered_at) == (
            "",
            False,
            "",
            None,
            None,
        )
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        assert await store.undelivered_turns("slack", epoch) == []  # no answer: never undelivered
        assert [t.id for t in await store.unfinished_turns()] == [2]
    assert done.shown == ()
    assert (await query(path, "SELECT MAX(version) FROM schema_version")) == [(MIGRATIONS[-1].version,)]
    with pytest.raises(sqlite3.IntegrityError):  # is_dm is a CHECKed 0/1
        await query(path, "UPDATE turns SET is_dm = 2 WHERE id = 1")


async def test_undelivered_lookup_uses_the_partial_index(tmp_path: Path) -> None:
    async with opened(lambda: SQLiteStore(str(tmp_path / "bot.db"))):
        pass
    plan = await query(
        tmp_path / "bot.db",
        "EXPLAIN QUERY PLAN SELECT id FROM turns WHERE answer IS NOT NULL AND delivered_at IS NULL"
        " AND platform = ? AND created_at >= ? AND owner NOT IN (?, ?) ORDER BY id",
        ("slack", 0, 1, 2),
    )
    assert any("turns_undelivered" in str(row) for row in plan), plan
