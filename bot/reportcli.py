"""`bot report [--date YYYY-MM-DD] [--print | --post]`: any day's report, on demand."""

from __future__ import annotations

import logging
from datetime import date
from typing import TextIO

from bot.config import Settings, SettingsError
from bot.logs import say
from core.models import PriceTable
from core.storage import open_store

NO_DESTINATION = (
    "no report destination: set REPORT_SLACK_CHANNEL, REPORT_DISCORD_CHANNEL or REPORT_TELEGRAM_CHAT "
    "together with that platform's bot token"
)


async def print_report(settings: Settings, day: date, out: TextIO) -> int:
    """Build the day's report from the database and print it as Markdown (no chat platform needed)."""
    from core.reports.build import build_daily_report
    from core.reports.markdown import report_markdown

    try:
        store = open_store(settings.database_url, pool_size=settings.database_pool_size)
    except ValueError as error:
        raise SettingsError([str(error)]) from None
    await store.open()
    try:
        report = await build_daily_report(
            store,
            day,
            settings.report_timezone,
            PriceTable(settings.prices),
            daily_cap_usd=settings.budget_daily_total_usd,
            user_cap_usd=settings.budget_daily_user_usd,
        )
    finally:
        await store.close()
    out.write(report_markdown(report).rstrip("\n") + "\n")
    return 0


async def post_report(settings: Settings, day: date) -> int:
    """Post the day's report to every configured destination now, even if it was posted before; the
    scheduler then treats the day as posted."""
    from bot.app import open_core
    from bot.http import HttpServer
    from bot.platforms import configured_adapters
    from bot.scheduler import ReportConfig, ReportScheduler, report_destinations
    from core.adapter import AdapterContext

    async with open_core(settings) as core:
        routes = HttpServer(settings.http_host, settings.http_port)  # never started: posting only
        adapters = configured_adapters(settings, AdapterContext(core.router, routes, settings.offered_models))
        destinations = report_destinations(settings, adapters)
        if not destinations:
            say(f"config error: {NO_DESTINATION}", logging.ERROR)
            return 2
        scheduler = ReportScheduler(
            core.store, core.prices, ReportConfig.from_settings(settings), destinations
        )
        failed = await scheduler.post_now(day)
    for destination in destinations:
        state = "FAILED (see the log above)" if destination.key in failed else "posted"
        print(f"{day} -> {destination.key}: {state}")
    return 1 if failed else 0
