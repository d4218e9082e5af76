"""The aiohttp transport under python-telegram-bot (adapters/telegram/request.py): PTB's own request
objects go out as PTB's httpx transport sends them, and failures come back as PTB's errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from adapters.telegram.request import AiohttpRequest


@pytest.fixture
async def echo() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A server that records each request's form fields and files, and answers 200."""
    seen: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        seen.append(
            {
                name: (value.filename, value.file.read()) if isinstance(value, web.FileField) else value
                for name, value in form.items()
            }
        )
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/{method}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_fields_and_files_go_out_as_a_form(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = echo
    request = AiohttpRequest()
    await request.initialize()
    try:
        text = RequestData(
            [RequestParameter.from_input("chat_id", 42), RequestParameter.from_input("text", "hé & co")]
        )
        status, body = await request.do_request(f"{url}/sendMessage", "POST", text)
        photo = InputFile(b"\x89PNG-bytes", filename="chart.png")
        upload = RequestData(
            [RequestParameter.from_input("chat_id", 42), RequestParameter.from_input("photo", photo)]
        )
        await request.do_request(f"{url}/sendPhoto", "POST", upload)
    finally:
        await request.shutdown()
    assert status == 200 and b'"ok": true' in body
    assert seen[0] == {"chat_id": "42", "text": "hé & co"}
    assert seen[1]["chat_id"] == "42"
    assert list(seen[1].values())[1] == ("chart.png", b"\x89PNG-bytes")


async def test_a_silent_server_is_timed_out_and_a_closed_port_a_network_error() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read(65536)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    silent = server.sockets[0].getsockname()[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    request = AiohttpRequest(read_timeout=0.2)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"http://127.0.0.1:{silent}/getMe", "POST")
        with pytest.raises(NetworkError) as caught:
            await request.do_request(f"http://127.0.0.1:{closed}/getMe", "POST")
        assert not isinstance(caught.value, TimedOut)
    finally:
        await request.shutdown()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
