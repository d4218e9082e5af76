"""Button presses on Discord: MESSAGE_COMPONENT interactions -> the core's `Click`.

Discord wants an answer to the interaction within 3 seconds, so the press is acknowledged first with
DEFERRED_UPDATE_MESSAGE (type 6: the message stays as it is, nothing new appears), then handed to
`Router.click`, which edits the card or starts the regenerated answer itself through `surface_for`.
What the router has to tell the presser goes out as an ephemeral followup (flags 64): only they see
it. Presses are recognised by the button's custom_id (the core's action text), not by a discord.ui
view held in memory, so a button works after a restart and on any replica.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import discord

from adapters.discord.format import to_discord
from adapters.discord.inbound import RecentIds, place_of, sender_of
from adapters.discord.surfaces import MAX_CHARS
from core.actions import Click
from core.router import Router
from core.surface import SurfaceFor

log = logging.getLogger(__name__)

ALREADY_ACKNOWLEDGED = 40060
UNKNOWN_INTERACTION = 10062  # expired (past 3 s) or never existed
MAX_DETAIL = 200


def click_of(interaction: discord.Interaction) -> Click | None:
    """The press as the core takes it: the conversation like an inbound message in that channel,
    thread or DM, the presser (with their roles), the interaction id, the message id as the surfaces
    return it. None for a payload that lacks what a press needs (one warning; nothing is raised)."""
    try:
        data: Mapping[str, object] = interaction.data or {}
        action = data.get("custom_id")
        if not isinstance(action, str) or not action:
            raise ValueError("no custom_id")
        user = interaction.user
        if not isinstance(user, discord.User | discord.Member):
            raise ValueError("no user or member")
        place = place_of(interaction.channel, interaction.guild_id, interaction.channel_id or 0)
        message = interaction.message
        return Click(
            place.ref,
            sender_of(user),
            action,
            str(interaction.id),
            message_id=str(message.id) if message is not None else "",
            is_dm=place.is_dm,
        )
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        fields = ",".join(sorted(map(str, interaction.data or {})))[:MAX_DETAIL]
        log.warning(
            "Discord button press %s skipped: %s (%s; data fields: %s)",
            interaction.id,
            type(error).__name__,
            str(error)[:MAX_DETAIL],
            fields,
        )
        return None


class Clicks:
    def __init__(self, router: Router, surfaces: SurfaceFor) -> None:
        self._router = router
        self._surfaces = surfaces
        self._recent = RecentIds()

    async def press(self, interaction: discord.Interaction) -> None:
        """One component interaction: acknowledged, handed over, the reply shown to the presser."""
        if not self._recent.first_time(interaction.id) or not await self._acknowledge(interaction):
            return
        click = click_of(interaction)
        if click is None:
            return
        reply = await self._router.click(click, self._surfaces)
        if reply.text:
            await self._tell(interaction, reply.text)

    @staticmethod
    async def _acknowledge(interaction: discord.Interaction) -> bool:
        """Type 6 within the 3 seconds; False when Discord says another run of the bot took it (or it is
        too late: the press then shows "This interaction failed" and can be made again)."""
        try:
            await interaction.response.defer()  # a component: DEFERRED_UPDATE_MESSAGE
        except discord.InteractionResponded:
            return False
        except discord.HTTPException as error:
            if error.code in (ALREADY_ACKNOWLEDGED, UNKNOWN_INTERACTION):
                log.info("button press %s was already handled (%s)", interaction.id, error.code)
                return False
            raise
        return True

    @staticmethod
    async def _tell(interaction: discord.Interaction, text: str) -> None:
        content = to_discord(text)
        if len(content) > MAX_CHARS:
            content = content[: MAX_CHARS - 1] + "…"
        try:
            await interaction.followup.send(content=content, ephemeral=True, wait=True)
        except discord.HTTPException as error:  # the press counted; only its receipt is lost
            log.info("could not tell the presser of %s (%s %s)", interaction.id, error.status, error.code)
