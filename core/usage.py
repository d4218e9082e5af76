"""Accounting: one usage row per provider call, and the caller's usage summary.

Also the small wording helpers every usage text in the core uses (`format_cost`, `plural`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.events import UsageReport
from core.inbound import InboundMessage
from core.models import ModelId, PriceTable
from core.providers.base import UsageChunk
from core.storage.base import RatingTotals, Store, UsageRecord, UsageTotals


class UsageRecorder:
    def __init__(self, store: Store, prices: PriceTable) -> None:
        self._store = store
        self.prices = prices

    async def record(
        self,
        *,
        model: ModelId,
        usage: UsageChunk,
        inbound: InboundMessage,
        session_id: int | None,
        latency_s: float,
        error: str = "",
        ok: bool | None = None,
    ) -> UsageReport:
        """Store one call's row. `error` is the failure; `ok` defaults to "no error" and may be set to
        keep a note in `error` for a call that did not fail (a cancelled call whose tokens are estimated)."""
        cost = self.prices.cost(
            model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read=usage.cache_read_tokens,
            cache_write=usage.cache_write_tokens,
        )
        ref = inbound.ref
        await self._store.record_usage(
            UsageRecord(
                ts=datetime.now(UTC),
                provider=model.provider,
                model=model.name,
                platform=ref.platform,
                workspace=ref.workspace,
                channel=ref.channel,
                user_id=inbound.sender.id,
                session_id=session_id,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                cost_usd=cost,
                latency_ms=latency_s * 1000,
                ok=not error if ok is None else ok,
                error=error,
                regeneration=inbound.regenerates != 0,
            )
        )
        return UsageReport(
            model.provider,
            model.name,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            cost,
        )


def format_cost(cost: float | None) -> str:
    if cost is None:
        return "unknown"
    return f"${cost:.4f}" if cost < 1 else f"${cost:,.2f}"


def plural_word(count: int, noun: str, plural_noun: str = "") -> str:
    """`noun` as it goes with `count`: "call" for 1, "calls" otherwise (`plural_noun` when not +s)."""
    return noun if count == 1 else plural_noun or f"{noun}s"


def plural(count: int, noun: str, plural_noun: str = "") -> str:
    """ "1 call", "2 calls", "1,200 tokens"."""
    return f"{count:,} {plural_word(count, noun, plural_noun)}"


def _period_line(label: str, rows: list[UsageTotals]) -> str:
    tokens_in = sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens for r in rows)
    tokens_out = sum(r.output_tokens for r in rows)
    cost = sum(r.cost_usd for r in rows)
    unpriced = sum(r.unpriced_calls for r in rows)
    calls = sum(r.calls for r in rows)
    extra = f" (+{plural(unpriced, 'call')} at unknown prices)" if unpriced else ""
    return (
        f"{label}: {plural(calls, 'call')}, {tokens_in:,} in / {tokens_out:,} out tokens,"
        f" {format_cost(cost)}{extra}"
    )


async def usage_summary(
    store: Store, user_id: str, platform: str, now: datetime | None = None, timezone: str = "UTC"
) -> str:
    """The caller's usage today (in `timezone`), over the last 7 and 30 days, and by model over 30 days."""
    now = now or datetime.now(UTC)
    midnight = now.astimezone(ZoneInfo(timezone)).replace(hour=0, minute=0, second=0, microsecond=0)
    periods = [(f"Today ({timezone})", midnight), ("Last 7 days", now - timedelta(days=7))]
    month = await store.usage_totals(now - timedelta(days=30), user_id=user_id, platform=platform)
    if not month:
        return "You have no recorded usage in the last 30 days."
    lines = ["Your usage:"]
    for label, since in periods:
        lines.append(_period_line(label, await store.usage_totals(since, user_id=user_id, platform=platform)))
    lines.append(_period_line("Last 30 days", month))
    lines.append("By model (30 days):")
    for row in month:
        cost = format_cost(row.cost_usd) if row.unpriced_calls < row.calls else "unknown price"
        tokens = row.input_tokens + row.cache_read_tokens + row.cache_write_tokens + row.output_tokens
        lines.append(f"• {row.model}: {plural(row.calls, 'call')}, {plural(tokens, 'token')}, {cost}")
    ratings = await store.rating_totals(now - timedelta(days=30), now, "model", platform=platform)
    lines += ratings_lines(ratings, platform)
    return "\n".join(lines)


def ratings_lines(ratings: list[RatingTotals], platform: str) -> list[str]:
    """👍 / 👎 given to answers on `platform` (by everyone there) per model; [] when nobody rated."""
    rated = [r for r in ratings if r.up or r.down]
    if not rated:
        return []
    lines = [f"Answer ratings on {platform}, everyone (30 days):"]
    lines += [f"• {r.key}: 👍 {r.up:,} · 👎 {r.down:,} ({r.rate:.0%} 👍)" for r in rated]
    return lines
