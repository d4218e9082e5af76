"""Wiring: settings -> store, providers, tools, agent, router. The only place that knows every part."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.config import Settings, SettingsError
from core.access import AccessPolicy
from core.agent import Agent, AgentConfig
from core.approvals import ApprovalDesk, ApprovalSettings
from core.budget import BudgetGuard, BudgetPolicy
from core.models import PriceTable
from core.providers.base import Provider
from core.providers.failover import RetryPolicy
from core.providers.pool import ProviderCredentials, ProviderPool
from core.router import Router
from core.sessions import SessionManager
from core.storage import open_store
from core.storage.base import Store
from core.tokens import TokenCounter
from core.tools.base import Tool
from core.tools.builtins import builtin_tools
from core.tools.registry import ToolRegistry
from core.usage import UsageRecorder


@dataclass
class Core:
    settings: Settings
    store: Store
    pool: ProviderPool
    router: Router
    agent: Agent
    sessions: SessionManager
    prices: PriceTable
    budget: BudgetGuard


def _credentials(settings: Settings) -> ProviderCredentials:
    def secret(value: object) -> str | None:
        getter = getattr(value, "get_secret_value", None)
        return getter() if getter else None

    return ProviderCredentials(
        anthropic_api_key=secret(settings.anthropic_api_key),
        anthropic_base_url=settings.anthropic_base_url,
        openai_api_key=secret(settings.openai_api_key),
        openai_base_url=settings.openai_base_url,
        timeout_s=settings.bot_provider_timeout,
    )


def build_tools(settings: Settings, extra: Sequence[Tool] = ()) -> ToolRegistry:
    registry = ToolRegistry()
    for tool in [*builtin_tools(fetch_allow_private=settings.tool_fetch_allow_private), *extra]:
        registry.register(tool)
    return registry


def budget_policy(settings: Settings) -> BudgetPolicy:
    return BudgetPolicy(
        timezone=settings.report_timezone,
        user_cap_usd=settings.budget_daily_user_usd,
        total_cap_usd=settings.budget_daily_total_usd,
        admins_exempt=settings.budget_admins_exempt,
    )


@asynccontextmanager
async def open_core(
    settings: Settings,
    extra_tools: Sequence[Tool] = (),
    providers: dict[str, Provider] | None = None,
) -> AsyncIterator[Core]:
    """Open the store and build the core; closes everything on exit.

    `extra_tools` join the built-ins; `providers` replaces provider clients by name (benchmarks, plugins).
    Callers that go on to call a model (`bot run`, `bot chat`) start `core.pool.warm_up()`.
    """
    try:
        store = open_store(settings.database_url, pool_size=settings.database_pool_size)
    except ValueError as error:
        raise SettingsError([str(error)]) from None
    await store.open()
    counter = TokenCounter()
    await counter.warm()
    pool = ProviderPool(_credentials(settings), providers)
    prices = PriceTable(settings.prices)
    sessions = SessionManager(store, counter)
    config = AgentConfig(
        default_model=settings.model,
        fallback_model=settings.fallback_model,
        system_prompt=settings.bot_system_prompt,
        max_steps=settings.bot_max_steps,
        max_output_tokens=settings.bot_max_output_tokens,
        context_tokens=settings.bot_context_tokens,
        retry=RetryPolicy(attempts=settings.bot_retry_attempts),
        cost_footer=settings.bot_cost_footer,
    )
    policy = AccessPolicy.build(settings.allowed_users, settings.allowed_channels, settings.admin_users)
    budget = BudgetGuard(store, budget_policy(settings), is_admin=policy.is_admin)
    approvals = ApprovalDesk(
        store,
        ApprovalSettings(settings.tool_policy, settings.bot_approvers, settings.bot_approval_timeout_s),
    )
    agent = Agent(
        config,
        pool,
        build_tools(settings, extra_tools),
        sessions,
        store,
        UsageRecorder(store, prices),
        counter,
        budget,
        approvals,
    )
    router = Router(
        store,
        sessions,
        agent,
        pool,
        policy,
        prices,
        settings.offered_models,
        budget.policy,
        max_message_chars=settings.bot_max_message_chars,
        buttons=settings.bot_answer_buttons,
    )
    try:
        yield Core(settings, store, pool, router, agent, sessions, prices, budget)
    finally:
        await router.aclose()
        await budget.aclose()
        await pool.aclose()
        await store.close()
