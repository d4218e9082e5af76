"""The bot's one HTTP server (aiohttp): adapters mount their webhook routes here; `/healthz` answers while
the process lives, `/readyz` only while every registered readiness check passes (the store answers, every
adapter is connected, the bot is not shutting down)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.config import SettingsError

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
        """Listen (a second call is a no-op: `bot run` starts it before its banner, `serve` again).
        Routes must be added before: the app's router is frozen here."""
        if self._runner is not None:
            return
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as error:
            await self.stop()
            raise SettingsError([listen_problem(self.host, self.port, error)]) from None
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


def listen_problem(host: str, port: int, error: OSError) -> str:
    """One config-error line for a server socket that could not be opened."""
    if error.errno == errno.EADDRINUSE:
        return (
            f"HTTP_PORT: port {port} on {host} is already in use (another bot or program is listening); "
            "stop it or set HTTP_PORT to a free port"
        )
    if error.errno == errno.EACCES:
        return f"HTTP_PORT: no permission to listen on port {port}; use a port above 1023, e.g. 8080"
    if error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        return f"HTTP_HOST: {host} is not an address of this machine; use 0.0.0.0 (all) or 127.0.0.1"
    return f"HTTP_HOST/HTTP_PORT: cannot listen on {host}:{port} ({error.strerror or error})"


async def _passes(check: Callable[[], Awaitable[bool]], timeout_s: float = READY_CHECK_TIMEOUT_S) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout_s))
    except Exception:
        log.warning("readiness check failed", exc_info=True)
        return False
