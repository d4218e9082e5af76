"""The `bot` command: `bot run`, `bot chat`, `bot --help`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot.app import open_core
from bot.config import Settings, SettingsError, load_settings
from bot.logs import setup_logging

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot",
        description="A self-hosted AI teammate for chat platforms. Settings: environment variables and .env.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "run", help="start every adapter whose credentials are configured (the console chat if none is)"
    )
    chat = commands.add_parser(
        "chat", help="chat in the terminal; also reads piped stdin (echo hi | bot chat)"
    )
    chat.add_argument("--new", action="store_true", help="start a fresh conversation instead of continuing")
    chat.add_argument("--verbose", action="store_true", help="show INFO logs on stderr")
    return parser


async def _chat(settings: Settings, *, fresh: bool) -> int:
    from adapters.console.adapter import ConsoleAdapter

    async with open_core(settings) as core:
        console = ConsoleAdapter(
            core.router, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, interactive=sys.stdin.isatty()
        )
        await console.run(fresh=fresh)
    return 0


async def _run(settings: Settings) -> int:
    # Platform adapters (Slack, Discord, Telegram) plug in here as they are added; until one is
    # configured, `bot run` opens the console chat so a newcomer can talk to the agent at once.
    print("No chat platform is configured; opening the console chat.", file=sys.stderr)
    return await _chat(settings, fresh=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        settings = load_settings()
    except SettingsError as error:
        return _config_error(error)
    quiet = args.command == "chat" and not args.verbose
    setup_logging(
        "WARNING" if quiet and settings.log_level in ("DEBUG", "INFO") else settings.log_level,
        settings.secrets(),
    )
    try:
        if args.command == "chat":
            return asyncio.run(_chat(settings, fresh=args.new))
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return 130
    except SettingsError as error:  # e.g. an unusable DATABASE_URL, found when the store opens
        return _config_error(error)


def _config_error(error: SettingsError) -> int:
    for line in error.lines:
        print(f"config error: {line}", file=sys.stderr)
    return EXIT_CONFIG
