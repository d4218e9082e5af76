"""A local fake of Slack on 127.0.0.1: the Web API methods the adapter uses, a Socket Mode websocket and
signed Events API requests, in Slack's real wire formats.

Requests are checked the way Slack checks them (tokens, required fields, content limits, stream state)
and refused with Slack's error shapes (`{"ok": false, "error": "..."}`, 429 + Retry-After), so a test
fails when real Slack would refuse what the adapter sends. Every call is recorded for assertions:

    slack = FakeSlack(); await slack.start()
    event = slack.user_message("C1", "<@U0BOT> hi")          # a message a person posted
    await slack.push_event(mention(event))                     # over the Socket Mode websocket
    await slack.wait_for(lambda: slack.calls_to("chat.stopStream"))

Benchmarks can also make calls misbehave for a while: `storm(methods, seconds)` answers every call of
those methods 429 + Retry-After until the time is up, and `hold` (a predicate on method and arguments)
makes a matching call hang without effect until `release_held()` (a bot killed while waiting on it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web

from tests.fakes.slack_actions import APP_ID, BOT_ID, BOT_USER, TEAM, block_actions, form_body, post_form
from tests.fakes.slack_files import FileUploads
from tests.fakes.slack_validate import SlackError, check_blocks, check_chunks, check_content

BOT_TOKEN = "xoxb-fake-bot-token-000111222"
APP_TOKEN = "xapp-fake-app-token-000111222"
SIGNING_SECRET = "fake-signing-secret-000111222"
ALICE = "U0ALICE"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float  # time.perf_counter() when the request arrived
    status: int = 200
    error: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str = ""
    thread_ts: str | None = None
    bot: bool = False
    blocks: list[Any] | None = None
    streaming: bool = False
    stream_started: float = 0.0
    stopped: bool = False
    chunks: list[dict[str, Any]] = field(default_factory=list)
    edits: int = 0

    def as_history(self) -> dict[str, Any]:
        item: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user, "text": self.text}
        if self.thread_ts:
            item["thread_ts"] = self.thread_ts
        if self.bot:
            item["bot_id"] = BOT_ID
        return item


@dataclass
class Failure:
    error: str
    status: int
    retry_after: float
    times: int


@dataclass
class Storm:
    methods: frozenset[str]
    until: float  # time.monotonic()
    retry_after: float


class Bucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> float:
        """0 if allowed, else seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def sign(body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends with an Events API request: `v0=` HMAC-SHA256 of `v0:{ts}:{body}`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def mention(event: Mapping[str, Any]) -> dict[str, Any]:
    """The `app_mention` event Slack sends for a message that mentions the bot."""
    out = {k: v for k, v in event.items() if k not in ("channel_type",)}
    out["type"] = "app_mention"
    return out


class FakeSlack(FileUploads):
    def __init__(self, *, stream_ttl_s: float = 300.0) -> None:
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}  # "channel:ts" -> message
        self.ephemerals: list[dict[str, Any]] = []
        self.deleted: list[Message] = []
        self.responses: list[dict[str, Any]] = []  # posts to response_url
        self.acks: list[dict[str, Any]] = []
        self.rate_limited = 0
        self.stream_ttl_s = stream_ttl_s
        self.connections = 0
        self._failures: dict[str, list[Failure]] = {}
        self._storms: list[Storm] = []
        # Calls matching `hold` hang without effect until `release_held()`; `held` records them.
        self.hold: Callable[[str, Mapping[str, Any]], bool] | None = None
        self.held: list[Call] = []
        self._released = asyncio.Event()
        self._limits: dict[str, tuple[float, float, str]] = {}
        self._buckets: dict[str, Bucket] = {}
        self._ts = itertools.count(1)
        self._ws: web.WebSocketResponse | None = None
        self._ws_ready = asyncio.Event()
        self._acked: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.bot_token = BOT_TOKEN
        self.http = aiohttp.ClientSession()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{id}", self._respond)
        self._init_files(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self.http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # --- scripting ----------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        error: str = "ratelimited",
        *,
        status: int = 200,
        retry_after: float = 0,
        times: int = 1,
    ) -> None:
        """The next `times` calls of `method` fail: Slack's `{"ok": false, "error": ...}` with HTTP
        `status` (429 sends Retry-After: `retry_after` seconds, which may be fractional for quick tests;
        500 and the like are server errors)."""
        self._failures.setdefault(method, []).append(Failure(error, status, retry_after, times))

    def storm(self, methods: Iterable[str], seconds: float, *, retry_after: float = 1.0) -> None:
        """For the next `seconds`, every call of `methods` is answered 429 `ratelimited` with
        Retry-After: `retry_after` (counted in `rate_limited`)."""
        self._storms.append(Storm(frozenset(methods), time.monotonic() + seconds, retry_after))

    def release_held(self) -> None:
        """Let every held call (and any later one) fail with a 503, still without effect."""
        self._released.set()

    def rate_limit(self, method: str, per_second: float, burst: float, scope: str = "workspace") -> None:
        """Enforce a token bucket on `method` per workspace, channel or message ("ts")."""
        self._limits[method] = (per_second, burst, scope)

    def new_ts(self) -> str:
        return f"{1_700_000_000 + next(self._ts)}.000100"

    def user_message(
        self,
        channel: str,
        text: str,
        *,
        user: str = ALICE,
        thread_ts: str | None = None,
        bot: bool = False,
        files: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store a message a person (or another bot) posted; return its `message` event. `files` are
        file objects from `share_file`: the event is then a `file_share` message, as Slack sends it."""
        ts = self.new_ts()
        self.messages[f"{channel}:{ts}"] = Message(channel, ts, user, text, thread_ts, bot=bot)
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "team": TEAM,
            "event_ts": ts,
            "channel_type": "im" if channel.startswith("D") else "channel",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = self.messages[f"{channel}:{thread_ts}"].user
        if bot:
            event["bot_id"] = BOT_ID if user == BOT_USER else "B0OTHER"
        if files:
            event["subtype"] = "file_share"
            event["files"] = files
            event["upload"] = False
        return event

    @staticmethod
    def envelope(event: Mapping[str, Any], event_id: str | None = None) -> dict[str, Any]:
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    # --- inbound: Socket Mode -----------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        self.connections += 1
        hello = {
            "type": "hello",
            "num_connections": 1,
            "connection_info": {"app_id": APP_ID},
            "debug_info": {"host": "fake", "approximate_connection_time": 18060},
        }
        await ws.send_str(json.dumps(hello))
        self._ws_ready.set()
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                ack = json.loads(frame.data)
                self.acks.append(ack)
                future = self._acked.pop(ack.get("envelope_id", ""), None)
                if future is not None and not future.done():
                    future.set_result(ack)
        if self._ws is ws:
            self._ws_ready.clear()
        return ws

    async def _send_envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        retry_attempt: int = 0,
        accepts_response_payload: bool = False,
    ) -> dict[str, Any]:
        await asyncio.wait_for(self._ws_ready.wait(), 10)
        assert self._ws is not None
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acked[envelope_id] = future
        await self._ws.send_str(json.dumps(envelope))
        return await asyncio.wait_for(future, 10)  # Slack wants the ack within 3 s; tests allow slack

    async def push_event(
        self, event: Mapping[str, Any], *, event_id: str | None = None, retry_attempt: int = 0
    ) -> dict[str, Any]:
        """Deliver an event over the websocket; returns the app's ack."""
        return await self._send_envelope("events_api", self.envelope(event, event_id), retry_attempt)

    def command_payload(
        self, text: str, *, channel: str = "C0GENERAL", user: str = ALICE, command: str = "/ai"
    ) -> dict[str, str]:
        token = uuid.uuid4().hex[:8]
        return {
            "token": "legacy-verification-token",
            "team_id": TEAM,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user,
            "user_name": "alice",
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "response_url": f"http://127.0.0.1:{self.port}/respond/{token}",
            "trigger_id": f"trig.{token}",
        }

    async def push_command(self, text: str, **kwargs: Any) -> dict[str, Any]:
        payload = self.command_payload(text, **kwargs)
        return await self._send_envelope("slash_commands", payload, accepts_response_payload=True)

    def click_payload(
        self, channel: str, ts: str, value: str, *, user: str = ALICE, user_name: str = "alice"
    ) -> dict[str, Any]:
        """The block_actions payload of `user` pressing the button with `value` on the bot's message
        (it must show that button: see tests/fakes/slack_actions.py)."""
        return block_actions(
            self._message(channel, ts),
            value,
            user=user,
            user_name=user_name,
            port=self.port,
            action_ts=self.new_ts(),
        )

    async def push_click(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Deliver a press over the websocket (an `interactive` envelope); returns the app's ack."""
        return await self._send_envelope("interactive", dict(payload))

    async def post_click(
        self, url: str, payload: Mapping[str, Any], *, secret: str = SIGNING_SECRET
    ) -> tuple[int, str]:
        """Deliver a press to the Events API URL: a signed `payload=` form body."""
        body = form_body(payload)
        return await post_form(self.http, url, body, sign(body, secret))

    async def disconnect(self) -> None:
        """Ask the app to reconnect, as Slack does every few hours (`refresh_requested`)."""
        assert self._ws is not None
        self._ws_ready.clear()
        await self._ws.send_str(json.dumps({"type": "disconnect", "reason": "refresh_requested"}))

    # --- inbound: Events API over HTTP ----------------------------------------------------------

    async def post_event(
        self,
        url: str,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        secret: str = SIGNING_SECRET,
        timestamp: int | None = None,
        retry_num: int | None = None,
    ) -> tuple[int, str]:
        body = json.dumps(self.envelope(event, event_id))
        headers = {"Content-Type": "application/json", **sign(body, secret, timestamp)}
        if retry_num is not None:
            headers |= {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        async with self.http.post(url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def post_command(self, url: str, text: str, **kwargs: Any) -> tuple[int, str]:
        body = urlencode(self.command_payload(text, **kwargs))
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
        async with self.http.post(url, data=body, headers=headers) as response:
            return response.status, await response.text()

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.Response(text="ok")

    # --- Web API ----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(parse_qsl(await request.text()))
        call = Call(method, args, time.perf_counter())
        self.calls.append(call)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ") or args.get("token", "")
        try:
            self._check_token(method, token)
            self._stormed(method)
            self._throttle(method, args)
            self._scripted(method)
            if self.hold is not None and self.hold(method, args):
                self.held.append(call)
                await self._released.wait()
                raise SlackError("service_unavailable", status=503)
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise SlackError("unknown_method")
            body: dict[str, Any] = {"ok": True, **handler(args)}
        except SlackError as error:
            call.status, call.error = error.status, error.error
            headers = {"Retry-After": str(error.retry_after)} if error.status == 429 else {}
            if error.status == 429:
                self.rate_limited += 1
            return web.json_response(
                {"ok": False, "error": error.error}, status=error.status, headers=headers
            )
        return web.json_response(body)

    def _check_token(self, method: str, token: str) -> None:
        if not token:
            raise SlackError("not_authed")
        if token not in (BOT_TOKEN, APP_TOKEN):
            raise SlackError("invalid_auth")
        if (method == "apps.connections.open") != (token == APP_TOKEN):
            raise SlackError("not_allowed_token_type")

    def _throttle(self, method: str, args: Mapping[str, Any]) -> None:
        limit = self._limits.get(method)
        if limit is None:
            return
        rate, burst, scope = limit
        key = (
            method
            + ":"
            + {"channel": str(args.get("channel", "")), "ts": str(args.get("ts", ""))}.get(scope, "")
        )
        wait = self._buckets.setdefault(key, Bucket(rate, burst)).take()
        if wait:
            raise SlackError("ratelimited", status=429, retry_after=max(1, round(wait)))

    def _stormed(self, method: str) -> None:
        now = time.monotonic()
        for storm in self._storms:
            if method in storm.methods and now < storm.until:
                wait = storm.retry_after
                # Slack sends whole seconds: "1", not "1.0"
                raise SlackError(
                    "ratelimited", status=429, retry_after=int(wait) if wait.is_integer() else wait
                )

    def _scripted(self, method: str) -> None:
        queue = self._failures.get(method)
        if not queue:
            return
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        raise SlackError(failure.error, status=failure.status, retry_after=failure.retry_after)

    def _message(self, channel: str, ts: str) -> Message:
        message = self.messages.get(f"{channel}:{ts}")
        if message is None:
            raise SlackError("message_not_found")
        return message

    def _thread_exists(self, channel: str, thread_ts: Any) -> None:
        if thread_ts is not None and f"{channel}:{thread_ts}" not in self.messages:
            raise SlackError("thread_not_found")

    def _post(self, args: Mapping[str, Any], text: str, **extra: Any) -> Message:
        channel = _required(args, "channel", "channel_not_found")
        self._thread_exists(channel, args.get("thread_ts"))
        message = Message(channel, self.new_ts(), BOT_USER, text, args.get("thread_ts"), bot=True, **extra)
        self.messages[f"{channel}:{message.ts}"] = message
        return message

    def _m_auth_test(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "bot",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, args: Mapping[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/link?ticket={uuid.uuid4().hex}"}

    def _m_chat_postMessage(self, args: Mapping[str, Any]) -> dict[str, Any]:
        text = check_content(args)
        message = self._post(args, text, blocks=check_blocks(args.get("blocks")))
        return {"channel": message.channel, "ts": message.ts, "message": message.as_history()}

    def _m_chat_update(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._message(_required(args, "channel", "channel_not_found"), _required(args, "ts"))
        if not message.bot:
            raise SlackError("cant_update_message")
        if message.streaming and time.monotonic() - message.stream_started <= self.stream_ttl_s:
            raise SlackError("cant_update_message")  # a stream is stopped before it is rewritten
        message.streaming = False
        blocks = check_blocks(args.get("blocks"))
        if "blocks" not in args and "markdown_text" not in args:
            blocks = message.blocks  # Slack keeps a message's blocks (buttons too) unless given new ones
        message.text, message.blocks = check_content(args), blocks
        message.edits += 1
        return {"channel": message.channel, "ts": message.ts, "text": message.text}

    def _m_chat_delete(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        message = self._message(channel, _required(args, "ts"))
        if not message.bot:
            raise SlackError("cant_delete_message")
        del self.messages[f"{channel}:{message.ts}"]
        self.deleted.append(message)
        return {"channel": channel, "ts": message.ts}

    def _m_chat_postEphemeral(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _required(args, "channel", "channel_not_found")
        _required(args, "user", "user_not_in_channel")
        self._thread_exists(args["channel"], args.get("thread_ts"))
        self.ephemerals.append({**args, "text": check_content(args)})
        return {"message_ts": self.new_ts()}

    def _m_chat_startStream(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel", "channel_not_found")
        _required(args, "thread_ts")
        if not channel.startswith("D") and not (
            args.get("recipient_user_id") and args.get("recipient_team_id")
        ):
            raise SlackError("invalid_arguments")  # channel streams need the recipient user and team
        chunks = check_chunks(args)
        message = self._post(args, "", streaming=True, stream_started=time.monotonic())
        self._apply(message, chunks)
        return {"channel": channel, "ts": message.ts}

    def _streaming(self, args: Mapping[str, Any]) -> Message:
        message = self._message(_required(args, "channel", "channel_not_found"), _required(args, "ts"))
        expired = time.monotonic() - message.stream_started > self.stream_ttl_s
        if not message.streaming or message.stopped or expired:
            message.streaming = False
            raise SlackError("message_not_in_streaming_state")
        return message

    def _m_chat_appendStream(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._streaming(args)
        chunks = check_chunks(args)
        if not chunks:
            raise SlackError("no_text")
        self._apply(message, chunks)
        return {"channel": message.channel, "ts": message.ts}

    def _m_chat_stopStream(self, args: Mapping[str, Any]) -> dict[str, Any]:
        message = self._streaming(args)
        self._apply(message, check_chunks(args))
        message.blocks = check_blocks(args.get("blocks"))
        message.stopped, message.streaming = True, False
        return {"channel": message.channel, "ts": message.ts, "message": message.as_history()}

    @staticmethod
    def _apply(message: Message, chunks: list[dict[str, Any]]) -> None:
        for chunk in chunks:
            message.chunks.append(chunk)
            if chunk["type"] == "markdown_text":
                message.text += chunk["text"]

    def _m_assistant_threads_setStatus(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel = _required(args, "channel_id")
        self._thread_exists(channel, _required(args, "thread_ts"))
        if "status" not in args:
            raise SlackError("invalid_arguments")
        return {}

    def _m_assistant_threads_setSuggestedPrompts(self, args: Mapping[str, Any]) -> dict[str, Any]:
        _required(args, "channel_id")
        prompts = args.get("prompts")
        valid = (
            isinstance(prompts, list)
            and 1 <= len(prompts) <= 4
            and all(isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts)
        )
        if not valid:
            raise SlackError("invalid_arguments")
        return {}

    def _m_conversations_replies(self, args: Mapping[str, Any]) -> dict[str, Any]:
        channel, ts = _required(args, "channel", "channel_not_found"), _required(args, "ts")
        self._message(channel, ts)
        thread = [m for m in self.messages.values() if m.channel == channel and ts in (m.ts, m.thread_ts)]
        thread.sort(key=lambda m: float(m.ts))
        limit = int(args.get("limit") or 1000)
        return {"messages": [m.as_history() for m in thread[:limit]], "has_more": len(thread) > limit}

    # --- assertions -------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        found = [
            m
            for m in self.messages.values()
            if m.bot and m.channel == channel and (thread_ts is None or m.thread_ts == thread_ts)
        ]
        return sorted(found, key=lambda m: float(m.ts))

    def answer_messages(self, channel: str, thread_ts: str) -> list[Message]:
        """The bot's answer text messages in a thread (not tool or notice context lines)."""
        return [m for m in self.bot_messages(channel, thread_ts) if not _is_context(m)]

    def answer_text(self, channel: str, thread_ts: str) -> str:
        return "".join(m.text for m in self.answer_messages(channel, thread_ts))

    async def wait_for(self, predicate: Callable[[], Any], within: float = 60.0) -> Any:
        """Poll until `predicate()` holds; `within` only stops a hung test (it is no assert on speed,
        so it is generous: a loaded CI machine must not fail a correct test)."""
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {within}s; calls: {self.summary()}")
            await asyncio.sleep(0.01)

    def summary(self) -> list[str]:
        return [f"{c.method}{'!' + c.error if c.error else ''}" for c in self.calls[-40:]]


def _is_context(message: Message) -> bool:
    """A context line (tool call, notice, footer); a streamed answer with a footer under it is not."""
    blocks = message.blocks or []
    return bool(blocks) and not message.chunks and all(b.get("type") == "context" for b in blocks)


def _required(args: Mapping[str, Any], name: str, error: str = "invalid_arguments") -> str:
    value = args.get(name)
    if not value or not isinstance(value, str):
        raise SlackError(error)
    return value
