"""Slack's reply primitives for the core's presenter (core.surface.Surface).

`SlackSurface` answers in one thread: Markdown posts and edits (`markdown_text`), ephemeral replies to
the asker, the thread status ("is thinking…"), tool calls as compact context lines, and a native
stream (adapters/slack/stream.py). `CommandSurface` answers a slash command through its response_url.
Every failed call is raised as a `DeliveryError` (see adapters/slack/client.py); retrying is the
presenter's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.buttons import message_blocks
from adapters.slack.client import SlackDeliveryError, call, retry_after
from adapters.slack.format import (
    context_blocks,
    markdown_blocks,
    note_markdown,
    tool_finished_line,
    tool_started_line,
)
from adapters.slack.inbound import defuse_mass_mentions
from adapters.slack.settings import SlackSettings
from adapters.slack.stream import MAX_STREAM_CHARS, SlackStream
from adapters.slack.streamkit import StreamGate
from adapters.slack.target import ReplyTarget
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.surface import AnswerStream, Capabilities, DeliveryError, Note

MAX_MESSAGE_CHARS = MAX_STREAM_CHARS  # markdown_text limit of chat.postMessage / chat.update


def _markdown(text: str) -> str:
    return defuse_mass_mentions(text)[:MAX_MESSAGE_CHARS]


class SlackSurface:
    """The replies to one message, in its thread."""

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        settings: SlackSettings,
        gate: StreamGate,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self.target = target
        self._gate = gate
        self._rollover_s = settings.stream_rollover
        self._clock = clock or asyncio.get_running_loop().time
        # A stream in a channel is addressed to its reader; without one (an old stored turn) post instead.
        streaming = settings.native_streaming and (target.is_dm or bool(target.user and target.user_team))
        self.capabilities = Capabilities(
            max_message_chars=MAX_MESSAGE_CHARS,
            edit_interval_s=settings.stream_interval if streaming else settings.edit_interval,
            can_edit=True,
            native_stream=streaming,
            typing_interval_s=None,
            status=True,
            rich_tools=True,
        )

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        target = self.target
        markdown = _markdown(text)
        if buttons is None:
            request = self._client.chat_postMessage(
                channel=target.channel, thread_ts=target.thread_ts, markdown_text=markdown
            )
        else:  # markdown_text cannot go with blocks: the text goes in a markdown block above them
            request = self._client.chat_postMessage(
                channel=target.channel,
                thread_ts=target.thread_ts,
                text=markdown,
                blocks=message_blocks(markdown, buttons),
            )
        response = await call("chat.postMessage", request)
        return str(response.get("ts") or "")

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        """Always with explicit blocks: chat.update keeps a message's blocks (its buttons) unless it is
        given new ones, so an edit without buttons must still say what the message is made of."""
        markdown = _markdown(text)
        await call(
            "chat.update",
            self._client.chat_update(
                channel=self.target.channel,
                ts=message_id,
                text=markdown,
                blocks=message_blocks(markdown, buttons),
            ),
        )

    async def delete(self, message_id: str) -> None:
        try:
            await call("chat.delete", self._client.chat_delete(channel=self.target.channel, ts=message_id))
        except SlackDeliveryError as error:
            if error.code != "message_not_found":  # already gone: what we wanted
                raise

    async def private(self, text: str) -> None:
        """Ephemeral to the asker; in a DM (where nobody else reads) a plain reply in the thread."""
        target = self.target
        if target.is_dm or not target.user:
            await self.post(text)
            return
        await call(
            "chat.postEphemeral",
            self._client.chat_postEphemeral(
                channel=target.channel,
                user=target.user,
                thread_ts=target.thread_ts if target.in_thread else None,
                markdown_text=_markdown(text),
            ),
        )

    def note(self, note: Note) -> str:
        return note_markdown(note)

    async def typing(self) -> None:
        """Slack has no typing indicator for bots; the thread status does that job."""

    async def set_status(self, text: str) -> None:
        """The status line under the thread (assistant.threads.setStatus). Where the app has no agent
        features (or the method is missing) this raises a permanent DeliveryError: the presenter then
        shows a placeholder message instead."""
        await call(
            "assistant.threads.setStatus",
            self._client.assistant_threads_setStatus(
                channel_id=self.target.channel, thread_ts=self.target.thread_ts, status=text
            ),
        )

    async def post_tool(self, event: ToolStarted) -> str:
        line = tool_started_line(event)
        target = self.target
        response = await call(
            "chat.postMessage",
            self._client.chat_postMessage(
                channel=target.channel, thread_ts=target.thread_ts, text=line, blocks=context_blocks(line)
            ),
        )
        return str(response.get("ts") or "")

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        line = tool_finished_line(started, event)
        await call(
            "chat.update",
            self._client.chat_update(
                channel=self.target.channel, ts=message_id, text=line, blocks=context_blocks(line)
            ),
        )

    async def open_stream(self) -> AnswerStream | None:
        if not self.capabilities.native_stream:
            return None
        return SlackStream(
            self._client, self.target, self._gate, rollover_s=self._rollover_s, clock=self._clock
        )

    def backlogged(self) -> bool:
        return False  # no client-side limiter: Slack's 429s say it (core/delivery.py)


class CommandSurface:
    """The answer to a slash command, through its response_url: ephemeral, not editable."""

    capabilities = Capabilities(max_message_chars=MAX_MESSAGE_CHARS, edit_interval_s=1.0, can_edit=False)

    def __init__(self, respond: AsyncRespond) -> None:
        self._respond = respond

    async def _send(self, text: str) -> None:
        try:
            response: Any = await self._respond(
                text=text, blocks=markdown_blocks(text), response_type="ephemeral"
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"response_url failed: {type(error).__name__}", transient=True) from error
        status = int(getattr(response, "status_code", 200) or 200)
        if status >= 400:
            raise DeliveryError(
                f"response_url failed: HTTP {status}",
                transient=status == 429 or status >= 500,
                retry_after=retry_after(getattr(response, "headers", None)),
            )

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        # A slash command's answer is for the person who typed it, whatever the reply asks; an ephemeral
        # response cannot be edited, so buttons (which need their message edited later) are left off.
        await self._send(text)
        return ""

    async def private(self, text: str) -> None:
        await self._send(text)

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        raise DeliveryError("a slash command's answer cannot be edited", transient=False)

    async def delete(self, message_id: str) -> None:
        raise DeliveryError("a slash command's answer cannot be deleted", transient=False)

    def note(self, note: Note) -> str:
        return note_markdown(note)

    async def typing(self) -> None:
        pass

    async def set_status(self, text: str) -> None:
        raise DeliveryError("no status line for slash commands", transient=False)

    async def post_tool(self, event: ToolStarted) -> str:
        raise DeliveryError("no tool messages for slash commands", transient=False)

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        raise DeliveryError("no tool messages for slash commands", transient=False)

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return False
