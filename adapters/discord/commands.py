"""The app command tree: `/ask`, `/chat`, and the core's commands, plus their sync to Discord.

The core's commands (core/commands.py COMMANDS) are exposed as they are defined there: each slash
command sends the text `/name args` through the router, which answers it. Sync is skipped when Discord
already has the same commands, which keeps restarts clear of the 200-creates-per-day limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import discord
from discord import app_commands

from adapters.discord.command_errors import command_error_text, log_command_error, tell_user
from adapters.discord.flows import Flows
from core.commands import COMMANDS

log = logging.getLogger(__name__)

PROMPT_LIMIT = 4000  # slash string options allow up to 6,000; the thread starter quotes the prompt
DESCRIPTION_LIMIT = 100
CHOICES_LIMIT = 25

Callback = Callable[[discord.Interaction], Coroutine[Any, Any, None]]
Track = Callable[[Coroutine[Any, Any, None]], Awaitable[None]]


def model_choices(offered: Sequence[str], current: str) -> list[app_commands.Choice[str]]:
    needle = current.strip().lower()
    names = [m for m in ("default", *offered) if needle in m.lower()]
    return [app_commands.Choice(name=m[:100], value=m[:100]) for m in names[:CHOICES_LIMIT]]


def option_text(value: object) -> str:
    """An option's value as text. discord.py passes values as Discord typed them, and a client with an
    outdated command list can send an integer or a boolean where a string is declared."""
    return "" if value is None else str(value)


def _core_command(flows: Flows, name: str, track: Track) -> Callback:
    async def callback(interaction: discord.Interaction) -> None:
        await track(flows.command(interaction, f"/{name}"))

    return callback


class Tree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        # The flows handle their own failures; this catches the library's (a command left over from an
        # older sync, options Discord sent under old names) and tells the user what is wrong.
        log_command_error(interaction, error)
        if interaction.type is discord.InteractionType.autocomplete:
            return  # nothing can be shown for a failed autocomplete
        await tell_user(interaction, command_error_text(interaction, error))

    async def _call(self, interaction: discord.Interaction) -> None:
        # discord.py reports only AppCommandError to on_error; anything else raised while it reads the
        # interaction (malformed options) would die in its task and leave the user with no answer.
        try:
            await super()._call(interaction)
        except app_commands.AppCommandError:
            raise
        except Exception as error:
            raise app_commands.AppCommandError(
                f"could not read the interaction ({type(error).__name__})"
            ) from error


def build_tree(
    client: discord.Client, flows: Flows, offered_models: Sequence[str], track: Track
) -> app_commands.CommandTree:
    """`track` runs each handler so the adapter can cancel handlers still running at shutdown."""
    tree = Tree(client)

    @tree.command(name="ask", description="Ask a question; the answer appears right here")
    @app_commands.describe(prompt="Your question or request")
    async def ask(interaction: discord.Interaction, prompt: app_commands.Range[str, 1, PROMPT_LIMIT]) -> None:
        await track(flows.ask(interaction, option_text(prompt)))

    @tree.command(name="chat", description="Start a conversation in a new thread")
    @app_commands.describe(prompt="What to talk about")
    async def chat(
        interaction: discord.Interaction, prompt: app_commands.Range[str, 1, PROMPT_LIMIT]
    ) -> None:
        await track(flows.chat(interaction, option_text(prompt)))

    summaries = {c.name: c.summary[:DESCRIPTION_LIMIT] for c in COMMANDS}

    @tree.command(name="model", description=summaries["model"])
    @app_commands.describe(name="provider:model to switch to, or 'default'; empty shows the current one")
    async def model(interaction: discord.Interaction, name: str | None = None) -> None:
        await track(flows.command(interaction, f"/model {option_text(name)}".rstrip()))

    @model.autocomplete("name")
    async def model_autocomplete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        return model_choices(offered_models, current)

    if "report" in summaries:

        @tree.command(name="report", description=summaries["report"])
        @app_commands.describe(date="A day as YYYY-MM-DD; empty for today")
        async def report(interaction: discord.Interaction, date: str | None = None) -> None:
            await track(flows.command(interaction, f"/report {option_text(date)}".rstrip()))

    for command in COMMANDS:
        if command.name not in ("model", "report"):
            tree.add_command(
                app_commands.Command(
                    name=command.name,
                    description=summaries[command.name],
                    callback=_core_command(flows, command.name, track),
                )
            )
    return tree


def _essence(commands: Sequence[Any]) -> list[tuple[Any, ...]]:
    """What users see of a command set; Discord adds ids, versions and defaults we do not compare."""

    def options(command: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (
                o.get("name"),
                o.get("description"),
                o.get("type"),
                bool(o.get("required")),
                bool(o.get("autocomplete")),
                o.get("min_length"),
                o.get("max_length"),
            )
            for o in command.get("options") or []
        )

    return sorted((c.get("name"), c.get("description"), c.get("type", 1), options(c)) for c in commands)


async def sync_commands(
    tree: app_commands.CommandTree, client: discord.Client, guild_ids: Sequence[int]
) -> None:
    """Guild commands update instantly (DISCORD_GUILD_IDS); global ones can take a while to appear."""
    app_id = client.application_id
    if app_id is None:
        log.warning("cannot sync slash commands: the application id is unknown")
        return
    targets: list[int | None] = list(guild_ids) or [None]
    for guild_id in targets:
        guild = discord.Object(guild_id) if guild_id else None
        if guild is not None:
            tree.copy_global_to(guild=guild)
        local = [command.to_dict(tree) for command in tree.get_commands(guild=guild)]
        try:
            remote = await (
                client.http.get_guild_commands(app_id, guild_id)
                if guild_id
                else client.http.get_global_commands(app_id)
            )
            where = f"guild {guild_id}" if guild_id else "all servers (global; may take a while to appear)"
            if _essence(remote) == _essence(local):
                log.info("slash commands already up to date in %s", where)
                continue
            await tree.sync(guild=guild)
            log.info("synced %d slash commands to %s", len(local), where)
        except discord.HTTPException as error:
            log.warning(
                "could not sync slash commands to %s (%s %s): was the bot invited with the "
                "applications.commands scope?",
                guild_id or "global",
                error.status,
                error.text,
            )
