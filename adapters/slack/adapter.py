"""The Slack adapter: Bolt (Socket Mode or HTTP Events API) in, threaded streamed replies out.

Listeners only parse and hand off to a task, so every event is acknowledged at once (Bolt acks events
before listeners run; the slash command acks first thing). Redeliveries are answered once: the event
key is the message itself (channel + ts), claimed by the core's store, with an in-memory pre-check.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.middleware.authorization.async_single_team_authorization import (
    AsyncSingleTeamAuthorization,
)
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.client import build_client
from adapters.slack.format import markdown_blocks
from adapters.slack.images import Attachments, fetch_images
from adapters.slack.inbound import (
    PLATFORM,
    Incoming,
    as_command_text,
    parse_message_event,
    slash_command_text,
    thread_context,
    with_context,
)
from adapters.slack.post import PostWriter
from adapters.slack.report import send_announcement, send_report
from adapters.slack.settings import SlackSettings
from adapters.slack.stream import MAX_STREAM_CHARS, StreamGate, StreamWriter
from adapters.slack.target import ReplyTarget, Transport
from adapters.slack.threads import RecentKeys, ThreadTracker
from adapters.slack.turn import TurnRenderer
from core.adapter import PLATFORM_API, AdapterContext
from core.conversation import ImageBlock
from core.events import CommandReply, Refused
from core.inbound import ConversationRef, InboundMessage, Sender
from core.render import Capabilities
from core.reports.model import DailyReport

log = logging.getLogger(__name__)

SUGGESTED_PROMPTS = (
    {"title": "What can you do?", "message": "What can you do, and how do I use you here?"},
    {"title": "Do a calculation", "message": "What is 17.5% of 2,340, and how did you get it?"},
    {"title": "Time around the world", "message": "What time is it now in Tokyo, Berlin and New York?"},
    {"title": "Summarise a web page", "message": "Summarise this page in five bullet points: "},
)
GREETING = "Hi! Ask me anything, or pick a suggestion."


class SlackAdapter:
    name = PLATFORM

    def __init__(self, settings: SlackSettings, context: AdapterContext) -> None:
        assert settings.bot_token is not None, "the Slack adapter needs SLACK_BOT_TOKEN"
        self._settings = settings
        self._router = context.router
        self._observer = context.observer
        self.capabilities = Capabilities(
            max_message_chars=MAX_STREAM_CHARS,
            edit_interval_s=settings.edit_interval,
            native_stream=settings.native_streaming,
            files=True,
        )
        self.client, self.rate_limits = build_client(
            settings.bot_token.get_secret_value(),
            settings.api_url,
            settings.rate_limit_retries,
            on_rate_limited=lambda method: self._observer.rate_limited(PLATFORM, method),
        )
        secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        self.app = AsyncApp(client=self.client, signing_secret=secret, process_before_response=False)
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.event("app_home_opened")(self._on_home_opened)
        self.app.command(settings.slash_command)(self._on_command)
        if settings.connection_mode == "http":  # routes must exist before the HTTP server starts
            context.routes.add_route("POST", settings.events_path, self._on_http)
        self._threads = ThreadTracker(self.client)
        self._seen = RecentKeys()
        self._greeted = RecentKeys(5_000)
        self._gate = StreamGate(asyncio.get_running_loop().time)
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: AsyncSocketModeHandler | None = None
        self._ready = False
        self.bot_user_id = ""

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        session = aiohttp.ClientSession()
        self.client.session = session  # one connection pool for every call, not a session per message
        try:
            auth = await self.client.auth_test()
            _share_auth_test(self.app, auth)
            self.bot_user_id = str(auth["user_id"])
            self._threads.bot_user_id = self.bot_user_id
            if self._settings.connection_mode == "socket":
                assert self._settings.app_token is not None
                self._socket = AsyncSocketModeHandler(
                    self.app, self._settings.app_token.get_secret_value(), web_client=self.client
                )
                await self._socket.connect_async()  # type: ignore[no-untyped-call]
            self._ready = True
            log.info("Slack connected (%s mode) as %s", self._settings.connection_mode, self.bot_user_id)
            await asyncio.Event().wait()
        finally:
            self._ready = False
            if self._socket is not None:
                await self._socket.close_async()  # type: ignore[no-untyped-call]
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()

    def ready(self) -> bool:
        return self._ready

    async def post_notice(self, ref: ConversationRef, text: str) -> None:
        await self.client.chat_postMessage(
            channel=ref.channel, thread_ts=ref.thread or None, markdown_text=text
        )

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        """A Block Kit report in a channel (id, or #name), the chart uploaded under it. Raises when the
        report itself could not be posted; a failed chart upload is logged only."""
        await send_report(self.client, destination, report, chart_png)

    async def post_announcement(self, destination: str, text: str) -> None:
        await send_announcement(self.client, destination, text)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_http(self, request: web.Request) -> web.StreamResponse:
        if not self._ready:  # Slack retries a 503; nothing is lost while we connect
            return web.Response(status=503, text="starting")
        response = await self.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    # --- listeners: parse, hand off, return (Bolt acks) -----------------------------------------

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        incoming = self._parse(body, event)
        if incoming is not None:
            self._spawn(self._answer(incoming))

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        incoming = self._parse(body, event)
        if incoming is None:
            return
        if incoming.is_dm:
            self._spawn(self._answer(incoming))
        elif incoming.mentioned or self._settings.require_mention or not incoming.in_existing_thread:
            return  # a mention arrives again as app_mention; top-level chatter is not for us
        else:
            self._spawn(self._answer_if_member(incoming))

    def _parse(self, body: Mapping[str, Any], event: Mapping[str, Any]) -> Incoming | None:
        if not self.bot_user_id:
            return None
        return parse_message_event(body, event, self.bot_user_id)

    async def _on_home_opened(self, event: dict[str, Any]) -> None:
        channel, user = event.get("channel"), event.get("user")
        if event.get("tab") != "messages" or not channel or not user or not self._greeted.add(str(user)):
            return
        # No thread_ts: under the agent messaging view a thread_ts makes this fail silently.
        self._spawn(self._suggest(str(channel)))

    async def _suggest(self, channel: str) -> None:
        try:
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, title=GREETING, prompts=list(SUGGESTED_PROMPTS)
            )
        except Exception:
            log.warning("could not set suggested prompts", exc_info=True)

    async def _on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()  # within Slack's 3 s, whatever the answer takes
        self._spawn(self._run_command(command, respond))

    # --- answering ------------------------------------------------------------------------------

    async def _run_command(self, command: Mapping[str, Any], respond: AsyncRespond) -> None:
        channel = str(command.get("channel_id") or "")
        message = InboundMessage(
            ConversationRef(PLATFORM, str(command.get("team_id") or ""), channel),
            Sender(str(command.get("user_id") or "")),
            slash_command_text(str(command.get("text") or "")),
            f"command:{command.get('trigger_id') or uuid.uuid4().hex}",
            is_dm=channel.startswith("D") or command.get("channel_name") == "directmessage",
        )
        try:
            async for event in self._router.handle(message):
                if isinstance(event, CommandReply | Refused):
                    await respond(
                        text=event.text, blocks=markdown_blocks(event.text), response_type="ephemeral"
                    )
        except Exception as error:
            self._count_failed_reply(error)
            log.exception("slash command failed")

    async def _answer_if_member(self, incoming: Incoming) -> None:
        assert incoming.thread_ts is not None
        member, _ = await self._threads.lookup(incoming.channel, incoming.thread_ts)
        if member:
            await self._answer(incoming, checked=True)

    async def _answer(self, incoming: Incoming, *, checked: bool = False) -> None:
        if not self._seen.add(incoming.event_key):
            return  # redelivered (retry, reconnect); the core's store is the durable check
        # An image with no words is a question about the image, not a request for help.
        text = as_command_text(incoming.text) if incoming.text or not incoming.files else ""
        if not checked and not incoming.is_dm and incoming.in_existing_thread and not text.startswith("/"):
            text = await self._with_thread_context(incoming, text)
        self._threads.mark(incoming.channel, incoming.root)
        images: tuple[ImageBlock, ...] = ()
        if incoming.files and not text.startswith("/"):
            attachments = await self._attachments(incoming)
            text, images = attachments.text_with_notes(text), attachments.images
        await self._converse(incoming, incoming.inbound(text, images))

    async def _attachments(self, incoming: Incoming) -> Attachments:
        assert self._settings.bot_token is not None and self.client.session is not None
        return await fetch_images(
            self.client.session,
            self._settings.bot_token.get_secret_value(),
            self._settings.api_url,
            incoming.files,
            on_rate_limited=lambda: self._observer.rate_limited(PLATFORM, "files.download"),
        )

    async def _with_thread_context(self, incoming: Incoming, text: str) -> str:
        """Mentioned in a thread it has not taken part in: read what was said before."""
        assert incoming.thread_ts is not None
        limit = self._settings.thread_context_messages
        if not limit:
            return text
        member, messages = await self._threads.lookup(incoming.channel, incoming.thread_ts)
        if member:
            return text
        return with_context(thread_context(messages, incoming.ts, self.bot_user_id, limit), text)

    async def _converse(self, incoming: Incoming, message: InboundMessage) -> None:
        target = ReplyTarget(
            incoming.channel, incoming.root, incoming.user, incoming.user_team, incoming.is_dm
        )
        transport = Transport(self.client, target)
        renderer = TurnRenderer(transport, self._writer(transport))
        if not message.text.startswith("/"):
            renderer.begin()  # "is thinking…" while the core and the model get going
        answered = False
        try:
            async for event in self._router.handle(message):
                answered = True
                if isinstance(event, CommandReply | Refused):
                    await renderer.clear_status()
                    await self._private_reply(incoming, transport, event)
                    continue
                await renderer.on(event)
            if not answered:  # the core's store knew this event (a redelivery after a restart)
                await renderer.clear_status()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._count_failed_reply(error)
            log.exception("Slack reply failed in %s", message.ref.key)
            await renderer.abort("Something went wrong while I was answering. Please try again.")

    def _count_failed_reply(self, error: Exception) -> None:
        """A reply the user does not get because Slack refused or failed a call (not a bug of ours)."""
        if isinstance(error, SlackApiError | aiohttp.ClientError):
            self._observer.platform_error(PLATFORM, PLATFORM_API)

    def _writer(self, transport: Transport) -> StreamWriter | PostWriter:
        def post_writer() -> PostWriter:
            return PostWriter(transport, self.capabilities)

        if not self._settings.native_streaming:
            return post_writer()
        loop = asyncio.get_running_loop()
        return StreamWriter(
            transport,
            self._gate,
            post_writer,
            interval_s=self._settings.stream_interval,
            rollover_s=self._settings.stream_rollover,
            clock=loop.time,
        )

    async def _private_reply(
        self, incoming: Incoming, transport: Transport, event: CommandReply | Refused
    ) -> None:
        """Command answers and refusals are for the asker alone (plain replies in a DM)."""
        if incoming.is_dm and isinstance(event, CommandReply):
            await transport.post_markdown(event.text)
            return
        await self.client.chat_postEphemeral(
            channel=incoming.channel,
            user=incoming.user,
            thread_ts=incoming.thread_ts,
            markdown_text=event.text,
        )


def _share_auth_test(app: AsyncApp, auth: AsyncSlackResponse) -> None:
    """Hand our auth.test result to Bolt's authorization middleware, which otherwise calls auth.test
    itself for every event that arrives before its first call returns (a burst after a restart)."""
    for middleware in getattr(app, "_async_middleware_list", []):
        if isinstance(middleware, AsyncSingleTeamAuthorization) and middleware.auth_test_result is None:
            middleware.auth_test_result = auth
