"""Build a `DailyReport` from the store's usage rows.

A report covers one calendar day in its timezone: [local midnight, next local midnight), which is 23 or
25 hours long on DST change days. Totals, the day before and the 14-day history come from the store's
pre-aggregated rollup; channels, users and distinct counts read the day's own rows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.models import ModelId, PriceTable
from core.reports.model import (
    Breakdown,
    BudgetStatus,
    DailyReport,
    DayPoint,
    RatingRow,
    ToolStats,
    Totals,
)
from core.storage.base import RatingTotals, Store, UsageGroup

HISTORY_DAYS = 14
TOP_CHANNELS = 5
TOP_USERS = 5

_KeyFn = Callable[[tuple[str, ...]], str]


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of `day` in the IANA `timezone`, as aware datetimes."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start, end


def local_day(moment: datetime, timezone: str) -> date:
    """The calendar day `moment` falls on in `timezone`."""
    return moment.astimezone(ZoneInfo(timezone)).date()


async def build_daily_report(
    store: Store,
    day: date,
    timezone: str,
    prices: PriceTable,
    *,
    daily_cap_usd: float | None = None,
    user_cap_usd: float | None = None,
) -> DailyReport:
    start, end = day_bounds(day, timezone)
    prev_start, _ = day_bounds(day - timedelta(days=1), timezone)
    # The day's rows at the finest grain the report needs; every breakdown is summed from these.
    fine, conversations, tools, previous, history, ratings = await asyncio.gather(
        store.usage_grouped(start, end, ("platform", "channel", "user_id", "provider", "model")),
        store.count_conversations(start, end),
        store.tool_totals(start, end),
        store.usage_grouped(prev_start, start, ("provider", "model")),
        _history(store, day, timezone),
        _ratings(store, start, end),
    )
    totals = _sum(prices, ((g.keys[3], g.keys[4], g) for g in fine))
    per_user = _breakdown(prices, fine, lambda k: f"{k[0]}:{k[2]}")
    return DailyReport(
        day=day,
        timezone=timezone,
        totals=totals,
        conversations=conversations,
        active_users=len(per_user),
        provider_errors=sum(g.errors for g in fine),
        previous=_sum(prices, ((g.keys[0], g.keys[1], g) for g in previous)) if previous else None,
        by_platform=_breakdown(prices, fine, lambda k: k[0]),
        by_model=_breakdown(prices, fine, lambda k: f"{k[3]}:{k[4]}"),
        by_channel=_breakdown(prices, fine, lambda k: f"{k[0]}:{k[1]}")[:TOP_CHANNELS],
        top_users=per_user[:TOP_USERS],
        tools=[ToolStats(t.tool, t.calls, t.failures) for t in tools],
        ratings_by_model=ratings[0],
        ratings_by_channel=ratings[1],
        budget=_budget(totals, per_user, daily_cap_usd, user_cap_usd),
        history=history,
    )


def _sum(prices: PriceTable, rows: Iterable[tuple[str, str, UsageGroup]]) -> Totals:
    """Totals over (provider, model, group) rows; cache savings priced per model."""
    requests = inp = out = read = write = unpriced = 0
    cost = savings = 0.0
    for provider, model, g in rows:
        requests += g.requests
        inp, out = inp + g.input_tokens, out + g.output_tokens
        read, write = read + g.cache_read_tokens, write + g.cache_write_tokens
        cost += g.cost_usd
        unpriced += g.unpriced
        if g.cache_read_tokens:
            savings += prices.cache_savings(ModelId(provider, model), g.cache_read_tokens) or 0.0
    return Totals(requests, inp, out, read, write, cost, unpriced, savings)


def _breakdown(prices: PriceTable, fine: list[UsageGroup], key_of: _KeyFn) -> list[Breakdown]:
    """Rows of the fine-grained groups summed per key, biggest cost first."""
    buckets: defaultdict[str, list[UsageGroup]] = defaultdict(list)
    for g in fine:
        buckets[key_of(g.keys)].append(g)
    rows = [
        Breakdown(key, _sum(prices, ((g.keys[3], g.keys[4], g) for g in groups)))
        for key, groups in buckets.items()
    ]
    rows.sort(key=lambda b: (-b.totals.cost_usd, -b.totals.requests, b.key))
    return rows


async def _ratings(store: Store, start: datetime, end: datetime) -> tuple[list[RatingRow], list[RatingRow]]:
    """The ratings given in [start, end), by model and by channel, most rated first."""
    by_model, by_channel = await asyncio.gather(
        store.rating_totals(start, end, "model"), store.rating_totals(start, end, "channel")
    )
    return _rating_rows(by_model), _rating_rows(by_channel)


def _rating_rows(totals: list[RatingTotals]) -> list[RatingRow]:
    return [RatingRow(t.key, t.up, t.down) for t in totals if t.up or t.down]


def _budget(
    totals: Totals, per_user: list[Breakdown], daily_cap: float | None, user_cap: float | None
) -> BudgetStatus | None:
    if daily_cap is None and user_cap is None:
        return None
    over = 0 if user_cap is None else sum(1 for u in per_user if u.totals.cost_usd >= user_cap)
    return BudgetStatus(daily_cap, totals.cost_usd, over)


async def _history(store: Store, day: date, timezone: str) -> list[DayPoint]:
    days = [day - timedelta(days=n) for n in range(HISTORY_DAYS - 1, -1, -1)]
    per_day = await asyncio.gather(
        *(store.usage_grouped(*day_bounds(d, timezone), ("platform",)) for d in days)
    )
    return [
        DayPoint(
            d,
            {g.keys[0]: g.cost_usd for g in groups},
            {g.keys[0]: _tokens(g) for g in groups},
        )
        for d, groups in zip(days, per_day, strict=True)
    ]


def _tokens(g: UsageGroup) -> int:
    return g.input_tokens + g.output_tokens + g.cache_read_tokens + g.cache_write_tokens
