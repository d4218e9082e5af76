"""An interaction's replies on Discord: the response to a slash command (deferred first), then
followups; channel messages once the interaction token is (nearly) dead.

An interaction's token dies after 15 minutes; the surface then carries on through normal channel
messages (editing its earlier messages through the channel route, or re-posting a part where that is
refused), so a long turn still finishes. Buttons ride along as in surfaces.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord
from discord.utils import MISSING

from adapters.discord.api import reply_call
from adapters.discord.components import ButtonRow, row_of, sendable
from adapters.discord.format import small_print, tool_embed
from adapters.discord.surfaces import (
    UNKNOWN_MESSAGE,
    Progress,
    discord_text,
    edit_or_replace,
    finished_embed,
)
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.surface import AnswerStream, Capabilities, DeliveryError, Note

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 15 * 60.0
TOKEN_MARGIN_S = 60.0  # stop using the token a minute early: a request in flight must not straddle it


def token_dead(error: discord.HTTPException) -> bool:
    """401 Invalid Webhook Token (50027) after 15 minutes; 404 Unknown Webhook (10015) once gone."""
    return (error.status == 401 and error.code == 50027) or (error.status == 404 and error.code == 10015)


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
        self._private = Progress()
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

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        return await reply_call("post", self._post(discord_text(text), row_of(buttons)))

    async def _post(self, content: str, view: ButtonRow | None) -> str:
        if self._token_usable():
            try:
                return await self._post_webhook(content, view)
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        if not self._original_used and self._original_id is not None:
            original = str(self._original_id)  # replace "thinking…" through the channel route
            replacement = await edit_or_replace(self._channel, original, content=content, view=view)
            if replacement is not None:
                self._moved[original] = replacement
            self._original_used = True
            return original
        return str((await self._channel.send(content=content, view=sendable(view))).id)

    async def _post_webhook(self, content: str, view: ButtonRow | None) -> str:
        if not self._original_used:
            message = await self._interaction.edit_original_response(content=content, view=view)
            self._original_used = True
            self._original_id = message.id
            return str(message.id)
        sent = await self._followup.send(content=content, view=sendable(view), wait=True)
        return str(sent.id)

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        await reply_call("edit", self._edit(message_id, content=discord_text(text), view=row_of(buttons)))

    async def _edit(
        self,
        message_id: str,
        *,
        content: str = MISSING,
        embed: discord.Embed = MISSING,
        view: ButtonRow | None = MISSING,
    ) -> None:
        """Edit through the token while it lives, else through the channel route."""
        target = self._moved.get(message_id, message_id)
        if target == message_id and self._token_usable():
            try:
                if target == str(self._original_id):
                    await self._interaction.edit_original_response(content=content, embed=embed, view=view)
                else:
                    await self._followup.edit_message(int(target), content=content, embed=embed, view=view)
                return
            except discord.HTTPException as error:
                if not token_dead(error):
                    raise
                self._expired = True
        replacement = await edit_or_replace(self._channel, target, content=content, embed=embed, view=view)
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
        await reply_call("tool", self._edit(message_id, embed=finished_embed(started, event)))

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
