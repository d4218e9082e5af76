"""A thread opened on the first public reply: its surface on Discord (see surfaces.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import discord

from adapters.discord.address import ThreadPlan
from adapters.discord.api import reply_call
from adapters.discord.format import small_print
from adapters.discord.interaction_surface import InteractionSurface
from adapters.discord.settings import ThreadArchiveMinutes
from adapters.discord.surfaces import ChannelSurface
from core.actions import Buttons
from core.events import ToolFinished, ToolStarted
from core.surface import AnswerStream, DeliveryError, Note, Surface

log = logging.getLogger(__name__)

THREAD_EXISTS = 160004  # "A thread has already been created for this message"

Origin = ChannelSurface | InteractionSurface


class ThreadSurface:
    """Public replies go to a thread opened from a message on the first of them (post, tool, typing),
    so a turn the core turns away (refusal, command, duplicate) never leaves an empty thread; private
    replies go where the message was. When Discord refuses the thread for good, the answer goes there
    too (in place); when it fails for now, the call fails transiently and the next one tries again."""

    def __init__(
        self,
        client: discord.Client,
        plan: ThreadPlan,
        origin: Origin,
        *,
        archive_minutes: ThreadArchiveMinutes,
        opened: Callable[[int], None],
        is_open: Callable[[int], bool],
    ) -> None:
        self._client = client
        self._plan = plan
        self._origin = origin
        self.capabilities = origin.capabilities
        self._archive = archive_minutes
        self._opened = opened
        self._is_open = is_open
        self._target: Surface | None = None
        self._opening = asyncio.Lock()
        self._starter_shown = False

    async def _public(self) -> Surface:
        if self._target is None:
            async with self._opening:
                if self._target is None:
                    self._target = await self._open()
        return self._target

    async def _open(self) -> Surface:
        plan = self._plan
        if not self._is_open(plan.message_id):
            if plan.starter and not self._starter_shown:
                await self._origin.post(plan.starter)
                self._starter_shown = True
            try:
                await reply_call("open a thread", self._start())
            except DeliveryError as error:
                if error.transient:
                    raise
                log.warning("could not open a thread (%s); answering in place", error)
                return self._origin
            self._opened(plan.message_id)
        return ChannelSurface(self._client, plan.message_id, self.capabilities)

    async def _start(self) -> None:
        plan = self._plan
        try:
            await self._client.http.start_thread_with_message(
                plan.channel_id, plan.message_id, name=plan.name, auto_archive_duration=self._archive
            )
        except discord.HTTPException as error:
            if error.code != THREAD_EXISTS:  # else an earlier attempt (or run) opened it: post there
                raise

    async def post(self, text: str, buttons: Buttons | None = None) -> str:
        return await (await self._public()).post(text, buttons)

    async def edit(self, message_id: str, text: str, buttons: Buttons | None = None) -> None:
        await (await self._public()).edit(message_id, text, buttons)

    async def delete(self, message_id: str) -> None:
        await (await self._public()).delete(message_id)

    async def private(self, text: str) -> None:
        await self._origin.private(text)

    def note(self, note: Note) -> str:
        return small_print(note)

    async def typing(self) -> None:
        await (await self._public()).typing()

    async def set_status(self, text: str) -> None:
        return None

    async def post_tool(self, event: ToolStarted) -> str:
        return await (await self._public()).post_tool(event)

    async def edit_tool(self, message_id: str, started: ToolStarted, event: ToolFinished) -> None:
        await (await self._public()).edit_tool(message_id, started, event)

    async def open_stream(self) -> AnswerStream | None:
        return None

    def backlogged(self) -> bool:
        return False
