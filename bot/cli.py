"""The `bot` command: `bot run`, `bot chat`, `bot report`, `bot audit`, `bot --help`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from adapters.console.adapter import ConsoleAdapter
from bot.app import Core, open_core
from bot.auditcli import add_audit_parser, print_audit
from bot.config import Settings, SettingsError, load_settings, log_format_hint
from bot.logs import say, setup_logging
from core.storage import StoreUnavailableError, describe_database

if TYPE_CHECKING:
    from bot.http import HttpServer
    from bot.metrics import Metrics
    from core.adapter import Adapter

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot",
        description="A self-hosted AI teammate for chat platforms. Settings: environment variables and .env.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
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
    add_audit_parser(commands)
    return parser


def package_version() -> str:
    """The installed teammate-bot version (pyproject.toml's, via the package metadata)."""
    from importlib import metadata

    try:
        return metadata.version("teammate-bot")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed: run `make install`)"


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
        say("config error: DISCORD_BOT_TOKEN is not set; add the bot token to .env", logging.ERROR)
        return EXIT_CONFIG
    try:
        application_id = await fetch_application_id(settings.discord)
    except InviteError as error:
        say(f"error: {error}", logging.ERROR)
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
    from bot.heap import freeze_start_up_heap
    from bot.http import HttpServer
    from bot.metrics import Metrics
    from bot.platforms import configured_adapters
    from bot.serve import register_readiness
    from core.adapter import AdapterContext

    async with open_core(settings) as core:
        http = HttpServer(settings.http_host, settings.http_port)
        metrics = Metrics()  # also the adapters' observer: platform 429s and failed replies
        context = AdapterContext(core.router, http, settings.offered_models, observer=metrics)
        adapters = configured_adapters(settings, context)
        if not adapters and not sys.stdin.isatty():
            # A service (container, systemd) with no platform would otherwise read EOF, exit and be
            # restarted in a loop: say what is missing instead.
            say(
                "config error: no chat platform is configured: set SLACK_BOT_TOKEN, TELEGRAM_BOT_TOKEN "
                "or DISCORD_BOT_TOKEN (or use `bot chat` for the console)",
                logging.ERROR,
            )
            return EXIT_CONFIG
        # The provider SDKs, in a worker thread (see core/providers/pool.py), then the heap they leave.
        warm_up = partial(core.pool.warm_up, then=freeze_start_up_heap)
        if not adapters:
            warm_up()
            # Nothing but an LLM key, in a terminal: let a newcomer talk to the agent at once.
            say(
                "No chat platform is configured (SLACK_BOT_TOKEN, TELEGRAM_BOT_TOKEN, DISCORD_BOT_TOKEN); "
                "opening the console chat."
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
        _offer_post_message(settings, core, adapters)
        stop = _stop_on_sigterm()
        metrics.instrument(core.router)
        http.add_route("GET", "/metrics", metrics.handler)
        register_readiness(http, core.store, adapters, core.router, core.pool)
        # Before the banner and the seconds of SDK imports: a port in use is a config error, at once.
        await http.start()
        warm_up()
        try:
            await _serve(settings, core, adapters, http, stop, metrics)
        finally:
            await http.stop()  # serve stops it too; this covers a failure before serve runs
    return 0


def _offer_post_message(settings: Settings, core: Core, adapters: list[Adapter]) -> None:
    """`post_message` posts through the adapters of `bot run` (the console has no other channel)."""
    from bot.destinations import Posters, allowed_channels
    from core.tools.builtins import post_message_tool

    posters = Posters()
    posters.add_adapters(adapters)
    core.agent.tools.register(post_message_tool(posters, allowed_channels(settings.allowed_channels)))


async def _serve(
    settings: Settings,
    core: Core,
    adapters: list[Adapter],
    http: HttpServer,
    stop: asyncio.Event,
    metrics: Metrics,
) -> None:
    from bot.scheduler import ReportConfig, ReportScheduler, report_destinations
    from bot.serve import serve

    names = ", ".join(adapter.name for adapter in adapters)
    data = describe_database(settings.database_url)
    say(f"Serving {names}; HTTP on {http.host}:{http.port}; data in {data}.")
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
            observer=metrics,  # adapter restarts and up/down on /metrics
        )
    except asyncio.CancelledError:
        say("Shutting down.")


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
        setup_logging("INFO", [], log_format_hint())  # JSON config errors under LOG_FORMAT=json too
        return _config_error(error)
    quiet = (args.command == "chat" and not args.verbose) or args.command in ("report", "audit")
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
        if args.command == "audit":
            return asyncio.run(print_audit(settings, args.since, args.platform, args.limit, sys.stdout))
        return asyncio.run(_run(settings))
    except KeyboardInterrupt:
        return 130
    except SettingsError as error:  # found only when starting: a port in use, say
        return _config_error(error)
    except StoreUnavailableError as error:
        say(f"error: {error}", logging.ERROR)
        return 1
    except BaseExceptionGroup as group:  # a task group that ended on a config error
        found, rest = group.split(SettingsError)
        if found is None or rest is not None:
            raise
        return _config_error(SettingsError(_lines_of(found)))


def _lines_of(error: BaseException) -> list[str]:
    if isinstance(error, BaseExceptionGroup):
        return [line for inner in error.exceptions for line in _lines_of(inner)]
    return error.lines if isinstance(error, SettingsError) else []


def _config_error(error: SettingsError) -> int:
    for line in error.lines:
        say(f"config error: {line}", logging.ERROR)
    return EXIT_CONFIG
