"""A `DailyReport` as standard Markdown (CLI `--print`, the admin `report` command, fallback text).

Lists rather than tables: they survive every chat dialect's Markdown conversion.
"""

from __future__ import annotations

from core.reports.model import Breakdown, BudgetStatus, DailyReport, RatingRow, Totals
from core.usage import format_cost, plural, plural_word


def format_tokens(count: int) -> str:
    """Compact token count: 950, 12.3k, 4.56M."""
    if count < 1_000:
        return str(count)
    if count < 1_000_000:
        return f"{count / 1_000:.1f}k"
    return f"{count / 1_000_000:.2f}M"


def total_tokens(totals: Totals) -> int:
    return totals.input_tokens + totals.output_tokens + totals.cache_read_tokens + totals.cache_write_tokens


def percent_change(current: float, previous: float) -> str:
    """ "+12%", "-3%", "±0%", or "new" when there was nothing before."""
    if previous == 0:
        return "±0%" if current == 0 else "new"
    change = (current - previous) / previous * 100
    return "±0%" if round(change) == 0 else f"{change:+.0f}%"


def change_line(report: DailyReport) -> str:
    """How the day compares with the one before, in one line."""
    prev = report.previous
    if prev is None:
        return "No usage the day before."
    cost = percent_change(report.totals.cost_usd, prev.cost_usd)
    requests = percent_change(report.totals.requests, prev.requests)
    return (
        f"Versus the day before: cost {cost} ({format_cost(prev.cost_usd)}),"
        f" requests {requests} ({prev.requests:,})."
    )


def budget_lines(budget: BudgetStatus) -> list[str]:
    lines = []
    if budget.daily_cap_usd:
        share = budget.share or 0.0
        flag = " — over the cap" if share >= 1 else " — past 80%" if share >= 0.8 else ""
        lines.append(
            f"Team: {format_cost(budget.spent_usd)} of {format_cost(budget.daily_cap_usd)}"
            f" ({share:.0%}){flag}"
        )
    else:
        lines.append(f"Team: {format_cost(budget.spent_usd)} (no daily cap)")
    if budget.users_over_cap:
        lines.append(f"{plural(budget.users_over_cap, 'user')} reached the per-user daily cap")
    return lines


def rating_line(row: RatingRow) -> str:
    """`anthropic:claude-sonnet-5-5`: 👍 12 · 👎 3 (80% 👍)."""
    return f"`{row.key}`: 👍 {row.up:,} · 👎 {row.down:,} ({row.rate:.0%} 👍)"


def ratings_lines(report: DailyReport, limit: int = 5) -> list[str]:
    """The day's answer ratings, by model then by channel, as list items ([] when nobody rated)."""
    lines = [f"By model {rating_line(r)}" for r in report.ratings_by_model[:limit]]
    lines += [f"In {rating_line(r)}" for r in report.ratings_by_channel[:limit]]
    return lines


def breakdown_line(row: Breakdown) -> str:
    t = row.totals
    unpriced = f" (+{t.unpriced_requests} unpriced)" if t.unpriced_requests else ""
    return (
        f"`{row.key}`: {format_cost(t.cost_usd)}{unpriced} · {plural(t.requests, 'request')}"
        f" · {format_tokens(total_tokens(t))} {plural_word(total_tokens(t), 'token')}"
    )


def report_markdown(report: DailyReport) -> str:
    title = f"# Usage report for {report.day:%a %Y-%m-%d} ({report.timezone})"
    if report.empty:
        return f"{title}\n\nNo activity that day."
    t = report.totals
    parts = [
        title,
        f"**{format_cost(t.cost_usd)}** spent on {_bold(t.requests, 'request')} in"
        f" {_bold(report.conversations, 'conversation')} by {_bold(report.active_users, 'active user')}.",
        change_line(report),
        "\n".join(_summary_items(report)),
    ]
    sections = (
        ("By platform", report.by_platform),
        ("By model", report.by_model),
        ("Top channels", report.by_channel),
        ("Top users", report.top_users),
    )
    for heading, rows in sections:
        if rows:
            parts.append(f"## {heading}\n" + "\n".join(f"- {breakdown_line(r)}" for r in rows))
    if report.tools:
        items = [f"- `{s.name}`: {plural(s.calls, 'call')}, {s.failures:,} failed" for s in report.tools]
        parts.append("## Tools\n" + "\n".join(items))
    ratings = ratings_lines(report)
    if ratings:
        parts.append("## Answer ratings\n" + "\n".join(f"- {line}" for line in ratings))
    if report.budget is not None:
        parts.append("## Budget\n" + "\n".join(f"- {line}" for line in budget_lines(report.budget)))
    return "\n\n".join(parts)


def _bold(count: int, noun: str) -> str:
    return f"**{count:,}** {plural_word(count, noun)}"


def _summary_items(report: DailyReport) -> list[str]:
    t = report.totals
    items = [
        f"- Tokens: {t.input_tokens:,} input · {t.output_tokens:,} output"
        f" · {t.cache_read_tokens:,} cache read · {t.cache_write_tokens:,} cache write",
        f"- Prompt caching saved {format_cost(t.cache_savings_usd)}",
    ]
    if report.provider_errors:
        share = report.provider_errors / t.requests
        items.append(f"- Provider errors: {report.provider_errors:,} ({share:.1%} of requests)")
    if t.unpriced_requests:
        items.append(
            f"- {plural(t.unpriced_requests, 'request')} used models with no known price (not in the cost)"
        )
    return items
