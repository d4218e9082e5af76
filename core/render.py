"""One streaming policy for adapters without native streaming: post, then edit on a timer.

The adapter supplies two primitives (post, edit) and its limits; this class decides when to call them.
Edits are paced by time per message (never by character counts or one global timer), text beyond the
platform's limit continues in new messages, and the final text is exactly the model's text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.textsplit import split_text

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter's platform can do, as data."""

    max_message_chars: int
    edit_interval_s: float  # least time between two edits of one message
    can_edit: bool = True
    native_stream: bool = False
    threads: bool = True
    files: bool = False


class MessageSink(Protocol):
    """Post and edit messages in one conversation (bound by the adapter)."""

    async def post(self, text: str) -> str:
        """Post a message; return its id."""
        ...

    async def edit(self, message_id: str, text: str) -> None: ...


class EditStreamer:
    def __init__(
        self,
        sink: MessageSink,
        capabilities: Capabilities,
        *,
        placeholder: str = "…",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._sink = sink
        self._caps = capabilities
        self._placeholder = placeholder
        self._clock = clock or asyncio.get_running_loop().time
        self._text = ""
        self._status = ""  # a transient line under the text (e.g. a running tool); never in the final
        self._shown: list[tuple[str, str]] = []  # (message id, text shown) per part
        self._last_edit = -1e9
        self._dirty = asyncio.Event()
        self._syncing = asyncio.Lock()  # held by the pacer while it posts or edits
        self._pacer: asyncio.Task[None] | None = None
        self.calls = 0  # post + edit calls made, for benchmarks

    @property
    def message_ids(self) -> list[str]:
        return [message_id for message_id, _ in self._shown]

    async def start(self) -> None:
        """Show a placeholder at once, so the user sees the bot is on it."""
        if not self._shown and self._caps.can_edit:
            self._shown.append((await self._post(self._placeholder), self._placeholder))
            self._last_edit = self._clock()

    def append(self, text: str) -> None:
        if not text:
            return
        self._text += text
        self._dirty.set()
        if self._pacer is None and self._caps.can_edit:  # without edits, everything is posted at the end
            self._pacer = asyncio.create_task(self._pace())

    def set_status(self, status: str) -> None:
        """Show `status` under the streamed text until it changes; `finish` drops it. It is left out
        when it would not fit in the last message, so it never creates a message of its own."""
        if status == self._status:
            return
        self._status = status
        self._dirty.set()
        if self._pacer is None and self._caps.can_edit:
            self._pacer = asyncio.create_task(self._pace())

    async def stop(self) -> str:
        """Stop pacing without a final sync; return all appended text. For adapters that end a stream
        their own way (e.g. a native draft that is replaced by a real message)."""
        await self._stop_pacer()
        return self._text

    async def _stop_pacer(self) -> None:
        if self._pacer is not None:
            # Cancel only between calls: a post cancelled in flight may land anyway and be posted twice.
            async with self._syncing:
                self._pacer.cancel()
                await asyncio.gather(self._pacer, return_exceptions=True)
            self._pacer = None

    async def _pace(self) -> None:
        while True:
            await self._dirty.wait()
            wait = self._last_edit + self._caps.edit_interval_s - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._dirty.clear()
            try:
                async with self._syncing:
                    await self._sync()
            except Exception:  # a failed interim edit is retried at the next tick; the final sync decides
                log.warning("interim edit failed", exc_info=True)
                self._dirty.set()

    async def finish(self, final_text: str | None = None) -> list[str]:
        """Stop pacing and make the messages show exactly `final_text` (default: all appended text)."""
        await self._stop_pacer()
        if final_text is not None:
            self._text = final_text
        self._status = ""
        wait = self._last_edit + self._caps.edit_interval_s - self._clock()
        if wait > 0 and self._shown:
            await asyncio.sleep(wait)
        await self._sync()
        return self.message_ids

    def _parts(self) -> list[str]:
        limit = self._caps.max_message_chars
        parts = split_text(self._text, limit) if self._text else [self._status or self._placeholder]
        if self._status and self._text and len(parts[-1]) + len(self._status) + 2 <= limit:
            parts[-1] = f"{parts[-1]}\n\n{self._status}"
        return parts

    async def _sync(self) -> None:
        parts = self._parts()
        for index, part in enumerate(parts):
            if index < len(self._shown):
                message_id, shown = self._shown[index]
                if shown != part and self._caps.can_edit:
                    await self._sink.edit(message_id, part)
                    self.calls += 1
                    self._shown[index] = (message_id, part)
                    self._last_edit = self._clock()
            else:
                self._shown.append((await self._post(part), part))

    async def _post(self, text: str) -> str:
        self.calls += 1
        message_id = await self._sink.post(text)
        self._last_edit = self._clock()
        return message_id
