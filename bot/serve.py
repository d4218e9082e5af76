"""`bot run` with platform adapters: the HTTP server, every adapter, crash recovery notes, readiness and a
graceful shutdown (drain running turns, then disconnect)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from bot.http import HttpServer
from bot.scheduler import ReportScheduler
from core.adapter import Adapter, wait_until_ready
from core.providers.pool import ProviderPool
from core.router import Router
from core.storage.base import Store

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
# Replicas on one PostgreSQL look for turns a vanished replica left unfinished this often.
ORPHAN_SWEEP_S = 60.0
# Platforms redeliver an event for minutes at most (Slack: 3 retries within ~1 hour); a week is ample.
EVENT_MEMORY = timedelta(days=7)
PRUNE_EVERY_S = 6 * 3600.0


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
    store: Store | None = None,
) -> None:
    """Run until cancelled (Ctrl-C), `stop` is set (SIGTERM) or an adapter fails for good. `reports`, when
    given, posts the daily report (catch-up first, once its adapters are connected).

    When `stop` is set the router stops taking new messages (they get a short "restarting" reply) while
    adapters stay connected, so running turns can finish and be rendered within `grace_s` seconds; turns
    still running then are cancelled (stored as cancelled), and everything disconnects.

    `store`, when given, gets housekeeping: old event ids are pruned, and when it is shared with other
    replicas the turns a vanished replica left unfinished are closed (with a note) every minute."""
    await http.start()
    try:
        async with asyncio.TaskGroup() as group:
            sweep_s = ORPHAN_SWEEP_S if store is not None and store.shared else None
            for adapter in adapters:
                group.create_task(adapter.run(), name=f"adapter-{adapter.name}")
                group.create_task(
                    recover_when_ready(adapter, router, sweep_s=sweep_s), name=f"recover-{adapter.name}"
                )
            if store is not None:
                group.create_task(prune_events(store), name="prune-events")
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


def register_readiness(
    http: HttpServer,
    store: Store,
    adapters: Sequence[Adapter],
    router: Router,
    providers: ProviderPool | None = None,
) -> None:
    """`/readyz`: the store answers a trivial query, every adapter is connected, the provider SDKs are
    imported (seconds for `anthropic`, in a worker thread) and we are not draining."""

    async def store_answers() -> bool:
        return await store.ready()

    def adapter_ready(adapter: Adapter) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return adapter.ready()

        return check

    async def accepting() -> bool:
        return router.accepting

    http.add_readiness_check("store", store_answers)
    for adapter in adapters:
        http.add_readiness_check(f"adapter:{adapter.name}", adapter_ready(adapter))
    if providers is not None:
        pool = providers

        async def providers_loaded() -> bool:
            return pool.warmed()

        http.add_readiness_check("providers", providers_loaded)
    http.add_readiness_check("accepting", accepting)


async def recover_when_ready(
    adapter: Adapter, router: Router, timeout_s: float = READY_TIMEOUT_S, *, sweep_s: float | None = None
) -> None:
    """Once the adapter is connected, finish what a crash or restart left undone (answers delivered,
    waiting messages answered, see `Router.recover`); with `sweep_s`, keep doing so for replicas that
    vanish later."""
    if not await wait_until_ready([adapter], timeout_s):
        log.warning(
            "%s did not connect within %.0fs; interrupted turns stay pending", adapter.name, timeout_s
        )
        return
    while True:
        try:
            taken = await router.recover(adapter.name, adapter.surface_for)
            if taken:
                log.info("%s: took over %d turn(s) left unfinished or undelivered", adapter.name, taken)
        except Exception:  # the database may be briefly away; the next sweep tries again
            if sweep_s is None:
                raise
            log.warning("could not look for interrupted turns", exc_info=True)
        if sweep_s is None:
            return
        await asyncio.sleep(sweep_s)


async def prune_events(store: Store, every_s: float = PRUNE_EVERY_S) -> None:
    """Forget platform event ids older than EVENT_MEMORY, now and then, so the table stays small."""
    while True:
        try:
            removed = await store.prune_events(datetime.now(UTC) - EVENT_MEMORY)
            if removed:
                log.info("forgot %d old event ids", removed)
        except Exception:
            log.warning("could not prune old event ids", exc_info=True)
        await asyncio.sleep(every_s)
