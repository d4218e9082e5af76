"""The Slack adapter: Bolt (Socket Mode or HTTP Events API) in, threaded replies through the core's
presenter out (adapters/slack/surface.py).

A message is parsed and admitted by the core (the turn stored together with the event's claim) inside
the listener, and Bolt acknowledges the event only after the listener returns
(`process_before_response`): an event Slack saw acknowledged is never lost to a crash. The answer is
then shown in a task of its own. Redeliveries are answered once: the event key is the message itself
(channel + ts), claimed by the core's store, with an in-memory pre-check. Slash commands are
acknowledged first thing (Slack's 3 s) and answered through their response_url.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import replace
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
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.buttons import ACTION_IDS, Press, parse_press
from adapters.slack.client import (
    FAILURES,
    NO_RETRY_METHODS,
    build_client,
    configure_client,
    delivery_error,
)
from adapters.slack.images import Attachments, fetch_images
from adapters.slack.inbound import (
    PLATFORM,
    Incoming,
    as_command_text,
    defuse_mass_mentions,
    parse_message_event,
    slash_command_text,
    thread_context,
    with_context,
)
from adapters.slack.report import send_announcement, send_report
from adapters.slack.settings import SlackSettings
from adapters.slack.streamkit import StreamGate
from adapters.slack.surface import MAX_MESSAGE_CHARS, CommandSurface, SlackSurface
from adapters.slack.target import ReplyTarget
from adapters.slack.threads import RecentKeys, ThreadTracker
from core.adapter import PLATFORM_API, AdapterContext
from core.conversation import ImageBlock
from core.inbound import ConversationRef, InboundMessage, Sender
from core.present import Outcome
from core.reports.model import DailyReport
from core.router import Admission
from core.surface import Surface

log = logging.getLogger(__name__)

SUGGESTED_PROMPTS = (
    {"title": "What can you do?", "message": "What can you do, and how do I use you here?"},
    {"title": "Do a calculation", "message": "What is 17.5% of 2,340, and how did you get it?"},
    {"title": "Time around the world", "message": "What time is it now in Tokyo, Berlin and New York?"},
    {"title": "Summarise a web page", "message": "Summarise this page in five bullet points: "},
)
GREETING = "Hi! Ask me anything, or pick a suggestion."
CALL_TIMEOUT_S = 30.0  # one Web API request; a reply call that times out is the presenter's to retry


class SlackAdapter:
    name = PLATFORM

    def __init__(self, settings: SlackSettings, context: AdapterContext) -> None:
        assert settings.bot_token is not None, "the Slack adapter needs SLACK_BOT_TOKEN"
        self._settings = settings
        self._router = context.router
        self._observer = context.observer
        token = settings.bot_token.get_secret_value()

        def rate_limited(method: str) -> None:
            self._observer.rate_limited(PLATFORM, method)

        secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        # Acknowledge events only after the listener returned: by then the core has stored the turn.
        # Bolt gets the token and makes its client, which is then configured: handing Bolt a client of
        # our own makes it warn "token will be unused" whenever SLACK_BOT_TOKEN is in the environment
        # (it reads that variable itself when no token is passed).
        self.app = AsyncApp(token=token, signing_secret=secret, process_before_response=True)
        # Bolt, reports, thread reads and file downloads: 429s retried by the SDK after Retry-After.
        self.client = self.app.client
        self.rate_limits = configure_client(
            self.client, settings.api_url, settings.rate_limit_retries, on_rate_limited=rate_limited
        )
        # Replies: 429s go to the presenter (a final is retried for minutes, an interim update skipped).
        self.reply_client, self.reply_rate_limits = build_client(
            token,
            settings.api_url,
            settings.rate_limit_retries,
            on_rate_limited=rate_limited,
            no_retry=NO_RETRY_METHODS,
        )
        self.app.event("app_mention")(self._on_mention)
        self.app.event("message")(self._on_message)
        self.app.event("app_home_opened")(self._on_home_opened)
        self.app.command(settings.slash_command)(self._on_command)
        self.app.action(ACTION_IDS)(self._on_action)  # our buttons, feedback buttons included
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
        # One connection pool for every call, not a session per message.
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT_S))
        self.client.session = session
        self.reply_client.session = session
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

    def surface_for(self, ref: ConversationRef, reply_address: str) -> Surface:
        """The thread a stored turn is answered in, from the reply address its message carried."""
        return self._surface(ReplyTarget.from_address(ref, reply_address))

    def _surface(self, target: ReplyTarget) -> SlackSurface:
        return SlackSurface(self.reply_client, target, self._settings, self._gate)

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
        try:
            bolt_request = await to_bolt_request(request)
        except UnicodeDecodeError:  # Slack sends UTF-8; this is no Slack request (and no server error)
            return web.Response(status=400, text="the request body is not UTF-8")
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    # --- listeners: parse, admit, return (Bolt acks), answer in a task ----------------------------

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        incoming = self._parse(body, event)
        if incoming is not None:
            await self._admit(incoming)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        incoming = self._parse(body, event)
        if incoming is None:
            return
        if incoming.is_dm:
            await self._admit(incoming)
        elif incoming.mentioned or self._settings.require_mention or not incoming.in_existing_thread:
            return  # a mention arrives again as app_mention; top-level chatter is not for us
        else:
            assert incoming.thread_ts is not None
            member, _ = await self._threads.lookup(incoming.channel, incoming.thread_ts)
            if member:
                await self._admit(incoming, checked=True)

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

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        """A button pressed: acknowledged at once (Slack's 3 s), handled in a task. The listener's
        return is what sends the ack (`process_before_response`), and deciding may edit a card."""
        await ack()
        press = parse_press(body)
        if press is not None:
            self._spawn(self._press(press))

    async def _press(self, press: Press) -> None:
        reply = await self._router.click(press.click, self.surface_for)  # never raises
        if not reply.text:
            return
        try:  # to the presser alone, in the thread of the pressed message
            await self.client.chat_postEphemeral(
                channel=press.channel,
                user=press.user,
                thread_ts=press.thread_ts,
                markdown_text=defuse_mass_mentions(reply.text)[:MAX_MESSAGE_CHARS],
            )
        except FAILURES as error:
            log.warning(
                "could not answer a button press privately: %s", delivery_error("chat.postEphemeral", error)
            )

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
            outcome = await self._router.answer(message, CommandSurface(respond))
        except Exception:
            log.exception("slash command failed")
            return
        self._count(outcome)

    async def _admit(self, incoming: Incoming, *, checked: bool = False) -> None:
        """Turn the message into the core's, admit it (stored with the event's claim) and answer it in
        a task. Runs inside the listener, so Slack sees the event acknowledged only after this."""
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
        target = ReplyTarget(
            incoming.channel,
            incoming.root,
            incoming.user,
            incoming.user_team,
            incoming.is_dm,
            in_thread=incoming.in_existing_thread,
        )
        message = replace(incoming.inbound(text, images), reply_address=target.address())
        admission = await self._router.admit(message)
        if not admission.duplicate:
            self._spawn(self._present(admission, self._surface(target)))

    async def _present(self, admission: Admission, surface: SlackSurface) -> None:
        try:
            outcome = await self._router.present(admission, surface)
        except Exception:
            log.exception("Slack reply failed in %s", admission.message.ref.key)
            self._observer.platform_error(PLATFORM, PLATFORM_API)
            return
        self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        """A reply the user did not get because Slack refused or failed its calls (not a bug of ours)."""
        if outcome.events and not outcome.delivered:
            self._observer.platform_error(PLATFORM, PLATFORM_API)

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


def _share_auth_test(app: AsyncApp, auth: AsyncSlackResponse) -> None:
    """Hand our auth.test result to Bolt's authorization middleware, which otherwise calls auth.test
    itself for every event that arrives before its first call returns (a burst after a restart)."""
    for middleware in getattr(app, "_async_middleware_list", []):
        if isinstance(middleware, AsyncSingleTeamAuthorization) and middleware.auth_test_result is None:
            middleware.auth_test_result = auth
