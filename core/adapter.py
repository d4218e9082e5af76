"""The adapter seam: what `bot` needs from every platform adapter.

An adapter owns its platform connection, turns platform events into `InboundMessage`s and hands each
to `Router.answer` together with a `Surface` (core/surface.py): the reply primitives of that
conversation in the platform's idiom. The core's presenter decides what to show and when; the adapter
never looks at the core's event types. `surface_for` rebuilds a reply surface from what the adapter
stored with the message (`InboundMessage.reply_address`), so answers are delivered after a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.inbound import ConversationRef
from core.reports.model import DailyReport
from core.router import Router
from core.surface import Surface


class Adapter(Protocol):
    name: str  # the platform name used in ConversationRef.platform, e.g. "slack"

    async def run(self) -> None:
        """Connect and serve until cancelled; cancellation disconnects cleanly."""
        ...

    def ready(self) -> bool:
        """True while connected and able to receive events (for readiness checks)."""
        ...

    def surface_for(self, ref: ConversationRef, reply_address: str) -> Surface:
        """The reply surface of a stored turn: its conversation and the `reply_address` the adapter
        gave the message (used after a restart, possibly by another replica). Must not call the
        platform: the presenter does, and retries."""
        ...

    async def post_report(self, destination: str, report: DailyReport, chart_png: bytes | None) -> None:
        """Post a daily usage report to a destination (a channel or chat id from REPORT_*), in the
        platform's idiom, with the chart attached where the platform allows files."""
        ...

    async def post_announcement(self, destination: str, text: str) -> None:
        """Post a short Markdown message to a report destination (e.g. the 80% budget warning)."""
        ...


class PlatformObserver(Protocol):
    """What adapters report about their platform's API, for operations (bot/metrics.py counts it).
    Adapters call it; the application decides what it means. Calls must be cheap and never raise."""

    def rate_limited(self, platform: str, method: str | None) -> None:
        """The platform answered one request with HTTP 429 (called once per 429 response, retried or
        not). `method` names the API call where known (e.g. "chat.update"), never a secret."""
        ...

    def platform_error(self, platform: str, kind: str) -> None:
        """A platform API error the user saw: a reply (post or edit) that could not be delivered."""
        ...


PLATFORM_API = "platform_api"  # `platform_error` kind: the platform refused or failed a reply's call


class NoObserver:
    """The default observer: reports go nowhere (tests, `bot report`, the console)."""

    def rate_limited(self, platform: str, method: str | None) -> None:
        pass

    def platform_error(self, platform: str, kind: str) -> None:
        pass


NO_OBSERVER = NoObserver()


class HttpRoutes(Protocol):
    """Where an adapter mounts its inbound HTTP endpoints (Slack events, Telegram webhook) on the bot's
    one HTTP server. `handler` is an aiohttp handler: `async (aiohttp.web.Request) -> web.StreamResponse`."""

    def add_route(self, method: str, path: str, handler: Callable[[Any], Awaitable[Any]]) -> None: ...


@dataclass(frozen=True)
class AdapterContext:
    """Everything an adapter gets from the application besides its own settings."""

    router: Router
    routes: HttpRoutes
    offered_models: tuple[str, ...] = ()
    observer: PlatformObserver = NO_OBSERVER


async def wait_until_ready(adapters: Sequence[Adapter], timeout_s: float) -> bool:
    """Wait until every adapter is connected; False if that did not happen within `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not all(adapter.ready() for adapter in adapters):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True
