"""The daily usage report: when to post it, where, and exactly once.

APScheduler (an in-memory `AsyncIOScheduler`, never a shared job store) only says *when*: a cron job at
REPORT_TIME in REPORT_TIMEZONE, with a generous misfire grace so a late wake-up still runs. The database
says *what*: before posting day D to a destination a scheduler claims the `(D, destination)` row
(`Store.claim_report`, insert-or-ignore), so a restart, a second replica or the start-up catch-up never
posts a day twice. A failed post releases its claim, and later days for that destination wait, so the
retry keeps the oldest-first order. Every run, scheduled or at start-up, posts everything that is due:
each day after the destination's last reported day up to the last day whose report time has passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from bot.config import Settings
from core.adapter import Adapter, wait_until_ready
from core.budget import BudgetWarning, Clock, utc_now
from core.models import PriceTable
from core.reports.model import DailyReport
from core.storage.base import Store

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

JOB_ID = "daily-report"
MISFIRE_GRACE_S = 6 * 3600  # APScheduler's default is 1 s: a late wake-up would skip the day
RETRY_AFTER_S = 15 * 60  # after a failed post, try again this much later
MAX_CATCH_UP_DAYS = 14  # after a long outage, post at most this many missed days per destination
READY_TIMEOUT_S = 60.0
WARNING_PREFIX = "budget-warning:"  # claim key of the once-a-day 80% warning, per destination

Build = Callable[[date], Awaitable[DailyReport]]
Render = Callable[[DailyReport], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class Destination:
    key: str  # what the database remembers, e.g. "slack:C0123"
    target: str  # the channel or chat id given to the adapter
    adapter: Adapter


@dataclass(frozen=True, slots=True)
class ReportConfig:
    timezone: str = "UTC"
    time: str = "09:00"  # HH:MM
    post_empty: bool = False
    daily_cap_usd: float | None = None
    user_cap_usd: float | None = None

    @staticmethod
    def from_settings(settings: Settings) -> ReportConfig:
        return ReportConfig(
            timezone=settings.report_timezone,
            time=settings.report_time,
            post_empty=settings.report_post_empty,
            daily_cap_usd=settings.budget_daily_total_usd,
            user_cap_usd=settings.budget_daily_user_usd,
        )

    @property
    def hour_minute(self) -> tuple[int, int]:
        hours, _, minutes = self.time.partition(":")
        return int(hours), int(minutes)

    def last_due_day(self, now: datetime) -> date:
        """The latest day whose report is due at `now`: yesterday once today's report time has passed."""
        local = now.astimezone(ZoneInfo(self.timezone))
        due_today = local.time() >= time(*self.hour_minute)
        return local.date() - timedelta(days=1 if due_today else 2)


def report_destinations(settings: Settings, adapters: Sequence[Adapter]) -> list[Destination]:
    """REPORT_SLACK_CHANNEL -> the slack adapter, etc.; only adapters that are running."""
    targets = {
        "slack": settings.report_slack_channel,
        "discord": settings.report_discord_channel,
        "telegram": settings.report_telegram_chat,
    }
    found: list[Destination] = []
    for adapter in adapters:
        target = targets.get(adapter.name)
        if target:
            found.append(Destination(f"{adapter.name}:{target}", target, adapter))
    return found


class ReportScheduler:
    def __init__(
        self,
        store: Store,
        prices: PriceTable,
        config: ReportConfig,
        destinations: Sequence[Destination],
        *,
        clock: Clock = utc_now,
        build: Build | None = None,
        render: Render | None = None,
    ) -> None:
        self._store = store
        self._prices = prices
        self.config = config
        self.destinations = list(destinations)
        self._clock = clock
        self._build = build or self._build_report
        self._render = render or _render_chart
        self._lock = asyncio.Lock()  # the start-up catch-up and the cron job never interleave
        self._scheduler: AsyncIOScheduler | None = None

    # --- what is due ------------------------------------------------------------------------------

    async def post_due(self) -> list[tuple[date, str]]:
        """Post every report that is due and not yet claimed, oldest first. Returns (day, key) posted."""
        async with self._lock:
            last_due = self.config.last_due_day(self._clock())
            starts = {d.key: await self._first_day(d, last_due) for d in self.destinations}
            posted: list[tuple[date, str]] = []
            failed: set[str] = set()
            day = min(starts.values(), default=last_due + timedelta(days=1))
            while day <= last_due:
                todo = [d for d in self.destinations if starts[d.key] <= day and d.key not in failed]
                for key, ok in await self._post_day(day, todo):
                    if ok:
                        posted.append((day, key))
                    else:
                        failed.add(key)  # later days wait, so the retry keeps the order
                day += timedelta(days=1)
            if failed:
                self._retry_later()
            return posted

    async def _first_day(self, destination: Destination, last_due: date) -> date:
        last = await self._store.last_reported_day(destination.key)
        if last is None:
            return last_due  # first start for this destination: just the latest day
        return max(last + timedelta(days=1), last_due - timedelta(days=MAX_CATCH_UP_DAYS - 1))

    async def _post_day(self, day: date, todo: Sequence[Destination]) -> list[tuple[str, bool]]:
        """Claim and post one day to each destination; (key, ok) for each one this scheduler claimed."""
        report: DailyReport | None = None
        chart: bytes | None = None
        results: list[tuple[str, bool]] = []
        for destination in todo:
            if not await self._store.claim_report(day, destination.key):
                continue  # posted (or being posted) by another run or replica
            try:
                if report is None:
                    report = await self._build(day)
                    if not report.empty or self.config.post_empty:
                        chart = await self._chart(report)
                if report.empty and not self.config.post_empty:
                    log.info("no activity on %s; no report for %s", day, destination.key)
                    continue  # the claim stays: the day is handled
                await destination.adapter.post_report(destination.target, report, chart)
                log.info("posted the report for %s to %s", day, destination.key)
                results.append((destination.key, True))
            except Exception:
                log.warning("could not post the report for %s to %s", day, destination.key, exc_info=True)
                await self._store.release_report(day, destination.key)
                results.append((destination.key, False))
        return results

    async def post_now(self, day: date) -> list[str]:
        """`bot report --post`: post `day` to every destination even if it was posted before, and record
        it so the scheduler does not post it again. Returns the keys that failed."""
        report = await self._build(day)
        chart = await self._chart(report)
        failed: list[str] = []
        for destination in self.destinations:
            try:
                await destination.adapter.post_report(destination.target, report, chart)
                await self._store.claim_report(day, destination.key)
            except Exception:
                log.warning("could not post the report for %s to %s", day, destination.key, exc_info=True)
                failed.append(destination.key)
        return failed

    async def _build_report(self, day: date) -> DailyReport:
        from core.reports.build import build_daily_report

        config = self.config
        return await build_daily_report(
            self._store,
            day,
            config.timezone,
            self._prices,
            daily_cap_usd=config.daily_cap_usd,
            user_cap_usd=config.user_cap_usd,
        )

    async def _chart(self, report: DailyReport) -> bytes | None:
        try:
            return await self._render(report)
        except Exception:  # a report without its chart beats no report
            log.warning("could not render the report chart for %s", report.day, exc_info=True)
            return None

    # --- the budget warning -----------------------------------------------------------------------

    async def announce(self, warning: BudgetWarning) -> None:
        """The 80% team warning, once per day and destination across restarts and replicas."""
        for destination in self.destinations:
            key = WARNING_PREFIX + destination.key
            if not await self._store.claim_report(warning.day, key):
                continue
            try:
                await destination.adapter.post_announcement(destination.target, warning.text)
            except Exception:
                log.warning("could not post the budget warning to %s", destination.key, exc_info=True)
                await self._store.release_report(warning.day, key)

    # --- APScheduler --------------------------------------------------------------------------------

    def start(self) -> AsyncIOScheduler:
        """Install the daily cron job on the running loop (call from inside it)."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        hour, minute = self.config.hour_minute
        scheduler = AsyncIOScheduler(timezone=self.config.timezone)
        scheduler.add_job(
            self._scheduled,
            CronTrigger(hour=hour, minute=minute, timezone=self.config.timezone),
            id=JOB_ID,
            misfire_grace_time=MISFIRE_GRACE_S,
            coalesce=True,
            max_instances=1,
            replace_existing=True,
        )
        scheduler.start()
        self._scheduler = scheduler
        return scheduler

    def stop(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        self._scheduler = None

    async def _scheduled(self) -> None:
        try:
            await self.post_due()
        except Exception:  # e.g. the database is briefly unavailable; the next run catches up
            log.exception("the daily report run failed")
            self._retry_later()

    def _retry_later(self) -> None:
        if self._scheduler is None or not self._scheduler.running:
            return  # no scheduler (tests, `bot report`): the next start-up catches up
        when = self._clock() + timedelta(seconds=RETRY_AFTER_S)
        self._scheduler.add_job(
            self._scheduled, "date", run_date=when, id=f"{JOB_ID}-retry", replace_existing=True
        )

    async def run(self) -> None:
        """For `bot run`: wait until the destinations' adapters are connected, catch up, then post daily
        until cancelled."""
        await _wait_ready([d.adapter for d in self.destinations])
        self.start()
        try:
            await self._scheduled()  # the start-up catch-up
            await asyncio.Event().wait()
        finally:
            self.stop()


async def _render_chart(report: DailyReport) -> bytes | None:
    from core.reports.chart import render_chart

    return await render_chart(report)


async def _wait_ready(adapters: Sequence[Adapter], timeout_s: float = READY_TIMEOUT_S) -> None:
    if not await wait_until_ready(adapters, timeout_s):
        log.warning("not every report destination connected within %.0fs; posting anyway", timeout_s)
