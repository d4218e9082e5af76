"""The Discord adapter: one discord.py client (gateway + REST), an app command tree, and the flows.

The REST base and gateway URL are class attributes in discord.py (`Route.BASE`,
`DiscordWebSocket.DEFAULT_GATEWAY`); they are set from the settings before connecting, so a REST proxy
or a local fake works. One Discord adapter per process, as one client per bot token.

discord.py's `http_trace` option (an aiohttp TraceConfig on the session every REST call, interaction
response and CDN download goes through) sees each response: every 429 is reported to the observer
once, and reply calls get one attempt each, their 429s and 5xx left to the core's presenter (api.py).
Answers are shown by the core's presenter on the surfaces of surfaces.py; `surface_for` rebuilds one
from a stored reply address (address.py) after a restart, or for a button press (clicks.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from discord.utils import MISSING

from adapters.discord.api import MAX_RATELIMIT_WAIT_S, http_trace
from adapters.discord.clicks import Clicks
from adapters.discord.commands import build_tree, sync_commands
from adapters.discord.flows import Flows
from adapters.discord.gateway import guard_parsers, silence_voice_warnings, tolerate_lone_surrogates
from adapters.discord.inbound import PLATFORM
from adapters.discord.invite import invite_url
from adapters.discord.report import announcement, channel_id, chart_file, report_embed
from adapters.discord.settings import DiscordSettings
from adapters.discord.surfaces import MAX_CHARS, capabilities
from core.adapter import PLATFORM_API, AdapterContext
from core.inbound import ConversationRef
from core.reports.model import DailyReport
from core.surface import Surface
from core.textsplit import split_text

log = logging.getLogger(__name__)


class DiscordStartError(Exception):
    """A problem the operator must fix (bad token, intents not enabled); never contains the token."""


def intents_for(settings: DiscordSettings) -> discord.Intents:
    intents = discord.Intents.none()
    intents.guilds = True  # guilds, channels and threads (which threads are the bot's)
    intents.guild_messages = True  # mentions and messages in the bot's threads
    intents.dm_messages = True
    intents.message_content = settings.message_content  # privileged: plain messages in threads
    return intents


UNPARSABLE_EVENT = "unparsable_event"  # `platform_error` kind: a gateway payload discord.py could not read


def shard_options(settings: DiscordSettings) -> dict[str, int]:
    """One shard of several (DISCORD_SHARD_ID / DISCORD_SHARD_COUNT), or none: Discord's own sharding."""
    if settings.shard_id is None or settings.shard_count is None:
        return {}
    return {"shard_id": settings.shard_id, "shard_count": settings.shard_count}


class _Client(discord.Client):
    def __init__(
        self, on_setup: Callable[[], Any], on_skipped: Callable[[str], None], **options: Any
    ) -> None:
        silence_voice_warnings()  # before discord.Client.__init__, which prints them
        tolerate_lone_surrogates()
        super().__init__(**options)
        self._on_setup = on_setup
        guard_parsers(self._connection.parsers, on_skipped)

    async def setup_hook(self) -> None:
        self._on_setup()


class DiscordAdapter:
    name = "discord"

    def __init__(
        self, settings: DiscordSettings, context: AdapterContext, *, clock: Callable[[], float] | None = None
    ) -> None:
        self._settings = settings
        self._context = context
        self.capabilities = capabilities(settings.edit_interval)
        self._clock = clock or time.monotonic  # interaction-token lifetime (tests pass a simulated one)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._trace = http_trace(lambda route: context.observer.rate_limited(PLATFORM, route))
        self.client = _Client(
            self._setup,
            lambda event: context.observer.platform_error(PLATFORM, UNPARSABLE_EVENT),
            http_trace=self._trace,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,  # longer bucket waits raise: the core decides
            intents=intents_for(settings),
            max_messages=None,  # no message cache: the adapter never looks messages up
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            allowed_mentions=discord.AllowedMentions.none(),  # model text never pings anyone
            **shard_options(settings),
        )
        self.flows = Flows(
            self.client,
            context.router,
            self.capabilities,
            clock=self._clock,
            archive_minutes=settings.thread_archive_minutes,
            on_failed_reply=lambda: context.observer.platform_error(PLATFORM, PLATFORM_API),
        )
        self.tree = build_tree(self.client, self.flows, context.offered_models, self._tracked)
        self.clicks = Clicks(context.router, self.flows.surface_for)
        self.client.event(self.on_message)
        self.client.event(self.on_interaction)

    async def on_message(self, message: discord.Message) -> None:
        await self._tracked(self.flows.message(message))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Button presses; slash commands reach the command tree instead (discord.py routes them)."""
        if interaction.type is discord.InteractionType.component:
            await self._tracked(self.clicks.press(interaction))

    async def _tracked(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one event's handler; remembered so shutdown can cancel it, and its failure logged."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await work
        except Exception as error:
            if isinstance(error, discord.HTTPException | aiohttp.ClientError):  # Discord refused or failed
                self._context.observer.platform_error(PLATFORM, PLATFORM_API)
            log.exception("handling a Discord event failed")
        finally:
            if task is not None:
                self._tasks.discard(task)

    def _setup(self) -> None:
        app_id = self.client.application_id
        if app_id is not None:
            log.info("Discord invite URL (bot + slash commands): %s", invite_url(app_id))
        if self._settings.sync_commands:
            task = asyncio.create_task(sync_commands(self.tree, self.client, self._settings.guild_ids))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _point_at_api(self) -> None:
        Route.BASE = self._settings.api_url.rstrip("/")
        if self._settings.gateway_url:
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self._settings.gateway_url)

    async def run(self) -> None:
        if self._settings.bot_token is None:
            raise DiscordStartError("DISCORD_BOT_TOKEN is not set")
        self._point_at_api()
        if self.client.is_closed():  # started again by the supervisor after a failure
            self._reopen()
        try:
            async with self.client:
                await self.client.start(self._settings.bot_token.get_secret_value())
        except discord.LoginFailure:
            raise DiscordStartError(
                "Discord rejected DISCORD_BOT_TOKEN; copy it again from the Bot page"
            ) from None
        except discord.PrivilegedIntentsRequired:
            raise DiscordStartError(
                "Discord refused the MESSAGE CONTENT intent: enable it under Bot -> Privileged Gateway "
                "Intents in the developer portal, or set DISCORD_MESSAGE_CONTENT=false"
            ) from None
        finally:
            await self._cancel_tasks()

    def _reopen(self) -> None:
        """A closed discord.py client starts again once cleared; its connection pool was closed with
        its HTTP session, so login must make a new one."""
        self.client.clear()
        connector = self.client.http.connector
        if connector is not MISSING and connector.closed:
            self.client.http.connector = MISSING

    async def _cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def ready(self) -> bool:
        return self.client.is_ready() and not self.client.is_closed()

    def surface_for(self, ref: ConversationRef, reply_address: str) -> Surface:
        return self.flows.surface_for(ref, reply_address)

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        """One embed with the chart attached as its image. Without the Attach Files permission (403)
        the embed goes out alone. Errors propagate: the scheduler then releases its claim and retries."""
        target = channel_id(destination)
        async with self._messageable(target) as channel:
            if chart_png:
                try:
                    await channel.send(
                        embed=report_embed(report, with_chart=True), file=chart_file(report, chart_png)
                    )
                    return
                except discord.Forbidden as error:
                    if error.code != 50013:  # Missing Permissions; 50001 Missing Access fails alike below
                        raise
                    log.warning(
                        "no Attach Files permission in Discord channel %s: report posted without its chart",
                        target,
                    )
            await channel.send(embed=report_embed(report, with_chart=False))

    async def post_announcement(self, destination: str, text: str) -> None:
        async with self._messageable(channel_id(destination)) as channel:
            for part in split_text(announcement(text), MAX_CHARS):
                await channel.send(content=part)

    @contextlib.asynccontextmanager
    async def _messageable(self, target: int) -> AsyncIterator[discord.PartialMessageable]:
        """The channel through the running client; when the adapter is not running (`bot report
        --post`), through a short-lived REST-only client that never opens the gateway."""
        if self.client.http.token is not None and not self.client.is_closed():
            yield self.client.get_partial_messageable(target)
            return
        if self._settings.bot_token is None:
            raise DiscordStartError("DISCORD_BOT_TOKEN is not set")
        self._point_at_api()
        rest = discord.Client(
            intents=discord.Intents.none(),
            allowed_mentions=discord.AllowedMentions.none(),
            http_trace=self._trace,
            max_ratelimit_timeout=MAX_RATELIMIT_WAIT_S,
        )
        async with rest:
            try:
                await rest.login(self._settings.bot_token.get_secret_value())
            except discord.LoginFailure:
                raise DiscordStartError("Discord rejected DISCORD_BOT_TOKEN") from None
            yield rest.get_partial_messageable(target)
