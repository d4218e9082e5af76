"""Where one turn's replies go on Discord, as the core's `Surface`: a channel, thread or DM; an
interaction's response; or a thread opened on the first public reply.

The core's presenter decides what to show and when; these classes only carry out its primitives in
Discord's idiom: answer parts as messages (the core's Markdown in Discord's flavour), tool calls as
embeds, notes in Discord's small print (`-# …`), typing, and private replies (an ephemeral followup
for an interaction; in a channel, a reply to the asker's message, which is as discreet as it gets).
Every call is one attempt (see api.py) and fails as a `DeliveryError`, so the presenter can retry the
final text and skip the rest under pressure.

An interaction's token dies after 15 minutes; the interaction surface then carries on through normal
channel messages (editing its earlier messages through the channel route, or re-posting a part where
that is refused), so a long turn still finishes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord
from discord.utils import MISSING

from adapters.discord.address import ThreadPlan
from adapters.discord.api import reply_call
from adapters.discord.format import ToolState, notes_outside_code, small_print, to_discord, tool_embed
from adapters.discord.settings import ThreadArchiveMinutes
from core.events import ToolFinished, ToolStarted
from core.surface import AnswerStream, Capabilities, DeliveryError, Note, Surface
from core.textsplit import split_text

log = logging.getLogger(__name__)

MAX_CHARS = 2000
TYPING_INTERVAL_S = 8.0  # Discord shows typing for 10 s; refresh a little before it lapses
TOKEN_LIFETIME_S = 15 * 60.0
TOKEN_MARGIN_S = 60.0  # stop using the token a minute early: a request in flight must not straddle it
EMPTY_PART = "\u200b"  # Discord refuses a blank message; a part of only whitespace shows as nothing
THREAD_EXISTS = 160004  # "A thread has already been created for this message"
UNKNOWN_MESSAGE = 10008


def capabilities(edit_interval_s: float) -> Capabilities:
    return Capabilities(
        max_message_chars=MAX_CHARS,
        edit_interval_s=edit_interval_s,
        typing_interval_s=TYPING_INTERVAL_S,
        rich_tools=True,
    )


def discord_text(text: str) -> str:
    """A part of the core's Markdown as Discord content."""
    if not text.strip():
        return EMPTY_PART
    return to_discord(notes_outside_code(text, MAX_CHARS))


def token_dead(error: discord.HTTPException) -> bool:
    """401 Invalid Webhook Token (50027) after 15 minutes; 404 Unknown Webhook (10015) once gone."""
    return (error.status == 401 and error.code == 50027) or (error.status == 404 and error.code == 10015)


def _finished_embed(started: ToolStarted, event: ToolFinished) -> discord.Embed:
    state: ToolState = "error" if event.is_error else "ok"
    return tool_embed(event.name, started.arguments, state, duration_s=event.duration_s, output=event.output)


class _Progress:
    """How many parts of a multi-part private reply were sent: a retried call sends only the rest."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.sent = 0

    def parts(self, text: str) -> list[str]:
        if text != self.text:
            self.text, self.sent = text, 0
        return split_text(text, MAX_CHARS)


async def _edit_or_replace(
    channel: discord.PartialMessageable,
    message_id: str,
    *,
    content: str = MISSING,
    embed: discord.Embed = MISSING,
) -> str | None:
    """Edit a message through the channel route; where that cannot reach it (an ephemeral reply, a DM
    of a user-installed app, a message gone) post it anew and return the new id."""
    try:
        await channel.get_partial_message(int(message_id)).edit(content=content, embed=embed)
    except (discord.Forbidden, discord.NotFound):
        replacement = await channel.send(content=content or None, embed=embed)
        return str(replacement.id)
    return None


class ChannelSurface:
    """Normal messages in a channel, thread or DM. `reply_to`: the asker's message, which private
    replies answer. `first_message`: a message of the bot's that the first post replaces (an
    interaction's "thinking…" response, when the answer is delivered after a restart)."""

    def __init__(
        self,
        client: discord.Client,
        channel_id: int,
        capabilities: Capabilities,
        *,
        reply_to: int | None = None,
        first_message: int | None = None,
    ) -> None:
        self._client = client
        self.channel_id = channel_id
        self.capabilities = capabilities
        self._channel = client.get_partial_messageable(channel_id)
        self._reply_to = reply_to
        self._first = first_message
        self._moved: dict[str, str] = {}  # the first message -> the message that replaced it
        self._private = _Progress()

    async def post(self, text: str) -> str:
        return await reply_call("post", self._post(discord_text(text)))

    async def _post(self, content: str) -> str:
        if self._first is not None:
            first = str(self._first)
            replacement = await _edit_or_replace(self._channel, first, content=content)
            if replacement is not None:
                self._moved[first] = replacement
            self._first = None
            return first
        return str((await self._channel.send(content=content)).id)

    async def edit(self, message_id: str, text: str) -> None:
        await reply_call("edit", self._edit(message_id, content=discord_text(text)))

    async def _edit(self, message_id: str, *, content: str = MISSING, embed: discord.Embed = MISSING) -> None:
        target = self._moved.get(message_id, message_id)
        await self._channel.get_partial_message(int(target)).edit(content=content, embed=embed)

    async def delete(self, message_id: str) -> None:
        await reply_call("delete", self._delete(self._moved.get(message_id, message_id)))

    async def _delete(self, message_id: str) -> None:
        try:
            await self._channel.get_partial_message(int(message_id)).delete()
        except discord.NotFound as error:
            if error.code != UNKNOWN_MESSAGE:
                raise
            # already gone: what was wanted

    async def private(self, text: str) -> None:
        """Channels have no ephemeral messages: answer the asker's message with a reply instead."""
        await reply_call("private reply", self._send_private(text))

    async def _send_private(self, text: str) -> None:
        progress = self._private
        parts = progress.parts(text)
        for index in range(progress.sent, len(parts)):
            if index == 0 and self._reply_to:
                asked = discord.MessageReference(
                    message_id=self._reply_to, channel_id=self.channel_id, fail_if_not_exists=False
                )
                await self._channel.send(content=discord_text(parts[index]), reference=asked)
            else:
                await self._channel.send(content=discord_text(parts[index]))
            progress.sent = index + 1

    def note(self, note: Note) -> str:
        return small_print(note)

    async def typing(self) -> None:
        await reply_call("typing", self._client.http.send_typing(self.channel_id))

    async def set_status(self, text: str) -> None:
        return None  # Discord has no status line (capabilities.status is False)

    async def post_tool(self, event: ToolStarted) -> str:
        embed = tool_embed(event.name, event.arguments, "running")
        return await reply_call("tool", self._send_embed(embed))

    async def _send_embed(self, embed: discord.Embed) -> str:
        return str((await self._channel.send(embed=embed)).id)

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        await reply_call("tool", self._edit(message_id, embed=_finished_embed(started, event)))

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return False  # discord.py queues per route bucket and does not say so


class InteractionSurface:
    """The response to a slash command (deferred first), then followups; channel messages once the
    interaction token is (nearly) dead."""

    def __init__(
        self,
        interaction: discord.Interaction,
        capabilities: Capabilities,
        *,
        clock: Callable[[], float],
        ephemeral: bool = False,
    ) -> None:
        self._interaction = interaction
        self.capabilities = capabilities
        self._followup = interaction.followup
        self._clock = clock
        self._deadline = clock() + TOKEN_LIFETIME_S - TOKEN_MARGIN_S
        self._ephemeral = ephemeral
        self._original_id: int | None = None
        self._original_used = False
        self._expired = False
        self._moved: dict[str, str] = {}  # message id -> the channel message that replaced it
        self._private = _Progress()
        self.channel_id = interaction.channel_id or 0
        self._channel = interaction.client.get_partial_messageable(self.channel_id)

    @property
    def original_id(self) -> int | None:
        return self._original_id

    async def defer(self) -> bool:
        """Acknowledge within Discord's 3 s; False when Discord says it was already acknowledged (a
        redelivered interaction that another run of the bot answered)."""
        try:
            response = await self._interaction.response.defer(ephemeral=self._ephemeral, thinking=True)
        except discord.InteractionResponded:
            return False
        except discord.HTTPException as error:
            if error.code in (40060, 10062):  # already acknowledged / unknown (expired) interaction
                log.info("interaction %s was already handled (%s)", self._interaction.id, error.code)
                return False
            raise
        self._original_id = response.message_id if response is not None else None
        return True

    def _token_usable(self) -> bool:
        if not self._expired and self._clock() >= self._deadline:
            log.info(
                "interaction %s token is about to expire; continuing in the channel", self._interaction.id
            )
            self._expired = True
        return not self._expired

    # --- answer parts ---------------------------------------------------------------------------------

    async def post(self, text: str) -> str:
        return await reply_call("post", self._post(discord_text(text)))

    async def _post(self, content: str) -> str:
        if self._token_usable():
            try:
                return await self._post_webhook(content)
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        if not self._original_used and self._original_id is not None:
            original = str(self._original_id)  # replace "thinking…" through the channel route
            replacement = await _edit_or_replace(self._channel, original, content=content)
            if replacement is not None:
                self._moved[original] = replacement
            self._original_used = True
            return original
        return str((await self._channel.send(content=content)).id)

    async def _post_webhook(self, content: str) -> str:
        if not self._original_used:
            message = await self._interaction.edit_original_response(content=content)
            self._original_used = True
            self._original_id = message.id
            return str(message.id)
        sent = await self._followup.send(content=content, wait=True)
        return str(sent.id)

    async def edit(self, message_id: str, text: str) -> None:
        await reply_call("edit", self._edit(message_id, content=discord_text(text)))

    async def _edit(self, message_id: str, *, content: str = MISSING, embed: discord.Embed = MISSING) -> None:
        """Edit through the token while it lives, else through the channel route."""
        target = self._moved.get(message_id, message_id)
        if target == message_id and self._token_usable():
            try:
                if target == str(self._original_id):
                    await self._interaction.edit_original_response(content=content, embed=embed)
                else:
                    await self._followup.edit_message(int(target), content=content, embed=embed)
                return
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        replacement = await _edit_or_replace(self._channel, target, content=content, embed=embed)
        if replacement is not None:
            self._moved[message_id] = replacement

    async def delete(self, message_id: str) -> None:
        await reply_call("delete", self._delete(message_id))

    async def _delete(self, message_id: str) -> None:
        target = self._moved.get(message_id, message_id)
        try:
            if target == message_id and self._token_usable():
                try:
                    if target == str(self._original_id):
                        await self._interaction.delete_original_response()
                    else:
                        await self._followup.delete_message(int(target))
                    return
                except discord.HTTPException as error:
                    if not token_dead(error):
                        raise
                    self._expired = True
            await self._channel.get_partial_message(int(target)).delete()
        except discord.NotFound as error:
            if error.code != UNKNOWN_MESSAGE:
                raise
            # already gone: what was wanted

    # --- tools, notes, typing -------------------------------------------------------------------------

    async def post_tool(self, event: ToolStarted) -> str:
        embed = tool_embed(event.name, event.arguments, "running")
        return await reply_call("tool", self._post_embed(embed))

    async def _post_embed(self, embed: discord.Embed) -> str:
        if self._token_usable():
            try:
                return str((await self._followup.send(embed=embed, wait=True)).id)
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        return str((await self._channel.send(embed=embed)).id)

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        await reply_call("tool", self._edit(message_id, embed=_finished_embed(started, event)))

    def note(self, note: Note) -> str:
        return small_print(note)

    async def typing(self) -> None:
        if self._original_used:  # before that, Discord shows the deferred "thinking…" state
            await reply_call("typing", self._interaction.client.http.send_typing(self.channel_id))

    async def set_status(self, text: str) -> None:
        return None

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return False

    # --- private replies and the unused response --------------------------------------------------------

    async def private(self, text: str) -> None:
        """Only the asker sees it: the ephemeral deferred response, or an ephemeral followup (a public
        "thinking…" response is removed first, so nothing is left hanging in the channel)."""
        await reply_call("private reply", self._send_private(text))

    async def _send_private(self, text: str) -> None:
        if not self._token_usable():
            raise DeliveryError("cannot reply privately: the interaction token expired", transient=False)
        progress = self._private
        parts = progress.parts(text)
        if not self._original_used and self._original_id is not None:
            if self._ephemeral:
                await self._interaction.edit_original_response(content=discord_text(parts[0]))
                progress.sent = 1
            else:
                await self._interaction.delete_original_response()
            self._original_used = True
        for index in range(progress.sent, len(parts)):
            await self._followup.send(content=discord_text(parts[index]), ephemeral=True, wait=True)
            progress.sent = index + 1

    async def delete_original(self) -> None:
        """Remove the "thinking…" response when the turn produced nothing (a duplicate event)."""
        if not self._original_used and self._original_id is not None:
            self._original_used = True
            await self._interaction.delete_original_response()


Origin = ChannelSurface | InteractionSurface


class ThreadSurface:
    """Public replies go to a thread opened from a message on the first of them (post, tool, typing),
    so a turn the core turns away (refusal, command, duplicate) never leaves an empty thread; private
    replies go where the message was. When Discord refuses the thread for good, the answer goes there
    too (in place); when it fails for now, the call fails transiently and the next one tries again."""

    def __init__(
        self,
        client: discord.Client,
        plan: ThreadPlan,
        origin: Origin,
        *,
        archive_minutes: ThreadArchiveMinutes,
        opened: Callable[[int], None],
        is_open: Callable[[int], bool],
    ) -> None:
        self._client = client
        self._plan = plan
        self._origin = origin
        self.capabilities = origin.capabilities
        self._archive = archive_minutes
        self._opened = opened
        self._is_open = is_open
        self._target: Surface | None = None
        self._opening = asyncio.Lock()
        self._starter_shown = False

    async def _public(self) -> Surface:
        if self._target is None:
            async with self._opening:
                if self._target is None:
                    self._target = await self._open()
        return self._target

    async def _open(self) -> Surface:
        plan = self._plan
        if not self._is_open(plan.message_id):
            if plan.starter and not self._starter_shown:
                await self._origin.post(plan.starter)
                self._starter_shown = True
            try:
                await reply_call("open a thread", self._start())
            except DeliveryError as error:
                if error.transient:
                    raise
                log.warning("could not open a thread (%s); answering in place", error)
                return self._origin
            self._opened(plan.message_id)
        return ChannelSurface(self._client, plan.message_id, self.capabilities)

    async def _start(self) -> None:
        plan = self._plan
        try:
            await self._client.http.start_thread_with_message(
                plan.channel_id, plan.message_id, name=plan.name, auto_archive_duration=self._archive
            )
        except discord.HTTPException as error:
            if error.code != THREAD_EXISTS:  # else an earlier attempt (or run) opened it: post there
                raise

    async def post(self, text: str) -> str:
        return await (await self._public()).post(text)

    async def edit(self, message_id: str, text: str) -> None:
        await (await self._public()).edit(message_id, text)

    async def delete(self, message_id: str) -> None:
        await (await self._public()).delete(message_id)

    async def private(self, text: str) -> None:
        await self._origin.private(text)

    def note(self, note: Note) -> str:
        return small_print(note)

    async def typing(self) -> None:
        await (await self._public()).typing()

    async def set_status(self, text: str) -> None:
        return None

    async def post_tool(self, event: ToolStarted) -> str:
        return await (await self._public()).post_tool(event)

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        await (await self._public()).edit_tool(message_id, started, event)

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return False
