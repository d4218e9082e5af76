"""Daily usage reports and announcements in Slack's idiom.

A report is one Block Kit message (header, section fields with the totals, a section per breakdown,
context lines for budget and caveats) with a short plain `text` for notifications; the chart follows
in the same channel through `files_upload_v2` (files.getUploadURLExternal -> upload -> files.
completeUploadExternal). Posting the message is what counts: if it fails the caller hears of it (and
may retry the day), while a failed chart upload after a posted report is only logged, so a retry never
posts the report twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.format import context_blocks, escape_mrkdwn
from adapters.slack.inbound import PLATFORM, defuse_mass_mentions
from core.reports.markdown import ratings_lines
from core.reports.model import Breakdown, DailyReport, Totals
from core.usage import plural

log = logging.getLogger(__name__)

HEADER_LIMIT = 150  # header block plain_text
FIELD_LIMIT = 2_000  # one section field
SECTION_LIMIT = 3_000  # section text
ROWS = 5  # rows shown per breakdown


# --- numbers ------------------------------------------------------------------------------------


def usd(value: float) -> str:
    if value and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def count(value: int) -> str:
    """Compact token counts: 950, 12.3k, 4.56M."""
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.2f}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:,}"


def change(now: float, before: float | None) -> str:
    """` (+12% vs day before)`, or "" when there is nothing to compare with."""
    if before is None:
        return ""
    if not before:
        return " (new)" if now else ""
    percent = (now - before) / before * 100
    arrow = "▲" if percent > 0 else "▼" if percent < 0 else "="
    return f" ({arrow} {abs(percent):.0f}% vs day before)"


def tokens_total(totals: Totals) -> int:
    return totals.input_tokens + totals.output_tokens + totals.cache_read_tokens + totals.cache_write_tokens


# --- labels -------------------------------------------------------------------------------------


def who(key: str) -> str:
    """A user key as mrkdwn. Never `<@U…>`: a mention in a daily report would ping the top users every
    morning. Slack users show as their id in code, others as `platform:id`."""
    platform, _, rest = key.partition(":")
    if platform == PLATFORM and rest:
        return f"`{escape_mrkdwn(rest)}`"
    return escape_mrkdwn(key)


def where(key: str) -> str:
    """A channel key: Slack channels become links (`<#C…>`), others stay text."""
    platform, _, rest = key.partition(":")
    if platform == PLATFORM and rest and rest[0] in "CGD" and rest.isalnum():
        return f"<#{rest}>" if rest[0] != "D" else "a direct message"
    return escape_mrkdwn(key)


def _rows(title: str, rows: list[Breakdown], label: Callable[[str], str], limit: int = FIELD_LIMIT) -> str:
    lines = [f"*{title}*"]
    for row in rows[:ROWS]:
        t = row.totals
        tokens = count(tokens_total(t))
        lines.append(f"• {label(row.key)}: {usd(t.cost_usd)} · {t.requests:,} req · {tokens} tok")
    if len(rows) > ROWS:
        lines.append(f"_… and {len(rows) - ROWS} more_")
    text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- blocks -------------------------------------------------------------------------------------


def summary_text(report: DailyReport) -> str:
    """The plain `text` of the message: what notifications and screen readers show."""
    t = report.totals
    if report.empty:
        return f"Usage report for {report.day.isoformat()}: no activity."
    return (
        f"Usage report for {report.day.isoformat()}: {usd(t.cost_usd)}, {plural(t.requests, 'request')}, "
        f"{plural(report.active_users, 'active user')}."
    )


def _field(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text[:FIELD_LIMIT]}


def _totals_fields(report: DailyReport) -> list[dict[str, Any]]:
    t, before = report.totals, report.previous
    fields = [
        f"*Cost*\n{usd(t.cost_usd)}{change(t.cost_usd, before.cost_usd if before else None)}",
        f"*Requests*\n{t.requests:,}{change(t.requests, before.requests if before else None)}",
        f"*Conversations*\n{report.conversations:,}",
        f"*Active users*\n{report.active_users:,}",
        f"*Tokens in / out*\n{count(t.input_tokens)} / {count(t.output_tokens)}",
        f"*Cache read / write*\n{count(t.cache_read_tokens)} / {count(t.cache_write_tokens)}",
        f"*Saved by caching*\n{usd(t.cache_savings_usd)}",
        f"*Provider errors*\n{report.provider_errors:,}",
    ]
    return [_field(text) for text in fields]  # ≤10 fields per section


def _breakdown_blocks(report: DailyReport) -> list[dict[str, Any]]:
    pairs = (
        (("By platform", report.by_platform, escape_mrkdwn), ("By model", report.by_model, escape_mrkdwn)),
        (("Top channels", report.by_channel, where), ("Top users", report.top_users, who)),
    )
    blocks: list[dict[str, Any]] = []
    for pair in pairs:
        fields = [_field(_rows(title, rows, label)) for title, rows, label in pair if rows]
        if fields:  # two fields side by side; an empty breakdown is left out
            blocks.append({"type": "section", "fields": fields})
    return blocks


def _tools_line(report: DailyReport) -> str:
    if not report.tools:
        return ""
    parts = []
    for tool in sorted(report.tools, key=lambda s: -s.calls)[:8]:
        failed = f" ({tool.failures:,} failed)" if tool.failures else ""
        parts.append(f"`{escape_mrkdwn(tool.name)}` {tool.calls:,}{failed}")
    return ":hammer_and_wrench: *Tools:* " + ", ".join(parts)


def _budget_line(report: DailyReport) -> str:
    budget = report.budget
    if budget is None:
        return ""
    share = budget.share
    if budget.daily_cap_usd and share is not None:
        mark = ":large_green_circle:"
        if share >= 1:
            mark = ":red_circle:"
        elif share >= 0.8:
            mark = ":large_orange_circle:"
        line = f"{mark} *Budget:* {usd(budget.spent_usd)} of {usd(budget.daily_cap_usd)} ({share:.0%})"
    else:
        line = f":white_circle: *Budget:* {usd(budget.spent_usd)} spent, no daily cap"
    if budget.users_over_cap:
        line += f" · {plural(budget.users_over_cap, 'user')} hit their own cap"
    return line


def _caveats(report: DailyReport) -> str:
    notes = [f"Day {report.day.isoformat()} in {escape_mrkdwn(report.timezone)}"]
    if report.totals.unpriced_requests:
        unpriced = plural(report.totals.unpriced_requests, "request")
        notes.append(f"{unpriced} with unknown prices not in the cost")
    return " · ".join(notes)


def _ratings_blocks(report: DailyReport) -> list[dict[str, Any]]:
    """The day's 👍 / 👎 by model and channel (the core's lines: `code` reads the same in mrkdwn)."""
    lines = ratings_lines(report)
    if not lines:
        return []
    text = "\n".join([":thumbsup: *Answer ratings*", *(f"• {escape_mrkdwn(line)}" for line in lines)])
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}]


def report_blocks(report: DailyReport) -> list[dict[str, Any]]:
    title = f"Daily usage · {report.day.strftime('%a %d %b %Y')}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:HEADER_LIMIT], "emoji": True}}
    ]
    if report.empty:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "No activity that day."}})
        blocks += _ratings_blocks(report)  # answers of an earlier day may be rated on a quiet one
        blocks += context_blocks(_caveats(report))
        return blocks
    blocks.append({"type": "section", "fields": _totals_fields(report)})
    breakdowns = _breakdown_blocks(report)
    if breakdowns:
        blocks.append({"type": "divider"})
        blocks += breakdowns
    for line in (_tools_line(report), _budget_line(report)):
        if line:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": line[:SECTION_LIMIT]}})
    blocks += _ratings_blocks(report)
    blocks += context_blocks(_caveats(report))
    return blocks


# --- posting ------------------------------------------------------------------------------------


async def send_report(
    client: AsyncWebClient, channel: str, report: DailyReport, chart_png: bytes | None
) -> None:
    response = await client.chat_postMessage(
        channel=channel, text=summary_text(report), blocks=report_blocks(report), unfurl_links=False
    )
    if chart_png:
        # files.completeUploadExternal wants a channel id; chat.postMessage answers with it (a
        # destination given as a #name resolves here).
        await _upload_chart(client, str(response.get("channel") or channel), report, chart_png)


async def _upload_chart(client: AsyncWebClient, channel: str, report: DailyReport, png: bytes) -> None:
    day = report.day.isoformat()
    try:
        await client.files_upload_v2(
            channel=channel,
            content=png,
            filename=f"usage-{day}.png",
            title=f"Usage, 14 days to {day}",
            alt_txt=f"Cost and tokens per day by platform, 14 days to {day}",
        )
    except (TimeoutError, SlackApiError, SlackRequestError, aiohttp.ClientError) as error:
        log.warning("the report for %s was posted but its chart upload failed: %s", day, _describe(error))


async def send_announcement(client: AsyncWebClient, channel: str, text: str) -> None:
    """A short standard-Markdown message (Slack renders `markdown_text` itself)."""
    await client.chat_postMessage(channel=channel, markdown_text=defuse_mass_mentions(text)[:12_000])


def footer_blocks(footer: str) -> list[dict[str, Any]]:
    """The cost footer under an answer: one small context line."""
    return context_blocks(escape_mrkdwn(footer.strip())[:SECTION_LIMIT])


def _describe(error: Exception) -> str:
    if isinstance(error, SlackApiError) and error.response is not None:
        return str(error.response.get("error") or type(error).__name__)
    return type(error).__name__
