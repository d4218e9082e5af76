"""The bot's invite URL (`bot discord-invite`, and logged once at start-up).

Permissions the adapter needs, and why (bit = Discord permission flag):

- View Channels (1 << 10): see the channels it is used in.
- Send Messages (1 << 11): answers in channels; messages after an interaction token expired.
- Embed Links (1 << 14): tool calls are shown as embeds.
- Attach Files (1 << 15): the daily report's chart image.
- Read Message History (1 << 16): reply to and open threads on existing messages.
- Create Public Threads (1 << 35): `/chat` and @mentions open a thread.
- Send Messages in Threads (1 << 38): answer inside those threads.

Sum: 309237763072. Scopes: `bot` (join the server) and `applications.commands` (slash commands).
"""

from __future__ import annotations

import aiohttp
import discord

from adapters.discord.settings import DiscordSettings

PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 35) | (1 << 38)
SCOPES = ("bot", "applications.commands")


class InviteError(Exception):
    """Why the application id could not be fetched; never contains the token."""


def invite_url(application_id: int) -> str:
    """discord.py builds it, so the URL follows Discord's format as the library tracks it."""
    return discord.utils.oauth_url(
        application_id, permissions=discord.Permissions(PERMISSIONS), scopes=SCOPES
    )


async def fetch_application_id(settings: DiscordSettings) -> int:
    """GET /oauth2/applications/@me with the bot token; the id is also the bot's client id."""
    if settings.bot_token is None:
        raise InviteError("DISCORD_BOT_TOKEN is not set")
    headers = {"Authorization": f"Bot {settings.bot_token.get_secret_value()}"}
    url = settings.api_url.rstrip("/") + "/oauth2/applications/@me"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
            session.get(url, headers=headers) as response,
        ):
            if response.status == 401:
                raise InviteError("Discord rejected DISCORD_BOT_TOKEN (401 Unauthorized)")
            if response.status != 200:
                raise InviteError(f"Discord answered {response.status} for the application lookup")
            data = await response.json(content_type=None)
    except aiohttp.ClientError as error:
        raise InviteError(f"could not reach {settings.api_url}: {type(error).__name__}") from None
    return int(data["id"])
