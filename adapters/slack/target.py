"""Where one reply goes, and the small Web API calls every reply path shares."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.format import context_blocks

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    channel: str
    thread_ts: str
    user: str  # the person being answered (streams in channels need it)
    user_team: str
    is_dm: bool


@dataclass(frozen=True, slots=True)
class Transport:
    """The client plus one reply's destination: every post is a reply in the thread."""

    client: AsyncWebClient
    target: ReplyTarget

    async def post_markdown(self, text: str) -> str:
        response = await self.client.chat_postMessage(
            channel=self.target.channel, thread_ts=self.target.thread_ts, markdown_text=text
        )
        return str(response["ts"])

    async def update_markdown(self, ts: str, text: str) -> None:
        await self.client.chat_update(channel=self.target.channel, ts=ts, markdown_text=text)

    async def post_context(self, mrkdwn: str) -> str:
        response = await self.client.chat_postMessage(
            channel=self.target.channel,
            thread_ts=self.target.thread_ts,
            text=mrkdwn,
            blocks=context_blocks(mrkdwn),
        )
        return str(response["ts"])

    async def update_context(self, ts: str, mrkdwn: str) -> None:
        await self.client.chat_update(
            channel=self.target.channel, ts=ts, text=mrkdwn, blocks=context_blocks(mrkdwn)
        )

    async def set_status(self, status: str) -> bool:
        """The "is thinking…" line under the thread; False where the workspace does not offer it."""
        try:
            await self.client.assistant_threads_setStatus(
                channel_id=self.target.channel, thread_ts=self.target.thread_ts, status=status
            )
        except SlackApiError as error:
            log.debug("assistant.threads.setStatus unavailable: %s", _error_code(error))
            return False
        return True


def _error_code(error: SlackApiError) -> Any:
    return error.response.get("error") if error.response is not None else None


def error_code(error: SlackApiError) -> str:
    return str(_error_code(error) or "")


def status_code(error: SlackApiError) -> int:
    return int(getattr(error.response, "status_code", 0) or 0)
