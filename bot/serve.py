"""`bot run` with platform adapters: the HTTP server, every adapter under a supervisor, crash recovery
notes, readiness and a graceful shutdown (drain running turns, then disconnect).

Each adapter runs under its own supervisor, so one platform failing never takes the others down: an
adapter whose `run()` fails after it had connected is logged (one line), reported down (/readyz via its
`ready()`, /metrics through the `SupervisionObserver`) and started again with exponential backoff,
while the other adapters, running turns, HTTP and the scheduler go on. An adapter that fails on its
very first start, before it ever connected, is a setting to fix (a rejected token, an intent not
enabled, an unreachable API URL): `serve` then ends with `AdapterStartError`, a `SettingsError` that
`bot run` prints as one `config error:` line.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bot.config import SettingsError
from bot.http import HttpServer
from bot.scheduler import ReportScheduler
from core.adapter import Adapter
from core.providers.pool import ProviderPool
from core.router import Router
from core.storage.base import Store

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # an adapter not connected by then is logged (and still waited for)
READY_POLL_S = 0.05
# Replicas on one PostgreSQL look for turns a vanished replica left unfinished this often.
ORPHAN_SWEEP_S = 60.0
# Platforms redeliver an event for minutes at most (Slack: 3 retries within ~1 hour); a week is ample.
EVENT_MEMORY = timedelta(days=7)
PRUNE_EVERY_S = 6 * 3600.0


class _ShutdownDone(Exception):
    """Raised inside the task group once draining is over, to end every task (adapters disconnect)."""


class AdapterStartError(SettingsError):
    """An adapter failed on its first start, before it ever connected: `bot run` ends with this one
    `config error:` line (the adapter's own error names the setting to fix; it never holds a secret)."""

    def __init__(self, platform: str, error: BaseException | None) -> None:
        # The adapters' start errors are sentences that name the setting to fix; others get their type.
        reason = (str(error).strip() or type(error).__name__) if error else "it stopped before it connected"
        super().__init__([f"{platform} could not start: {reason}"])
        self.platform = platform


@dataclass(frozen=True)
class RestartPolicy:
    """How a failed adapter is started again: after `first_delay_s`, doubling up to `max_delay_s`; once
    an attempt stayed up `stable_after_s`, the next failure starts from `first_delay_s` again."""

    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    stable_after_s: float = 300.0


class SupervisionObserver(Protocol):
    """What the supervisor reports for operations (bot/metrics.py counts it). Must never raise."""

    def adapter_restarting(self, platform: str) -> None:
        """The adapter failed and will be started again."""
        ...

    def adapter_up(self, platform: str, up: bool) -> None:
        """True once the adapter connected; False when its run ended (failed or stopped)."""
        ...


class _NoSupervisionObserver:
    def adapter_restarting(self, platform: str) -> None:
        pass

    def adapter_up(self, platform: str, up: bool) -> None:
        pass


def _describe(error: BaseException) -> str:
    """For the log: the error's type and text (adapters keep secrets out of their errors)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def serve(
    adapters: Sequence[Adapter],
    router: Router,
    http: HttpServer,
    reports: ReportScheduler | None = None,
    *,
    stop: asyncio.Event | None = None,
    grace_s: float = 30.0,
    store: Store | None = None,
    restart: RestartPolicy | None = None,
    observer: SupervisionObserver | None = None,
) -> None:
    """Run until cancelled (Ctrl-C), `stop` is set (SIGTERM) or an adapter fails on its first start
    (`AdapterStartError`). `reports`, when given, posts the daily report (catch-up first, once its
    adapters are connected). Adapters that fail later are restarted as `restart` says (see the module
    docstring), reported to `observer`.

    When `stop` is set the router stops taking new messages (they get a short "restarting" reply) while
    adapters stay connected, so running turns can finish and be rendered within `grace_s` seconds; turns
    still running then are cancelled (stored as cancelled), and everything disconnects.

    `store`, when given, gets housekeeping: old event ids are pruned, and when it is shared with other
    replicas the turns a vanished replica left unfinished are closed (with a note) every minute."""
    policy = restart or RestartPolicy()
    watcher = observer or _NoSupervisionObserver()
    await http.start()
    try:
        async with asyncio.TaskGroup() as group:
            sweep_s = ORPHAN_SWEEP_S if store is not None and store.shared else None
            for adapter in adapters:
                group.create_task(
                    supervise(adapter, router, policy, watcher, sweep_s=sweep_s),
                    name=f"adapter-{adapter.name}",
                )
            if store is not None:
                group.create_task(prune_events(store), name="prune-events")
            if reports is not None and reports.destinations:
                group.create_task(reports.run(), name="daily-report")
            if stop is not None:
                group.create_task(_drain_on(stop, router, grace_s), name="shutdown")
    except* _ShutdownDone:
        log.info("shut down")
    except* AdapterStartError as failed:
        first = failed.exceptions[0]
        raise first from first.__cause__  # one readable error for `bot run`, not a group
    finally:
        await http.stop()


class _Attempt:
    """One run of an adapter: did it connect?"""

    def __init__(self) -> None:
        self.connected = False


async def supervise(
    adapter: Adapter,
    router: Router,
    policy: RestartPolicy,
    observer: SupervisionObserver,
    *,
    sweep_s: float | None = None,
) -> None:
    """Run `adapter` until cancelled, starting it again whenever it fails (see the module docstring)."""
    loop = asyncio.get_running_loop()
    delay = policy.first_delay_s
    first = True
    while True:
        attempt = _Attempt()
        started = loop.time()
        error = await _run_once(adapter, router, attempt, observer, sweep_s)
        if first and not attempt.connected:
            raise AdapterStartError(adapter.name, error) from error
        first = False
        if loop.time() - started >= policy.stable_after_s:
            delay = policy.first_delay_s
        observer.adapter_restarting(adapter.name)
        reason = _describe(error) if error is not None else "it stopped without an error"
        log.error("%s adapter failed (%s); restarting in %gs", adapter.name, reason, delay)
        if error is not None:
            log.debug("%s adapter failure", adapter.name, exc_info=error)
        await asyncio.sleep(delay)
        delay = min(delay * 2, policy.max_delay_s)


async def _run_once(
    adapter: Adapter,
    router: Router,
    attempt: _Attempt,
    observer: SupervisionObserver,
    sweep_s: float | None,
) -> Exception | None:
    """One `adapter.run()`, with the recovery of unfinished turns once it connected; returns how it
    failed (None: it returned by itself). Cancellation (shutdown) passes through."""
    watch = asyncio.create_task(
        _when_connected(adapter, router, attempt, observer, sweep_s), name=f"recover-{adapter.name}"
    )
    try:
        await adapter.run()
        return None
    except Exception as error:
        return error
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        if attempt.connected:
            observer.adapter_up(adapter.name, False)


async def _when_connected(
    adapter: Adapter,
    router: Router,
    attempt: _Attempt,
    observer: SupervisionObserver,
    sweep_s: float | None,
) -> None:
    await _until_ready(adapter)
    attempt.connected = True
    observer.adapter_up(adapter.name, True)
    try:
        await recover_turns(adapter, router, sweep_s=sweep_s)
    except Exception:  # the next start (of the adapter or the process) looks again
        log.exception("%s: could not look for interrupted turns", adapter.name)


async def _until_ready(adapter: Adapter, poll_s: float = READY_POLL_S) -> None:
    """Polled often: an adapter that connects and fails soon after must count as having connected."""
    loop = asyncio.get_running_loop()
    warn_at = loop.time() + READY_TIMEOUT_S
    while not adapter.ready():
        if loop.time() > warn_at:
            log.warning("%s did not connect within %.0fs; still trying", adapter.name, READY_TIMEOUT_S)
            warn_at = math.inf
        await asyncio.sleep(poll_s)


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
    """`/readyz`: the store answers a trivial query, every adapter is connected (`ready()` is False while
    a failed adapter waits to be restarted), the provider SDKs are imported (seconds for `anthropic`, in
    a worker thread) and we are not draining."""

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


async def recover_turns(adapter: Adapter, router: Router, *, sweep_s: float | None = None) -> None:
    """Finish what a crash or restart left undone on a connected adapter (answers delivered, waiting
    messages answered, see `Router.recover`); with `sweep_s`, keep doing so for replicas that vanish
    later."""
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
