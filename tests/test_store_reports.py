"""Store additions for reports: report claims, grouped usage (rollup + raw edges), activity, tools."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest

from core.storage import SQLiteStore, Store, ToolCallRecord, UsageRecord, open_store
from core.storage.migrations import MIGRATIONS, migrate, schema_version

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def usage(
    ts: datetime,
    *,
    platform: str = "slack",
    model: str = "claude-sonnet-5-5",
    channel: str = "C1",
    user: str = "U1",
    session: int | None = 1,
    tokens: tuple[int, int, int, int] = (100, 50, 0, 0),
    cost: float | None = 0.01,
    ok: bool = True,
) -> UsageRecord:
    return UsageRecord(
        ts, "anthropic", model, platform, "W1", channel, user, session, *tokens, cost, 100.0, ok,
        "" if ok else "boom",
    )  # fmt: skip


# Report claims


async def test_claim_report_is_won_once_per_day_and_destination(store: Store) -> None:
    day = date(2026, 3, 1)
    assert await store.claim_report(day, "slack:C1")
    assert not await store.claim_report(day, "slack:C1")
    assert await store.claim_report(day, "telegram:-100")  # another destination
    assert await store.claim_report(day + timedelta(days=1), "slack:C1")  # another day


async def test_release_report_lets_a_later_run_claim_again(store: Store) -> None:
    day = date(2026, 3, 1)
    assert await store.claim_report(day, "d")
    await store.release_report(day, "d")
    assert await store.last_reported_day("d") is None
    assert await store.claim_report(day, "d")
    await store.release_report(date(2020, 1, 1), "d")  # releasing an unclaimed day is harmless


async def test_last_reported_day_is_the_latest_claim_per_destination(store: Store) -> None:
    assert await store.last_reported_day("d") is None
    for day in (date(2026, 2, 27), date(2026, 3, 1), date(2026, 2, 28)):
        await store.claim_report(day, "d")
    await store.claim_report(date(2026, 3, 5), "other")
    assert await store.last_reported_day("d") == date(2026, 3, 1)


async def test_claims_survive_reopen_and_are_exclusive_across_stores(database_url: str) -> None:
    first, second = open_store(database_url), open_store(database_url)
    await first.open()
    await second.open()
    try:
        days = [date(2026, 3, 1) + timedelta(days=n) for n in range(20)]
        wins = await asyncio.gather(*(s.claim_report(d, "slack:C1") for d in days for s in (first, second)))
        assert sum(wins) == len(days)  # every day claimed exactly once between the two
    finally:
        await first.close()
        await second.close()
    reopened = open_store(database_url)
    await reopened.open()
    try:
        assert not await reopened.claim_report(days[0], "slack:C1")
        assert await reopened.last_reported_day("slack:C1") == days[-1]
    finally:
        await reopened.close()


# Migration 2


async def test_migration_2_backfills_the_rollup_from_existing_usage(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:1]) == 1
    old = SQLiteStore(path)
    # Write usage rows with the version-1 schema only (no trigger yet).
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        for minute in range(0, 120, 7):
            ts = (T0 + timedelta(minutes=minute)).timestamp()
            await conn.execute(
                "INSERT INTO usage (ts, provider, model, platform, workspace, channel, user_id,"
                " input_tokens, output_tokens, cost_usd) VALUES (?, 'anthropic', 'm', 'slack', 'W',"
                " 'C', 'U', 10, 5, 0.5)",
                (ts,),
            )
    await old.open()
    try:
        async with aiosqlite.connect(path) as conn:
            assert await schema_version(conn) == len(MIGRATIONS) >= 2
        groups = await old.usage_grouped(T0, T0 + timedelta(hours=2), ("platform",))
        assert [(g.keys, g.requests, g.input_tokens, g.output_tokens) for g in groups] == [
            (("slack",), 18, 180, 90)
        ]
        assert groups[0].cost_usd == pytest.approx(9.0)
    finally:
        await old.close()


# Grouped usage


async def test_usage_grouped_matches_a_plain_sum_for_any_period(store: Store) -> None:
    rnd = random.Random(6)
    records = [
        usage(
            T0 + timedelta(seconds=rnd.randrange(3 * 86400)),
            platform=rnd.choice(["slack", "discord"]),
            model=rnd.choice(["a", "b"]),
            user=rnd.choice(["U1", "U2"]),
            tokens=(rnd.randrange(1000), rnd.randrange(100), rnd.randrange(50), rnd.randrange(20)),
            cost=rnd.choice([None, 0.25, 0.5]),
            ok=rnd.random() > 0.2,
        )
        for _ in range(400)
    ]
    await asyncio.gather(*(store.record_usage(r) for r in records))
    for _ in range(25):  # ragged edges (not on 15-minute buckets), whole buckets, empty spans
        since = T0 + timedelta(seconds=rnd.randrange(-3600, 3 * 86400))
        until = since + timedelta(seconds=rnd.choice([0, 60, 900, 5000, 86400, 3 * 86400]))
        inside = [r for r in records if since <= r.ts < until]
        groups = await store.usage_grouped(since, until, ("platform", "model"))
        got = {
            g.keys: (g.requests, g.errors, g.input_tokens, g.cache_write_tokens, g.unpriced) for g in groups
        }
        want: dict[tuple[str, ...], tuple[int, int, int, int, int]] = {}
        for r in inside:
            n, e, i, w, u = want.get((r.platform, r.model), (0, 0, 0, 0, 0))
            want[(r.platform, r.model)] = (
                n + 1, e + (not r.ok), i + r.input_tokens, w + r.cache_write_tokens, u + (r.cost_usd is None)
            )  # fmt: skip
        assert got == want
        totals = await store.usage_grouped(since, until, ())
        assert len(totals) == (1 if inside else 0)
        known = sum(r.cost_usd or 0.0 for r in inside)
        assert sum(t.cost_usd for t in totals) == pytest.approx(known)
        raw = await store.usage_grouped(since, until, ("platform", "model", "channel"))
        assert {g.keys[:2]: g.requests for g in raw} == {k: v[0] for k, v in want.items()}
        mine = await store.usage_grouped(since, until, ("model",), user_id="U1", platform="slack")
        want_mine: dict[tuple[str, ...], int] = {}
        for r in inside:
            if r.user_id == "U1" and r.platform == "slack":
                want_mine[(r.model,)] = want_mine.get((r.model,), 0) + r.input_tokens
        assert {g.keys: g.input_tokens for g in mine} == want_mine


async def test_usage_grouped_orders_by_cost_and_filters(store: Store) -> None:
    await store.record_usage(usage(T0, user="U1", channel="C1", cost=0.5))
    await store.record_usage(usage(T0, user="U2", channel="C2", cost=2.0))
    await store.record_usage(usage(T0, user="U2", channel="C2", cost=1.0, platform="discord"))
    day = (T0, T0 + timedelta(days=1))
    users = await store.usage_grouped(*day, ("platform", "user_id"))
    assert [(g.keys, g.cost_usd) for g in users] == [
        (("slack", "U2"), 2.0), (("discord", "U2"), 1.0), (("slack", "U1"), 0.5)
    ]  # fmt: skip
    mine = await store.usage_grouped(*day, (), user_id="U2")
    assert [(g.requests, g.cost_usd) for g in mine] == [(2, 3.0)]
    slack = await store.usage_grouped(*day, ("channel",), platform="slack")
    assert [g.keys for g in slack] == [("C2",), ("C1",)]
    assert await store.usage_grouped(T0 - timedelta(days=1), T0, ()) == []
    with pytest.raises(ValueError, match="unknown usage dimension"):
        await store.usage_grouped(*day, ("ts; DROP TABLE usage",))  # type: ignore[arg-type]


async def test_conversations_and_tool_totals(store: Store) -> None:
    await store.record_usage(usage(T0, user="U1", session=1))
    await store.record_usage(usage(T0, user="U1", session=1))
    await store.record_usage(usage(T0, user="U1", session=2, platform="discord"))  # same id, other platform
    await store.record_usage(usage(T0, user="U3", session=None))
    await store.record_usage(usage(T0 + timedelta(days=1), user="U9", session=9))  # outside
    assert await store.count_conversations(T0, T0 + timedelta(days=1)) == 2
    users = await store.usage_grouped(T0, T0 + timedelta(days=1), ("platform", "user_id"))
    assert len(users) == 3  # U1 on two platforms counts twice
    for tool, ok in (("fetch", True), ("fetch", False), ("clock", True), ("fetch", True)):
        await store.record_tool_call(ToolCallRecord(T0, 1, "slack", "U1", tool, ok, 5.0))
    totals = await store.tool_totals(T0, T0 + timedelta(days=1))
    assert [(t.tool, t.calls, t.failures) for t in totals] == [("fetch", 3, 1), ("clock", 1, 0)]
    assert await store.tool_totals(T0 - timedelta(days=1), T0) == []
