"""The daily usage report as a Discord embed, the chart as an attached file shown as the embed's image.

One embed carries the whole report: a headline (cost, requests, change versus the day before) in the
description, the counts as inline fields, breakdowns as short ranked lists, the day's answer ratings
(👍 / 👎), budget status, and the chart via `attachment://<file>`. Discord's embed limits (field value
1,024, 25 fields, 6,000 characters over the embed) are honoured by clipping lists and dropping the last
fields if ever needed. Discord users and channels in breakdowns are shown as mentions (they never ping
inside embeds).
"""

from __future__ import annotations

import io
import re

import discord

from adapters.discord.format import to_discord
from core.reports.markdown import ratings_lines
from core.reports.model import Breakdown, DailyReport, Totals
from core.usage import plural, plural_word

FIELD_VALUE = 1024
EMBED_TOTAL = 6000
MAX_FIELDS = 25
LIST_ROWS = 5
LABEL_CHARS = 60
COLOUR_OK = 0x5865F2  # Discord blurple
COLOUR_WARN = 0xF1C40F
COLOUR_OVER = 0xE74C3C
CHART_DESCRIPTION = "Cost and tokens over the last 14 days, stacked by platform"
_SNOWFLAKE = re.compile(r"^\d{15,21}$")


class BadDestination(ValueError):
    """REPORT_DISCORD_CHANNEL is not a Discord channel id."""


def channel_id(destination: str) -> int:
    """A channel id from REPORT_DISCORD_CHANNEL: the number, or a pasted `<#id>` mention."""
    value = destination.strip().removeprefix("<#").removesuffix(">")
    if not _SNOWFLAKE.match(value):
        raise BadDestination(
            "REPORT_DISCORD_CHANNEL must be a numeric channel id (Developer Mode -> right-click the "
            "channel -> Copy Channel ID)"
        )
    return int(value)


# --- numbers ----------------------------------------------------------------------------------------


def usd(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def tokens(value: int) -> str:
    for size, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def change(now: float, before: float | None) -> str:
    """`▲ 12%` / `▼ 5%` / `±0%`; `new` when the day before had nothing."""
    if before is None:
        return "—"
    if before == 0:
        return "new" if now else "±0%"
    percent = (now - before) / before * 100
    if abs(percent) < 0.5:
        return "±0%"
    return f"{'▲' if percent > 0 else '▼'} {abs(percent):.0f}%"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- parts of the embed -----------------------------------------------------------------------------


def _label(key: str, kind: str) -> str:
    """A breakdown key as people read it: Discord ids as mentions, others as `platform · id`."""
    platform, _, rest = key.partition(":")
    if not rest:
        return _clip(key, LABEL_CHARS)
    rest = _clip(rest, LABEL_CHARS)
    if platform == "discord" and rest.isdigit() and kind in ("user", "channel"):
        return f"<@{rest}>" if kind == "user" else f"<#{rest}>"
    if kind == "model":
        return f"`{rest}` ({platform})"
    return f"{platform} · `{rest}`"


def _listing(lines: list[str], total: int) -> str:
    """At most LIST_ROWS whole lines within a field value, and how many were left out."""
    shown = lines[:LIST_ROWS]
    while True:
        more = total - len(shown)
        text = "\n".join(shown + ([f"-# …and {more} more"] if more else []))
        if len(text) <= FIELD_VALUE or len(shown) <= 1:
            return _clip(text, FIELD_VALUE)
        shown.pop()


def ranked(rows: list[Breakdown], kind: str) -> str:
    lines = []
    for row in rows[:LIST_ROWS]:
        t = row.totals
        used = tokens(t.input_tokens + t.output_tokens + t.cache_read_tokens + t.cache_write_tokens)
        lines.append(f"{_label(row.key, kind)} — **{usd(t.cost_usd)}** · {t.requests:,} req · {used} tok")
    return _listing(lines, len(rows))


def headline(report: DailyReport) -> str:
    t, before = report.totals, report.previous
    if report.empty:
        return "No activity on this day."
    parts = [
        f"**{usd(t.cost_usd)}** spent · **{t.requests:,}** {plural_word(t.requests, 'request')}",
        f"{change(t.cost_usd, before.cost_usd if before else None)} cost, "
        f"{change(t.requests, before.requests if before else None)} requests vs. the day before",
    ]
    if t.unpriced_requests:
        parts.append(f"-# {plural(t.unpriced_requests, 'request')} used a model without a known price")
    return "\n".join(parts)


def token_field(t: Totals) -> str:
    return (
        f"Input **{tokens(t.input_tokens)}** · Output **{tokens(t.output_tokens)}**\n"
        f"Cache read **{tokens(t.cache_read_tokens)}** · Cache write **{tokens(t.cache_write_tokens)}**\n"
        f"Caching saved **{usd(t.cache_savings_usd)}**"
    )


def budget_field(report: DailyReport) -> str | None:
    budget = report.budget
    if budget is None:
        return None
    share = budget.share
    if share is None:
        text = f"No team cap · {usd(budget.spent_usd)} spent"
    else:
        filled = min(10, round(share * 10))
        bar = "▰" * filled + "▱" * (10 - filled)
        text = f"{bar} {share:.0%}\n{usd(budget.spent_usd)} of {usd(budget.daily_cap_usd or 0.0)}"
    if budget.users_over_cap:
        text += f"\n{plural(budget.users_over_cap, 'user')} hit their daily cap"
    return text


def colour(report: DailyReport) -> int:
    share = report.budget.share if report.budget else None
    if share is not None and share >= 1:
        return COLOUR_OVER
    if share is not None and share >= 0.8:
        return COLOUR_WARN
    return COLOUR_OK


def tools_field(report: DailyReport) -> str:
    rows = sorted(report.tools, key=lambda tool: (-tool.calls, tool.name))
    lines = [
        f"`{_clip(tool.name, LABEL_CHARS)}` {tool.calls:,}"
        + (f" ({tool.failures:,} failed)" if tool.failures else "")
        for tool in rows[:LIST_ROWS]
    ]
    return _listing(lines, len(rows))


def chart_filename(report: DailyReport) -> str:
    return f"usage-{report.day.isoformat()}.png"


def _fields(report: DailyReport) -> list[tuple[str, str, bool]]:
    t = report.totals
    fields: list[tuple[str, str, bool]] = [
        ("Requests", f"{t.requests:,}", True),
        ("Conversations", f"{report.conversations:,}", True),
        ("Active users", f"{report.active_users:,}", True),
        ("Tokens", token_field(t), False),
        ("Provider errors", f"{report.provider_errors:,}", True),
        ("Tool calls", f"{sum(x.calls for x in report.tools):,}", True),
        ("Tool failures", f"{sum(x.failures for x in report.tools):,}", True),
    ]
    lists = (
        ("By platform", report.by_platform, "platform"),
        ("By model", report.by_model, "model"),
        ("Top channels", report.by_channel, "channel"),
        ("Top users", report.top_users, "user"),
    )
    fields += [(name, ranked(rows, kind), False) for name, rows, kind in lists if rows]
    if report.tools:
        fields.append(("Tools", tools_field(report), False))
    ratings = ratings_lines(report)  # [] when nobody rated an answer that day
    if ratings:
        fields.append(("Answer ratings", _clip("\n".join(map(to_discord, ratings)), FIELD_VALUE), False))
    budget = budget_field(report)
    if budget is not None:
        fields.append(("Budget", budget, False))
    return fields[:MAX_FIELDS]


def report_embed(report: DailyReport, *, with_chart: bool) -> discord.Embed:
    embed = discord.Embed(
        title=f"📊 Daily usage · {report.day.strftime('%a %d %b %Y')}",
        description=headline(report),
        colour=colour(report),
    )
    if not report.empty:
        for name, value, inline in _fields(report):
            embed.add_field(name=name, value=value, inline=inline)
    embed.set_footer(text=f"Day in {report.timezone} · costs in USD at list prices")
    while len(embed) > EMBED_TOTAL and embed.fields:
        embed.remove_field(len(embed.fields) - 1)
    if with_chart:
        embed.set_image(url=f"attachment://{chart_filename(report)}")
    return embed


def chart_file(report: DailyReport, chart_png: bytes) -> discord.File:
    return discord.File(io.BytesIO(chart_png), filename=chart_filename(report), description=CHART_DESCRIPTION)


def announcement(text: str) -> str:
    return to_discord(text)
