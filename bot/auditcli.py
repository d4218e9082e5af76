"""`bot audit [--since 24h|7d|YYYY-MM-DD] [--platform NAME] [--limit 50]`: the tool-call audit as a table."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import TextIO
from zoneinfo import ZoneInfo

from bot.config import Settings, SettingsError
from core.audit import audit_table, parse_since
from core.storage import open_store

DEFAULT_SINCE = "24h"
DEFAULT_LIMIT = 50
MAX_LIMIT = 10_000


def add_audit_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit", help="print the audit of tool calls: who asked, who approved, what ran (newest first)"
    )
    audit.add_argument(
        "--since",
        type=since_argument,
        default=DEFAULT_SINCE,
        metavar="24h|7d|YYYY-MM-DD",
        help=f"from how long ago, or from the start of a day in REPORT_TIMEZONE (default: {DEFAULT_SINCE})",
    )
    audit.add_argument(
        "--platform", type=str.lower, help="only this platform (slack, telegram, discord, console)"
    )
    audit.add_argument(
        "--limit",
        type=limit_argument,
        default=DEFAULT_LIMIT,
        help=f"at most this many rows (default: {DEFAULT_LIMIT})",
    )


def since_argument(text: str) -> str:
    """Checked while the arguments are read (a bad value exits 2 at once); resolved in the report
    timezone once the settings are loaded."""
    try:
        parse_since(text, datetime.now(UTC), ZoneInfo("UTC"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def limit_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"not a number of rows from 1 to {MAX_LIMIT}: {text!r}")
    return value


async def print_audit(
    settings: Settings, since_text: str, platform: str | None, limit: int, out: TextIO
) -> int:
    """Read the audit rows from the database and print them (no chat platform needed)."""
    zone = ZoneInfo(settings.report_timezone)
    since = parse_since(since_text, datetime.now(UTC), zone)
    try:
        store = open_store(settings.database_url, pool_size=settings.database_pool_size)
    except ValueError as error:
        raise SettingsError([str(error)]) from None
    await store.open()
    try:
        rows = await store.audit_entries(since, limit=limit, platform=platform)
    finally:
        await store.close()
    start = since.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    where = f" on {platform}" if platform else ""
    if not rows:
        out.write(f"No tool calls{where} since {start} ({zone.key}).\n")
        return 0
    more = f", the newest {limit}" if len(rows) == limit else ""
    out.write(f"Tool calls{where} since {start} ({zone.key}){more}, newest first:\n\n")
    out.write(audit_table(rows, zone) + "\n")
    return 0
