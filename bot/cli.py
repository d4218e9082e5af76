"""The `bot` command: `bot run`, `bot chat`, `bot --help`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from adapters.console.adapter import ConsoleAdapter
from bot.app import open_core
from bot.config import Settings, SettingsError, load_settings
from bot.logs import setup_logging
from core.storage import StoreUnavailableError, describe_database

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
    commands.add_parser("discord-invite", help="print the URL that adds the Discord bot to a server")
    report = commands.add_parser(
        "report", help="print or post the daily usage report for a day (default: yesterday)"
    )
    report.add_argument(
        "--date",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="the day, in REPORT_TIMEZONE (default: yesterday)",
    )
    mode = report.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print it as Markdown (the default)")
    mode.add_argument(
        "--post", action="store_true", help="post it to every configured REPORT_* destination now"
    )
    return parser


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


async def _report(settings: Settings, day: date | None, *, post: bool) -> int:
    from bot.reportcli import post_report, print_report

    if day is None:
        day = datetime.now(ZoneInfo(settings.report_timezone)).date() - timedelta(days=1)
    if post:
        return await post_report(settings, day)
    return await print_report(settings, day, sys.stdout)


async def _discord_invite(settings: Settings) -> int:
    from adapters.discord.invite import InviteError, fetch_application_id, invite_url

    if not settings.discord.enabled:
        print("config error: DISCORD_BOT_TOKEN is not set", file=sys.stderr)
        return EXIT_CONFIG
    try:
        application_id = await fetch_application_id(settings.discord)
    except InviteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(invite_url(application_id))
    return 0


async def _chat(settings: Settings, *, fresh: bool) -> int:
    async with open_core(settings) as core:
        core.pool.warm_up()  # the provider SDKs, in a worker thread (see core/providers/pool.py)
        console = ConsoleAdapter(
            core.router, stdin=sys.stdin, stdout=sys.stdout, stderr=sys.stderr, interactive=sys.stdin.isatty()
        )
        await console.run(fresh=fresh)
    return 0


async def _run(settings: Settings) -> int:
    from bot.http import HttpServer
    from bot.metrics import Metrics
    from bot.platforms import configured_adapters
    from bot.scheduler import ReportConfig, ReportScheduler, report_destinations
    from bot.serve import register_readiness, serve
    from core.adapter import AdapterContext

    async with open_core(settings) as core:
        http = HttpServer(settings.http_host, settings.http_port)
        metrics = Metrics()  # also the adapters' observer: platform 429s and failed replies
        context = AdapterContext(core.router, http, settings.offered_models, observer=metrics)
        adapters = configured_adapters(settings, context)
        if not adapters and not sys.stdin.isatty():
            # A service (container, systemd) with no platform would otherwise read EOF, exit and be
            # restarted in a loop: say what is missing instead.
            print(
                "config error: no chat platform is configured: set SLACK_BOT_TOKEN, TELEGRAM_BOT_TOKEN "
                "or DISCORD_BOT_TOKEN (or use `bot chat` for the console)",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        core.pool.warm_up()  # the provider SDKs, in a worker thread (see core/providers/pool.py)
        if not adapters:
            # Nothing but an LLM key, in a terminal: let a newcomer talk to the agent at once.
            print(
                "No chat platform is configured (SLACK_BOT_TOKEN, TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN); "
                "opening the console chat.",
                file=sys.stderr,
            )
            console = ConsoleAdapter(
                core.router,
                stdin=sys.stdin,
                stdout=sys.stdout,
                stderr=sys.stderr,
                interactive=sys.stdin.isatty(),
            )
            await console.run()
            return 0
        stop = _stop_on_sigterm()
        metrics.instrument(core.router)
        http.add_route("GET", "/metrics", metrics.handler)
        register_readiness(http, core.store, adapters, core.router, core.pool)
        names = ", ".join(adapter.name for adapter in adapters)
        print(
            f"Serving {names}; HTTP on {settings.http_host}:{settings.http_port};"
            f" data in {describe_database(settings.database_url)}.",
            file=sys.stderr,
        )
        destinations = report_destinations(settings, adapters)
        reports = ReportScheduler(core.store, core.prices, ReportConfig.from_settings(settings), destinations)
        if destinations:
            core.budget.on_warning(reports.announce)
        try:
            await serve(
                adapters,
                core.router,
                http,
                reports,
                stop=stop,
                grace_s=settings.bot_shutdown_grace,
                store=core.store,
            )
        except asyncio.CancelledError:
            print("Shutting down.", file=sys.stderr)
    return 0


def _stop_on_sigterm() -> asyncio.Event:
    """SIGTERM sets the returned event: `serve` stops taking new messages, lets running turns finish within
    BOT_SHUTDOWN_GRACE, then disconnects and `bot run` exits 0. A second SIGTERM cancels at once, like
    Ctrl-C."""
    stop = asyncio.Event()
    task = asyncio.current_task()

    def on_sigterm() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
    return stop


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        settings = load_settings()
    except SettingsError as error:
        return _config_error(error)
    quiet = (args.command == "chat" and not args.verbose) or args.command == "report"
    setup_logging(
        "WARNING" if quiet and settings.log_level in ("DEBUG", "INFO") else settings.log_level,
        settings.secrets(),
        settings.log_format,
    )
    try:
        if args.command == "chat":
            return asyncio.run(_chat(settings, fresh=args.new))
        if args.command == "discord-invite":
            return asyncio.run(_discord_invite(settings))
        if args.command == "report":
            return asyncio.run(_report(settings, args.date, post=args.post))
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return 130
    except SettingsError as error:  # e.g. an unusable DATABASE_URL, found when the store opens
        return _config_error(error)
    except StoreUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _config_error(error: SettingsError) -> int:
    for line in error.lines:
        print(f"config error: {line}", file=sys.stderr)
    return EXIT_CONFIG
