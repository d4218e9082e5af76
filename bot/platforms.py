"""Which platform adapters exist, and which are configured: the only place that names them all."""

from __future__ import annotations

from bot.config import Settings
from core.adapter import Adapter, AdapterContext


def configured_adapters(settings: Settings, context: AdapterContext) -> list[Adapter]:
    """Every adapter whose credentials are present. Imports are lazy: an unused platform library is
    never loaded."""
    adapters: list[Adapter] = []
    if settings.slack.enabled:
        from adapters.slack.adapter import SlackAdapter

        adapters.append(SlackAdapter(settings.slack, context))
    if settings.telegram.enabled:
        from adapters.telegram.adapter import TelegramAdapter

        adapters.append(TelegramAdapter(settings.telegram, context, admins=settings.admin_users))
    if settings.discord.enabled:
        from adapters.discord.adapter import DiscordAdapter

        adapters.append(DiscordAdapter(settings.discord, context))
    return adapters
