"""`bot run` with platform adapters: the HTTP server, every adapter, and crash recovery notes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bot.http import HttpServer
from bot.scheduler import ReportScheduler
from core.adapter import Adapter
from core.router import Router

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0


async def serve(
    adapters: Sequence[Adapter], router: Router, http: HttpServer, reports: ReportScheduler | None = None
) -> None:
    """Run until cancelled (SIGTERM / Ctrl-C) or an adapter fails for good. `reports`, when given, posts
    the daily report (catch-up first, once its adapters are connected)."""
    await http.start()
    try:
        async with asyncio.TaskGroup() as group:
            for adapter in adapters:
                group.create_task(adapter.run(), name=f"adapter-{adapter.name}")
                group.create_task(recover_when_ready(adapter, router), name=f"recover-{adapter.name}")
            if reports is not None and reports.destinations:
                group.create_task(reports.run(), name="daily-report")
    finally:
        await http.stop()


async def recover_when_ready(adapter: Adapter, router: Router, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Once the adapter is connected, tell users whose turns a crash or restart interrupted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not adapter.ready():
        if loop.time() > deadline:
            log.warning(
                "%s did not connect within %.0fs; interrupted turns stay pending", adapter.name, timeout_s
            )
            return
        await asyncio.sleep(0.2)
    for note in await router.recover(adapter.name):
        try:
            await adapter.post_notice(note.ref, note.text)
        except Exception:  # one unreachable conversation must not stop the others' notes
            log.warning("could not post a restart note to %s", note.ref.key, exc_info=True)
