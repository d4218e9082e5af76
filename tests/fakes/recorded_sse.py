"""Recorded SSE bodies served byte for byte: the server and the cases behind the providers' parity tests
(tests/test_anthropic_fast_stream.py, tests/test_openai_fast_stream.py).

A case is the body as the network delivered it (its chunk boundaries included); the server answers a
POST on its path with the case named by the request's `model`, one write per chunk, and ends it cleanly
or by resetting the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from core.conversation import Message
from core.providers.base import Provider, ProviderChunk, ProviderError, ProviderRequest, TextChunk
from tests.ports import serve_on_free_port


@dataclass(frozen=True)
class Case:
    chunks: tuple[bytes, ...]  # written one by one, so these are the network chunk boundaries
    abort: bool = False  # end by resetting the connection instead of a clean end of body
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of(*parts: bytes | list[bytes], abort: bool = False) -> Case:
        flat: list[bytes] = []
        for part in parts:
            flat.extend(part if isinstance(part, list) else [part])
        return Case(tuple(flat), abort=abort)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


def split_bytes(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def error_fields(error: ProviderError) -> tuple[Any, ...]:
    """Everything a ProviderError carries, for comparing two paths' errors field by field."""
    return (error.message, error.retryable, error.retry_after, error.status, error.extra)


# What one path made of a case: its chunks, and the error's fields (None: it ended cleanly).
Outcome = tuple[list[ProviderChunk], tuple[Any, ...] | None]


def case_request(case_name: str) -> ProviderRequest:
    """The request for a recorded case: the server picks the case by the request's model."""
    return ProviderRequest(case_name, "You are terse.", (Message.user("hi"),), max_tokens=256)


async def fast_path_outcome(provider: Provider, case_name: str, *, close: bool) -> Outcome:
    """The provider's own `stream` over a case; `close`: the provider is this call's alone."""
    chunks: list[ProviderChunk] = []
    try:
        async for chunk in provider.stream(case_request(case_name)):
            chunks.append(chunk)
    except ProviderError as error:
        return chunks, error_fields(error)
    finally:
        if close:
            await provider.aclose()
    return chunks, None


class RecordedServer:
    """Answers POST `path` with `cases[request model]`; `request_id_header` names the request id the
    provider's API sends."""

    def __init__(self, path: str, cases: Mapping[str, Case], request_id_header: str, request_id: str) -> None:
        self.port = 0
        self.peers: list[Any] = []  # the client address of each request (the same one: a reused connection)
        self._path = path
        self._cases = cases
        self._request_id = (request_id_header, request_id)
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self._path, self._answer)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self.port = await serve_on_free_port(self._runner)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        self.peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        case = self._cases[(await request.json())["model"]]
        headers = {self._request_id[0]: self._request_id[1], **dict(case.headers)}
        if case.status != 200:
            headers["content-type"] = "application/json"
            return web.Response(status=case.status, body=case.body, headers=headers)
        headers |= {"content-type": "text/event-stream", "cache-control": "no-cache"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            for piece in case.chunks:
                await response.write(piece)
                await asyncio.sleep(0)  # let each chunk go out on its own, so boundaries mostly survive
            if case.abort and request.transport is not None:
                request.transport.abort()
                return response
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client stopped reading after an error frame or [DONE]: nothing left to do
        return response


def text_runs(chunks: list[ProviderChunk]) -> list[ProviderChunk]:
    """Adjacent text chunks as one: the fast path merges the text of one network read
    (`core.providers.base.append_text`), the SDKs yield a chunk per frame; the parity is in the text."""
    out: list[ProviderChunk] = []
    for chunk in chunks:
        if isinstance(chunk, TextChunk) and out and isinstance(out[-1], TextChunk):
            out[-1] = TextChunk(out[-1].text + chunk.text)
        else:
            out.append(chunk)
    return out
