"""Transport failures, named right by both providers on the SDKs' aiohttp transport: a server that
accepts the connection but never answers is a timeout, a closed port is "could not connect"."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from core.providers.anthropic import AnthropicProvider
from core.providers.openai import OpenAIProvider
from tests.test_provider_openai import KEY, Provider, failure, request


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that reads the request and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make(kind: str, port: int, timeout_s: float) -> Provider:
    if kind == "openai":
        return OpenAIProvider(KEY, f"http://127.0.0.1:{port}/v1", timeout_s=timeout_s)
    return AnthropicProvider(KEY, f"http://127.0.0.1:{port}", timeout_s=timeout_s)


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_server_that_never_answers_is_a_timeout(kind: str, silent_port: int) -> None:
    provider = make(kind, silent_port, timeout_s=0.3)
    try:
        error = await failure(provider, request())
    finally:
        await provider.aclose()
    assert error.retryable and error.message.endswith("did not answer in time")


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_a_closed_port_is_could_not_connect(kind: str) -> None:
    provider = make(kind, closed_port(), timeout_s=5.0)
    try:
        error = await failure(provider, request())
    finally:
        await provider.aclose()
    assert error.retryable and error.message.startswith("could not connect to")
