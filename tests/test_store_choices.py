"""Migration 7 on both backends: tool approvals (choices, grants), the audit log, answer ratings, and the
turn / message helpers behind "regenerate". The `store` fixture runs each test on a SQLite file, SQLite
in memory and PostgreSQL (tests/pgserver.py), as in tests/test_store.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from core.conversation import Message
from core.inbound import ConversationRef
from core.storage import SQLiteStore, Store, TurnRecord, UsageRecord, open_store
from core.storage.base import AuditRecord, ChoiceRecord, ChoiceStatus, RatingTotals
from core.storage.migrations import MIGRATIONS, migrate
from core.storage.postgres import PostgresStore
from core.storage.postgres.schema import MIGRATIONS as PG_MIGRATIONS
from core.storage.postgres.schema import migrate as pg_migrate
from tests.test_store import OTHER_REF, REF, opened
from tests.test_store_delivery import store

__all__ = ["store"]  # the store fixture, on every backend

NOW = datetime.now(UTC).replace(microsecond=0)
LATER = NOW + timedelta(minutes=10)
STEP = '{"role": "assistant", "content": []}'


async def raw(store: Store, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` read straight from the store's database (no parameters)."""
    if isinstance(store, PostgresStore):
        return [tuple(row) for row in await store._db().fetch(sql)]
    assert isinstance(store, SQLiteStore)
    return [tuple(row) for row in await store._read(sql)]


async def admit(store: Store, event_id: str, ref: ConversationRef = REF, regenerates: int = 0) -> TurnRecord:
    turn = await store.admit_turn(ref, "U1", f"text of {event_id}", event_id, regenerates=regenerates)
    assert turn is not None
    return turn


async def answered(store: Store, event_id: str, model: str, ref: ConversationRef = REF) -> TurnRecord:
    """A finished turn whose answer `model` wrote."""
    turn = await admit(store, event_id, ref)
    answer = Message.assistant("hi")
    await store.append_messages(
        turn.session_id, [(answer, 1)], turn_id=turn.id, turn_status="done", answer="hi", model=model
    )
    return turn


async def pending(
    store: Store, turn_id: int = 1, *, call_id: str = "call_1", expires: datetime = LATER
) -> ChoiceRecord:
    return await store.add_choice(
        turn_id, REF.key, call_id, "post_message", '{"text": "x"}', STEP, "U1", expires
    )


def audit(
    ts: datetime, platform: str = "slack", tool: str = "fetch_url", turn_id: int | None = 3
) -> AuditRecord:
    return AuditRecord(
        *(ts, platform, REF.key, turn_id, "U1", tool, "url=https://example.com", "approved", "U2"),
        *(1500.0, 20.5, "error"),
        detail="timed out",
    )


# Choices


async def test_a_choice_round_trips_and_lists_by_turn(store: Store) -> None:
    first = await pending(store, 7, call_id="call_a")
    second = await pending(store, 7, call_id="call_b")
    await pending(store, 8)
    assert (first.status, first.decided_by, first.decided_at, first.message_id, first.ran_at) == (
        "pending",
        "",
        None,
        "",
        None,
    )
    assert (first.turn_id, first.conversation_key, first.tool, first.step, first.requested_by) == (
        7,
        REF.key,
        "post_message",
        STEP,
        "U1",
    )
    assert first.expires_at == LATER and abs(first.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert first.created_at.tzinfo is not None and first.arguments == '{"text": "x"}'
    await store.set_choice_message(first.id, "1700000000.0042")
    again = await store.get_choice(first.id)
    assert again == replace(first, message_id="1700000000.0042")
    assert [c.call_id for c in await store.turn_choices(7)] == ["call_a", "call_b"]
    assert [c.id for c in await store.turn_choices(7)] == [first.id, second.id]
    assert await store.turn_choices(99) == []
    assert await store.get_choice(10_000) is None
    with pytest.raises(LookupError):
        await store.set_choice_message(10_000, "m")


async def test_a_choice_is_decided_once(store: Store) -> None:
    choice = await pending(store)
    decided = await store.decide_choice(choice.id, "approved", "U2", "Grace", NOW)
    assert decided is not None
    assert (decided.status, decided.decided_by, decided.decided_by_name, decided.decided_at) == (
        "approved",
        "U2",
        "Grace",
        NOW,
    )
    assert await store.decide_choice(choice.id, "denied", "U3", "Linus", NOW) is None
    assert await store.decide_choice(choice.id, "expired", "", "", LATER) is None
    assert await store.decide_choice(choice.id, "cancelled", "", "", NOW) is None
    assert await store.get_choice(choice.id) == decided
    assert await store.decide_choice(10_000, "approved", "U2", "Grace", NOW) is None


async def test_a_person_cannot_decide_an_expired_choice_but_expiry_and_cancel_can(store: Store) -> None:
    late = await pending(store, call_id="late")
    people: tuple[ChoiceStatus, ...] = ("approved", "denied")
    for status in people:
        assert await store.decide_choice(late.id, status, "U2", "Grace", LATER) is None  # expires_at == now
    expired = await store.decide_choice(late.id, "expired", "", "", LATER + timedelta(seconds=1))
    assert expired is not None and (expired.status, expired.decided_by) == ("expired", "")
    stopped = await pending(store, call_id="stopped")
    cancelled = await store.decide_choice(stopped.id, "cancelled", "", "", LATER + timedelta(hours=1))
    assert cancelled is not None and cancelled.status == "cancelled"
    with pytest.raises(ValueError):
        await store.decide_choice((await pending(store)).id, "pending", "U2", "", NOW)


async def test_concurrent_decisions_have_exactly_one_winner(store: Store) -> None:
    choice = await pending(store)
    decisions: tuple[ChoiceStatus, ChoiceStatus] = ("approved", "denied")
    people = [(decisions[n % 2], f"U{n}") for n in range(12)]
    results = await asyncio.gather(
        *(store.decide_choice(choice.id, status, who, who, NOW) for status, who in people),
        store.decide_choice(choice.id, "expired", "", "", NOW),
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert await store.get_choice(choice.id) == winners[0]


async def test_two_postgres_replicas_racing_on_choices_get_one_winner_each(postgres_url: str) -> None:
    one, two = PostgresStore(postgres_url, pool_size=4), PostgresStore(postgres_url, pool_size=4)
    await asyncio.gather(one.open(), two.open())
    try:
        choices = [await pending(one, n, call_id=f"call_{n}") for n in range(10)]
        sides: list[tuple[PostgresStore, str, ChoiceStatus]] = [(one, "A", "approved"), (two, "B", "denied")]
        for choice in choices:
            results = await asyncio.gather(
                *(
                    replica.decide_choice(choice.id, status, f"{name}{n}", name, NOW)
                    for n in range(3)
                    for replica, name, status in sides
                )
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1
            assert await two.get_choice(choice.id) == winners[0] == await one.get_choice(choice.id)
            ran = await asyncio.gather(
                one.mark_choice_ran(choice.id, NOW), two.mark_choice_ran(choice.id, NOW)
            )
            assert sorted(ran) == ([False, True] if winners[0].status == "approved" else [False, False])
    finally:
        await asyncio.gather(one.close(), two.close())


async def test_an_approved_call_is_marked_run_once(store: Store) -> None:
    choice = await pending(store)
    assert not await store.mark_choice_ran(choice.id, NOW)  # still pending: nothing may run
    await store.decide_choice(choice.id, "approved", "U2", "Grace", NOW)
    assert await store.mark_choice_ran(choice.id, NOW)
    assert not await store.mark_choice_ran(choice.id, LATER)
    ran = await store.get_choice(choice.id)
    assert ran is not None and ran.ran_at == NOW
    denied = await pending(store, call_id="denied")
    await store.decide_choice(denied.id, "denied", "U2", "Grace", NOW)
    assert not await store.mark_choice_ran(denied.id, NOW)
    assert not await store.mark_choice_ran(10_000, NOW)


async def test_grants_are_per_conversation_and_idempotent(store: Store) -> None:
    assert await store.granted_tools(REF.key) == frozenset()
    await store.grant_tool(REF.key, "post_message", "U2")
    await store.grant_tool(REF.key, "post_message", "U3")  # again: no error, still one grant
    await store.grant_tool(REF.key, "fetch_url", "U2")
    await store.grant_tool(OTHER_REF.key, "delete_file", "U2")
    assert await store.granted_tools(REF.key) == {"post_message", "fetch_url"}
    assert await store.granted_tools(OTHER_REF.key) == {"delete_file"}
    assert await raw(store, "SELECT granted_by FROM tool_grants WHERE tool = 'post_message'") == [("U2",)]


# Audit


async def test_audit_rows_round_trip_newest_first(store: Store) -> None:
    rows = [audit(NOW - timedelta(minutes=n), tool=f"tool{n}") for n in range(5)]
    for row in reversed(rows):
        await store.record_audit(row)
    await store.record_audit(audit(NOW - timedelta(minutes=1), platform="discord", turn_id=None))
    await store.record_audit(audit(NOW - timedelta(days=2)))
    since = NOW - timedelta(days=1)
    entries = await store.audit_entries(since, platform="slack")
    assert entries == rows
    assert entries[0].ts.tzinfo is not None
    assert await store.audit_entries(since, limit=2, platform="slack") == rows[:2]
    everything = await store.audit_entries(since)
    assert len(everything) == 6 and everything[1] == audit(
        NOW - timedelta(minutes=1), "discord", turn_id=None
    )
    assert len(await store.audit_entries(NOW - timedelta(days=3), limit=100)) == 7
    assert await store.audit_entries(NOW + timedelta(seconds=1)) == []


# Ratings


async def test_ratings_last_click_wins_and_unknown_turns_are_refused(store: Store) -> None:
    turn = await answered(store, "e1", "anthropic:claude")
    assert await store.rate_answer(turn.id, "U1", 1, NOW)
    assert await store.rate_answer(turn.id, "U1", -1, NOW + timedelta(seconds=5))  # changed their mind
    assert await store.rate_answer(turn.id, "U2", 1, NOW)
    assert not await store.rate_answer(10_000, "U1", 1, NOW)
    with pytest.raises(ValueError):
        await store.rate_answer(turn.id, "U1", 0, NOW)
    span = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert await store.rating_totals(*span, "model") == [RatingTotals("anthropic:claude", 1, 1)]
    assert await raw(store, "SELECT COUNT(*) FROM ratings") == [(2,)]


async def test_rating_totals_by_model_and_channel_in_a_period(store: Store) -> None:
    discord = ConversationRef("discord", "G1", "C9", "")
    claude = await answered(store, "e1", "anthropic:claude")
    gpt = await answered(store, "e2", "openai:gpt", OTHER_REF)
    gpt_here = await answered(store, "e3", "openai:gpt", discord)
    for user in ("U1", "U2", "U3"):
        await store.rate_answer(claude.id, user, 1, NOW)
    await store.rate_answer(gpt.id, "U1", -1, NOW)
    await store.rate_answer(gpt_here.id, "U1", 1, NOW + timedelta(minutes=5))
    await store.rate_answer(gpt_here.id, "U2", -1, NOW + timedelta(hours=2))  # after the period
    await store.rate_answer(claude.id, "U9", -1, NOW - timedelta(hours=2))  # before it
    span = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert await store.rating_totals(*span, "model") == [
        RatingTotals("anthropic:claude", 3, 0),
        RatingTotals("openai:gpt", 1, 1),
    ]
    assert await store.rating_totals(*span, "channel") == [
        RatingTotals("slack:C1", 3, 0),
        RatingTotals("discord:C9", 1, 1),
    ]
    assert await store.rating_totals(*span, "model", platform="slack") == [
        RatingTotals("anthropic:claude", 3, 0)
    ]
    assert await store.rating_totals(NOW, NOW, "model") == []  # [since, until): empty
    assert (await store.rating_totals(*span, "model"))[1].rate == 0.5


# Turns: regenerates, model; regenerate helpers; usage marked as a regeneration


async def test_turns_keep_what_they_regenerate_and_the_model_that_answered(store: Store) -> None:
    first = await answered(store, "e1", "anthropic:claude")
    again = await admit(store, "e2", regenerates=first.id)
    assert again.regenerates == first.id
    stored = await store.get_turn(again.id)
    assert stored is not None and (stored.regenerates, stored.model) == (first.id, "")
    done = await store.get_turn(first.id)
    assert done is not None and (done.regenerates, done.model, done.answer) == (0, "anthropic:claude", "hi")
    # A later write without a model keeps the one recorded; a model alone (no answer) is recorded too.
    await store.append_messages(first.session_id, [], turn_id=first.id, turn_status="done")
    await store.append_messages(
        again.session_id, [], turn_id=again.id, turn_status="running", model="openai:o3"
    )
    kept, running = await store.get_turn(first.id), await store.get_turn(again.id)
    assert kept is not None and (kept.model, kept.answer) == ("anthropic:claude", "hi")
    assert running is not None and (running.model, running.answer, running.status) == (
        "openai:o3",
        None,
        "running",
    )
    with pytest.raises(ValueError):
        await store.append_messages(first.session_id, [], model="openai:o3")
    with pytest.raises(LookupError):
        await store.append_messages(first.session_id, [], turn_id=10_000, turn_status="done", model="x")


async def test_turn_before_is_the_conversations_previous_turn_in_any_session(store: Store) -> None:
    first = await admit(store, "e1")
    await admit(store, "e2", OTHER_REF)
    await store.start_new_session(REF)
    second = await admit(store, "e3")
    third = await admit(store, "e4")
    await store.set_turn_status(second.id, "failed")
    newest = 2**62
    assert (await store.turn_before(REF.key, newest)) == await store.get_turn(third.id)
    assert (await store.turn_before(REF.key, third.id)) == await store.get_turn(second.id)
    previous = await store.turn_before(REF.key, second.id)
    assert previous is not None and previous.id == first.id and previous.session_id != second.session_id
    assert await store.turn_before(REF.key, first.id) is None
    assert await store.turn_before("nobody", newest) is None


async def test_dropped_messages_leave_the_history(store: Store) -> None:
    session = await store.current_session(REF)
    messages = [(Message.user(f"m{n}") if n % 2 == 0 else Message.assistant(f"m{n}"), 1) for n in range(6)]
    ids = await store.append_messages(session.id, messages)
    await store.compact(session.id, ids[0], "summary", 3)
    other = await store.current_session(OTHER_REF)
    (elsewhere,) = await store.append_messages(other.id, [(Message.user("x"), 1)])
    assert await store.drop_messages_from(session.id, ids[3]) == 3
    assert [m.id for m in await store.load_messages(session.id)] == ids[1:3]
    assert await store.drop_messages_from(session.id, ids[3]) == 0  # already out
    assert await store.drop_messages_from(session.id, ids[0]) == 2  # the compacted one is not counted
    assert [m.id for m in await store.load_messages(other.id)] == [elsewhere]


async def test_usage_records_whether_it_answered_a_regenerate(store: Store) -> None:
    base = UsageRecord(
        *(NOW, "anthropic", "claude", "slack", "T1", "C1", "U1", None, 10, 5, 0, 0, 0.01, 100.0),
    )
    await store.record_usage(base)
    await store.record_usage(replace(base, regeneration=True))
    flags = await raw(store, "SELECT regeneration FROM usage ORDER BY id")
    assert [bool(f[0]) for f in flags] == [False, True]
    totals = await store.usage_totals(NOW - timedelta(hours=1))
    assert [(t.model, t.calls) for t in totals] == [("anthropic:claude", 2)]


# Migration 7 over a version-6 database with rows in it


async def _seed_v6(execute: Any) -> None:
    """A session, a finished turn and a usage row, written with the version-6 schema's columns."""
    parts = (REF.key, REF.platform, REF.workspace, REF.channel, REF.thread)
    await execute(
        "INSERT INTO sessions (conversation_key, platform, workspace, channel, thread, created_at)"
        " VALUES (?, ?, ?, ?, ?, 0)",
        parts,
    )
    await execute(
        "INSERT INTO turns (session_id, conversation_key, platform, workspace, channel, thread, sender_id,"
        " text, event_id, status, created_at, updated_at, owner, answer, shown)"
        " VALUES (1, ?, ?, ?, ?, ?, 'U1', 'old', 'ev1', 'done', 1e9, 1e9, 0, 'old answer', ' m1')",
        parts,
    )
    await execute(
        "INSERT INTO usage (ts, provider, model, platform, workspace, channel, user_id, input_tokens)"
        " VALUES (?, 'anthropic', 'claude', 'slack', 'T1', 'C1', 'U1', 7)",
        (NOW.timestamp(),),
    )


async def _check_migrated(store: Store) -> None:
    old = await store.get_turn(1)
    assert old is not None
    assert (old.text, old.answer, old.shown, old.regenerates, old.model) == (
        "old",
        "old answer",
        ("m1",),
        0,
        "",
    )
    assert [bool(r[0]) for r in await raw(store, "SELECT regeneration FROM usage")] == [False]
    assert await raw(store, "SELECT MAX(version) FROM schema_version") == [(7,)]
    assert await store.turn_before(REF.key, 2) == old
    assert await store.rate_answer(1, "U1", 1, NOW)  # the new tables work with the old rows
    assert await store.rating_totals(NOW, LATER, "channel") == [RatingTotals("slack:C1", 1, 0)]
    choice = await pending(store)
    assert await store.turn_choices(1) == [choice]


async def test_sqlite_migration_7_keeps_version_6_rows(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:6]) == 6

        async def execute(sql: str, params: Sequence[Any]) -> None:
            await conn.execute(sql, params)

        await _seed_v6(execute)
    async with opened(lambda: SQLiteStore(str(path))) as store:
        await _check_migrated(store)
        for bad in ("UPDATE ratings SET rating = 0", "UPDATE choices SET status = 'maybe'"):
            with pytest.raises(Exception, match="CHECK"):
                await raw_write_sqlite(path, bad)


async def raw_write_sqlite(path: Path, sql: str) -> None:
    async with aiosqlite.connect(path) as conn:
        await conn.execute(sql)
        await conn.commit()


async def test_postgres_migration_7_keeps_version_6_rows(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await pg_migrate(conn, PG_MIGRATIONS[:6]) == 6

        async def execute(sql: str, params: Sequence[Any]) -> None:
            numbered = sql
            for n in range(1, len(params) + 1):
                numbered = numbered.replace("?", f"${n}", 1)
            await conn.execute(numbered, *params)

        await _seed_v6(execute)
    finally:
        await conn.close()
    async with opened(lambda: open_store(postgres_url)) as store:
        await _check_migrated(store)
    conn = await asyncpg.connect(postgres_url)
    try:
        for bad in ("UPDATE ratings SET rating = 0", "UPDATE choices SET status = 'maybe'"):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(bad)
    finally:
        await conn.close()
