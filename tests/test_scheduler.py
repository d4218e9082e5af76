"""The daily report scheduler with a fixed clock: catch-up, exactly once per day and destination across
restarts and replicas sharing one database, empty days, release and retry after a failed post."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bot.app import open_core
from bot.config import Settings, load_settings
from bot.http import HttpServer
from bot.scheduler import (
    JOB_ID,
    MISFIRE_GRACE_S,
    Destination,
    ReportConfig,
    ReportScheduler,
    report_destinations,
)
from bot.serve import serve
from core.budget import BudgetWarning
from core.models import PriceTable
from core.reports.model import DailyReport
from core.storage import open_store
from core.storage.base import Store, UsageRecord
from tests.corekit import RecordingSurface
from tests.fakes.llm_server import FakeLLMServer

TZ = "Europe/Berlin"
TODAY = date(2026, 3, 12)
# 10:00 in Berlin (UTC+1 in March before DST): today's 09:00 report is due, so yesterday is due.
NOW = datetime(2026, 3, 12, 9, 0, tzinfo=UTC)


class ReportAdapter:
    """An in-memory platform that records reports and announcements; can fail its next posts."""

    def __init__(self, name: str, fail_next: int = 0) -> None:
        self.name = name
        self.fail_next = fail_next
        self.reports: list[tuple[str, date, bool, bytes | None]] = []
        self.announcements: list[tuple[str, str]] = []

    async def run(self) -> None:
        await asyncio.Event().wait()

    def ready(self) -> bool:
        return True

    def surface_for(self, ref: object, reply_address: str) -> RecordingSurface:
        return RecordingSurface()

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("platform unavailable")
        self.reports.append((destination, report.day, report.empty, chart_png))

    async def post_announcement(self, destination: str, text: str) -> None:
        self.announcements.append((destination, text))

    @property
    def days(self) -> list[date]:
        return [day for _, day, _, _ in self.reports]


async def seed(store: Store, *days: date, hour_utc: int = 12) -> None:
    for day in days:
        await store.record_usage(
            UsageRecord(
                ts=datetime(day.year, day.month, day.day, hour_utc, tzinfo=UTC),
                provider="anthropic",
                model="claude-sonnet-5-5",
                platform="slack",
                workspace="T1",
                channel="C1",
                user_id="U1",
                session_id=1,
                input_tokens=1000,
                output_tokens=100,
                cache_read_tokens=0,
                cache_write_tokens=0,
                cost_usd=0.003,
                latency_ms=10.0,
            )
        )


async def no_chart(report: DailyReport) -> bytes | None:
    return b"\x89PNG fake"


def scheduler(
    store: Store,
    *adapters: ReportAdapter,
    now: datetime = NOW,
    post_empty: bool = False,
    render: Callable[[DailyReport], object] | None = no_chart,
) -> ReportScheduler:
    destinations = [Destination(f"{a.name}:D-{a.name}", f"D-{a.name}", a) for a in adapters]
    config = ReportConfig(timezone=TZ, time="09:00", post_empty=post_empty)
    return ReportScheduler(
        store,
        PriceTable(),
        config,
        destinations,
        clock=lambda: now,
        render=render,  # type: ignore[arg-type]
    )


def days_before(n: int) -> date:
    return TODAY - timedelta(days=n)


async def test_first_start_posts_just_yesterday_with_the_real_chart(store: Store) -> None:
    await seed(store, days_before(3), days_before(2), days_before(1))
    slack = ReportAdapter("slack")
    posted = await scheduler(store, slack, render=None).post_due()
    assert posted == [(days_before(1), "slack:D-slack")]
    ((_, day, empty, chart),) = slack.reports
    assert day == days_before(1) and not empty
    assert chart is not None and chart.startswith(b"\x89PNG\r\n\x1a\n")


async def test_catch_up_after_two_missed_days_oldest_first(store: Store) -> None:
    await seed(store, days_before(3), days_before(2), days_before(1))
    slack, telegram = ReportAdapter("slack"), ReportAdapter("telegram")
    for adapter in (slack, telegram):
        assert await store.claim_report(days_before(3), f"{adapter.name}:D-{adapter.name}")
    await scheduler(store, slack, telegram).post_due()
    assert slack.days == [days_before(2), days_before(1)]
    assert telegram.days == [days_before(2), days_before(1)]
    assert await store.last_reported_day("slack:D-slack") == days_before(1)


async def test_yesterday_is_not_due_before_the_report_time(store: Store) -> None:
    await seed(store, days_before(2), days_before(1))
    slack = ReportAdapter("slack")
    early = NOW - timedelta(hours=2)  # 08:00 Berlin
    await scheduler(store, slack, now=early).post_due()
    assert slack.days == [days_before(2)]
    await scheduler(store, slack, now=NOW).post_due()  # 09:00 Berlin: yesterday's turn
    assert slack.days == [days_before(2), days_before(1)]


async def test_no_duplicate_across_a_restart(store: Store, database_url: str) -> None:
    await seed(store, days_before(1))
    slack = ReportAdapter("slack")
    await scheduler(store, slack).post_due()
    await store.close()
    restarted = open_store(database_url)
    await restarted.open()
    try:
        assert await scheduler(restarted, slack).post_due() == []
        assert await scheduler(restarted, slack, now=NOW + timedelta(hours=5)).post_due() == []
    finally:
        await restarted.close()
    assert slack.days == [days_before(1)]


async def test_two_schedulers_sharing_one_database_post_once(store: Store, database_url: str) -> None:
    await seed(store, days_before(3), days_before(2), days_before(1))
    replica = open_store(database_url)
    await replica.open()
    slack_a, slack_b = ReportAdapter("slack"), ReportAdapter("slack")
    try:
        for s in (store, replica):
            await s.claim_report(days_before(4), "slack:D-slack")
        await asyncio.gather(
            scheduler(store, slack_a).post_due(),
            scheduler(replica, slack_b).post_due(),
            scheduler(store, slack_a).post_due(),
        )
    finally:
        await replica.close()
    assert sorted(slack_a.days + slack_b.days) == [days_before(3), days_before(2), days_before(1)]


async def test_empty_days_are_skipped_unless_configured(store: Store) -> None:
    await seed(store, days_before(3))
    quiet, loud = ReportAdapter("slack"), ReportAdapter("discord")
    for name in ("slack", "discord"):
        await store.claim_report(days_before(4), f"{name}:D-{name}")
    await scheduler(store, quiet).post_due()
    await scheduler(store, loud, post_empty=True).post_due()
    assert quiet.days == [days_before(3)]  # the two empty days are handled, not posted
    assert await store.last_reported_day("slack:D-slack") == days_before(1)
    assert loud.days == [days_before(3), days_before(2), days_before(1)]
    assert [empty for _, _, empty, _ in loud.reports] == [False, True, True]


async def test_a_failed_post_is_released_and_retried_in_order(store: Store) -> None:
    await seed(store, days_before(2), days_before(1))
    flaky, steady = ReportAdapter("slack", fail_next=1), ReportAdapter("telegram")
    for name in ("slack", "telegram"):
        await store.claim_report(days_before(3), f"{name}:D-{name}")
    first = await scheduler(store, flaky, steady).post_due()
    assert flaky.days == []  # day -2 failed, so day -1 waits for it
    assert steady.days == [days_before(2), days_before(1)]
    assert (days_before(2), "slack:D-slack") not in first
    assert await store.last_reported_day("slack:D-slack") == days_before(3)  # the claim was released
    await scheduler(store, flaky, steady).post_due()
    assert flaky.days == [days_before(2), days_before(1)]
    assert steady.days == [days_before(2), days_before(1)]


async def test_post_now_reposts_and_the_scheduler_then_skips_the_day(store: Store) -> None:
    await seed(store, days_before(1))
    slack = ReportAdapter("slack")
    job = scheduler(store, slack)
    assert await job.post_now(days_before(1)) == []
    assert await job.post_now(days_before(1)) == []  # on demand: posted again
    await job.post_due()
    assert slack.days == [days_before(1), days_before(1)]


async def test_budget_warning_is_announced_once_per_day_and_destination(store: Store, tmp_path: Path) -> None:
    slack, telegram = ReportAdapter("slack"), ReportAdapter("telegram", fail_next=0)
    warning = BudgetWarning(TODAY, 8.5, 10.0)
    await scheduler(store, slack, telegram).announce(warning)
    await scheduler(store, slack, telegram).announce(warning)  # a restart or a replica
    await scheduler(store, slack, telegram).announce(BudgetWarning(TODAY + timedelta(days=1), 9, 10))
    assert [d for d, _ in slack.announcements] == ["D-slack", "D-slack"]
    assert len(telegram.announcements) == 2
    assert "85%" in slack.announcements[0][1] and "$10.00" in slack.announcements[0][1]
    # The warning's claims do not count as reports.
    assert await store.last_reported_day("slack:D-slack") is None


async def test_cron_job_runs_at_report_time_with_a_generous_grace(store: Store) -> None:
    job = scheduler(store, ReportAdapter("slack"))
    aps = job.start()
    try:
        installed = aps.get_job(JOB_ID)
        assert installed.misfire_grace_time == MISFIRE_GRACE_S and installed.coalesce
        fields = {f.name: str(f) for f in installed.trigger.fields}
        assert (fields["hour"], fields["minute"]) == ("9", "0")
        assert str(installed.trigger.timezone) == TZ
        next_run = installed.next_run_time
        assert (next_run.hour, next_run.minute) == (9, 0) and str(next_run.tzinfo) == TZ
    finally:
        job.stop()


def test_destinations_map_to_running_adapters_only(tmp_path: Path) -> None:
    settings: Settings = load_settings(
        _env_file=None,
        anthropic_api_key="sk-ant-x",
        report_slack_channel="C0123",
        report_telegram_chat="-100987",
        report_discord_channel=" ",
    )
    found = report_destinations(settings, [ReportAdapter("slack"), ReportAdapter("discord")])
    assert [(d.key, d.target, d.adapter.name) for d in found] == [("slack:C0123", "C0123", "slack")]
    assert ReportConfig.from_settings(settings).last_due_day(NOW) == days_before(1)


async def test_bot_run_catches_up_once_the_adapter_is_connected(
    llm_server: FakeLLMServer, settings_for: Callable[..., Settings]
) -> None:
    async with open_core(settings_for()) as core:
        yesterday = datetime.now(UTC) - timedelta(days=1)
        await seed(core.store, yesterday.date())
        slack = ReportAdapter("slack")
        config = ReportConfig(timezone="UTC", time="00:00")
        reports = ReportScheduler(
            core.store, core.prices, config, [Destination("slack:C1", "C1", slack)], render=no_chart
        )
        task = asyncio.create_task(serve([slack], core.router, HttpServer("127.0.0.1", 0), reports))
        for _ in range(100):
            if slack.reports:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert slack.days == [yesterday.date()]
