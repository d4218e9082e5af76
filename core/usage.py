"""Accounting: one usage row per provider call, and the caller's usage summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from core.events import UsageReport
from core.inbound import InboundMessage
from core.models import ModelId, PriceTable
from core.providers.base import UsageChunk
from core.storage.base import Store, UsageRecord, UsageTotals


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
    ) -> UsageReport:
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
                ok=not error,
                error=error,
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


def _period_line(label: str, rows: list[UsageTotals]) -> str:
    tokens_in = sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens for r in rows)
    tokens_out = sum(r.output_tokens for r in rows)
    cost = sum(r.cost_usd for r in rows)
    unpriced = sum(r.unpriced_calls for r in rows)
    calls = sum(r.calls for r in rows)
    extra = f" (+{unpriced} calls at unknown prices)" if unpriced else ""
    return f"{label}: {calls} calls, {tokens_in:,} in / {tokens_out:,} out tokens, {format_cost(cost)}{extra}"


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
        lines.append(f"• {row.model}: {row.calls} calls, {tokens:,} tokens, {cost}")
    return "\n".join(lines)
