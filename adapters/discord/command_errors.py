"""What a user is told when discord.py cannot run a slash command, instead of "that command failed".

Most of these happen around a restart: Discord's clients keep the previous command list for a while,
so an interaction can name a command the bot no longer has, or carry options under old names. The
reply says what arrived, what the command takes, and what to do.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)

REFRESH_HINT = (
    "Discord may still be showing an old command list after my restart: it catches up within a few "
    "minutes, or reload Discord (Ctrl+R) and try again."
)
MAX_VALUE_CHARS = 40


def _name(interaction: discord.Interaction) -> str:
    data: Any = interaction.data or {}
    return str(data.get("name") or "that command")[:100]


def _sent_options(interaction: discord.Interaction) -> list[str]:
    data: Any = interaction.data or {}
    options = data.get("options") or []
    return [str(o.get("name"))[:50] for o in options if isinstance(o, dict)]


def _takes(command: Any) -> str:
    parameters = getattr(command, "parameters", None) or []
    if not parameters:
        return "no options"
    described = (f"{p.display_name} ({'required' if p.required else 'optional'})" for p in parameters)
    return "these options: " + ", ".join(described)


def _mismatch(interaction: discord.Interaction, error: app_commands.CommandSignatureMismatch) -> str:
    sent = _sent_options(interaction)
    arrived = f"with the options {', '.join(sent)}" if sent else "without options"
    name = _name(interaction)
    return f"/{name} arrived {arrived}, but it takes {_takes(error.command)}. {REFRESH_HINT}"


def _bad_value(interaction: discord.Interaction, error: app_commands.TransformerError) -> str:
    shown = repr(error.value)
    if len(shown) > MAX_VALUE_CHARS:
        shown = shown[: MAX_VALUE_CHARS - 1] + "…"
    return (
        f"/{_name(interaction)}: I could not use the value {shown} "
        f"(a {error.type.name} was expected). Please pick or type the value again."
    )


def command_error_text(interaction: discord.Interaction, error: app_commands.AppCommandError) -> str:
    """The reply for a command discord.py could not run, saying what went wrong and what to do."""
    if isinstance(error, app_commands.CommandNotFound):
        return f"I have no /{error.name} command (any more). {REFRESH_HINT}"
    if isinstance(error, app_commands.CommandSignatureMismatch):
        return _mismatch(interaction, error)
    if isinstance(error, app_commands.TransformerError):
        return _bad_value(interaction, error)
    if isinstance(error, app_commands.CheckFailure):
        return f"You cannot use /{_name(interaction)} here: {error}"
    return (
        f"Sorry, /{_name(interaction)} failed inside the bot (the error is in its log). Please try "
        "again; if it keeps failing, tell the bot's admin."
    )


def log_command_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """An outdated command list is expected around restarts (one line); anything else is a bug."""
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        log.warning("slash command /%s does not match the bot's commands: %s", _name(interaction), error)
    else:
        log.error("slash command /%s failed: %s", _name(interaction), error, exc_info=error)


async def tell_user(interaction: discord.Interaction, text: str) -> None:
    """Privately, as the response or (once acknowledged) as a followup; a failure is only logged."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True)
        else:
            await interaction.response.send_message(text, ephemeral=True)
    except discord.HTTPException:
        log.info("could not tell the user why /%s failed", _name(interaction), exc_info=True)
