"""A local fake of Discord: the REST API routes the adapter uses (discord_rest.py) and a gateway websocket.

The real discord.py connects to it (tests point `Route.BASE` and `DiscordWebSocket.DEFAULT_GATEWAY` here,
through the adapter's DISCORD_API_URL / DISCORD_GATEWAY_URL settings). It speaks the real wire format:
HELLO -> IDENTIFY -> READY (+ GUILD_CREATE), heartbeats, RESUME with replay, dispatches; REST answers
with `Content-Type: application/json` exactly, Discord's error bodies, X-RateLimit-* headers and 429s
with `Via` and `retry_after` (what discord.py needs to retry them). Every REST call is recorded.

Test helpers create users, channels and events: `slash(...)` (also autocomplete), `user_message(...)`,
then inspect `messages_in(channel)`, `original(interaction)`, `followups(interaction)`, `calls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes import discord_wire as wire
from tests.fakes.discord_events import InteractionEvents
from tests.fakes.discord_files import FakeCdn
from tests.fakes.discord_interactions import Interaction
from tests.fakes.discord_rest import BOT_TOKEN, Call, FakeRestApi, ForcedFailure, Storm
from tests.fakes.discord_wire import snowflake
from tests.ports import serve_on_free_port

__all__ = ["BOT_TOKEN", "FakeDiscord", "Interaction"]


@dataclass
class Session:
    id: str
    intents: int
    ws: web.WebSocketResponse | None
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    shard: tuple[int, int] = (0, 1)  # (shard id, shard count) from IDENTIFY


class FakeDiscord(InteractionEvents, FakeRestApi):
    def __init__(self, *, guilds: int = 1, channels_per_guild: int = 1) -> None:
        self.port = 0
        self.application_id = snowflake()
        self.bot_user = wire.user(self.application_id, "teammate", bot=True)
        self.bot_id = self.application_id
        self.users: dict[int, dict[str, Any]] = {}
        self.roles: dict[int, list[int]] = {}  # user id -> role ids
        self.guilds: dict[int, dict[str, Any]] = {}
        self.unannounced: set[int] = set()  # guilds the gateway never describes (no GUILD_CREATE)
        self.channels: dict[int, dict[str, Any]] = {}
        self.messages: dict[int, dict[str, Any]] = {}
        self.threads_of: dict[int, int] = {}  # message id -> thread id
        self.interactions: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None = global) -> commands
        self.command_puts = 0
        self.calls: list[Call] = []
        self.limiter = wire.RateLimiter()
        self.tokens_expired = False
        self.replay_on_resume = 0  # also replay this many already-delivered events on RESUME
        self.sessions: dict[str, Session] = {}
        self.session: Session | None = None  # the latest session (of any shard)
        self.live: dict[tuple[int, int], Session] = {}  # shard -> the session that serves it now
        self.identified = asyncio.Event()
        self.on_content: Callable[[Interaction], None] | None = None
        self.no_attach: set[int] = set()  # channels where the bot lacks Attach Files
        self.uploads: dict[str, bytes] = {}  # attachment id -> uploaded bytes
        self.cdn = FakeCdn()  # files users attach (see `attachment`)
        self._failures: list[ForcedFailure] = []
        self._storms: list[Storm] = []
        self.hold: Callable[[str, str, Any], bool] | None = None
        self.held: list[Call] = []
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._routes = self._route_table()
        self.guild_id = 0
        self.channel_id = 0
        for g in range(guilds):
            guild_id = self.add_guild(f"guild-{g}")
            for c in range(channels_per_guild):
                channel_id = self.add_channel(guild_id, f"general-{c}")
                if not self.channel_id:
                    self.guild_id, self.channel_id = guild_id, channel_id
        self.forum_id = self.add_channel(self.guild_id, "forum", channel_type=15)
        self.alice = self.add_user("alice")

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        for prefix in ("/attachments", "/media/attachments"):
            app.router.add_get(prefix + "/{channel_id}/{attachment_id}/{filename}", self.cdn.serve)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        self.port = await serve_on_free_port(self._runner)
        self.cdn.base_url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for session in self.sessions.values():
            if session.ws is not None and not session.ws.closed:
                await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- world building ----------------------------------------------------------------------------

    def add_user(self, name: str, *, roles: tuple[int, ...] = (), bot: bool = False) -> int:
        user_id = snowflake()
        self.users[user_id] = wire.user(user_id, name, bot=bot)
        self.roles[user_id] = list(roles)
        return user_id

    def add_guild(self, name: str, *, announced: bool = True) -> int:
        """`announced=False`: a guild the gateway never describes (neither in READY nor GUILD_CREATE),
        as when Discord has not sent it yet; its events still carry its `guild_id`."""
        guild_id = snowflake()
        self.guilds[guild_id] = {"id": guild_id, "name": name, "roles": [wire.role(guild_id, "@everyone")]}
        if not announced:
            self.unannounced.add(guild_id)
        return guild_id

    def add_channel(self, guild_id: int, name: str, *, channel_type: int = 0) -> int:
        channel_id = snowflake()
        self.channels[channel_id] = wire.text_channel(channel_id, guild_id, name, channel_type)
        return channel_id

    def add_dm(self, user_id: int) -> int:
        channel_id = snowflake()
        self.channels[channel_id] = wire.dm_channel(channel_id, self.users[user_id])
        return channel_id

    def _guild_payload(self, guild_id: int) -> dict[str, Any]:
        info = self.guilds[guild_id]
        channels = [c for c in self.channels.values() if c.get("guild_id") == str(guild_id)]
        plain = [c for c in channels if c["type"] != 11]
        threads = [c for c in channels if c["type"] == 11]
        bot_member = wire.member(self.bot_user, [])
        return wire.guild(guild_id, info["name"], self.alice, plain, threads, info["roles"], bot_member)

    # --- test helpers: events ----------------------------------------------------------------------

    async def user_message(
        self,
        content: str,
        *,
        user: int | None = None,
        channel: int | None = None,
        mention_bot: bool = False,
        author_is_bot: bool = False,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A user (or another bot) posts a message; dispatched as MESSAGE_CREATE. `attachments` come
        from `attachment(...)`."""
        user_id = user or self.alice
        author = dict(self.users[user_id], bot=author_is_bot or self.users[user_id]["bot"])
        channel_payload = self.channels[channel or self.channel_id]
        guild_id = int(channel_payload["guild_id"]) if "guild_id" in channel_payload else None
        if mention_bot:
            content = f"<@{self.bot_id}> {content}"
        member = wire.member(author, self.roles[user_id]) if guild_id else None
        if member:
            member.pop("user")
        payload = wire.message(
            snowflake(),
            int(channel_payload["id"]),
            author,
            content,
            guild_id=guild_id,
            mentions=[self.bot_user] if mention_bot else [],
            author_member=member,
            attachments=attachments,
        )
        self.messages[int(payload["id"])] = payload
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    def attachment(
        self,
        filename: str,
        data: bytes,
        content_type: str | None = "image/png",
        *,
        channel: int | None = None,
    ) -> dict[str, Any]:
        """A file a user uploads with a message, served by the fake CDN at its signed URL."""
        return self.cdn.attachment(channel or self.channel_id, filename, data, content_type)

    async def dispatch(self, event: str, data: dict[str, Any], session: Session | None = None) -> None:
        """Send `event` to `session`, or to the session of the shard it belongs to: as Discord routes
        them, a guild's events go to shard (guild_id >> 22) % count, DMs to shard 0."""
        session = session or self._session_for(data)
        assert session is not None, "no gateway session"
        if not self._wants(session, event, data):
            return
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": self._visible(session, event, data)}
        session.events.append(frame)
        if session.ws is not None and not session.ws.closed:
            with contextlib.suppress(ConnectionError):  # else it is delivered at RESUME
                await session.ws.send_str(json.dumps(frame))

    def _session_for(self, data: dict[str, Any]) -> Session | None:
        guild = data.get("guild_id")
        for session in reversed(list(self.live.values())):
            shard_id, count = session.shard
            if shard_id == (int(guild) >> 22) % count if guild is not None else shard_id == 0:
                return session
        return self.session

    @staticmethod
    def shard_of(guild_id: int, count: int) -> int:
        return (guild_id >> 22) % count

    def _wants(self, session: Session, event: str, data: dict[str, Any]) -> bool:
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            intent = wire.INTENT_GUILD_MESSAGES if "guild_id" in data else wire.INTENT_DIRECT_MESSAGES
            return bool(session.intents & intent)
        if event.startswith(("THREAD_", "GUILD_", "CHANNEL_")):
            return bool(session.intents & wire.INTENT_GUILDS)
        return True

    def _visible(self, session: Session, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Without the MESSAGE_CONTENT intent Discord blanks content, except DMs, mentions, own messages."""
        if event != "MESSAGE_CREATE" or session.intents & wire.INTENT_MESSAGE_CONTENT:
            return data
        mentioned = any(m.get("id") == str(self.bot_id) for m in data.get("mentions", []))
        if "guild_id" not in data or mentioned or data.get("author", {}).get("id") == str(self.bot_id):
            return data
        return dict(data, content="", embeds=[], attachments=[])

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close the gateway socket as Discord does on a server-side reconnect; the client RESUMEs.
        With a code discord.py does not reconnect on (4010-4014, e.g. 4011 "sharding required") the
        client stops with ConnectionClosed."""
        assert self.session is not None and self.session.ws is not None
        self.identified.clear()
        await self.session.ws.close(code=code)

    # --- test helpers: inspection ------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Every interaction token is past its 15 minutes: webhook routes answer 401 50027."""
        self.tokens_expired = True

    def fail_next(
        self, method: str, path_pattern: str, *, status: int = 429, times: int = 1, retry_after: float = 0.05
    ) -> None:
        """The next `times` calls matching `path_pattern` fail with `status`: a 429 as Discord sends it
        (JSON body with `retry_after`, Retry-After + Via headers), anything else with an error body."""
        self._failures.append(ForcedFailure(method, re.compile(path_pattern), status, times, retry_after))

    def clear_failures(self) -> None:
        self._failures.clear()

    def storm(self, routes: Iterable[tuple[str, str]], seconds: float, *, retry_after: float = 1.0) -> None:
        """For the next `seconds`, every call matching one of `routes` ((method, path regex) pairs) is
        answered 429 as Discord sends it, with `retry_after` (counted in `received_429`)."""
        compiled = tuple((method, re.compile(pattern)) for method, pattern in routes)
        self._storms.append(Storm(compiled, time.monotonic() + seconds, retry_after))

    def release_held(self) -> None:
        """Calls caught by `hold` (a predicate on method, path and body; they hang without effect, e.g.
        until the bot waiting on them is killed) now fail with a 503, and so does any later one."""
        self._released.set()

    def calls_to(self, method: str, path_pattern: str) -> list[Call]:
        """Recorded calls of `method` whose path matches `path_pattern` (re.search), in order."""
        pattern = re.compile(path_pattern)
        return [c for c in self.calls if c.method == method and pattern.search(c.path)]

    def messages_in(self, channel_id: int, *, ephemeral: bool | None = False) -> list[dict[str, Any]]:
        found = [m for m in self.messages.values() if m["channel_id"] == str(channel_id)]
        if ephemeral is not None:
            found = [m for m in found if bool(m["flags"] & wire.FLAG_EPHEMERAL) == ephemeral]
        return found

    def bot_messages_in(self, channel_id: int, *, ephemeral: bool | None = False) -> list[dict[str, Any]]:
        return [
            m
            for m in self.messages_in(channel_id, ephemeral=ephemeral)
            if m["author"]["id"] == str(self.bot_id)
        ]

    def original(self, interaction: Interaction) -> dict[str, Any] | None:
        return self.messages.get(interaction.original_id or 0)

    def followups(self, interaction: Interaction) -> list[dict[str, Any]]:
        return [self.messages[i] for i in interaction.followup_ids if i in self.messages]

    def thread_of(self, message_id: int) -> int | None:
        return self.threads_of.get(message_id)

    def calls_for(self, owner: int | str, method: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.owner == str(owner) and (method is None or c.method == method)]

    @property
    def received_429(self) -> int:
        return self.limiter.received_429

    async def wait_for(self, predicate: Callable[[], bool], guard_s: float = 15.0) -> None:
        """Poll until `predicate()` holds; `guard_s` only stops a hung test (it is no assert on speed)."""
        deadline = time.monotonic() + guard_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            await asyncio.sleep(0.01)

    # --- gateway -----------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            payload = json.loads(frame.data)
            op = payload.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
            elif op == 2:
                await self._identify(ws, payload["d"])
            elif op == 6:
                await self._resume(ws, payload["d"])
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        if data.get("token") != BOT_TOKEN:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        shard_id, count = data.get("shard") or (0, 1)
        session = Session(secrets.token_hex(16), int(data.get("intents", 0)), ws, shard=(shard_id, count))
        self.sessions[session.id] = self.session = self.live[session.shard] = session
        guilds = [g for g in self._announced() if self.shard_of(g, count) == shard_id]
        ready = {
            "v": 10,
            "user": self.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if count > 1:
            ready["shard"] = [shard_id, count]
        await self.dispatch("READY", ready, session)
        for guild_id in guilds:
            await self.dispatch("GUILD_CREATE", self._guild_payload(guild_id), session)
        self.identified.set()

    def _announced(self) -> list[int]:
        return [g for g in self.guilds if g not in self.unannounced]

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        session = self.sessions.get(data.get("session_id", ""))
        if session is None or data.get("token") != BOT_TOKEN:
            await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
            return
        session.ws = ws
        self.session = self.live[session.shard] = session
        seen = int(data.get("seq") or 0) - self.replay_on_resume
        for frame in session.events:
            if frame["s"] > seen:
                await ws.send_str(json.dumps(frame))
        session.seq += 1
        resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}
        session.events.append(resumed)
        await ws.send_str(json.dumps(resumed))
        self.identified.set()
