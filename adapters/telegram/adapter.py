"""The Telegram adapter: python-telegram-bot `Application`, long polling or a webhook on the bot's server.

Every update is handled in its own task (handler `block=False`), so one long answer never holds up
other chats; ordering within one conversation is the core's job. Outgoing messages go through PTB's
rate limiter (see limiter.py), which keeps the bot inside Telegram's flood limits and waits out 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiohttp import web
from telegram import Bot, BotCommand, Message, Update
from telegram.error import Forbidden, InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, ExtBot, TypeHandler

from adapters.telegram.images import has_media, with_images
from adapters.telegram.inbound import PLATFORM, Addressed, BotIdentity, ReplyChains, Target, parse_update
from adapters.telegram.limiter import FloodLimiter
from adapters.telegram.outbox import SPLIT_CHARS, Outbox
from adapters.telegram.report import send_announcement, send_report
from adapters.telegram.settings import TelegramSettings
from adapters.telegram.sink import DraftSupport
from adapters.telegram.turn import TurnRenderer
from core.adapter import PLATFORM_API, AdapterContext
from core.commands import COMMANDS, parse_command
from core.inbound import ConversationRef
from core.render import Capabilities
from core.reports.model import DailyReport

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message"]
_RECENT_EVENTS = 10_000
ALBUM_WAIT_S = 0.6  # how long the first photo of an album waits for the others


def file_url_for(api_url: str) -> str | None:
    """`http://host:8081/bot` -> `http://host:8081/file/bot` (a self-hosted Bot API server's layout)."""
    head, sep, tail = api_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep and "/" not in tail else None


def bot_commands() -> list[BotCommand]:
    return [BotCommand("start", "Say hello and show what I can do")] + [
        BotCommand(command.name, command.summary) for command in COMMANDS
    ]


class TelegramAdapter:
    name = PLATFORM

    def __init__(self, settings: TelegramSettings, context: AdapterContext) -> None:
        if settings.bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self._settings = settings
        self._context = context
        self.capabilities = Capabilities(
            max_message_chars=SPLIT_CHARS,
            edit_interval_s=settings.edit_interval,
            can_edit=settings.stream_style != "off",
            native_stream=settings.stream_style == "draft",
        )
        self._drafts = DraftSupport(settings.stream_style == "draft")
        self._limiter = FloodLimiter(
            overall_max_rate=settings.max_messages_per_second,
            group_max_rate=settings.group_messages_per_minute,
            max_retries=3,
            on_rate_limited=self._rate_limited,
        )
        self._chains = ReplyChains(context.router.links)
        self._recent: OrderedDict[str, None] = OrderedDict()  # cheap pre-check before the store's claim
        self._answering: set[asyncio.Task[Any]] = set()
        self._albums: dict[tuple[int, str], list[Update]] = {}  # albums being gathered
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._live_bot: Bot | None = None  # the running application's bot, once initialized
        self._me: BotIdentity | None = None
        self._ready = False
        if settings.webhook_url:
            # Routes must exist before the HTTP server starts, which happens before run().
            context.routes.add_route("POST", settings.webhook_path, self._webhook)

    # --- lifecycle ----------------------------------------------------------------------------------

    def _build(self) -> Application[Any, Any, Any, Any, Any, Any]:
        settings = self._settings
        assert settings.bot_token is not None
        builder = (
            ApplicationBuilder()
            .token(settings.bot_token.get_secret_value())
            .base_url(settings.api_url)
            .rate_limiter(self._limiter)
            .connection_pool_size(settings.connection_pool_size)
            .pool_timeout(30.0)
        )
        file_url = file_url_for(settings.api_url)
        if file_url:
            builder = builder.base_file_url(file_url)
        if settings.webhook_url:
            builder = builder.updater(None)  # updates arrive on our own HTTP route
        app = builder.build()
        app.add_handler(TypeHandler(Update, self._on_update, block=False))
        app.add_error_handler(self._on_error)
        return app

    async def run(self) -> None:
        app = self._app = self._build()
        try:
            await app.initialize()  # getMe
        except InvalidToken:
            # PTB's message quotes the token; never let it reach logs.
            raise RuntimeError("Telegram rejected TELEGRAM_BOT_TOKEN (getMe: unauthorized)") from None
        self._me = BotIdentity(app.bot.id, app.bot.username)
        self._live_bot = app.bot
        try:
            await self._register_commands()
            await app.start()
            await self._start_receiving()
            self._ready = True
            log.info("Telegram connected as @%s (%s)", self._me.username, self._mode)
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            self._ready = False
            self._live_bot = None
            await self._shutdown(app)

    @property
    def _mode(self) -> str:
        return "webhook" if self._settings.webhook_url else "long polling"

    async def _start_receiving(self) -> None:
        assert self._app is not None
        settings = self._settings
        if settings.webhook_url:
            secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
            await self._app.bot.set_webhook(
                settings.webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES
            )
        else:
            assert self._app.updater is not None
            await self._app.updater.start_polling(
                timeout=settings.poll_timeout, allowed_updates=ALLOWED_UPDATES
            )

    async def _register_commands(self) -> None:
        assert self._app is not None
        try:
            await self._app.bot.set_my_commands(bot_commands())
        except TelegramError as error:  # commands still work when typed; only the menu is missing
            log.warning("could not register bot commands: %s", error.message)

    async def _shutdown(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        # Answers in flight are cancelled first: Application.stop() would otherwise wait for them.
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()

    def ready(self) -> bool:
        return self._ready

    def _rate_limited(self, endpoint: str) -> None:
        self._context.observer.rate_limited(PLATFORM, endpoint)

    # --- inbound ------------------------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        secret = self._settings.webhook_secret.get_secret_value() if self._settings.webhook_secret else ""
        given = request.headers.get(SECRET_HEADER, "")
        if not secret or not hmac.compare_digest(given.encode(), secret.encode()):
            return web.Response(status=403, text="forbidden")
        if self._app is None or not self._app.running:
            return web.Response(status=503, text="not ready")  # Telegram redelivers later
        try:
            payload = await request.json()
            update = Update.de_json(payload, self._app.bot)
        except Exception:  # any malformed body: say so; a real update from Telegram always parses
            return web.Response(status=400, text="not a Telegram update")
        await self._app.update_queue.put(update)
        return web.Response(text="ok")

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if self._me is None:
            return
        task = asyncio.current_task()
        if task is not None:
            self._answering.add(task)
        try:
            updates = await self._album_of(update)
            if updates:
                await self._handle(updates)
        finally:
            if task is not None:
                self._answering.discard(task)

    async def _album_of(self, update: Update) -> list[Update]:
        """The updates to answer together: just this one, or a whole album (photos sent at once arrive
        as separate messages sharing a media_group_id; the first one's task waits for the rest and
        answers them all, the others return nothing)."""
        message = update.message
        if message is None or not message.media_group_id:
            return [update]
        key = (message.chat.id, message.media_group_id)
        album = self._albums.get(key)
        if album is not None:
            album.append(update)
            return []
        self._albums[key] = album = [update]
        try:
            await asyncio.sleep(ALBUM_WAIT_S)
        finally:
            self._albums.pop(key, None)
        return sorted(album, key=lambda u: u.message.message_id if u.message else 0)

    async def _handle(self, updates: list[Update]) -> None:
        assert self._me is not None
        # The album's caption (its text, mentions included) is on one of its messages.
        primary = next((u for u in updates if u.message and u.message.caption), updates[0])
        replied = primary.message.reply_to_message if primary.message else None
        if replied is not None:  # a reply may continue a conversation another replica (or run) began
            await self._chains.prefetch(replied.chat.id, replied.message_id)
        addressed = parse_update(primary, self._me, self._chains)
        if addressed is None or self._seen(addressed.message.event_id):
            return
        try:
            messages = [u.message for u in updates if u.message is not None]
            await self._answer(addressed, messages)
        except Forbidden:  # the user's choice, not a failure of ours or Telegram's: not counted
            log.info("chat %s blocked the bot or removed it; answer dropped", addressed.target.chat_id)
        except Exception as error:
            if isinstance(error, TelegramError):
                self._context.observer.platform_error(PLATFORM, PLATFORM_API)
            log.exception("answering an update in chat %s failed", addressed.target.chat_id)

    def _seen(self, event_id: str) -> bool:
        if event_id in self._recent:
            return True
        self._recent[event_id] = None
        if len(self._recent) > _RECENT_EVENTS:
            self._recent.popitem(last=False)
        return False

    async def _answer(self, addressed: Addressed, messages: list[Message]) -> None:
        assert self._app is not None
        message = addressed.message
        if any(has_media(m) for m in messages):
            message = await with_images(self._app.bot, messages, message)  # before the core sees it
        renderer = self._renderer(addressed.target, message.ref)
        thinking = bool(message.text.strip() or message.images) and parse_command(message.text) is None
        await renderer.render(self._context.router.handle(message), thinking=thinking)

    def _renderer(self, target: Target, ref: ConversationRef) -> TurnRenderer:
        assert self._app is not None
        on_sent = None
        if not target.private and target.thread_id is None:
            chat_id, root = target.chat_id, ref.thread
            on_sent = lambda message_id: self._chains.link(chat_id, message_id, root)  # noqa: E731
        outbox = Outbox(self._app.bot, target, on_sent)
        busy = lambda: self._limiter.would_wait(target.chat_id)  # noqa: E731
        caps = self._capabilities_for(target)
        return TurnRenderer(outbox, self._settings.stream_style, caps, self._drafts, busy)

    def _capabilities_for(self, target: Target) -> Capabilities:
        settings = self._settings
        if target.private and settings.stream_style == "draft" and self._drafts.available:
            return replace(self.capabilities, edit_interval_s=settings.draft_interval)
        if not target.private:
            return replace(self.capabilities, edit_interval_s=settings.group_edit_interval)
        return self.capabilities

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.warning("Telegram error: %s", context.error)

    # --- outbound, outside a turn -------------------------------------------------------------------

    async def post_notice(self, ref: ConversationRef, text: str) -> None:
        assert self._app is not None, "post_notice before run()"
        thread, topic, reply_to = ref.thread, None, None
        if thread.startswith("topic:"):
            topic = int(thread.removeprefix("topic:"))
        elif thread.isdigit():
            reply_to = int(thread)  # the message that started the reply chain
        target = Target(int(ref.channel), topic, reply_to, private=int(ref.channel) > 0)
        await Outbox(self._app.bot, target).send(text)

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        async with self._outbound() as bot:
            await send_report(bot, destination, report, chart_png)

    async def post_announcement(self, destination: str, text: str) -> None:
        async with self._outbound() as bot:
            await send_announcement(bot, destination, text)

    @contextlib.asynccontextmanager
    async def _outbound(self) -> AsyncIterator[Bot]:
        """The running application's bot; when the adapter is not running (`bot report --post`, or a
        catch-up report before run() connected), a short-lived send-only bot. It never polls, so it
        cannot take updates away from a bot process serving the same token."""
        if self._live_bot is not None:
            yield self._live_bot
            return
        settings = self._settings
        assert settings.bot_token is not None
        bot = ExtBot(
            settings.bot_token.get_secret_value(),
            base_url=settings.api_url,
            base_file_url=file_url_for(settings.api_url) or "https://api.telegram.org/file/bot",
            rate_limiter=FloodLimiter(
                overall_max_rate=settings.max_messages_per_second,
                group_max_rate=settings.group_messages_per_minute,
                max_retries=3,
                on_rate_limited=self._rate_limited,
            ),
        )
        try:
            await bot.initialize()  # getMe
        except InvalidToken:
            raise RuntimeError("Telegram rejected TELEGRAM_BOT_TOKEN (getMe: unauthorized)") from None
        try:
            yield bot
        finally:
            await bot.shutdown()
