"""The Telegram adapter: python-telegram-bot's Bot, long polling (poller.py) or a webhook on the bot's server.

Inbound is durable: an update is acknowledged to Telegram (the next getUpdates' offset, or the webhook's
HTTP 200) only once `Router.admit` stored its turn together with the event claim, so a crash at any
point leaves it either stored (answered by `Router.recover` after the restart) or still with Telegram
(delivered again). Each admitted message is then shown in its own task through a `TelegramSurface`,
so one long answer never holds up other chats; ordering within one conversation is the core's job.
Button presses (callback queries) are handled in their own tasks too (clicks.py) and are not durable:
a press lost to a crash leaves the button spinning, and the user presses again.
Outgoing messages go through the flood limiter (limiter.py), which keeps the bot inside Telegram's
flood limits; what to retry is the presenter's call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

from aiohttp import web
from telegram import CallbackQuery, Update
from telegram.error import BadRequest, InvalidToken
from telegram.ext import ExtBot
from telegram.request import HTTPXRequest

from adapters.telegram.clicks import handle_press
from adapters.telegram.errors import TelegramStartError
from adapters.telegram.images import has_media, with_images
from adapters.telegram.inbound import PLATFORM, BotIdentity, ReplyChains, Target, parse_update
from adapters.telegram.limiter import FloodLimiter
from adapters.telegram.menu import admin_chat_ids, register_menus
from adapters.telegram.poller import ALBUM_WAIT_S, BATCH_WAIT_S, Poller, in_album
from adapters.telegram.report import send_announcement, send_report
from adapters.telegram.request import AiohttpRequest
from adapters.telegram.settings import TelegramSettings
from adapters.telegram.surface import DraftSupport, TelegramSurface, capabilities_for
from core.adapter import PLATFORM_API, AdapterContext
from core.inbound import ConversationRef
from core.reports.model import DailyReport
from core.router import Admission

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]
_RECENT_EVENTS = 10_000
POOL_TIMEOUT_S = 30.0


def file_url_for(api_url: str) -> str | None:
    """`http://host:8081/bot` -> `http://host:8081/file/bot` (a self-hosted Bot API server's layout)."""
    head, sep, tail = api_url.rpartition("/bot")
    return f"{head}/file/bot{tail}" if sep and "/" not in tail else None


def _chat_of(update: Update) -> int | None:
    # PTB builds a message without its `chat` when the payload lacks one: never let it fail the batch.
    message = update.message
    chat = message.chat if message is not None else None
    return chat.id if chat is not None else None


class TelegramAdapter:
    name = PLATFORM

    def __init__(
        self, settings: TelegramSettings, context: AdapterContext, *, admins: Iterable[str] = ()
    ) -> None:
        """`admins`: the ADMIN_USERS entries, for the admins' command menu (access is the core's)."""
        if settings.bot_token is None:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self._settings = settings
        self._admin_chats = admin_chat_ids(admins)
        self._context = context
        self._router = context.router
        self._drafts = DraftSupport(settings.stream_style == "draft")
        self._limiter = self._new_limiter()
        self._chains = ReplyChains(context.router.links)
        self._recent: OrderedDict[str, None] = OrderedDict()  # cheap pre-check before the store's claim
        self._tasks: set[asyncio.Task[None]] = set()  # answers being shown, webhook albums
        self._albums: dict[tuple[int, str], list[Update]] = {}  # webhook albums being gathered
        self._bot: ExtBot[int] | None = None  # the running adapter's bot, once initialized
        self._me: BotIdentity | None = None
        self._ready = False
        if settings.webhook_url:
            # Routes must exist before the HTTP server starts, which happens before run().
            context.routes.add_route("POST", settings.webhook_path, self._webhook)

    # --- lifecycle ----------------------------------------------------------------------------------

    def _new_limiter(self) -> FloodLimiter:
        return FloodLimiter(
            overall_max_rate=self._settings.max_messages_per_second,
            group_max_rate=self._settings.group_messages_per_minute,
            on_rate_limited=self._rate_limited,
        )

    def _new_bot(self, limiter: FloodLimiter) -> ExtBot[int]:
        settings = self._settings
        assert settings.bot_token is not None
        return ExtBot(
            settings.bot_token.get_secret_value(),
            base_url=settings.api_url,
            base_file_url=file_url_for(settings.api_url) or "https://api.telegram.org/file/bot",
            # Every reply call on aiohttp (adapters/telegram/request.py); the one long poll stays on PTB's
            # own transport.
            request=AiohttpRequest(
                connection_pool_size=settings.connection_pool_size, pool_timeout=POOL_TIMEOUT_S
            ),
            get_updates_request=HTTPXRequest(connection_pool_size=1),
            rate_limiter=limiter,
        )

    async def run(self) -> None:
        bot = self._new_bot(self._limiter)
        try:
            await _initialized(bot)
            self._me = BotIdentity(bot.id, bot.username)
            self._bot = bot
            await register_menus(bot, self._admin_chats)
            if self._settings.webhook_url:
                await self._set_webhook(bot)
                self._connected()
                await asyncio.Event().wait()  # serve until cancelled
            else:
                await bot.delete_webhook()  # getUpdates fails while a webhook is set
                poller = Poller(
                    bot,
                    self._take,
                    timeout=self._settings.poll_timeout,
                    allowed_updates=ALLOWED_UPDATES,
                    accepting=lambda: self._router.accepting,
                )
                self._connected()
                await poller.run()
        finally:
            self._ready = False
            self._bot = None
            for task in list(self._tasks):  # answers in flight: a restart delivers them
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await bot.shutdown()

    def _connected(self) -> None:
        assert self._me is not None
        self._ready = True
        mode = "webhook" if self._settings.webhook_url else "long polling"
        log.info("Telegram connected as @%s (%s)", self._me.username, mode)

    async def _set_webhook(self, bot: ExtBot[int]) -> None:
        settings = self._settings
        assert settings.webhook_url is not None
        if settings.webhook_url.lower().startswith("http://"):
            log.warning(
                "TELEGRAM_WEBHOOK_URL is plain http://: Telegram's own servers only deliver to https:// "
                "URLs, and the secret token would travel unencrypted. Use an https:// URL (e.g. a TLS "
                "reverse proxy in front of the bot); http:// only works with a self-hosted Bot API server."
            )
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        try:
            await bot.set_webhook(settings.webhook_url, secret_token=secret, allowed_updates=ALLOWED_UPDATES)
        except BadRequest as error:  # the URL itself is refused: retrying cannot help
            raise TelegramStartError(
                f"Telegram refused TELEGRAM_WEBHOOK_URL ({error.message}); use a public https:// URL on "
                "port 443, 80, 88 or 8443, or unset it for long polling"
            ) from None

    def ready(self) -> bool:
        return self._ready

    def _rate_limited(self, endpoint: str) -> None:
        self._context.observer.rate_limited(PLATFORM, endpoint)

    # --- inbound: up to admission -------------------------------------------------------------------

    async def _webhook(self, request: web.Request) -> web.StreamResponse:
        secret = self._settings.webhook_secret.get_secret_value() if self._settings.webhook_secret else ""
        given = request.headers.get(SECRET_HEADER, "")
        # surrogateescape: a header with bytes that are not UTF-8 is simply wrong, not a server error.
        if not secret or not hmac.compare_digest(given.encode(errors="surrogateescape"), secret.encode()):
            return web.Response(status=403, text="forbidden")
        if self._bot is None or not self._ready or not self._router.accepting:
            return web.Response(status=503, text="not ready")  # Telegram delivers it again later
        try:
            payload = await request.json()
        except ValueError:
            return web.Response(status=400, text="not a Telegram update")
        if not isinstance(payload, dict) or not isinstance(payload.get("update_id"), int):
            return web.Response(status=400, text="not a Telegram update")
        try:
            update = Update.de_json(payload, self._bot)
        except Exception:  # redelivering it would not help: skip it
            log.warning("skipping update %s: python-telegram-bot cannot parse it", payload["update_id"])
            return web.Response(text="ok")
        if update.callback_query is not None:
            self._spawn(self._press(update.callback_query))
        elif in_album(update):
            await self._webhook_album(update)
        else:
            await self._bounded(self._intake([update]))
        return web.Response(text="ok")  # from here on Telegram forgets the update

    async def _webhook_album(self, update: Update) -> None:
        """Telegram delivers an album's photos one by one and waits for each answer, so they are
        acknowledged as they join the album; its first photo's request waits until the album is admitted."""
        assert update.message is not None and update.message.media_group_id
        key = (update.message.chat.id, update.message.media_group_id)
        album = self._albums.get(key)
        if album is not None:
            album.append(update)
            return
        self._albums[key] = album = [update]
        try:
            await asyncio.sleep(ALBUM_WAIT_S)
        finally:
            self._albums.pop(key, None)
        await self._bounded(self._intake(album))

    async def _bounded(self, work: Coroutine[Any, Any, None]) -> None:
        """Wait for `work` (an admission) at most BATCH_WAIT_S; it carries on in the background after."""
        task = self._spawn(work)
        done, _ = await asyncio.wait({task}, timeout=BATCH_WAIT_S)
        if task not in done:
            log.warning("an update was not admitted within %.0fs; acknowledging it anyway", BATCH_WAIT_S)

    async def _take(self, updates: list[Update]) -> None:
        """Admit a batch of polled updates: an album's photos together, each chat's messages in order,
        chats side by side. Button presses go on in their own tasks."""
        groups: dict[tuple[int | None, str], list[Update]] = {}
        for update in updates:
            if update.callback_query is not None:
                self._spawn(self._press(update.callback_query))
                continue
            message = update.message
            album = message.media_group_id if message is not None else None
            key = (_chat_of(update), album) if album else (_chat_of(update), f"update:{update.update_id}")
            groups.setdefault(key, []).append(update)
        chats: dict[int | None, list[list[Update]]] = {}
        for (chat, _), group in groups.items():
            chats.setdefault(chat, []).append(group)

        async def in_order(chat_groups: list[list[Update]]) -> None:
            for group in chat_groups:
                await self._intake(group)

        await asyncio.gather(*(in_order(chat_groups) for chat_groups in chats.values()))

    async def _intake(self, updates: list[Update]) -> None:
        """Parse one message (or album), fetch its images, admit it, and start showing the answer.
        Never raises: a failure is logged and the update counts as handled."""
        bot, me = self._bot, self._me
        if bot is None or me is None:
            return
        updates = sorted(updates, key=lambda u: u.message.message_id if u.message else 0)
        # The album's caption (its text, mentions included) is on one of its messages.
        primary = next((u for u in updates if u.message and u.message.caption), updates[0])
        try:
            replied = primary.message.reply_to_message if primary.message else None
            if replied is not None:  # a reply may continue a conversation another replica (or run) began
                await self._chains.prefetch(replied.chat.id, replied.message_id)
            addressed = parse_update(primary, me, self._chains)
            if addressed is None or self._seen(addressed.message.event_id):
                return
            message = addressed.message
            messages = [u.message for u in updates if u.message is not None]
            if any(has_media(m) for m in messages):
                message = await with_images(bot, messages, message)  # before the core sees it
            admission = await self._router.admit(message)
        except Exception:
            log.exception("handling update %s failed", primary.update_id)
            return
        if not admission.duplicate:
            self._spawn(self._present(admission, self._surface(addressed.target, message.ref)))

    async def _press(self, query: CallbackQuery) -> None:
        bot = self._bot
        if bot is not None:
            route = lambda click: self._router.click(click, self.surface_for)  # noqa: E731
            await handle_press(bot, query, self._chains, route)

    def _seen(self, event_id: str) -> bool:
        if event_id in self._recent:
            return True
        self._recent[event_id] = None
        if len(self._recent) > _RECENT_EVENTS:
            self._recent.popitem(last=False)
        return False

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- outbound: answers ----------------------------------------------------------------------------

    async def _present(self, admission: Admission, surface: TelegramSurface) -> None:
        try:
            outcome = await self._router.present(admission, surface)
        except Exception:
            log.exception("showing the answer in chat %s failed", surface.target.chat_id)
            return
        if outcome.delivered:
            return
        if surface.blocked:  # the user's choice, not a failure of ours or Telegram's: not counted
            log.info("chat %s blocked the bot or removed it; answer dropped", surface.target.chat_id)
        else:
            self._context.observer.platform_error(PLATFORM, PLATFORM_API)

    def _surface(self, target: Target, ref: ConversationRef) -> TelegramSurface:
        assert self._bot is not None
        on_sent = None
        if not target.private and target.thread_id is None:
            chat_id, root = target.chat_id, ref.thread
            on_sent = lambda message_id: self._chains.link(chat_id, message_id, root)  # noqa: E731
        return TelegramSurface(
            self._bot,
            target,
            capabilities_for(self._settings, target, self._drafts),
            drafts=self._drafts,
            on_sent=on_sent,
            busy=lambda: self._limiter.would_wait(target.chat_id),
        )

    def surface_for(self, ref: ConversationRef, reply_address: str) -> TelegramSurface:
        """The surface of a stored turn (after a restart): the target its `reply_address` names."""
        if self._bot is None:
            raise RuntimeError("the Telegram adapter is not connected")
        return self._surface(Target.from_address(reply_address, ref), ref)

    # --- outbound, outside a turn -------------------------------------------------------------------

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        async with self._outbound() as bot:
            await send_report(bot, destination, report, chart_png)

    async def post_announcement(self, destination: str, text: str) -> None:
        async with self._outbound() as bot:
            await send_announcement(bot, destination, text)

    @contextlib.asynccontextmanager
    async def _outbound(self) -> AsyncIterator[ExtBot[int]]:
        """The running adapter's bot; when the adapter is not running (`bot report --post`, or a
        catch-up report before run() connected), a short-lived send-only bot. It never polls, so it
        cannot take updates away from a bot process serving the same token."""
        if self._bot is not None:
            yield self._bot
            return
        bot = self._new_bot(self._new_limiter())
        await _initialized(bot)
        try:
            yield bot
        finally:
            await bot.shutdown()


async def _initialized(bot: ExtBot[int]) -> None:
    try:
        await bot.initialize()  # getMe
    except InvalidToken:
        # PTB's message quotes the token; never let it reach logs.
        raise TelegramStartError("Telegram rejected TELEGRAM_BOT_TOKEN (getMe: unauthorized)") from None
