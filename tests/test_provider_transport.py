"""Transport failures, named right by both providers on the SDKs' aiohttp transport: a server that
accepts the connection but never answers is a timeout, a closed port is "could not connect"."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from core.providers.anthropic import AnthropicProvider
from core.providers.base import ProviderChunk, ProviderError, TextChunk
from core.providers.openai import OpenAIProvider
from tests.fakes.llm_server import FakeLLMServer, Reply
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


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_an_answer_that_stalls_mid_stream_is_ended(kind: str, llm_server: FakeLLMServer) -> None:
    # The first words at once, then silence: the stall watch (not a per-read timer) ends the stream.
    stalls = Reply.text("first words then nothing", chunks=3, delay_s=30.0).with_(first_delay_s=0.0)
    llm_server.script(kind, stalls)
    provider: Provider = (
        OpenAIProvider(KEY, llm_server.openai_base_url, timeout_s=0.4)
        if kind == "openai"
        else AnthropicProvider(KEY, llm_server.anthropic_base_url, timeout_s=0.4)
    )
    seen: list[ProviderChunk] = []
    started = time.monotonic()
    try:
        with pytest.raises(ProviderError) as caught:
            async for chunk in provider.stream(request()):
                seen.append(chunk)
    finally:
        await provider.aclose()
    assert seen == [TextChunk("first wo")]  # the first of 3 chunks
    assert caught.value.retryable and "stopped sending the answer for 0.4s" in caught.value.message
    assert time.monotonic() - started < 5.0  # ended by the watch, not by the 30 s pause ending
