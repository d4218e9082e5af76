"""Where one turn's replies go on Discord, as the core's `Surface`: a channel, thread or DM (here); an
interaction's response (interaction_surface.py); or a thread opened on the first public reply
(thread_surface.py).

The core's presenter decides what to show and when; these classes only carry out its primitives in
Discord's idiom: answer parts as messages (the core's Markdown in Discord's flavour), buttons as one
row of message components (components.py), tool calls as embeds, notes in Discord's small print
(`-# …`), typing, and private replies (an ephemeral followup for an interaction; in a channel, a reply
to the asker's message, which is as discreet as it gets). Every call is one attempt (see api.py) and
fails as a `DeliveryError`, so the presenter can retry the final text and skip the rest under pressure.
A message shows the buttons of the last call that wrote its text: an edit without buttons sends
`components: []`; a tool embed's edit leaves components alone.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord.utils import MISSING

from adapters.discord.api import reply_call
from adapters.discord.components import ButtonRow, row_of, sendable
from adapters.discord.format import ToolState, notes_outside_code, small_print, to_discord, tool_embed
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.surface import AnswerStream, Capabilities, Note
from core.textsplit import split_text

log = logging.getLogger(__name__)

MAX_CHARS = 2000
TYPING_INTERVAL_S = 8.0  # Discord shows typing for 10 s; refresh a little before it lapses
EMPTY_PART = "\u200b"  # Discord refuses a blank message; a part of only whitespace shows as nothing
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


def finished_embed(started: ToolStarted, event: ToolFinished) -> discord.Embed:
    state: ToolState = "error" if event.is_error else "ok"
    return tool_embed(event.name, started.arguments, state, duration_s=event.duration_s, output=event.output)


class Progress:
    """How many parts of a multi-part private reply were sent: a retried call sends only the rest."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.sent = 0

    def parts(self, text: str) -> list[str]:
        if text != self.text:
            self.text, self.sent = text, 0
        return split_text(text, MAX_CHARS)


async def edit_or_replace(
    channel: discord.PartialMessageable,
    message_id: str,
    *,
    content: str = MISSING,
    embed: discord.Embed = MISSING,
    view: ButtonRow | None = MISSING,
) -> str | None:
    """Edit a message through the channel route; where that cannot reach it (an ephemeral reply, a DM
    of a user-installed app, a message gone) post it anew and return the new id."""
    try:
        await channel.get_partial_message(int(message_id)).edit(content=content, embed=embed, view=view)
    except (discord.Forbidden, discord.NotFound):
        replacement = await channel.send(content=content or None, embed=embed, view=sendable(view))
        return str(replacement.id)
    return None


async def still_thinking(channel: discord.PartialMessageable, message_id: int) -> bool:
    """Whether an interaction's response still shows "thinking…" (Discord's LOADING flag). A stored
    turn's first post replaces it only then: a regenerated answer must not overwrite the answer the
    response already shows. Unreadable (no Read Message History): assume it still waits."""
    try:
        message = await channel.fetch_message(message_id)
    except discord.NotFound:
        return False
    except discord.Forbidden:
        return True
    return bool(message.flags.loading)


class ChannelSurface:
    """Normal messages in a channel, thread or DM. `reply_to`: the asker's message, which private
    replies answer. `first_message`: a message of the bot's that the first post replaces while it
    still shows "thinking…" (an interaction's response, when the answer is delivered after a restart)."""

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
        self._private = Progress()

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        return await reply_call("post", self._post(discord_text(text), row_of(buttons)))

    async def _post(self, content: str, view: ButtonRow | None) -> str:
        if self._first is not None:
            first = str(self._first)
            if await still_thinking(self._channel, self._first):
                replacement = await edit_or_replace(self._channel, first, content=content, view=view)
                if replacement is not None:
                    self._moved[first] = replacement
                self._first = None
                return first
            self._first = None
        return str((await self._channel.send(content=content, view=sendable(view))).id)

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        await reply_call("edit", self._edit(message_id, content=discord_text(text), view=row_of(buttons)))

    async def _edit(self, message_id: str, **fields: Any) -> None:
        target = self._moved.get(message_id, message_id)
        await self._channel.get_partial_message(int(target)).edit(**fields)

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
        await reply_call("tool", self._edit(message_id, embed=finished_embed(started, event)))

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return False  # discord.py queues per route bucket and does not say so
