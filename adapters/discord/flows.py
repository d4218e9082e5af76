"""What happens for each kind of Discord event: `/ask`, `/chat`, the core's commands, messages.

Every flow takes the event once (in-memory pre-check; the core's store is the durable dedupe),
acknowledges interactions first (Discord's 3-second deadline), and hands the message to the router
with the surface its answer goes to; the core's presenter shows it. Where the answer belongs in a new
thread, the surface opens it on the first public reply, so a refused, command or duplicate event never
leaves an empty thread behind. The message carries its reply address (address.py), from which
`surface_for` rebuilds the surface after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord

from adapters.discord.address import ReplyAddress, ThreadPlan
from adapters.discord.images import collect
from adapters.discord.inbound import (
    Place,
    RecentIds,
    guild_id_of,
    inbound,
    is_direct,
    place_of,
    strip_mention,
    thread_place,
)
from adapters.discord.interaction_surface import InteractionSurface
from adapters.discord.settings import ThreadArchiveMinutes
from adapters.discord.surfaces import MAX_CHARS, ChannelSurface
from adapters.discord.thread_surface import Origin, ThreadSurface
from core.inbound import ConversationRef, InboundMessage, storable
from core.router import Router
from core.surface import Capabilities, Surface

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 100
FAILED_REPLY = (
    "Sorry, something went wrong inside the bot while handling this (the error is in its log). "
    "Please try again in a moment."
)


def thread_name(text: str) -> str:
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    name = first_line or "Conversation"
    return name if len(name) <= THREAD_NAME_LIMIT else name[: THREAD_NAME_LIMIT - 1] + "…"


def starter_text(user: discord.abc.User, prompt: str) -> str:
    head = f"**{user.display_name}** started a conversation:\n>>> "
    room = MAX_CHARS - len(head)
    return head + (prompt if len(prompt) <= room else prompt[: room - 1] + "…")


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
        self._on_failed_reply = on_failed_reply  # a reply that could not be delivered (for metrics)
        self._router = router
        self._caps = capabilities
        self._clock = clock
        self._archive = archive_minutes
        self._recent = RecentIds()
        self.own_threads: set[int] = set()  # threads this process opened (the cache may lag behind)

    # --- interactions ------------------------------------------------------------------------------

    def _place(self, interaction: discord.Interaction) -> Place:
        return place_of(interaction.channel, interaction.guild_id, interaction.channel_id or 0)

    async def _deferred(
        self, interaction: discord.Interaction, *, ephemeral: bool
    ) -> InteractionSurface | None:
        if not self._recent.first_time(interaction.id):
            return None
        surface = InteractionSurface(interaction, self._caps, clock=self._clock, ephemeral=ephemeral)
        return surface if await surface.defer() else None

    async def ask(self, interaction: discord.Interaction, prompt: str) -> None:
        """Answer in place: the deferred response shows the answer."""
        surface = await self._deferred(interaction, ephemeral=False)
        if surface is not None:
            await self._in_place(interaction, surface, prompt)

    async def command(self, interaction: discord.Interaction, text: str) -> None:
        """A core command (`/new`, `/model x`, ...): answered privately to the caller."""
        surface = await self._deferred(interaction, ephemeral=True)
        if surface is not None:
            await self._in_place(interaction, surface, text)

    async def _in_place(
        self, interaction: discord.Interaction, surface: InteractionSurface, text: str
    ) -> None:
        place = self._place(interaction)
        address = ReplyAddress(place.channel_id, original=surface.original_id)
        message = inbound(place, interaction.user, text, interaction.id, reply_address=address.dumps())
        await self._answer(message, surface, surface)

    async def chat(self, interaction: discord.Interaction, prompt: str) -> None:
        """Open a thread on the response and hold the conversation there; in a thread, a DM or a channel
        without threads it answers in place."""
        surface = await self._deferred(interaction, ephemeral=False)
        if surface is None:
            return
        prompt = storable(prompt)  # the thread's name and starter are sent from it
        place = self._place(interaction)
        if not place.can_open_thread or surface.original_id is None:
            await self._in_place(interaction, surface, prompt)
            return
        # The thread started from the response message gets that message's id: the conversation key
        # is known before the thread exists.
        plan = ThreadPlan(
            place.channel_id, surface.original_id, thread_name(prompt), starter_text(interaction.user, prompt)
        )
        address = ReplyAddress(place.channel_id, original=surface.original_id, thread=plan)
        thread = thread_place(place, surface.original_id)
        message = inbound(thread, interaction.user, prompt, interaction.id, reply_address=address.dumps())
        await self._answer(message, self._thread(plan, surface), surface)

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
        is_dm = is_direct(message)
        if not is_dm and guild_id_of(message) is None:
            log.warning("Discord message %s: neither a DM nor from a known guild; ignored", message.id)
            return False
        # Without the message-content intent plain thread messages arrive blank: nothing to answer.
        has_text = bool(message.content.strip() or message.attachments)
        return mentioned or ((is_dm or own_thread) and has_text)

    async def message(self, message: discord.Message) -> None:
        """DMs, messages in the bot's threads, and @mentions (which open a thread in a channel)."""
        if not self._wanted(message) or not self._recent.first_time(message.id):
            return
        me = self._client.user
        assert me is not None
        guild_id = None if is_direct(message) else guild_id_of(message)
        place = place_of(message.channel, guild_id, message.channel.id)
        # Cleaned here too, not only in the core: the thread's name and starter are sent from it.
        said = storable(strip_mention(message.content, me.id))
        images = await collect(message.attachments)  # before the core sees the message
        text = images.annotate(said)
        origin = ChannelSurface(self._client, place.channel_id, self._caps, reply_to=message.id)
        if not place.can_open_thread:
            address = ReplyAddress(place.channel_id, reply_to=message.id)
            turn = inbound(
                place, message.author, text, message.id, images.blocks, reply_address=address.dumps()
            )
            await self._answer(turn, origin, origin)
            return
        plan = ThreadPlan(place.channel_id, message.id, thread_name(said))
        address = ReplyAddress(place.channel_id, reply_to=message.id, thread=plan)
        thread = thread_place(place, message.id)
        turn = inbound(thread, message.author, text, message.id, images.blocks, reply_address=address.dumps())
        await self._answer(turn, self._thread(plan, origin), origin)

    # --- surfaces and answers ------------------------------------------------------------------------

    def _thread(self, plan: ThreadPlan, origin: Origin) -> ThreadSurface:
        return ThreadSurface(
            self._client,
            plan,
            origin,
            archive_minutes=self._archive,
            opened=self.own_threads.add,
            is_open=self._thread_exists,
        )

    def _thread_exists(self, thread_id: int) -> bool:
        return thread_id in self.own_threads or self._client.get_channel(thread_id) is not None

    def surface_for(self, ref: ConversationRef, reply_address: str) -> Surface:
        """The surface of a stored turn, from its reply address; no Discord call until it is used. An
        interaction's answer goes through channel routes (its token is not stored and may be dead),
        replacing the "thinking…" response."""
        address = ReplyAddress.loads(reply_address, ref)
        origin = ChannelSurface(
            self._client,
            address.channel,
            self._caps,
            reply_to=address.reply_to,
            first_message=address.original,
        )
        return origin if address.thread is None else self._thread(address.thread, origin)

    async def _answer(self, message: InboundMessage, surface: Surface, origin: Origin) -> None:
        try:
            outcome = await self._router.answer(message, surface)
        except Exception:
            # The router is built not to raise; should it anyway, the asker still hears of it (and a
            # deferred interaction does not stay on "thinking…"). The error is logged by the caller.
            await self._tell_failure(origin)
            raise
        log.debug("event %s shown: %s", message.event_id, outcome)
        if outcome.events == 0:
            await self._nothing(origin)
        elif not outcome.delivered and self._on_failed_reply is not None:
            self._on_failed_reply()

    @staticmethod
    async def _tell_failure(origin: Origin) -> None:
        try:
            await origin.private(FAILED_REPLY)
        except Exception:
            log.info("could not tell the asker that handling failed", exc_info=True)

    @staticmethod
    async def _nothing(origin: Origin) -> None:
        """The core dropped the event (a duplicate): clear a pending "thinking…" response."""
        if isinstance(origin, InteractionSurface):
            try:
                await origin.delete_original()
            except discord.HTTPException:
                log.info("could not remove an unused interaction response", exc_info=True)
