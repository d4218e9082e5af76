"""SQL shared by both backends: grouped usage, conversations, tool totals, report and event claims,
message links.

Written in the SQL that SQLite and PostgreSQL both speak, with `?` placeholders (the PostgreSQL store
numbers them with `numbered`). Timestamps are epoch seconds in both schemas, so the bucket arithmetic
is the same.

Grouped usage reads a 15-minute rollup (migration 2) for the whole buckets inside the period and raw
`usage` rows only for the ragged edges (a period ending "now", say), so a day or a 14-day history costs
rollup rows however large `usage` grows: the coarse rollup when grouping and filtering touch only
platform, provider and model, the fine one (adding workspace, channel, user) otherwise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Final

from core.storage.base import ToolCallTotals, UsageDimension, UsageGroup, UsageTotals
from core.storage.rows import Row

# Usage is pre-aggregated into 15-minute buckets (SQLite migration 2, PostgreSQL migration 2). Every
# real UTC offset is a multiple of 15 minutes, so any local day is a whole number of buckets.
ROLLUP_BUCKET_SECONDS: Final = 900
SUM_COLUMNS: Final = (  # the rollup tables' summed columns
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
    "unpriced",
)
ROLLUPS: Final = (
    ("usage_rollup", ("platform", "provider", "model")),
    ("usage_rollup_fine", ("platform", "provider", "model", "workspace", "channel", "user_id")),
)

DIMENSIONS: Final = ("platform", "provider", "model", "workspace", "channel", "user_id")
_SUMS: Final = SUM_COLUMNS
_RAW_SUMS: Final = (
    "1 AS requests, 1 - ok AS errors, input_tokens, output_tokens, cache_read_tokens,"
    " cache_write_tokens, COALESCE(cost_usd, 0.0) AS cost_usd,"
    " CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END AS unpriced"
)


# `ok` is 0/1 on both backends; `regeneration` is 0/1 in SQLite and a boolean in PostgreSQL, so each
# store passes its own form.
INSERT_USAGE_SQL: Final = (
    "INSERT INTO usage (ts, provider, model, platform, workspace, channel, user_id, session_id,"
    " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
    " cost_usd, latency_ms, ok, error, regeneration)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_TOOL_CALL_SQL: Final = (
    "INSERT INTO tool_calls (ts, session_id, platform, user_id, tool, ok, duration_ms)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

CLAIM_EVENT_SQL: Final = (
    "INSERT INTO events_seen (platform, event_id, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)


def usage_totals_sql(
    since: float, until: float | None, *, user_id: str | None = None, platform: str | None = None
) -> tuple[str, list[Any]]:
    """Usage in [since, until) per provider-qualified model, costliest first (raw rows)."""
    where = ["ts >= ?"]
    params: list[Any] = [since]
    for clause, value in (("ts < ?", until), ("user_id = ?", user_id), ("platform = ?", platform)):
        if value is not None:
            where.append(clause)
            params.append(value)
    sql = (
        "SELECT provider || ':' || model AS qualified, COUNT(*),"
        " SUM(input_tokens), SUM(output_tokens), SUM(cache_read_tokens), SUM(cache_write_tokens),"
        " COALESCE(SUM(cost_usd), 0.0) AS cost, COUNT(*) - COUNT(cost_usd)"
        f" FROM usage WHERE {' AND '.join(where)}"
        " GROUP BY qualified ORDER BY cost DESC, qualified"
    )
    return sql, params


def usage_totals(rows: Sequence[Row]) -> list[UsageTotals]:
    result = []
    for row in rows:
        tokens = (int(row[2]), int(row[3]), int(row[4]), int(row[5]))
        result.append(UsageTotals(str(row[0]), int(row[1]), *tokens, float(row[6]), int(row[7])))
    return result


def grouped_usage_sql(
    since: float,
    until: float,
    by: Sequence[UsageDimension],
    *,
    user_id: str | None = None,
    platform: str | None = None,
) -> tuple[str, list[Any]]:
    """One statement summing usage in [since, until) per `by` combination, biggest cost first."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:  # column names are interpolated: only the known ones may pass
        raise ValueError(f"unknown usage dimension(s): {', '.join(map(str, unknown))}")
    keys = "".join(f"{d}, " for d in by)
    filters, filter_params = _filters(user_id, platform)
    parts: list[str] = []
    params: list[Any] = []
    raw_ranges = [(since, until)]
    first = math.ceil(since / ROLLUP_BUCKET_SECONDS) * ROLLUP_BUCKET_SECONDS
    last = math.floor(until / ROLLUP_BUCKET_SECONDS) * ROLLUP_BUCKET_SECONDS
    if first < last:
        table = _rollup_for({*by, *(["user_id"] if user_id is not None else [])})
        parts.append(
            f"SELECT {keys}{', '.join(_SUMS)} FROM {table} WHERE bucket >= ? AND bucket < ?{filters}"
        )
        params += [first, last, *filter_params]
        raw_ranges = [(since, first), (last, until)]
    for low, high in raw_ranges:
        if low < high:
            parts.append(f"SELECT {keys}{_RAW_SUMS} FROM usage WHERE ts >= ? AND ts < ?{filters}")
            params += [low, high, *filter_params]
    if not parts:  # an empty period
        parts.append(f"SELECT {keys}{_RAW_SUMS} FROM usage WHERE 1 = 0")
    sums = ", ".join(f"SUM({s})" for s in _SUMS)
    group = f" GROUP BY {', '.join(by)}" if by else ""
    order = "".join(f", {d}" for d in by)
    sql = (
        f"SELECT {keys}{sums} FROM ({' UNION ALL '.join(parts)}) AS spans{group}"
        f" ORDER BY SUM(cost_usd) DESC, SUM(requests) DESC{order}"
    )
    return sql, params


def _rollup_for(columns: set[str]) -> str:
    """The smallest rollup table that keeps every column asked for."""
    return next(table for table, keys in ROLLUPS if columns <= set(keys))


def _filters(user_id: str | None, platform: str | None) -> tuple[str, list[Any]]:
    sql, params = "", []
    if user_id is not None:
        sql += " AND user_id = ?"
        params.append(user_id)
    if platform is not None:
        sql += " AND platform = ?"
        params.append(platform)
    return sql, params


def usage_groups(rows: Sequence[Row], width: int) -> list[UsageGroup]:
    groups = []
    for row in rows:
        if row[width] is None:  # no `by`: the single aggregate row of an empty period
            continue
        r, e, i, o, cr, cw, cost, unpriced = (row[width + n] for n in range(8))
        keys = tuple(str(row[n]) for n in range(width))
        groups.append(
            UsageGroup(keys, int(r), int(e), int(i), int(o), int(cr), int(cw), float(cost), int(unpriced))
        )
    return groups


CONVERSATIONS_SQL: Final = "SELECT COUNT(DISTINCT session_id) FROM usage WHERE ts >= ? AND ts < ?"


TOOL_TOTALS_SQL: Final = (
    "SELECT tool, COUNT(*) AS calls, SUM(1 - ok) FROM tool_calls WHERE ts >= ? AND ts < ?"
    " GROUP BY tool ORDER BY calls DESC, tool"
)


def tool_totals(rows: Sequence[Row]) -> list[ToolCallTotals]:
    return [ToolCallTotals(str(r[0]), int(r[1]), int(r[2])) for r in rows]


CLAIM_REPORT_SQL: Final = (
    "INSERT INTO reports_posted (day, destination, posted_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
)
RELEASE_REPORT_SQL: Final = "DELETE FROM reports_posted WHERE day = ? AND destination = ?"
LAST_REPORTED_SQL: Final = "SELECT MAX(day) FROM reports_posted WHERE destination = ?"


_PLACEHOLDER = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2, ...` (the shared SQL holds no literal question marks)."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


LINK_MESSAGE_SQL: Final = (
    "INSERT INTO message_links (platform, chat, message_id, thread, created_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (platform, chat, message_id) DO UPDATE SET thread = excluded.thread"
)
LINKED_THREAD_SQL: Final = (
    "SELECT thread FROM message_links WHERE platform = ? AND chat = ? AND message_id = ?"
)
