"""The post/edit primitives EditStreamer paces, backed by native drafts or by real messages.

With drafts (private chats) each part of the answer streams as a `sendMessageDraft` preview; a part
that is complete (the answer continued past 4,096 characters) becomes a real message at once, and
`finalize` turns the rest into real messages. The handoff is as clean as the API allows: no draft is
sent after the text is final, and the final message carries exactly the formatting of the last draft.
Without drafts, or when a draft fails (group, older Bot API server, error), parts are sent and edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from telegram.error import InvalidToken, RetryAfter, TelegramError

from adapters.telegram.limiter import retry_seconds, with_retries
from adapters.telegram.outbox import Outbox

log = logging.getLogger(__name__)

# Draft ids only need to be unique per chat while a draft lives (30 s); a random start avoids reusing
# the previous process's ids right after a restart.
_DRAFT_IDS = itertools.count(secrets.randbelow(1 << 30) + 1)


class DraftSupport:
    """Whether the Bot API server has sendMessageDraft; switched off for good when it says no."""

    def __init__(self, enabled: bool) -> None:
        self.available = enabled

    def disable(self, reason: str) -> None:
        if self.available:
            log.warning("native drafts unavailable (%s); streaming by editing messages instead", reason)
        self.available = False


@dataclass
class _Part:
    kind: Literal["draft", "message"]
    id: int
    text: str


class StreamSink:
    def __init__(
        self, outbox: Outbox, drafts: DraftSupport | None = None, busy: Callable[[], bool] | None = None
    ) -> None:
        self._outbox = outbox
        self._busy = busy  # True when a real message would wait for the flood limiter
        self._previewed = False
        self._drafts = drafts
        self._use_drafts = drafts is not None and drafts.available
        self._parts: list[_Part] = []
        self._paused_until = 0.0
        self.calls = 0  # Bot API calls made, for benchmarks

    async def post(self, text: str) -> str:
        if self._parts and self._parts[-1].kind == "draft":
            await self._commit(self._parts[-1], self._parts[-1].text)  # that part is complete
        if self._use_drafts:
            part = _Part("draft", next(_DRAFT_IDS), text)
            self._parts.append(part)
            await self._draft(part)
        else:
            self.calls += 1
            record = lambda message_id: self._parts.append(_Part("message", message_id, text))  # noqa: E731
            await self._recorded(partial(self._outbox.send, text), record)
        return str(len(self._parts) - 1)

    async def edit(self, message_id: str, text: str) -> None:
        part = self._parts[int(message_id)]
        part.text = text
        if part.kind == "draft":
            await self._draft(part)
        else:
            self.calls += 1
            await self._outbox.edit(part.id, text)

    async def finalize(self, parts: list[str]) -> list[int]:
        """Make the conversation show exactly `parts` as real messages; return their ids."""
        if self._use_drafts and not self._previewed and parts and self._busy is not None and self._busy():
            # The answer is ready before any draft went out, but the final message has to queue behind
            # the bot-wide flood limit: show it as a draft now (drafts are not queued).
            await self._draft(_Part("draft", next(_DRAFT_IDS), parts[0]))
        for index, text in enumerate(parts):
            if index >= len(self._parts):
                self.calls += 1
                message_id = await with_retries(partial(self._outbox.send, text))
                self._parts.append(_Part("message", message_id, text))
                continue
            part = self._parts[index]
            if part.kind == "draft":
                await self._commit(part, text)
            elif part.text != text:
                self.calls += 1
                await with_retries(partial(self._outbox.edit, part.id, text))
                part.text = text
        return [p.id for p in self._parts if p.kind == "message"]

    async def _commit(self, part: _Part, text: str) -> None:
        self.calls += 1
        await self._recorded(
            partial(with_retries, partial(self._outbox.send, text)), partial(_sent, part, text)
        )

    @staticmethod
    async def _recorded(send: Callable[[], Awaitable[int]], record: Callable[[int], None]) -> None:
        """Send a real message and record it even if this task is cancelled meanwhile (the streamer's
        stop() cancels its pacer mid-call): a message that landed unrecorded would be sent twice."""
        sending = asyncio.ensure_future(send())
        try:
            message_id = await asyncio.shield(sending)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                record(await sending)
            raise
        record(message_id)

    async def _draft(self, part: _Part) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._paused_until:
            return  # flood wait: skip this preview; a later one (or the final message) shows the text
        try:
            self.calls += 1
            await self._outbox.draft(part.id, part.text)
            self._previewed = self._previewed or bool(part.text.strip())
        except RetryAfter as error:
            self._paused_until = loop.time() + retry_seconds(error)
        except TelegramError as error:
            # InvalidToken here means 404: the server does not know the method (older Bot API server).
            if isinstance(error, InvalidToken) and self._drafts is not None:
                self._drafts.disable("the Bot API server does not know sendMessageDraft")
            else:
                log.warning("draft failed (%s); this answer continues as an edited message", error.message)
            self._use_drafts = False
            self.calls += 1
            await self._recorded(partial(self._outbox.send, part.text), partial(_sent, part, part.text))


def _sent(part: _Part, text: str, message_id: int) -> None:
    part.id, part.kind, part.text = message_id, "message", text
