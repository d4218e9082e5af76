"""Benchmark: build a daily report over 1,000,000 usage rows with the default SQLite store.

Prints numbers; asserts nothing. Target: under 1 second. Run with `python -m bench.report_build`
(`--days 14` puts all the rows inside the report's 14-day history window, the worst case for it).

Rows are written through the real schema (so the rollup trigger maintains the pre-aggregates exactly
as `record_usage` would), in large transactions to keep seeding quick.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from core.models import PriceTable
from core.reports.build import build_daily_report
from core.reports.markdown import report_markdown
from core.storage import SQLiteStore

TIMEZONE = "Europe/Berlin"
_INSERT = (
    "INSERT INTO usage (ts, provider, model, platform, workspace, channel, user_id, session_id,"
    " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, latency_ms, ok, error)"
    " VALUES (?, ?, ?, ?, 'W', ?, ?, ?, ?, ?, ?, ?, ?, 800, ?, '')"
)
_MODELS = (
    ("anthropic", "claude-sonnet-5-5"),
    ("anthropic", "claude-haiku-5-5"),
    ("anthropic", "claude-opus-5-5"),
    ("openai", "gpt-5.4-mini"),
)
_PLATFORMS = ("slack", "discord", "telegram")


def seed(path: str, rows: int, days: int, last_day: date) -> None:
    """`rows` usage rows spread evenly over `days` local days ending with `last_day`; 300 users."""
    rnd = random.Random(6)
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), ZoneInfo(TIMEZONE))
    start = end.timestamp() - days * 86400
    step = days * 86400 / rows
    conn = sqlite3.connect(path)
    batch = []
    for n in range(rows):
        user = rnd.randrange(300)
        provider, model = _MODELS[rnd.randrange(4) if rnd.random() < 0.3 else 0]
        inp, out, read = rnd.randrange(200, 4000), rnd.randrange(50, 1500), rnd.randrange(0, 30000)
        cost = (inp * 2 + out * 10 + read * 0.2) / 1e6
        ok = int(rnd.random() > 0.01)
        platform, channel = _PLATFORMS[user % 3], f"C{user % 60}"
        batch.append(
            (
                start + n * step,
                provider,
                model,
                platform,
                channel,
                f"U{user}",
                n // 8,
                inp,
                out,
                read,
                0,
                cost,
                ok,
            )
        )
        if len(batch) == 50_000:
            conn.executemany(_INSERT, batch)
            conn.commit()
            batch.clear()
    conn.executemany(_INSERT, batch)
    conn.commit()
    conn.close()


async def main(rows: int, days: int, runs: int) -> None:
    last_day = date(2026, 3, 10)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        store = SQLiteStore(path)
        await store.open()  # creates the schema (and the rollup trigger)
        await store.close()
        began = time.perf_counter()
        await asyncio.to_thread(seed, path, rows, days, last_day)
        print(f"seeded {rows:,} usage rows over {days} days in {time.perf_counter() - began:.1f} s")
        store = SQLiteStore(path)
        await store.open()
        try:
            timings = []
            for _ in range(runs):
                began = time.perf_counter()
                report = await build_daily_report(store, last_day, TIMEZONE, PriceTable(), daily_cap_usd=50)
                timings.append(time.perf_counter() - began)
            print(f"report for {last_day} ({report.totals.requests:,} requests that day, 14-day history):")
            first, median = timings[0] * 1000, statistics.median(timings) * 1000
            print(f"  first build {first:.0f} ms; median of {runs} {median:.0f} ms")
            print(f"  markdown {len(report_markdown(report)):,} chars; target < 1000 ms")
        finally:
            await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="days the rows are spread over")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.days, args.runs))
