"""Daily report: content of a seeded day against hand-computed totals, timezone edges, Markdown, chart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.models import PriceTable
from core.reports.build import build_daily_report, day_bounds, local_day
from core.reports.chart import render_chart
from core.reports.markdown import percent_change, report_markdown
from core.reports.model import DailyReport, DayPoint, Totals
from core.storage import SQLiteStore, ToolCallRecord, UsageRecord

BERLIN = "Europe/Berlin"  # UTC+1 in March before the 29th
DAY = date(2026, 3, 10)
PRICES = PriceTable()  # claude-sonnet-5-5: $2 in, $10 out, $0.2 cache read, $2.5 cache write per M


def at(day: date, hour: int, minute: int = 0, tz: str = BERLIN) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(tz))


def row(
    ts: datetime,
    platform: str,
    channel: str,
    user: str,
    session: int,
    tokens: tuple[int, int, int, int],
    cost: float | None,
    *,
    model: str = "claude-sonnet-5-5",
    provider: str = "anthropic",
    ok: bool = True,
) -> UsageRecord:
    error = "" if ok else "overloaded"
    return UsageRecord(
        ts, provider, model, platform, "W", channel, user, session, *tokens, cost, 50.0, ok, error
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(str(tmp_path / "bot.db"))
    await opened.open()
    yield opened
    await opened.close()


SEEDED = [
    # cost = in*2 + out*10 + read*0.2 + write*2.5 per million (sonnet); haiku 0.1 in / 0.5 out
    row(at(DAY, 9), "slack", "C1", "U1", 1, (1000, 500, 10000, 0), 0.009),
    row(at(DAY, 9, 5), "slack", "C1", "U1", 1, (2000, 1000, 0, 4000), 0.024),
    row(at(DAY, 14), "discord", "C2", "U2", 2, (10000, 2000, 0, 0), 0.002, model="claude-haiku-5-5"),
    row(at(DAY, 23, 30), "telegram", "T3", "U3", 3, (500, 100, 0, 0), 0.002),  # 22:30 UTC: still DAY
    row(at(DAY, 15), "slack", "C1", "U2", 4, (0, 0, 0, 0), 0.0, ok=False),
    row(at(DAY, 16), "slack", "C1", "U1", 1, (300, 30, 0, 0), None, provider="openai", model="local-llama"),
    # Outside the day: 00:30 local next day is 23:30 UTC on DAY, and the day before at 23:59 local.
    row(at(DAY + timedelta(days=1), 0, 30), "slack", "C1", "U1", 1, (7, 7, 7, 7), 5.0),
    row(at(DAY - timedelta(days=1), 23, 59), "slack", "C1", "U1", 1, (1000, 0, 0, 0), 0.002),
]


async def seed(store: SQLiteStore) -> None:
    for record in SEEDED:
        await store.record_usage(record)
    for hour, ok in ((10, True), (11, False)):
        await store.record_tool_call(ToolCallRecord(at(DAY, hour), 1, "slack", "U1", "fetch", ok, 9.0))
    await store.record_tool_call(
        ToolCallRecord(at(DAY + timedelta(days=1), 0, 30), 1, "slack", "U1", "clock", True, 1)
    )


async def test_seeded_day_matches_hand_computed_totals(store: SQLiteStore) -> None:
    await seed(store)
    report = await build_daily_report(store, DAY, BERLIN, PRICES, daily_cap_usd=0.05, user_cap_usd=0.03)
    t = report.totals
    assert (t.requests, t.input_tokens, t.output_tokens) == (6, 13800, 3630)
    assert (t.cache_read_tokens, t.cache_write_tokens, t.unpriced_requests) == (10000, 4000, 1)
    assert t.cost_usd == pytest.approx(0.037)
    assert t.cache_savings_usd == pytest.approx(10000 * (2.0 - 0.2) / 1e6)  # 0.018
    assert (report.conversations, report.active_users, report.provider_errors) == (4, 4, 1)
    assert report.previous is not None
    assert report.previous.requests == 1
    assert report.previous.cost_usd == pytest.approx(0.002)
    platforms = [(b.key, b.totals.requests, round(b.totals.cost_usd, 6)) for b in report.by_platform]
    assert platforms == [("slack", 4, 0.033), ("discord", 1, 0.002), ("telegram", 1, 0.002)]
    models = [(b.key, b.totals.requests, b.totals.unpriced_requests) for b in report.by_model]
    assert models == [
        ("anthropic:claude-sonnet-5-5", 4, 0),
        ("anthropic:claude-haiku-5-5", 1, 0),
        ("openai:local-llama", 1, 1),
    ]
    assert report.by_model[0].totals.cost_usd == pytest.approx(0.035)
    assert [b.key for b in report.by_channel] == ["slack:C1", "discord:C2", "telegram:T3"]
    assert [b.key for b in report.top_users] == ["slack:U1", "discord:U2", "telegram:U3", "slack:U2"]
    assert report.top_users[0].totals.cache_savings_usd == pytest.approx(0.018)
    assert [(s.name, s.calls, s.failures) for s in report.tools] == [("fetch", 2, 1)]
    assert report.budget is not None
    assert (report.budget.daily_cap_usd, report.budget.users_over_cap) == (0.05, 1)
    assert report.budget.share == pytest.approx(0.74)


async def test_history_covers_fourteen_local_days_oldest_first(store: SQLiteStore) -> None:
    await seed(store)
    report = await build_daily_report(store, DAY, BERLIN, PRICES)
    assert [p.day for p in report.history] == [DAY - timedelta(days=n) for n in range(13, -1, -1)]
    last, before = report.history[-1], report.history[-2]
    assert last.cost_by_platform == pytest.approx({"slack": 0.033, "discord": 0.002, "telegram": 0.002})
    assert last.tokens_by_platform == {"slack": 11500 + 7000 + 0 + 330, "discord": 12000, "telegram": 600}
    assert before.tokens_by_platform == {"slack": 1000}
    assert all(not p.cost_by_platform for p in report.history[:-2])
    assert report.budget is None  # no caps configured


@pytest.mark.parametrize(
    ("tz", "day"),
    [
        ("Asia/Kathmandu", date(2026, 6, 1)),  # UTC+5:45: days start off the hour
        ("America/New_York", date(2026, 3, 8)),  # spring forward: a 23-hour day
        ("Europe/Berlin", date(2026, 10, 25)),  # fall back: a 25-hour day
        ("UTC", date(2026, 1, 1)),
    ],
)
async def test_a_turn_at_23_30_local_belongs_to_that_day(store: SQLiteStore, tz: str, day: date) -> None:
    nxt = day + timedelta(days=1)
    for ts in (
        at(day, 0, 0, tz),
        at(day, 23, 30, tz),
        at(nxt, 0, 0, tz),
        at(day - timedelta(days=1), 23, 59, tz),
    ):
        await store.record_usage(row(ts, "slack", "C", "U", 1, (1, 1, 0, 0), 1.0))
    report = await build_daily_report(store, day, tz, PRICES)
    assert report.totals.requests == 2
    assert report.previous is not None and report.previous.requests == 1
    assert report.history[-1].cost_by_platform == {"slack": 2.0}
    start, end = day_bounds(day, tz)
    assert local_day(start, tz) == day and local_day(end - timedelta(microseconds=1), tz) == day
    assert local_day(at(day, 23, 30, tz).astimezone(UTC), tz) == day


async def test_an_empty_day_builds_an_empty_report(store: SQLiteStore) -> None:
    report = await build_daily_report(store, DAY, BERLIN, PRICES, daily_cap_usd=10)
    assert report.empty and report.previous is None and report.by_platform == []
    assert report.budget is not None and report.budget.spent_usd == 0
    assert "No activity" in report_markdown(report)
    assert await render_chart(report) is None


async def test_markdown_states_the_numbers(store: SQLiteStore) -> None:
    await seed(store)
    text = report_markdown(await build_daily_report(store, DAY, BERLIN, PRICES, daily_cap_usd=0.05))
    assert text.startswith("# Usage report for Tue 2026-03-10 (Europe/Berlin)")
    for expected in (
        "**$0.0370** spent on **6** requests in **4** conversations by **4** active users",
        "cost +1750% ($0.0020), requests +500% (1)",
        "13,800 input · 3,630 output · 10,000 cache read · 4,000 cache write",
        "Prompt caching saved $0.0180",
        "Provider errors: 1 (16.7% of requests)",
        "## By platform\n- `slack`: $0.0330 (+1 unpriced) · 4 requests · 18.8k tokens",
        "- `discord`: $0.0020 · 1 request · 12.0k tokens",
        "`openai:local-llama`: $0.0000 (+1 unpriced)",
        "## Top users\n- `slack:U1`",
        "- `fetch`: 2 calls, 1 failed",
        "Team: $0.0370 of $0.0500 (74%)",
    ):
        assert expected in text, expected


def test_percent_change() -> None:
    assert [percent_change(*p) for p in ((2, 1), (1, 2), (0, 0), (3, 0), (1.001, 1))] == [
        "+100%", "-50%", "±0%", "new", "±0%"
    ]  # fmt: skip


async def test_chart_is_a_png_of_the_history() -> None:
    history = [
        DayPoint(
            date(2026, 3, 1) + timedelta(days=n), {"slack": n * 0.5, "discord": 0.25}, {"slack": n * 1000}
        )
        for n in range(14)
    ]
    report = DailyReport(date(2026, 3, 14), "UTC", Totals(requests=3), 1, 1, 0, None, history=history)
    png = await render_chart(report)
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
