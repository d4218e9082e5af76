"""Budgets and the cost footer: refusal before any provider call, reset at local midnight, admins
exempt, the whole bot's cap, the 80% warning, and the footer under answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from bot.app import open_core
from bot.config import Settings
from core.budget import BudgetGuard, BudgetPolicy, BudgetWarning
from core.events import Refused, TurnDone
from core.storage import Store
from core.storage.base import UsageRecord
from tests.corekit import collect, done, message, of_type
from tests.fakes.llm_server import FakeLLMServer, Reply, Usage

SettingsFor = Callable[..., Settings]
# Sonnet 5.5 at $2 / $10 per million tokens: 1,200 in + 300 out = $0.0054.
PRICEY = Usage(input=1200, output=300)


async def test_user_over_cap_is_refused_without_a_provider_call(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("first", usage=PRICEY))
    async with open_core(settings_for(budget_daily_user_usd=0.005)) as core:
        first = await collect(core.router, "spend")
        second = await collect(core.router, "again")
        bob = await collect(core.router, "hi", user="bob")
    assert done(first).text == "first"
    (refused,) = second
    assert isinstance(refused, Refused)
    assert "Your daily budget of $0.0050 is used up ($0.0054 spent today)" in refused.text
    assert "resets at midnight UTC" in refused.text and " UTC, in " in refused.text
    assert isinstance(bob[-1], TurnDone)  # the cap is per user
    assert len(llm_server.requests) == 2


async def test_team_cap_refuses_everyone_but_exempt_admins(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("costly", usage=PRICEY))
    settings = settings_for(budget_daily_total_usd=0.005, admin_users="boss")
    async with open_core(settings) as core:
        await collect(core.router, "spend")
        bob = await collect(core.router, "hi", user="bob")
        boss = await collect(core.router, "hi", user="boss")
    assert isinstance(bob[0], Refused) and "The team's daily budget of $0.0050" in bob[0].text
    assert isinstance(boss[-1], TurnDone)


async def test_admins_are_not_exempt_when_configured(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("costly", usage=PRICEY))
    settings = settings_for(budget_daily_user_usd=0.005, admin_users="alice", budget_admins_exempt=False)
    async with open_core(settings) as core:
        await collect(core.router, "spend")
        again = await collect(core.router, "again")
    assert isinstance(again[0], Refused)


async def test_budget_is_checked_before_each_step_of_a_turn(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script(
        "anthropic",
        Reply.text_then_tools("Let me compute.", ("calculator", {"expression": "6*7"}), usage=PRICEY),
    )
    async with open_core(settings_for(budget_daily_user_usd=0.005)) as core:
        events = await collect(core.router, "what is 6*7?")
    final = done(events)
    assert final.text.startswith("Let me compute.\n\nYour daily budget")
    assert len(llm_server.requests) == 1  # the second step was never sent


async def spend(store: Store, at: datetime, cost: float, user: str = "alice") -> None:
    await store.record_usage(
        UsageRecord(
            ts=at,
            provider="anthropic",
            model="claude-sonnet-5-5",
            platform="console",
            workspace="local",
            channel="alice",
            user_id=user,
            session_id=None,
            input_tokens=100,
            output_tokens=10,
            cache_read_tokens=0,
            cache_write_tokens=0,
            cost_usd=cost,
            latency_ms=1.0,
        )
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_budget_resets_at_midnight_in_the_report_timezone(store: Store) -> None:
    # 23:30 in New York on 3 March is 04:30 UTC on 4 March: it still counts for 3 March there.
    clock = Clock(datetime(2026, 3, 4, 4, 30, tzinfo=UTC))
    policy = BudgetPolicy(timezone="America/New_York", user_cap_usd=1.0)
    guard = BudgetGuard(store, policy, clock=clock)
    await spend(store, datetime(2026, 3, 3, 15, 0, tzinfo=UTC), 0.6)  # 10:00 New York
    await spend(store, clock.now - timedelta(minutes=5), 0.5)
    refusal = await guard.refusal(message("hi"))
    assert refusal is not None
    assert "($1.10 spent today)" in refusal
    assert "resets at midnight America/New_York (2026-03-04 05:00 UTC, in 30 min)" in refusal
    clock.now += timedelta(minutes=31)  # 00:01 in New York
    assert await guard.refusal(message("hi")) is None
    assert guard.today() == date(2026, 3, 4)


async def test_team_warning_fires_once_when_passing_80_percent(store: Store) -> None:
    clock = Clock(datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    guard = BudgetGuard(store, BudgetPolicy(total_cap_usd=10.0), clock=clock)
    warnings: list[BudgetWarning] = []

    async def collect_warning(warning: BudgetWarning) -> None:
        warnings.append(warning)

    guard.on_warning(collect_warning)
    await spend(store, clock.now, 7.0)
    await guard.after_call()
    assert warnings == []
    await spend(store, clock.now, 1.5, user="bob")
    await guard.after_call()
    await guard.refusal(message("hi"))
    await guard.after_call()
    await guard.aclose()
    assert warnings == [BudgetWarning(date(2026, 3, 4), 8.5, 10.0)]
    assert "85% of the daily cap of $10.00" in warnings[0].text
    clock.now += timedelta(days=1)
    await spend(store, clock.now, 9.0)
    await guard.after_call()
    await guard.aclose()
    assert [w.day for w in warnings] == [date(2026, 3, 4), date(2026, 3, 5)]


async def test_cost_footer_under_answers_when_enabled(
    llm_server: FakeLLMServer, settings_for: SettingsFor
) -> None:
    llm_server.script("anthropic", Reply.text("a", usage=PRICEY), Reply.text("b", usage=PRICEY))
    async with open_core(settings_for(bot_cost_footer=True)) as core:
        on = done(await collect(core.router, "hi"))
    async with open_core(settings_for()) as core:
        off = done(await collect(core.router, "hi"))
    assert on.footer == "1,200 in · 300 out tokens · $0.0054"
    assert off.footer == ""
    assert of_type([on, off], TurnDone) == [on, off]
