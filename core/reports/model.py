"""What a daily usage report says, as data. Built by core/reports/build.py from the store's usage rows;
rendered by each adapter in its own idiom (Block Kit, embed, formatted message) or by `to_markdown`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class Totals:
    """Usage summed over a set of provider calls."""

    requests: int = 0  # provider calls
    input_tokens: int = 0  # uncached input
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0  # known costs only
    unpriced_requests: int = 0  # calls whose model has no known price
    cache_savings_usd: float = 0.0  # what cache reads saved against full input price


@dataclass(frozen=True, slots=True)
class Breakdown:
    """One row of a breakdown (by platform, model, channel or user)."""

    key: str  # e.g. "slack", "anthropic:claude-sonnet-5-5", "slack:C0123", "slack:U0123"
    totals: Totals


@dataclass(frozen=True, slots=True)
class ToolStats:
    name: str
    calls: int
    failures: int


@dataclass(frozen=True, slots=True)
class RatingRow:
    """👍 / 👎 given to answers that day, for one model or one channel."""

    key: str  # "anthropic:claude-sonnet-5-5" or "slack:C0123"
    up: int
    down: int

    @property
    def rate(self) -> float:
        total = self.up + self.down
        return self.up / total if total else 0.0


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    daily_cap_usd: float | None  # the whole bot's cap; None = no cap
    spent_usd: float
    users_over_cap: int = 0  # users who hit their per-user cap that day

    @property
    def share(self) -> float | None:
        return None if not self.daily_cap_usd else self.spent_usd / self.daily_cap_usd


@dataclass(frozen=True, slots=True)
class DayPoint:
    """One day of the 14-day history behind the chart."""

    day: date
    cost_by_platform: dict[str, float]
    tokens_by_platform: dict[str, int]


@dataclass(frozen=True, slots=True)
class DailyReport:
    day: date  # the calendar day in `timezone`
    timezone: str  # IANA name
    totals: Totals
    conversations: int  # distinct sessions with a provider call that day
    active_users: int  # distinct (platform, user) with a provider call that day
    provider_errors: int  # failed provider calls (included in totals.requests)
    previous: Totals | None  # the day before, for change figures (None: no data)
    by_platform: list[Breakdown] = field(default_factory=list)
    by_model: list[Breakdown] = field(default_factory=list)
    by_channel: list[Breakdown] = field(default_factory=list)  # top channels by cost
    top_users: list[Breakdown] = field(default_factory=list)  # top users by cost
    tools: list[ToolStats] = field(default_factory=list)
    ratings_by_model: list[RatingRow] = field(default_factory=list)  # most rated first
    ratings_by_channel: list[RatingRow] = field(default_factory=list)
    budget: BudgetStatus | None = None
    history: list[DayPoint] = field(default_factory=list)  # last 14 days, oldest first, for the chart

    @property
    def empty(self) -> bool:
        return self.totals.requests == 0
