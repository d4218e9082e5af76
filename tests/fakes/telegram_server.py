"""A local fake of the Telegram Bot API, speaking its real HTTP wire format on 127.0.0.1.

The real python-telegram-bot talks to it through `base_url`. It validates what the real API validates
for the methods the adapter uses (required fields, chats, reply targets, forum topics, HTML entity
parsing, the 4,096-character limit, draft rules), answers with the real error shapes
(`{"ok": false, "error_code": 400, "description": "Bad Request: ..."}`, 429 with
`parameters.retry_after`), and records every call. Updates reach the bot by long polling (getUpdates)
or, once setWebhook was called, by POSTing them to the webhook with the secret token header. Like
Telegram, the fake forgets an update once it is confirmed (a getUpdates with a higher offset, or a 2xx
answer to its webhook delivery); `on_confirm` hears about it at that moment, `polls` records the
offset of every getUpdates call and `served` the update ids each one returned.

    fake.script_failure("editMessageText", retry_after=1)       # the next edit gets a 429
    fake.script_failure("sendMessage", retry_after=1, times=5)  # a 429 storm: the next five sends
    fake.script_failure("sendMessage", status=500)              # a server error
    fake.script_failure("sendMessage", drop=True)               # the connection drops, no answer
    fake.stall("sendMessage")                                   # sends hang and never take effect
    fake.channel(-1009876543210, username="team_news")          # a channel the bot can post to
    mid = fake.user_says(fake.private_chat(42), "hello")        # an incoming message
    await fake.wait_for(lambda: fake.bot_messages(42))          # wait until the bot answered
    qid = fake.press(42, message_id, fake.user(42), label="👍")  # a press on a button of that message
    fake.callbacks.answers[qid]                                  # how the bot answered the press
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.telegram_files import (
    ApiError,
    FileStore,
    Upload,
    bad_request,
    image_size,
    uploaded,
    visible_caption,
)
from tests.fakes.telegram_keyboards import CallbackQueries, Keyboard, find_button, parse_keyboard

BOT_ID = 7_000_000_001
BOT_USERNAME = "teammate_bot"
TOKEN = "7000000001:AAFakeTokenForTests_abcdefghijklmnop"
MAX_TEXT = 4096

# Form fields the Bot API reads as plain strings; everything else is JSON-decoded, as PTB encodes it.
_STRING_FIELDS = {
    "text", "parse_mode", "action", "url", "secret_token", "language_code", "caption", "callback_query_id",
}  # fmt: skip
_ACTIONS = {"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice"}
_ALLOWED_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code", "pre",
    "blockquote", "tg-emoji",
}  # fmt: skip
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)((?:\s+[a-z-]+(?:=\"[^\"]*\")?)*)\s*>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")


def parse_html(markup: str) -> str:
    """Visible text of Telegram HTML, or ApiError as Telegram words it for malformed markup."""
    out: list[str] = []
    stack: list[str] = []
    at = 0
    while at < len(markup):
        char = markup[at]
        if char == "<":
            match = _TAG.match(markup, at)
            if match is None:
                raise bad_request(f"can't parse entities: Unexpected start tag at byte offset {at}")
            closing, name = match.group(1) == "/", match.group(2).lower()
            if name not in _ALLOWED_TAGS:
                raise bad_request(
                    f'can\'t parse entities: Unsupported start tag "{name}" at byte offset {at}'
                )
            if closing:
                if not stack or stack[-1] != name:
                    expected = f"</{stack[-1]}>" if stack else "nothing"
                    raise bad_request(
                        f'can\'t parse entities: Unmatched end tag at byte offset {at}, expected "{expected}"'
                    )
                stack.pop()
            else:
                if name == "a" and "href=" not in match.group(3):
                    raise bad_request("can't parse entities: Can't find href in a tag")
                stack.append(name)
            at = match.end()
        elif char == "&":
            match = _ENTITY.match(markup, at)
            if match is None:
                raise bad_request(
                    f"can't parse entities: Can't find end of the entity starting at byte offset {at}"
                )
            out.append(html.unescape(match.group(0)))
            at = match.end()
        elif char == ">":
            raise bad_request(f"can't parse entities: Unexpected end tag at byte offset {at}")
        else:
            out.append(char)
            at += 1
    if stack:
        raise bad_request(
            f"can't parse entities: Can't find end tag corresponding to start tag \"{stack[-1]}\""
        )
    return "".join(out)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    at: float


@dataclass
class BotMessage:
    chat_id: int
    message_id: int
    text: str  # visible text
    markup: str  # text as sent (HTML when parse_mode is HTML)
    parse_mode: str | None
    thread_id: int | None
    reply_to: int | None
    sent_at: float
    edits: int = 0
    photo: Upload | None = None  # sendPhoto: the uploaded file; `text`/`markup` hold the caption
    keyboard: Keyboard | None = None  # the inline keyboard it shows (reply_markup.inline_keyboard)

    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback_data) of every button the message shows, row by row."""
        return [(b["text"], str(b.get("callback_data", ""))) for row in self.keyboard or [] for b in row]


@dataclass
class Failure:
    method: str
    retry_after: float | None  # 429 with this retry_after; None: `status` with `description`
    description: str
    after: int  # let this many matching calls through first
    times: int = 1  # fail this many matching calls in a row
    status: int = 400
    drop: bool = False  # close the connection without an answer (the call takes no effect)


@dataclass
class Poll:
    offset: int | None  # the getUpdates call's offset (None: not given)
    at: float


class DropConnection(Exception):
    """Raised by a method handler: the fake closes the connection without answering."""


@dataclass
class Flood:
    """Token buckets like Telegram's flood control, for sendMessage/editMessageText."""

    per_chat_burst: float = 4
    per_chat_per_s: float = 1.0
    per_group_per_min: float = 20
    global_per_s: float = 30
    buckets: dict[Any, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, time)

    def take(self, key: Any, capacity: float, rate: float, now: float) -> bool:
        tokens, then = self.buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1, now)
        return True


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.me = {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Teammate",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.calls: list[Call] = []
        self.chats: dict[int, dict[str, Any]] = {}
        self.topics: dict[int, set[int]] = {}
        self.known_messages: dict[int, set[int]] = {}
        self.messages: dict[tuple[int, int], BotMessage] = {}
        self.drafts: list[tuple[int, int, str]] = []  # (chat, draft id, visible text)
        self.deleted: list[BotMessage] = []  # deleteMessage took these away
        self.commands: list[dict[str, Any]] = []  # the default scope's menu (everyone's)
        self.menus: dict[str, list[dict[str, Any]]] = {}  # every scope's menu: "default", "chat:42", ...
        self.callbacks = CallbackQueries()  # button presses handed to the bot, and their answers
        self.files = FileStore()  # what users sent: getFile and /file/bot<token>/<file_path>
        self.webhook: dict[str, Any] | None = None
        self.deliveries: list[int] = []  # HTTP status of every webhook delivery
        self.flood: Flood | None = None  # None: no flood control (tests inject 429s explicitly)
        self.port = 0
        self._failures: list[Failure] = []
        self._by_chat: dict[int, list[BotMessage]] = {}
        self._blocked: dict[tuple[str, Any], tuple[float, bool]] = {}  # (method, chat) -> until, whole s
        self.polls: list[Poll] = []  # every getUpdates call, as it arrived
        self.served: list[list[int]] = []  # the update ids each non-empty getUpdates answer returned
        # Called (and awaited) when updates are confirmed, with those updates, before Telegram would
        # forget them: by a getUpdates offset (before that call waits) or a webhook delivery's 2xx.
        self.on_confirm: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None
        # Webhook deliveries at once. Telegram's default is 40 (setWebhook max_connections); 1 keeps the
        # tests' order exact, the streams benchmark sets 40.
        self.webhook_connections = 1
        self.after_served: Callable[[list[int]], None] | None = None  # a batch's answer was written
        self.stalled: set[str] = set()  # methods whose calls hang and never take effect
        self.missing: set[str] = set()  # methods this server does not know (an older Bot API): 404
        self._pending: deque[dict[str, Any]] = deque()
        # The update types the bot asked for (getUpdates/setWebhook `allowed_updates`; None or empty:
        # Telegram's default, every common type); updates of other types are withheld, not delivered.
        self.allowed_updates: list[str] | None = None
        self.withheld: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._next_update = 100_000
        self._next_message: dict[int, int] = {}
        self._runner: web.AppRunner | None = None
        self._deliverer: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._dispatch)
        app.router.add_get("/file/bot{token}/{path:.+}", self._serve_file)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self._deliverer is not None:
            self._deliverer.cancel()
            await asyncio.gather(self._deliverer, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # --- the test's side: chats, incoming messages, scripted failures, assertions -------------------

    def user(self, user_id: int, name: str = "Alice") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": name, "username": name.lower()}

    def private_chat(self, user_id: int, name: str = "Alice") -> dict[str, Any]:
        chat = {"id": user_id, "type": "private", "first_name": name, "username": name.lower()}
        self.chats[user_id] = chat
        return chat

    def channel(self, chat_id: int, title: str = "News", *, username: str | None = None) -> dict[str, Any]:
        """A channel (the bot is one of its admins); `@username` works as its chat_id when public."""
        chat: dict[str, Any] = {"id": chat_id, "type": "channel", "title": title}
        if username:
            chat["username"] = username
        self.chats[chat_id] = chat
        return chat

    def remove_bot(self, chat_id: int) -> None:
        """The bot was removed from the chat: further sends get 403 Forbidden."""
        self.chats[chat_id]["_bot_removed"] = True

    def group(self, chat_id: int, title: str = "Team", *, forum: bool = False) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": "supergroup", "title": title}
        if forum:
            chat["is_forum"] = True
            self.topics.setdefault(chat_id, set())
        self.chats[chat_id] = chat
        return chat

    def open_topic(self, chat: dict[str, Any], creator: dict[str, Any], name: str = "Topic") -> int:
        """Create a forum topic; its id is the id of the service message that created it."""
        message_id = self._mint_message_id(chat["id"])
        self.topics.setdefault(chat["id"], set()).add(message_id)
        self.known_messages.setdefault(chat["id"], set()).add(message_id)
        return message_id

    def user_says(
        self,
        chat: dict[str, Any],
        text: str,
        *,
        sender: dict[str, Any] | None = None,
        reply_to: int | None = None,
        topic: int | None = None,
    ) -> int:
        """Deliver a new message from a user; returns its message id."""
        update, message_id = self.message_update(chat, text, sender=sender, reply_to=reply_to, topic=topic)
        self.push(update)
        return message_id

    def message_update(
        self,
        chat: dict[str, Any],
        text: str,
        *,
        sender: dict[str, Any] | None = None,
        reply_to: int | None = None,
        topic: int | None = None,
        media: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], int]:
        sender = sender or self.user(chat["id"] if chat["type"] == "private" else 1, "Alice")
        message_id = self._mint_message_id(chat["id"])
        self.known_messages.setdefault(chat["id"], set()).add(message_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": chat,
            "from": sender,
        }
        if media:  # a photo or document; its text is the caption
            message |= media
        if not media:
            message["text"] = text
        elif text:
            message["caption"] = text
        entities = _entities(text)
        if entities:
            message["caption_entities" if media else "entities"] = entities
        if topic is not None:
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
        replied = reply_to if reply_to is not None else topic  # in a topic, messages answer its creation
        if replied is not None:
            message["reply_to_message"] = self._message_json(chat["id"], replied)
        self._next_update += 1
        return {"update_id": self._next_update, "message": message}, message_id

    def user_sends_photo(
        self,
        chat: dict[str, Any],
        data: bytes,
        caption: str = "",
        *,
        album: str | None = None,
        sender: dict[str, Any] | None = None,
        reply_to: int | None = None,
    ) -> int:
        """A photo, as Telegram delivers it (several sizes; JPEG); `album` is its media_group_id."""
        media: dict[str, Any] = {"photo": self.files.photo_sizes(data, b"\xff\xd8\xff thumbnail")}
        if album:
            media["media_group_id"] = album
        update, message_id = self.message_update(chat, caption, sender=sender, reply_to=reply_to, media=media)
        self.push(update)
        return message_id

    def user_sends_document(
        self, chat: dict[str, Any], data: bytes, mime_type: str, file_name: str, caption: str = ""
    ) -> int:
        """A file sent as a document (uncompressed), with the type the sender's client declared."""
        media = {"document": self.files.document(data, mime_type, file_name)}
        update, message_id = self.message_update(chat, caption, media=media)
        self.push(update)
        return message_id

    def push(self, update: dict[str, Any]) -> None:
        """Queue a raw update (push the same one twice to simulate a redelivery). Like Telegram, an
        update of a type the bot did not ask for (`allowed_updates`) is never delivered."""
        kinds = set(update) - {"update_id"}
        if self.allowed_updates and not kinds & set(self.allowed_updates):
            self.withheld.append(update)
            return
        self._pending.append(update)
        self._arrived.set()

    def push_raw(self, payload: dict[str, Any]) -> int:
        """Queue an update with any content (e.g. one python-telegram-bot cannot parse); its update_id."""
        self._next_update += 1
        self.push({"update_id": self._next_update, **payload})
        return self._next_update

    def press(
        self,
        chat_id: int,
        message_id: int,
        user: dict[str, Any],
        *,
        label: str | None = None,
        action: str | None = None,
    ) -> str:
        """`user` presses a button the bot's message shows (by label, or a prefix of it, or by its
        callback_data), delivered as Telegram does: a callback_query update. Returns the query id."""
        message = self.messages.get((chat_id, message_id))
        if message is None:
            raise AssertionError(f"no bot message {message_id} in chat {chat_id}")
        button = find_button(message.keyboard, label, action)
        payload = self._message_json(chat_id, message_id)
        replied = message.reply_to if message.reply_to is not None else message.thread_id
        if replied is not None:  # one level deep, as Telegram nests it
            payload["reply_to_message"] = self._message_json(chat_id, replied)
        return self._push_press(user, payload, str(button["callback_data"]), chat_id)

    def press_gone(self, chat_id: int, message_id: int, user: dict[str, Any], data: str) -> str:
        """A press on a message Telegram no longer gives bots (deleted, too old): `date` 0, nothing else."""
        chat = {k: v for k, v in self.chats[chat_id].items() if not k.startswith("_")}
        return self._push_press(user, {"chat": chat, "message_id": message_id, "date": 0}, data, chat_id)

    def _push_press(self, user: dict[str, Any], message: dict[str, Any], data: str, chat_id: int) -> str:
        payload = self.callbacks.update(user, message, data, chat_id)
        self.push_raw(payload)
        return str(payload["callback_query"]["id"])

    def script_failure(
        self,
        method: str,
        *,
        retry_after: float | None = 1,
        description: str = "",
        after: int = 0,
        times: int = 1,
        status: int = 400,
        drop: bool = False,
    ) -> None:
        """The next `times` `method` calls (after `after` successful ones) fail: a 429 with retry_after
        (Telegram sends whole seconds; a fraction keeps a test fast), else `status` with `description`
        (400 Bad Request, 403, 500, ...), or with `drop` the connection closes without an answer.
        After a 429 the chat's calls of that kind are refused until the wait is over, as Telegram does."""
        self._failures.append(Failure(method, retry_after, description, after, times, status, drop))

    def stall(self, *methods: str) -> None:
        """Calls to `methods` hang until the client gives up, and never take effect (undo: `stalled`)."""
        self.stalled.update(methods)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def bot_messages(self, chat_id: int) -> list[BotMessage]:
        return list(self._by_chat.get(chat_id, ()))  # in message id order

    def statuses(self, status: int) -> list[Call]:
        return [c for c in self.calls if c.status == status]

    async def wait_for(self, condition: Callable[[], Any], within: float = 10.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.01)

    # --- the bot's side: HTTP dispatch ------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await _read_params(request)
        if method in self.stalled:
            self.calls.append(Call(method, params, 0, time.monotonic()))
            await asyncio.Event().wait()  # until the client gives up or the fake stops
        try:
            status, body = await self._answer(request.match_info["token"], method, params)
        except DropConnection:
            self.calls.append(Call(method, params, 0, time.monotonic()))
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never written: the connection is gone
        if method != "getUpdates" or body.get("result"):
            self.calls.append(Call(method, params, status, time.monotonic()))
        response = web.json_response(body, status=status)
        if method == "getUpdates" and body.get("result"):
            ids = [update["update_id"] for update in body["result"] if isinstance(update, dict)]
            self.served.append(ids)
            if self.after_served is not None:
                await response.prepare(request)
                await response.write_eof()
                self.after_served(ids)
        return response

    async def _serve_file(self, request: web.Request) -> web.Response:
        """A file download, as https://api.telegram.org/file/bot<token>/<file_path> serves it."""
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        data = self.files.download(request.match_info["path"])
        if data is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _answer(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        handler = getattr(self, f"_m_{method}", None) if method not in self.missing else None
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        try:
            self._maybe_fail(method, params)
            return 200, {"ok": True, "result": await handler(params)}
        except ApiError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.code, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return error.code, body

    def _maybe_fail(self, method: str, params: dict[str, Any]) -> None:
        for failure in self._failures:
            if failure.method != method:
                continue
            if failure.after > 0:
                failure.after -= 1
                return
            failure.times -= 1
            if failure.times <= 0:
                self._failures.remove(failure)
            if failure.drop:
                raise DropConnection
            if failure.retry_after is None:
                if failure.status == 400:
                    raise bad_request(failure.description or "scripted failure")
                raise ApiError(failure.status, failure.description or "Internal Server Error")
            # Like Telegram, keep refusing this chat's calls of that kind until the wait is over.
            key = (method, params.get("chat_id"))
            whole = float(failure.retry_after).is_integer()
            self._blocked[key] = (time.monotonic() + failure.retry_after, whole)
            raise _too_many(failure.retry_after)
        until, whole = self._blocked.get((method, params.get("chat_id")), (0.0, True))
        left = until - time.monotonic()
        if left > 0:
            raise _too_many(max(1, math.ceil(left)) if whole else round(left, 3))
        if self.flood is not None and method in ("sendMessage", "editMessageText"):
            self._check_flood(params)

    def _check_flood(self, params: dict[str, Any]) -> None:
        assert self.flood is not None
        flood, now, chat = self.flood, time.monotonic(), _int(params.get("chat_id"))
        group = chat < 0
        ok = flood.take("global", flood.global_per_s, flood.global_per_s, now) and (
            flood.take(("group", chat), flood.per_group_per_min, flood.per_group_per_min / 60, now)
            if group
            else flood.take(("chat", chat), flood.per_chat_burst, flood.per_chat_per_s, now)
        )
        if not ok:
            raise _too_many(1 if not group else 3)

    # --- methods -------------------------------------------------------------------------------------

    async def _m_getMe(self, params: dict[str, Any]) -> Any:
        return self.me

    async def _m_getFile(self, params: dict[str, Any]) -> Any:
        return self.files.get_file(params)

    async def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    async def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url")
        if not url:
            raise bad_request("bad webhook: URL must not be empty")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise bad_request("bad webhook: secret token contains unallowed characters")
        self.webhook = {"url": url, "secret_token": secret}
        self._remember_allowed(params)
        if params.get("drop_pending_updates"):
            self._pending.clear()
        if self._deliverer is None:
            self._deliverer = asyncio.create_task(self._deliver())
        self._arrived.set()
        return True

    def _remember_allowed(self, params: dict[str, Any]) -> None:
        """`allowed_updates` applies from this call on; not given, the previous setting stays."""
        allowed = params.get("allowed_updates")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise bad_request("can't parse allowed updates JSON array")
            self.allowed_updates = [str(kind) for kind in allowed]

    async def _m_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        url = self.webhook["url"] if self.webhook else ""
        return {"url": url, "has_custom_certificate": False, "pending_update_count": len(self._pending)}

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        given = params.get("offset")
        self.polls.append(Poll(None if given is None else _int(given), time.monotonic()))
        if self.webhook is not None:
            raise ApiError(
                409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook"
            )
        self._remember_allowed(params)
        offset = _int(params.get("offset", 0))
        confirmed = []
        while self._pending and self._pending[0]["update_id"] < offset:
            confirmed.append(self._pending.popleft())  # confirmed by the offset
        if confirmed and self.on_confirm is not None:
            await self.on_confirm(confirmed)
        if not self._pending:
            self._arrived.clear()
            timeout = float(params.get("timeout", 0) or 0)
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout)
            except TimeoutError:
                return []
        limit = _int(params.get("limit", 100)) or 100
        return list(self._pending)[:limit]

    async def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise bad_request("can't parse commands JSON object")
        for command in commands:
            if not _COMMAND.match(str(command.get("command", ""))):
                raise bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        scope = self._command_scope(params.get("scope"))
        self.menus[scope] = commands
        if scope == "default":
            self.commands = commands
        return True

    def _command_scope(self, scope: Any) -> str:
        """A BotCommandScope as a key: "default", "all_private_chats", ..., "chat:<id>" (the chat must
        exist for the bot: a user who never started a chat with it is "chat not found")."""
        if scope is None:
            return "default"
        if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
            raise bad_request("can't parse BotCommandScope JSON object")
        kind = str(scope["type"])
        if kind in ("default", "all_private_chats", "all_group_chats", "all_chat_administrators"):
            return kind
        if kind not in ("chat", "chat_administrators", "chat_member"):
            raise bad_request("wrong BotCommandScope type specified")
        chat = self._chat(scope)
        suffix = f":{_int(scope.get('user_id'))}" if kind == "chat_member" else ""
        return f"{kind}:{chat['id']}{suffix}"

    async def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        if params.get("action") not in _ACTIONS:
            raise bad_request("wrong parameter action in request")
        self._thread(chat, params)
        return True

    async def _m_sendMessageDraft(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        if chat["type"] != "private":
            raise bad_request("TEXTDRAFT_PEER_INVALID")
        draft_id = params.get("draft_id")
        if not isinstance(draft_id, int) or draft_id == 0:
            raise bad_request("invalid draft_id specified")
        text = _visible(params, allow_empty=True)
        self.drafts.append((chat["id"], draft_id, text))
        return True

    async def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        visible = _visible(params)
        keyboard = parse_keyboard(params)
        thread = self._thread(chat, params)
        reply_to = self._reply_target(chat, params)
        message_id = self._mint_message_id(chat["id"])
        self.known_messages.setdefault(chat["id"], set()).add(message_id)
        message = BotMessage(
            chat["id"],
            message_id,
            visible,
            str(params["text"]),
            params.get("parse_mode"),
            thread,
            reply_to,
            time.monotonic(),
            keyboard=keyboard,
        )
        self.messages[(chat["id"], message_id)] = message
        self._by_chat.setdefault(chat["id"], []).append(message)
        return self._message_json(chat["id"], message_id)

    async def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        photo = uploaded(params, "photo")
        caption = visible_caption(params, parse_html)
        thread = self._thread(chat, params)
        reply_to = self._reply_target(chat, params)
        message_id = self._mint_message_id(chat["id"])
        self.known_messages.setdefault(chat["id"], set()).add(message_id)
        message = BotMessage(
            chat["id"],
            message_id,
            caption,
            str(params.get("caption") or ""),
            params.get("parse_mode"),
            thread,
            reply_to,
            time.monotonic(),
            photo=photo,
        )
        self.messages[(chat["id"], message_id)] = message
        self._by_chat.setdefault(chat["id"], []).append(message)
        return self._message_json(chat["id"], message_id)

    async def _m_deleteMessage(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self.messages.pop((chat["id"], _int(params.get("message_id"))), None)
        if message is None:
            raise bad_request("message to delete not found")
        self._by_chat[chat["id"]].remove(message)
        self.deleted.append(message)
        return True

    async def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        chat = self._chat(params)
        message = self.messages.get((chat["id"], _int(params.get("message_id"))))
        if message is None:
            raise bad_request("message to edit not found")
        visible = _visible(params)
        keyboard = parse_keyboard(params)  # none given: the message's keyboard goes away
        same = str(params["text"]) == message.markup and params.get("parse_mode") == message.parse_mode
        if same and keyboard == message.keyboard:
            raise bad_request(
                "message is not modified: specified new message content and reply markup are exactly "
                "the same as a current content and reply markup of the message"
            )
        message.text, message.markup, message.parse_mode = (
            visible,
            str(params["text"]),
            params.get("parse_mode"),
        )
        message.keyboard = keyboard
        message.edits += 1
        return self._message_json(chat["id"], message.message_id)

    async def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        return self.callbacks.answer(params)

    # --- helpers -------------------------------------------------------------------------------------

    def _chat(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise bad_request("chat_id is empty")
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            named = [c for c in self.chats.values() if f"@{c.get('username')}".lower() == chat_id.lower()]
            chat = named[0] if named and named[0]["type"] != "private" else None
        else:
            chat = self.chats.get(_int(chat_id))
        if chat is None:
            raise bad_request("chat not found")
        if chat.get("_bot_removed"):
            where = "channel chat" if chat["type"] == "channel" else "group chat"
            raise ApiError(403, f"Forbidden: bot is not a member of the {where}")
        return {k: v for k, v in chat.items() if not k.startswith("_")}

    def _thread(self, chat: dict[str, Any], params: dict[str, Any]) -> int | None:
        thread = params.get("message_thread_id")
        if thread is None:
            return None
        if _int(thread) not in self.topics.get(chat["id"], set()):
            raise bad_request("message thread not found")
        return _int(thread)

    def _reply_target(self, chat: dict[str, Any], params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        if reply is None:
            return None
        if not isinstance(reply, dict) or "message_id" not in reply:
            raise bad_request("can't parse reply parameters JSON object")
        target = _int(reply["message_id"])
        if target not in self.known_messages.get(chat["id"], set()):
            if reply.get("allow_sending_without_reply"):
                return None
            raise bad_request("message to be replied not found")
        return target

    def _mint_message_id(self, chat_id: int) -> int:
        self._next_message[chat_id] = self._next_message.get(chat_id, 0) + 1
        return self._next_message[chat_id]

    def _message_json(self, chat_id: int, message_id: int) -> dict[str, Any]:
        chat = {k: v for k, v in self.chats[chat_id].items() if not k.startswith("_")}
        body: dict[str, Any] = {"message_id": message_id, "date": int(time.time()), "chat": chat}
        sent = self.messages.get((chat_id, message_id))
        if sent is not None and sent.photo is not None:
            width, height = image_size(sent.photo.data)
            size = {"file_id": f"photo-{chat_id}-{message_id}", "file_unique_id": f"p{message_id}"}
            body |= {"from": self.me, "photo": [size | {"width": width, "height": height}]}
            if sent.text:
                body["caption"] = sent.text
        elif sent is not None:
            body |= {"from": self.me, "text": sent.text}
            if sent.thread_id is not None:
                body |= {"message_thread_id": sent.thread_id, "is_topic_message": True}
            if sent.keyboard:
                body["reply_markup"] = {"inline_keyboard": sent.keyboard}
        elif message_id in self.topics.get(chat_id, set()):
            body |= {"from": self.user(1), "forum_topic_created": {"name": "Topic", "icon_color": 7322096}}
        else:
            body |= {"from": self.user(1), "text": "earlier message"}
        return body

    async def _deliver(self) -> None:
        """Webhook mode: POST queued updates in order, `webhook_connections` at a time; a non-2xx answer
        is retried, as Telegram does."""
        assert self._session is not None
        while True:
            await self._arrived.wait()
            while self._pending and self.webhook is not None:
                batch = list(itertools.islice(self._pending, max(1, self.webhook_connections)))
                delivered = await asyncio.gather(*(self._post_update(update) for update in batch))
                confirmed = [update for update, ok in zip(batch, delivered, strict=True) if ok]
                for update in confirmed:
                    self._pending.remove(update)
                if confirmed and self.on_confirm is not None:
                    await self.on_confirm(confirmed)
                if len(confirmed) < len(batch):
                    await asyncio.sleep(0.05)
            self._arrived.clear()

    async def _post_update(self, update: dict[str, Any]) -> bool:
        assert self._session is not None and self.webhook is not None
        headers = {"Content-Type": "application/json"}
        if self.webhook.get("secret_token"):
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
        try:
            async with self._session.post(self.webhook["url"], data=json.dumps(update), headers=headers) as r:
                self.deliveries.append(r.status)
                return 200 <= r.status < 300
        except aiohttp.ClientError:
            self.deliveries.append(0)
            return False


def _too_many(retry_after: float) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})


def _visible(params: dict[str, Any], *, allow_empty: bool = False) -> str:
    text = params.get("text")
    if text is None or text == "":
        if allow_empty:
            return ""
        raise bad_request("message text is empty")
    text = str(text)
    mode = params.get("parse_mode")
    visible = parse_html(text) if isinstance(mode, str) and mode.upper() == "HTML" else text
    if not visible.strip() and not allow_empty:
        raise bad_request("message text is empty")
    if len(visible) > MAX_TEXT:
        raise bad_request("message is too long" if "draft_id" not in params else "TEXTDRAFT_TOO_LONG")
    return visible


def _entities(text: str) -> list[dict[str, Any]]:
    """The entities Telegram attaches to a user's text: a leading bot command and @mentions."""
    entities: list[dict[str, Any]] = []
    command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
    if command:
        entities.append({"type": "bot_command", "offset": 0, "length": command.end()})
    for match in re.finditer(r"(?<![\w/])@[A-Za-z0-9_]{5,32}", text):
        entities.append({"type": "mention", "offset": match.start(), "length": match.end() - match.start()})
    return entities


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request("invalid integer value") from None


async def _read_params(request: web.Request) -> dict[str, Any]:
    """Parameters as the Bot API accepts them: query string, JSON body, urlencoded or multipart form."""
    params: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        if isinstance(body, dict):
            params |= body
        return params
    if request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                params[key] = Upload(value.filename, value.content_type, data)
            else:
                params[key] = value
    for key, value in list(params.items()):
        if key not in _STRING_FIELDS and isinstance(value, str):
            with contextlib.suppress(ValueError):  # else a plain string (e.g. an @username chat id)
                params[key] = json.loads(value)
    return params
