"""A free TCP port on 127.0.0.1, for the fake servers and the processes the tests start."""

from __future__ import annotations

import socket

from aiohttp import web


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve_on_free_port(runner: web.AppRunner) -> int:
    """Start `runner` (set up) on a port of 127.0.0.1 bound here and kept: no race with another
    process for a port probed free a moment earlier."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    await web.SockSite(runner, sock).start()
    return port
