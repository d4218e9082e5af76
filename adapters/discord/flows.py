"""What happens for each kind of Discord event: `/ask`, `/chat`, the core's commands, messages.

Every flow takes the event once (in-memory pre-check; the core's store is the durable dedupe),
acknowledges interactions first (Discord's 3-second deadline), hands the text to the router and renders
what it yields. Threads are opened only once the core has accepted the message as a conversation turn,
so a refused or duplicate event never leaves an empty thread behind.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import discord

from adapters.discord.images import collect
from adapters.discord.inbound import Place, RecentIds, inbound, place_of, strip_mention, thread_place
from adapters.discord.settings import ThreadArchiveMinutes
from adapters.discord.surfaces import MAX_CHARS, ChannelSurface, InteractionSurface, Surface
from adapters.discord.turn import TurnRenderer
from core.events import AgentEvent, CommandReply, Refused
from core.render import Capabilities
from core.router import Router

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 100


def thread_name(text: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    name = first_line or "Conversation"
    return name if len(name) <= THREAD_NAME_LIMIT else name[: THREAD_NAME_LIMIT - 1] + "…"


def starter_text(user: discord.abc.User, prompt: str) -> str:
    head = f"**{user.display_name}** started a conversation:\n>>> "
    room = MAX_CHARS - len(head)
    return head + (prompt if len(prompt) <= room else prompt[: room - 1] + "…")


async def _prepend(first: AgentEvent, rest: AsyncIterator[AgentEvent]) -> AsyncIterator[AgentEvent]:
    yield first
    async for event in rest:
        yield event


def _is_private(event: AgentEvent) -> bool:
    return isinstance(event, Refused | CommandReply)


class Flows:
    def __init__(
        self,
        client: discord.Client,
        router: Router,
        capabilities: Capabilities,
        *,
        clock: Callable[[], float],
        archive_minutes: ThreadArchiveMinutes,
        on_failed_reply: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._on_failed_reply = on_failed_reply  # a reply Discord refused (for metrics)
        self._router = router
        self._caps = capabilities
        self._clock = clock
        self._archive = archive_minutes
        self._recent = RecentIds()
        self.own_threads: set[int] = set()  # threads this process opened (the cache may lag behind)

    # --- interactions ------------------------------------------------------------------------------

    def _place(self, interaction: discord.Interaction) -> Place:
        return place_of(interaction.channel, interaction.guild_id, interaction.channel_id or 0)

    async def ask(self, interaction: discord.Interaction, prompt: str) -> None:
        """Answer in place: the deferred response streams the answer."""
        if not self._recent.first_time(interaction.id):
            return
        surface = InteractionSurface(interaction, clock=self._clock)
        if not await surface.defer():
            return
        message = inbound(self._place(interaction), interaction.user, prompt, interaction.id)
        await self._run(self._router.handle(message), surface, surface, typing=False)

    async def command(self, interaction: discord.Interaction, text: str) -> None:
        """A core command (`/new`, `/model x`, ...): answered privately to the caller."""
        if not self._recent.first_time(interaction.id):
            return
        surface = InteractionSurface(interaction, clock=self._clock, ephemeral=True)
        if not await surface.defer():
            return
        message = inbound(self._place(interaction), interaction.user, text, interaction.id)
        await self._run(self._router.handle(message), surface, surface, typing=False)

    async def chat(self, interaction: discord.Interaction, prompt: str) -> None:
        """Open a thread on the response and hold the conversation there; in a thread, a DM or a channel
        without threads it answers in place."""
        if not self._recent.first_time(interaction.id):
            return
        surface = InteractionSurface(interaction, clock=self._clock)
        if not await surface.defer():
            return
        place = self._place(interaction)
        if not place.can_open_thread or surface.original_id is None:
            message = inbound(place, interaction.user, prompt, interaction.id)
            await self._run(self._router.handle(message), surface, surface, typing=False)
            return
        # The thread started from the response message gets that message's id: the conversation key
        # is known before the thread exists, so the core can answer while the thread is being made.
        thread = thread_place(place, surface.original_id)
        events = self._router.handle(inbound(thread, interaction.user, prompt, interaction.id))
        first = await anext(events, None)
        if first is None or _is_private(first):
            await self._run_first(first, events, surface, surface, typing=False)
            return
        target: Surface = surface
        try:
            await surface.post(starter_text(interaction.user, prompt))
            await self._client.http.start_thread_with_message(
                place.channel_id,
                surface.original_id,
                name=thread_name(prompt),
                auto_archive_duration=self._archive,
            )
            self.own_threads.add(surface.original_id)
            target = ChannelSurface(self._client, surface.original_id, private=surface.private)
        except discord.HTTPException as error:
            log.warning(
                "could not open a thread for /chat (%s %s); answering in place", error.status, error.text
            )
        await self._run_first(first, events, target, surface, typing=True)

    # --- messages ----------------------------------------------------------------------------------

    def _wanted(self, message: discord.Message) -> bool:
        me = self._client.user
        if me is None or message.author.id == me.id or message.author.bot or message.webhook_id:
            return False
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return False
        channel = message.channel
        mentioned = any(user.id == me.id for user in message.mentions)
        own_thread = isinstance(channel, discord.Thread) and (
            channel.owner_id == me.id or channel.id in self.own_threads
        )
        is_dm = message.guild is None
        # Without the message-content intent plain thread messages arrive blank: nothing to answer.
        has_text = bool(message.content.strip() or message.attachments)
        return mentioned or ((is_dm or own_thread) and has_text)

    async def message(self, message: discord.Message) -> None:
        """DMs, messages in the bot's threads, and @mentions (which open a thread in a channel)."""
        if not self._wanted(message) or not self._recent.first_time(message.id):
            return
        me = self._client.user
        assert me is not None
        guild_id = message.guild.id if message.guild else None
        place = place_of(message.channel, guild_id, message.channel.id)
        said = strip_mention(message.content, me.id)
        images = await collect(message.attachments)  # before the core sees the message
        text = images.annotate(said)
        reply_surface = ChannelSurface(self._client, place.channel_id, reply_to=message.id)
        if not place.can_open_thread:
            await self._run(
                self._router.handle(inbound(place, message.author, text, message.id, images.blocks)),
                reply_surface,
                reply_surface,
                typing=True,
            )
            return
        thread = thread_place(place, message.id)
        events = self._router.handle(inbound(thread, message.author, text, message.id, images.blocks))
        first = await anext(events, None)
        target = reply_surface
        if first is not None and not _is_private(first):
            try:
                opened = await message.create_thread(
                    name=thread_name(said), auto_archive_duration=self._archive
                )
                self.own_threads.add(opened.id)
                target = ChannelSurface(self._client, opened.id, private=reply_surface.private)
            except discord.HTTPException as error:
                log.warning(
                    "could not open a thread (%s %s); answering in the channel", error.status, error.text
                )
        await self._run_first(first, events, target, reply_surface, typing=True)

    # --- rendering ---------------------------------------------------------------------------------

    async def _run_first(
        self,
        first: AgentEvent | None,
        events: AsyncIterator[AgentEvent],
        surface: Surface,
        origin: Surface,
        *,
        typing: bool,
    ) -> None:
        if first is None:
            await self._nothing(origin)
            return
        await self._run(_prepend(first, events), surface, origin, typing=typing)

    async def _run(
        self, events: AsyncIterator[AgentEvent], surface: Surface, origin: Surface, *, typing: bool
    ) -> None:
        renderer = TurnRenderer(surface, self._caps, typing=typing, on_failed_reply=self._on_failed_reply)
        stats = await renderer.render(events)
        log.debug("turn rendered: %s", stats)
        if stats.events == 0:
            await self._nothing(origin)

    @staticmethod
    async def _nothing(origin: Surface) -> None:
        """The core dropped the event (a duplicate): clear a pending "thinking…" response."""
        if isinstance(origin, InteractionSurface):
            try:
                await origin.delete_original()
            except discord.HTTPException:
                log.info("could not remove an unused interaction response", exc_info=True)
