"""Where one turn's messages go: a channel or thread, or an interaction's response.

Both give the renderer the same primitives: `post`/`edit` for answer parts (the core's MessageSink),
embeds for tool calls, `private` for what only the asker should see, and `typing`. An interaction's
token dies after 15 minutes; the interaction surface then carries on through normal channel messages
(editing its earlier messages through the channel route, or re-posting a part where that is refused),
so a long turn still finishes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import discord
from discord.utils import MISSING

from adapters.discord.format import to_discord
from core.textsplit import split_text

log = logging.getLogger(__name__)

MAX_CHARS = 2000
TOKEN_LIFETIME_S = 15 * 60.0
TOKEN_MARGIN_S = 60.0  # stop using the token a minute early: a request in flight must not straddle it
EMPTY_PART = "\u200b"  # Discord refuses a blank message; a part of only whitespace shows as nothing


def _content(text: str) -> str:
    return to_discord(text) if text.strip() else EMPTY_PART


def token_dead(error: discord.HTTPException) -> bool:
    """401 Invalid Webhook Token (50027) after 15 minutes; 404 Unknown Webhook (10015) once gone."""
    return (error.status == 401 and error.code == 50027) or (error.status == 404 and error.code == 10015)


class Surface(Protocol):
    async def post(self, text: str) -> str: ...

    async def edit(self, message_id: str, text: str) -> None: ...

    async def post_embed(self, embed: discord.Embed) -> str: ...

    async def edit_embed(self, message_id: str, embed: discord.Embed) -> None: ...

    async def private(self, text: str) -> None: ...

    async def notice(self, text: str) -> None: ...

    async def typing(self) -> None: ...


class ChannelSurface:
    """Normal messages in a channel, thread or DM."""

    def __init__(
        self,
        client: discord.Client,
        channel_id: int,
        *,
        reply_to: int | None = None,
        private: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self.channel_id = channel_id
        self._channel = client.get_partial_messageable(channel_id)
        self._reply_to = reply_to
        self._private = private

    @property
    def messageable(self) -> discord.PartialMessageable:
        return self._channel

    async def post(self, text: str) -> str:
        message = await self._channel.send(content=_content(text))
        return str(message.id)

    async def edit(self, message_id: str, text: str) -> None:
        await self._channel.get_partial_message(int(message_id)).edit(content=_content(text))

    async def post_embed(self, embed: discord.Embed) -> str:
        return str((await self._channel.send(embed=embed)).id)

    async def edit_embed(self, message_id: str, embed: discord.Embed) -> None:
        await self._channel.get_partial_message(int(message_id)).edit(embed=embed)

    async def private(self, text: str) -> None:
        """Channels have no ephemeral messages: answer the asker's message with a reply instead."""
        if self._private is not None:
            await self._private(text)
            return
        for index, part in enumerate(split_text(text, MAX_CHARS)):
            if index == 0 and self._reply_to:
                asked = discord.MessageReference(
                    message_id=self._reply_to, channel_id=self.channel_id, fail_if_not_exists=False
                )
                await self._channel.send(content=_content(part), reference=asked)
            else:
                await self._channel.send(content=_content(part))

    async def notice(self, text: str) -> None:
        """A status line (queued, retrying, switched model) in Discord's small subtext style."""
        await self._channel.send(content=f"-# {text}")

    async def typing(self) -> None:
        await self._client.http.send_typing(self.channel_id)


class InteractionSurface:
    """The response to a slash command (deferred first), then followups; channel messages once the
    interaction token is (nearly) dead."""

    def __init__(
        self,
        interaction: discord.Interaction,
        *,
        clock: Callable[[], float],
        ephemeral: bool = False,
    ) -> None:
        self._interaction = interaction
        self._followup = interaction.followup
        self._clock = clock
        self._deadline = clock() + TOKEN_LIFETIME_S - TOKEN_MARGIN_S
        self._ephemeral = ephemeral
        self._original_id: int | None = None
        self._original_used = False
        self._expired = False
        self._moved: dict[str, str] = {}  # message id -> the channel message that replaced it
        channel_id = interaction.channel_id or 0
        self.channel = ChannelSurface(interaction.client, channel_id)

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

    async def post(self, text: str) -> str:
        if self._token_usable():
            try:
                return await self._post_webhook(_content(text))
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        return await self.channel.post(text)

    async def _post_webhook(self, content: str) -> str:
        if not self._original_used:
            message = await self._interaction.edit_original_response(content=content)
            self._original_used = True
            self._original_id = message.id
            return str(message.id)
        sent = await self._followup.send(content=content, wait=True)
        return str(sent.id)

    async def edit(self, message_id: str, text: str) -> None:
        await self._edit(message_id, content=_content(text))

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
        channel = self.channel.messageable
        try:
            await channel.get_partial_message(int(target)).edit(content=content, embed=embed)
        except (discord.Forbidden, discord.NotFound):
            # The channel route cannot reach this message (a DM of a user-installed app, or an
            # ephemeral reply): post it anew and keep editing that one.
            replacement = await channel.send(content=content or None, embed=embed)
            self._moved[message_id] = str(replacement.id)

    async def post_embed(self, embed: discord.Embed) -> str:
        if self._token_usable():
            try:
                sent = await self._followup.send(embed=embed, wait=True)
                return str(sent.id)
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        return await self.channel.post_embed(embed)

    async def edit_embed(self, message_id: str, embed: discord.Embed) -> None:
        await self._edit(message_id, embed=embed)

    async def private(self, text: str) -> None:
        """Only the asker sees it: the ephemeral deferred response, or an ephemeral followup (a public
        "thinking…" response is removed first, so nothing is left hanging in the channel)."""
        parts = split_text(text, MAX_CHARS)
        if not self._token_usable():
            log.warning("cannot reply privately on interaction %s: its token expired", self._interaction.id)
            return
        if not self._original_used and self._original_id is not None:
            if self._ephemeral:
                await self._interaction.edit_original_response(content=_content(parts.pop(0)))
            else:
                await self._interaction.delete_original_response()
            self._original_used = True
        for part in parts:
            await self._followup.send(content=_content(part), ephemeral=True, wait=True)

    async def notice(self, text: str) -> None:
        """Status lines go to the asker alone and leave the pending response where it is."""
        if self._token_usable():
            await self._followup.send(content=f"-# {text}", ephemeral=True, wait=True)

    async def typing(self) -> None:
        if self._original_used:  # before that, Discord shows the deferred "thinking…" state
            await self.channel.typing()

    async def delete_original(self) -> None:
        """Remove the "thinking…" response when the turn produced nothing (a duplicate event)."""
        if not self._original_used and self._original_id is not None:
            self._original_used = True
            await self._interaction.delete_original_response()
