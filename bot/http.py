"""The bot's one HTTP server (aiohttp): adapters mount their webhook routes here; `/healthz` answers while
the process lives, `/readyz` only while every registered readiness check passes (the store answers, every
adapter is connected, the bot is not shutting down)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

READY_CHECK_TIMEOUT_S = 3.0


class HttpServer:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.app = web.Application(client_max_size=4 * 1024 * 1024)
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self._checks: dict[str, Callable[[], Awaitable[bool]]] = {}
        self._runner: web.AppRunner | None = None

    def add_route(self, method: str, path: str, handler: Callable[[Any], Awaitable[Any]]) -> None:
        self.app.router.add_route(method, path, handler)

    def add_readiness_check(self, name: str, check: Callable[[], Awaitable[bool]]) -> None:
        """`/readyz` answers 200 only while every check returns True (an exception or timeout is False)."""
        self._checks[name] = check

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        # With port 0 the OS picks one; report the real port (tests, logs).
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("HTTP server listening on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        results = await asyncio.gather(*(_passes(check) for check in self._checks.values()))
        failing = [name for name, ok in zip(self._checks, results, strict=True) if not ok]
        if failing:
            return web.json_response({"ready": False, "not_ready": failing}, status=503)
        return web.json_response({"ready": True, "not_ready": []})


async def _passes(check: Callable[[], Awaitable[bool]], timeout_s: float = READY_CHECK_TIMEOUT_S) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout_s))
    except Exception:
        log.warning("readiness check failed", exc_info=True)
        return False
