"""`bot run` with platform adapters: the HTTP server, every adapter, crash recovery notes, readiness and a
graceful shutdown (drain running turns, then disconnect)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bot.http import HttpServer
from bot.scheduler import ReportScheduler
from core.adapter import Adapter, wait_until_ready
from core.router import Router
from core.storage.base import Store

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


class _ShutdownDone(Exception):
    """Raised inside the task group once draining is over, to end every task (adapters disconnect)."""


async def serve(
    adapters: Sequence[Adapter],
    router: Router,
    http: HttpServer,
    reports: ReportScheduler | None = None,
    *,
    stop: asyncio.Event | None = None,
    grace_s: float = 30.0,
) -> None:
    """Run until cancelled (Ctrl-C), `stop` is set (SIGTERM) or an adapter fails for good. `reports`, when
    given, posts the daily report (catch-up first, once its adapters are connected).

    When `stop` is set the router stops taking new messages (they get a short "restarting" reply) while
    adapters stay connected, so running turns can finish and be rendered within `grace_s` seconds; turns
    still running then are cancelled (stored as cancelled), and everything disconnects."""
    await http.start()
    try:
        async with asyncio.TaskGroup() as group:
            for adapter in adapters:
                group.create_task(adapter.run(), name=f"adapter-{adapter.name}")
                group.create_task(recover_when_ready(adapter, router), name=f"recover-{adapter.name}")
            if reports is not None and reports.destinations:
                group.create_task(reports.run(), name="daily-report")
            if stop is not None:
                group.create_task(_drain_on(stop, router, grace_s), name="shutdown")
    except* _ShutdownDone:
        log.info("shut down")
    finally:
        await http.stop()


async def _drain_on(stop: asyncio.Event, router: Router, grace_s: float) -> None:
    await stop.wait()
    log.info("shutting down: draining running turns (up to %.0fs)", grace_s)
    await router.drain(grace_s)
    raise _ShutdownDone


def register_readiness(http: HttpServer, store: Store, adapters: Sequence[Adapter], router: Router) -> None:
    """`/readyz`: the store answers a trivial query, every adapter is connected, and we are not draining."""

    async def store_answers() -> bool:
        await store.last_reported_day("readyz")
        return True

    def adapter_ready(adapter: Adapter) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return adapter.ready()

        return check

    async def accepting() -> bool:
        return router.accepting

    http.add_readiness_check("store", store_answers)
    for adapter in adapters:
        http.add_readiness_check(f"adapter:{adapter.name}", adapter_ready(adapter))
    http.add_readiness_check("accepting", accepting)


async def recover_when_ready(adapter: Adapter, router: Router, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Once the adapter is connected, tell users whose turns a crash or restart interrupted."""
    if not await wait_until_ready([adapter], timeout_s):
        log.warning(
            "%s did not connect within %.0fs; interrupted turns stay pending", adapter.name, timeout_s
        )
        return
    for note in await router.recover(adapter.name):
        try:
            await adapter.post_notice(note.ref, note.text)
        except Exception:  # one unreachable conversation must not stop the others' notes
            log.warning("could not post a restart note to %s", note.ref.key, exc_info=True)
