"""Daily usage reports and announcements in a Telegram chat.

A report is one formatted HTML message (headline figures, then breakdowns as bulleted lists, which read
better than tables on a phone), followed by the chart as a photo that replies to it, with a short
caption. The message is trimmed to Telegram's 4,096 visible characters by showing fewer rows per
breakdown, never by cutting markup; the caption stays far below its 1,024 limit.

The message is the report: if it fails, the error propagates (the scheduler releases its claim and a
later run retries). If only the chart fails afterwards, that is logged and the report counts as posted,
so a retry never posts the same day's text twice.

Destinations (REPORT_TELEGRAM_CHAT): a numeric chat id (`-1001234567890`), a public channel's
`@username`, either optionally followed by `:<topic id>` for a forum topic (`-1001234567890:42`).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Sequence
from datetime import date, timedelta

from telegram import LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ExtBot

from adapters.telegram.format import escape, to_html, visible_length
from adapters.telegram.outbox import MAX_CHARS, SPLIT_CHARS
from core.reports.markdown import ratings_lines
from core.reports.model import Breakdown, BudgetStatus, DailyReport, ToolStats, Totals
from core.textsplit import split_text
from core.usage import plural, plural_word

log = logging.getLogger(__name__)

MAX_CAPTION = 1024  # Telegram's caption limit, counted after entity parsing
ROW_LIMITS = (10, 6, 3, 1, 0)  # rows per breakdown, tried in turn until the message fits
KEY_CHARS = 40  # longer breakdown keys (channel ids, model names) are shortened
CHART_FILENAME = "usage-14-days.png"
_DESTINATION = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,31})(?::(\d+))?$")
_TAG = re.compile(r"<[^>]*>")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
RETRIES = 3  # 429s the flood limiter waits out per call (answers leave retrying to the presenter)

ChatId = int | str


def parse_destination(destination: str) -> tuple[ChatId, int | None]:
    """`-100123` -> (-100123, None); `-100123:42` -> (-100123, 42); `@team_news` -> ("@team_news", None)."""
    match = _DESTINATION.match(destination.strip())
    if match is None:
        raise ValueError(
            f"not a Telegram chat: {destination!r} (use a chat id such as -1001234567890, "
            "a channel @username, optionally followed by :<topic id>)"
        )
    chat, topic = match.group(1), match.group(2)
    return (chat if chat.startswith("@") else int(chat)), (int(topic) if topic else None)


# --- numbers ---------------------------------------------------------------------------------------


def usd(value: float) -> str:
    if value == 0:
        return "$0.00"
    if abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def count(value: int) -> str:
    """1234 -> `1,234`; token-sized numbers shortened: 1.2M, 340k."""
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1_000:.0f}k"
    return f"{value:,}"


def tokens(totals: Totals) -> int:
    return totals.input_tokens + totals.output_tokens + totals.cache_read_tokens + totals.cache_write_tokens


def day_label(day: date, year: bool = True) -> str:
    """`Tue 4 Nov 2025` (no platform-specific strftime flags)."""
    return f"{day:%a} {day.day} {day:%b}" + (f" {day.year}" if year else "")


def change(now: float, before: float) -> str:
    if before == 0:
        return "new" if now > 0 else "no change"
    percent = (now - before) / before * 100
    if abs(percent) < 0.5:
        return "no change"
    return f"{'▲' if percent > 0 else '▼'} {abs(percent):.0f}%"


# --- the report as HTML ----------------------------------------------------------------------------


def _headline(report: DailyReport) -> list[str]:
    totals, previous = report.totals, report.previous
    before = day_label(report.day - timedelta(days=1), year=False)
    cost = f"💵 Cost <b>{usd(totals.cost_usd)}</b>"
    requests = f"🧾 <b>{totals.requests:,}</b> {plural_word(totals.requests, 'request')}"
    if previous is not None:
        cost += f" · {change(totals.cost_usd, previous.cost_usd)} vs. {before}"
        requests += f" ({change(totals.requests, previous.requests)})"
    lines = [cost]
    if totals.cache_savings_usd > 0:
        lines.append(f"💾 Prompt caching saved {usd(totals.cache_savings_usd)}")
    lines.append(
        f"{requests} · <b>{report.conversations:,}</b> {plural_word(report.conversations, 'conversation')} · "
        f"<b>{report.active_users:,}</b> {plural_word(report.active_users, 'active user')}"
    )
    lines.append(
        f"🔤 Tokens: {count(totals.input_tokens)} in · {count(totals.output_tokens)} out · "
        f"{count(totals.cache_read_tokens)} cache read · {count(totals.cache_write_tokens)} cache write"
    )
    if report.provider_errors:
        lines.append(f"⚠️ {plural(report.provider_errors, 'failed provider call')}")
    if totals.unpriced_requests:
        unpriced = plural(totals.unpriced_requests, "request")
        lines.append(f"❔ {unpriced} on models without a known price (not in the cost)")
    if previous is None:
        lines.append(f"<i>No data for {before} to compare with.</i>")
    return lines


def budget_line(budget: BudgetStatus) -> str:
    share = budget.share
    if share is None:
        text = f"💰 Budget: no daily cap · {usd(budget.spent_usd)} spent"
    else:
        mark = "⛔" if share >= 1 else "⚠️" if share >= 0.8 else "💰"
        assert budget.daily_cap_usd is not None
        text = f"{mark} Budget: {usd(budget.spent_usd)} of {usd(budget.daily_cap_usd)} ({share:.0%})"
    if budget.users_over_cap:
        people = "user" if budget.users_over_cap == 1 else "users"
        text += f" · {budget.users_over_cap} {people} reached their own cap"
    return text


def _key(key: str) -> str:
    return escape(key if len(key) <= KEY_CHARS else key[: KEY_CHARS - 1] + "…")


def _breakdown(title: str, rows: Sequence[Breakdown], limit: int) -> list[str]:
    if not rows or limit == 0:
        return []
    lines = [f"<b>{title}</b>"]
    for row in rows[:limit]:
        t = row.totals
        figures = f"{usd(t.cost_usd)} · {t.requests:,} req · {count(tokens(t))} tok"
        lines.append(f"• <code>{_key(row.key)}</code> — {figures}")
    if len(rows) > limit:
        lines.append(f"<i>… and {len(rows) - limit} more</i>")
    return lines


def _tools(rows: Sequence[ToolStats], limit: int) -> list[str]:
    if not rows or limit == 0:
        return []
    lines = ["<b>Tools</b>"]
    for tool in rows[:limit]:
        failed = f" · {tool.failures:,} failed" if tool.failures else ""
        lines.append(f"• <code>{_key(tool.name)}</code> — {plural(tool.calls, 'call')}{failed}")
    if len(rows) > limit:
        lines.append(f"<i>… and {len(rows) - limit} more</i>")
    return lines


def _ratings(report: DailyReport, limit: int) -> list[str]:
    """The day's 👍 / 👎 on answers (core/reports/markdown.py's lines, as Telegram HTML)."""
    lines = ratings_lines(report, limit) if limit else []
    return ["<b>Answer ratings</b>", *(f"• {to_html(line)}" for line in lines)] if lines else []


def report_html(report: DailyReport, rows: int = ROW_LIMITS[0]) -> str:
    """The report as Telegram HTML, with at most `rows` rows per breakdown."""
    title = f"<b>📊 Daily usage · {day_label(report.day)}</b>\n<i>{escape(report.timezone)}</i>"
    blocks = [title]
    if report.empty:
        blocks.append("No activity: nobody used the bot that day.")
    else:
        blocks.append("\n".join(_headline(report)))
    if report.budget is not None:
        blocks.append(budget_line(report.budget))
    if not report.empty:
        sections = [
            _breakdown("By platform", report.by_platform, rows),
            _breakdown("By model", report.by_model, rows),
            _breakdown("Top channels", report.by_channel, rows),
            _breakdown("Top users", report.top_users, rows),
            _tools(report.tools, rows),
        ]
        blocks.extend("\n".join(lines) for lines in sections if lines)
    ratings = _ratings(report, rows)  # also on a day without requests: answers can be rated later
    if ratings:
        blocks.append("\n".join(ratings))
    return "\n\n".join(blocks)


def fit_report_html(report: DailyReport, limit: int = MAX_CHARS) -> str:
    """The fullest rendering of the report that Telegram accepts in one message."""
    for rows in ROW_LIMITS:
        markup = report_html(report, rows)
        if visible_length(markup) <= limit:
            return markup
    raise AssertionError("a report without breakdowns is always short")  # pragma: no cover


def chart_caption(report: DailyReport) -> str:
    caption = (
        f"📈 <b>Last 14 days</b> up to {day_label(report.day)}: cost and tokens by platform"
        f"\n<i>{escape(report.timezone)}</i>"
    )
    return caption if visible_length(caption) <= MAX_CAPTION else "📈 Last 14 days"


def plain(markup: str) -> str:
    """Our HTML as plain text (the fallback when Telegram refuses the entities)."""
    return html.unescape(_TAG.sub("", markup))


# --- sending ---------------------------------------------------------------------------------------


def _entity_error(error: BadRequest) -> bool:
    text = error.message.lower()
    return "parse entities" in text or "entit" in text or "tag" in text


async def _send(bot: ExtBot[int], chat: ChatId, topic: int | None, markup: str, fallback: str) -> int:
    """Send HTML (plain `fallback` if Telegram refuses the entities); 429s are waited out."""

    async def call(text: str, mode: str | None) -> int:
        message = await bot.send_message(
            chat,
            text,
            parse_mode=mode,
            message_thread_id=topic,
            link_preview_options=_NO_PREVIEW,
            rate_limit_args=RETRIES,
        )
        return message.message_id

    try:
        return await call(markup, ParseMode.HTML)
    except BadRequest as error:
        if not _entity_error(error):
            raise
        log.warning("Telegram refused the report's formatting (%s); sending plain text", error.message)
    return await call(fallback, None)


async def send_report(
    bot: ExtBot[int], destination: str, report: DailyReport, chart_png: bytes | None
) -> int:
    """Post the report message, then the chart replying to it; returns the report message's id."""
    chat, topic = parse_destination(destination)
    markup = fit_report_html(report)
    message_id = await _send(bot, chat, topic, markup, plain(markup))
    if chart_png:
        try:
            await bot.send_photo(
                chat,
                chart_png,
                caption=chart_caption(report),
                parse_mode=ParseMode.HTML,
                message_thread_id=topic,
                reply_parameters=ReplyParameters(message_id, allow_sending_without_reply=True),
                filename=CHART_FILENAME,
                rate_limit_args=RETRIES,
            )
        except TelegramError as error:
            log.warning("the %s report was posted, but its chart was not: %s", report.day, error.message)
    return message_id


async def send_announcement(bot: ExtBot[int], destination: str, markdown: str) -> list[int]:
    """Post a Markdown message (split at Telegram's limit); returns the message ids."""
    chat, topic = parse_destination(destination)
    ids: list[int] = []
    for part in split_text(markdown.strip() or "…", SPLIT_CHARS):
        markup = to_html(part)
        if not markup.strip() or visible_length(markup) > MAX_CHARS:
            markup = escape(part)
        ids.append(await _send(bot, chat, topic, markup, part))
    return ids
