"""The fake Discord's REST API: the routes the adapter uses, with Discord's validation and errors.

Responses carry `Content-Type: application/json` exactly (discord.py parses nothing else as JSON),
X-RateLimit-* headers from per-route buckets, and 429s with `Via` and `retry_after` as the real API
sends them (discord.py treats a 429 without `Via` as a Cloudflare ban). Every call is recorded.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes import discord_components as components
from tests.fakes import discord_files
from tests.fakes import discord_wire as wire
from tests.fakes.discord_components import stored as components_stored
from tests.fakes.discord_interactions import Interaction, InteractionRoutes
from tests.fakes.discord_wire import ApiError, snowflake

BOT_TOKEN = "fake-discord-bot-token.secret"


@dataclass
class Call:
    method: str
    path: str
    body: Any
    status: int
    at: float
    owner: str  # interaction id for interaction/webhook routes, channel id for channel routes


@dataclass
class Storm:
    """Every call matching one of `routes` (method, path regex) is answered 429 until `until`."""

    routes: tuple[tuple[str, re.Pattern[str]], ...]
    until: float  # time.monotonic()
    retry_after: float

    def covers(self, method: str, path: str, now: float) -> bool:
        return now < self.until and any(m == method and p.search(path) for m, p in self.routes)


@dataclass
class ForcedFailure:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float
    body: dict[str, Any] | None = None


class FakeRestApi(InteractionRoutes):
    """REST half of FakeDiscord (which holds the state declared here and the gateway)."""

    application_id: int
    bot_id: int
    bot_user: dict[str, Any]
    users: dict[int, dict[str, Any]]
    channels: dict[int, dict[str, Any]]
    messages: dict[int, dict[str, Any]]
    threads_of: dict[int, int]
    interactions: dict[int, Interaction]
    by_token: dict[str, Interaction]
    commands: dict[int | None, list[dict[str, Any]]]
    command_puts: int
    calls: list[Call]
    limiter: wire.RateLimiter
    tokens_expired: bool
    alice: int
    on_content: Callable[[Interaction], None] | None
    session: Any  # the connected bot's gateway session, if any
    no_attach: set[int]  # channels where the bot lacks Attach Files
    uploads: dict[str, bytes]  # attachment id -> the uploaded bytes
    _failures: list[ForcedFailure]
    _storms: list[Storm]
    hold: Callable[[str, str, Any], bool] | None  # (method, path, body): hang without effect
    held: list[Call]  # the calls `hold` caught (status 0: never answered)
    _released: asyncio.Event
    _routes: list[tuple[str, re.Pattern[str], Callable[..., Awaitable[Any]]]]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Callable[..., Awaitable[Any]]]]:
        table: list[tuple[str, str, Callable[..., Awaitable[Any]]]] = [
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/oauth2/applications/@me", self._get_app),
            ("GET", r"/applications/(\d+)/commands", self._get_commands),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self._get_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_commands),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._webhook_edit),
            ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._webhook_delete),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._webhook_send),
            ("POST", r"/channels/(\d+)/messages", self._channel_send),
            ("GET", r"/channels/(\d+)/messages/(\d+)", self._channel_get),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._channel_edit),
            ("DELETE", r"/channels/(\d+)/messages/(\d+)", self._channel_delete),
            ("POST", r"/channels/(\d+)/typing", self._typing),
            ("POST", r"/channels/(\d+)/messages/(\d+)/threads", self._start_thread),
        ]
        return [(m, re.compile(p + "$"), h) for m, p, h in table]

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        owner, kind = self._owner_and_bucket(path)
        try:
            body = await discord_files.read_body(request)
        except ApiError as error:
            body, status, payload = None, error.status, error.body
            headers: dict[str, str] = {}
        else:
            status, payload, headers = await self._answer(request, path, body, owner, kind)
        self.calls.append(Call(request.method, path, body, status, time.perf_counter(), owner))
        if status == 204:
            return web.Response(status=204, headers=headers)
        # Exactly `application/json`: discord.py parses nothing else as JSON.
        headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=json.dumps(payload).encode(), headers=headers)

    async def _answer(
        self, request: web.Request, path: str, body: Any, owner: str, kind: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        now = time.monotonic()
        storm = next((s for s in self._storms if s.covers(request.method, path, now)), None)
        if storm is not None:
            self.limiter.received_429 += 1
            return 429, wire.rate_limited_body(storm.retry_after, False), _limited(storm.retry_after)
        if self.hold is not None and self.hold(request.method, path, body):
            self.held.append(Call(request.method, path, body, 0, time.perf_counter(), owner))
            await self._released.wait()
            return 503, {"message": "503: Service Unavailable", "code": 0}, {}
        forced = self._forced(request.method, path)
        if forced is not None:
            if forced.status == 429:
                self.limiter.received_429 += 1
                return 429, wire.rate_limited_body(forced.retry_after, False), _limited(forced.retry_after)
            return forced.status, {"message": "scripted failure", "code": 0}, {}
        headers, retry_after, is_global = self.limiter.check(kind, owner, time.monotonic())
        if retry_after is not None:
            headers |= _limited(retry_after)
            return 429, wire.rate_limited_body(retry_after, is_global), headers
        for method, pattern, handler in self._routes:
            match = pattern.match(path)
            if match and method == request.method:
                try:
                    if not path.startswith(("/interactions/", "/webhooks/")):
                        self._authorize(request)
                    result = await handler(body, *match.groups())
                except ApiError as error:
                    return error.status, error.body, headers
                return (204, None, headers) if result is None else (200, result, headers)
        return 404, {"message": "404: Not Found", "code": 0}, headers

    def _forced(self, method: str, path: str) -> ForcedFailure | None:
        for failure in self._failures:
            if failure.times > 0 and failure.method == method and failure.pattern.search(path):
                failure.times -= 1
                return failure
        return None

    def _owner_and_bucket(self, path: str) -> tuple[str, str | None]:
        parts = path.split("/")
        if parts[1] == "interactions":
            return parts[2], None
        if parts[1] == "webhooks":
            interaction = self.by_token.get(parts[3])
            return (str(interaction.id) if interaction else parts[3]), "webhook"
        if parts[1] == "channels":
            return parts[2], "typing" if path.endswith("/typing") else "channel"
        return "app", None

    @staticmethod
    def _authorize(request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
            raise ApiError(401, 0, "401: Unauthorized")

    async def _get_me(self, _body: Any) -> dict[str, Any]:
        return dict(self.bot_user, verified=True, mfa_enabled=False, flags=0)

    async def _get_app(self, _body: Any) -> dict[str, Any]:
        return {
            "id": str(self.application_id),
            "name": "teammate",
            "icon": None,
            "description": "",
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.users[self.alice],
            "verify_key": "0" * 64,
            "flags": 0,
            "team": None,
        }

    async def _get_commands(self, _body: Any, app_id: str, guild_id: str | None = None) -> list[Any]:
        return self.commands.get(int(guild_id) if guild_id else None, [])

    async def _put_commands(self, body: Any, app_id: str, guild_id: str | None = None) -> list[Any]:
        if int(app_id) != self.application_id:
            raise ApiError(403, 50001, "Missing Access")
        if not isinstance(body, list) or len(body) > 100:
            raise wire.form_error("commands", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
        stored = []
        for index, command in enumerate(body):
            _check_command(index, command)
            stored.append(
                command
                | {"id": str(snowflake()), "application_id": app_id, "version": str(snowflake())}
                | ({"guild_id": guild_id} if guild_id else {})
            )
        self.command_puts += 1
        self.commands[int(guild_id) if guild_id else None] = stored
        return stored

    async def _channel_send(self, body: Any, channel_id: str) -> dict[str, Any]:
        if int(channel_id) not in self.channels:
            raise unknown("Channel", 10003)
        files = discord_files.upload_bytes(body) if isinstance(body, dict) else {}
        wire.check_message_body(body, editing=False, has_files=bool(files))
        if int(body.get("flags") or 0) & wire.FLAG_EPHEMERAL:
            raise wire.form_error("flags", "MESSAGE_FLAGS_INVALID", "Ephemeral is only for interactions")
        if files and int(channel_id) in self.no_attach:
            raise ApiError(403, 50013, "Missing Permissions")
        attachments = discord_files.attach(int(channel_id), body)
        for attachment in attachments:
            self.uploads[attachment["id"]] = files[attachment["filename"]]
        components.check(body)
        reference = body.get("message_reference")
        if reference is not None:  # a reply: Discord resolves the reference into its own shape
            reference = {"type": 0, "channel_id": channel_id} | {
                k: str(v) for k, v in reference.items() if k in ("message_id", "channel_id", "guild_id")
            }
        return await self._create_message(
            int(channel_id),
            body.get("content") or "",
            body.get("embeds") or [],
            0,
            attachments=attachments,
            reference=reference,
            components=body.get("components"),
        )

    async def _channel_get(self, _body: Any, channel_id: str, message_id: str) -> dict[str, Any]:
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id or message["flags"] & wire.FLAG_EPHEMERAL:
            raise unknown("Message", 10008)
        return message

    async def _channel_edit(self, body: Any, channel_id: str, message_id: str) -> dict[str, Any]:
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id:
            raise unknown("Message", 10008)
        if message["author"]["id"] != str(self.bot_id) or message["flags"] & wire.FLAG_EPHEMERAL:
            # Ephemeral interaction replies are not reachable through the channel route either.
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        wire.check_message_body(body, editing=True)
        components.check(body)
        return await self._edit(message, body)

    async def _channel_delete(self, _body: Any, channel_id: str, message_id: str) -> None:
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id or message["flags"] & wire.FLAG_EPHEMERAL:
            raise unknown("Message", 10008)
        if message["author"]["id"] != str(self.bot_id):  # others' messages need Manage Messages
            raise ApiError(403, 50013, "Missing Permissions")
        del self.messages[int(message_id)]

    async def _typing(self, _body: Any, channel_id: str) -> None:
        if int(channel_id) not in self.channels:
            raise unknown("Channel", 10003)

    async def _start_thread(self, body: Any, channel_id: str, message_id: str) -> dict[str, Any]:
        channel = self.channels.get(int(channel_id))
        if channel is None:
            raise unknown("Channel", 10003)
        if channel["type"] not in (0, 5):
            raise ApiError(400, 50024, "Cannot execute action on this channel type")
        message = self.messages.get(int(message_id))
        if message is None or message["channel_id"] != channel_id:
            raise unknown("Message", 10008)
        if int(message_id) in self.threads_of:
            raise ApiError(400, 160004, "A thread has already been created for this message")
        name = (body or {}).get("name") or ""
        if not 1 <= len(name) <= 100:
            raise wire.form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        archive = (body or {}).get("auto_archive_duration", 4320)
        if archive not in (60, 1440, 4320, 10080):
            raise wire.form_error("auto_archive_duration", "BASE_TYPE_CHOICES", "Value must be one of ...")
        guild_id = int(channel["guild_id"])
        thread = wire.thread_channel(int(message_id), guild_id, int(channel_id), self.bot_id, name, archive)
        self.channels[int(message_id)] = thread
        self.threads_of[int(message_id)] = int(message_id)
        await self.dispatch("THREAD_CREATE", dict(thread, newly_created=True))
        return thread

    # --- message store -----------------------------------------------------------------------------

    async def _create_message(
        self,
        channel_id: int,
        content: str,
        embeds: list[dict[str, Any]],
        flags: int,
        *,
        message_type: int = 0,
        interaction: Interaction | None = None,
        attachments: list[dict[str, Any]] | None = None,
        reference: dict[str, Any] | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        channel = self.channels[channel_id]
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        payload = wire.message(
            snowflake(),
            channel_id,
            self.bot_user,
            content,
            guild_id=guild_id,
            embeds=embeds,
            flags=flags,
            message_type=message_type,
            webhook_id=self.application_id if interaction else None,
            application_id=self.application_id if interaction else None,
            attachments=attachments,
        )
        if reference is not None:
            payload |= {"type": 19, "message_reference": reference}
        payload["components"] = components_stored(components)
        self.messages[int(payload["id"])] = payload
        if not flags & wire.FLAG_EPHEMERAL and self.session is not None:  # else no bot is connected
            await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def _edit(self, message: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        updated = dict(message)
        if "content" in body:
            updated["content"] = body["content"] or ""
        if "embeds" in body:
            updated["embeds"] = body["embeds"] or []
        if "components" in body:  # `[]` removes them; absent leaves them as they are
            updated["components"] = components_stored(body["components"])
        updated["flags"] = message["flags"] & ~wire.FLAG_LOADING
        wire.check_editable_result(updated)
        updated["edited_timestamp"] = wire.iso_now()
        self.messages[int(message["id"])] = updated
        if not updated["flags"] & wire.FLAG_EPHEMERAL:
            await self.dispatch("MESSAGE_UPDATE", updated)
        return updated


def unknown(what: str, code: int) -> ApiError:
    return wire.unknown(what, code)


def unknown_webhook() -> ApiError:
    return wire.unknown("Webhook", 10015)


def _limited(retry_after: float) -> dict[str, str]:
    # discord.py treats a 429 without `Via` as a Cloudflare ban and gives up: the real API sends it.
    return {"Retry-After": str(max(1, round(retry_after))), "Via": "1.1 google", "X-RateLimit-Scope": "user"}


_NAME = re.compile(r"^[-_\w]{1,32}$")


def _check_command(index: int, command: dict[str, Any]) -> None:
    name = command.get("name", "")
    if not _NAME.match(name) or name != name.lower():
        raise wire.form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid command name")
    if not 1 <= len(command.get("description", "")) <= 100:
        raise wire.form_error(f"{index}.description", "BASE_TYPE_BAD_LENGTH", "Must be 1-100 in length.")
    for number, option in enumerate(command.get("options", [])):
        if not _NAME.match(option.get("name", "")) or not 1 <= len(option.get("description", "")) <= 100:
            raise wire.form_error(f"{index}.options.{number}", "BASE_TYPE_BAD_LENGTH", "Invalid option")
