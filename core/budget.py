"""Daily cost caps, checked before every provider call.

Days are calendar days in the report timezone (REPORT_TIMEZONE), so "today" means the same thing in a
budget refusal, the `usage` command and the daily report. Spending is read from the store's usage rows
(the database is the truth, shared by every replica), never from a counter kept in memory.

When the whole bot passes `WARN_SHARE` of its daily cap, the guard calls `on_warning` once per day and
process; whoever wires the core (bot/) decides where the warning goes and makes it once per day across
restarts and replicas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.inbound import InboundMessage
from core.storage.base import Store
from core.usage import format_cost

log = logging.getLogger(__name__)

WARN_SHARE = 0.8

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    timezone: str = "UTC"  # IANA name; budget days and report days
    user_cap_usd: float | None = None  # per user (platform + user id) per day
    total_cap_usd: float | None = None  # the whole bot per day
    admins_exempt: bool = True

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def day_start(self, day: date) -> datetime:
        """The first instant of `day` in the policy's timezone, as an aware UTC datetime."""
        return datetime.combine(day, time(0), self.zone).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class BudgetWarning:
    """The team passed WARN_SHARE of its daily cap."""

    day: date
    spent_usd: float
    cap_usd: float

    @property
    def text(self) -> str:
        share = self.spent_usd / self.cap_usd
        return (
            f"**Budget warning:** the team has spent {format_cost(self.spent_usd)} today ({self.day}), "
            f"{share:.0%} of the daily cap of {format_cost(self.cap_usd)}. "
            "When the cap is reached, requests are refused until midnight."
        )


OnWarning = Callable[[BudgetWarning], Awaitable[None]]


def _until(now: datetime, then: datetime) -> str:
    minutes = max(1, int((then - now).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class BudgetGuard:
    """Says whether a provider call may be made now, and raises the 80% team warning."""

    def __init__(
        self,
        store: Store,
        policy: BudgetPolicy,
        *,
        is_admin: Callable[[InboundMessage], bool] | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self.policy = policy
        self._is_admin = is_admin
        self._clock = clock
        self._on_warning: OnWarning | None = None
        self._warned: date | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def active(self) -> bool:
        return bool(self.policy.user_cap_usd or self.policy.total_cap_usd)

    def on_warning(self, callback: OnWarning | None) -> None:
        """Where the 80% team warning goes (bot/ wires it to the report destinations)."""
        self._on_warning = callback

    def today(self) -> date:
        return self.policy.local_day(self._clock())

    async def spent(self, day: date, *, user_id: str | None = None, platform: str | None = None) -> float:
        since = self.policy.day_start(day)
        until = self.policy.day_start(day + timedelta(days=1))
        # The pre-aggregated sums: this runs before every provider call, so it must not scan the day's rows.
        rows = await self._store.usage_grouped(since, until, (), user_id=user_id, platform=platform)
        return sum(row.cost_usd for row in rows)

    async def refusal(self, message: InboundMessage) -> str | None:
        """None if a provider call may be made for this message now, else the text to tell the sender."""
        if not self.active:
            return None
        policy, now = self.policy, self._clock()
        day = policy.local_day(now)
        total_cap, user_cap = policy.total_cap_usd, policy.user_cap_usd
        total = await self.spent(day) if total_cap else 0.0
        if total_cap:
            self._maybe_warn(day, total, total_cap)
        if policy.admins_exempt and self._is_admin is not None and self._is_admin(message):
            return None
        if total_cap and total >= total_cap:
            return self._refusal_text("The team's daily budget", total, total_cap, now)
        if user_cap:
            mine = await self.spent(day, user_id=message.sender.id, platform=message.ref.platform)
            if mine >= user_cap:
                return self._refusal_text("Your daily budget", mine, user_cap, now)
        return None

    async def after_call(self) -> None:
        """Check the team total after spending, so crossing 80% is announced without waiting."""
        cap = self.policy.total_cap_usd
        if cap and self._on_warning is not None:
            day = self.today()
            if self._warned != day:
                self._maybe_warn(day, await self.spent(day), cap)

    def _refusal_text(self, whose: str, spent: float, cap: float, now: datetime) -> str:
        day = self.policy.local_day(now)
        reset = self.policy.day_start(day + timedelta(days=1))
        return (
            f"{whose} of {format_cost(cap)} is used up ({format_cost(spent)} spent today), so I cannot "
            f"answer right now. It resets at midnight {self.policy.timezone} "
            f"({reset:%Y-%m-%d %H:%M} UTC, in {_until(now, reset)})."
        )

    def _maybe_warn(self, day: date, spent: float, cap: float) -> None:
        if self._on_warning is None or self._warned == day or spent < WARN_SHARE * cap:
            return
        self._warned = day
        task = asyncio.create_task(self._warn(self._on_warning, BudgetWarning(day, spent, cap)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _warn(self, callback: OnWarning, warning: BudgetWarning) -> None:
        try:
            await callback(warning)
        except Exception:  # a failed announcement must never break a turn
            log.warning("could not post the budget warning", exc_info=True)

    async def aclose(self) -> None:
        """Wait for warnings being posted (shutdown)."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
