"""Tool registry and built-in tools. No test touches the internet: fetches go to a local server."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from core.inbound import ConversationRef
from core.providers.base import ToolSpec
from core.tools.base import Tool, ToolContext, ToolError
from core.tools.builtins import builtin_tools, calculator_tool, current_time_tool
from core.tools.builtins.calculator import evaluate
from core.tools.builtins.fetch import FetchSettings, fetch_url_tool
from core.tools.builtins.html_text import html_to_text
from core.tools.builtins.netguard import AddressPolicy, non_public_reason
from core.tools.registry import ToolRegistry

CTX = ToolContext(ref=ConversationRef("console", "", "local"), user_id="u1")

ECHO_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "options": {
            "type": "object",
            "properties": {"count": {"type": "integer", "minimum": 1}},
            "additionalProperties": False,
        },
    },
    "required": ["text"],
    "additionalProperties": False,
}


def make_tool(name: str = "echo", handler: Any = None, timeout_s: float = 30.0, schema: Any = None) -> Tool:
    async def echo(args: dict[str, Any], ctx: ToolContext) -> str:
        return str(args["text"])

    return Tool(name, f"{name} tool", ECHO_SCHEMA if schema is None else schema, handler or echo, timeout_s)


# --- registry: registration ---------------------------------------------------------------------


def test_specs_names_and_get_keep_registration_order() -> None:
    registry = ToolRegistry([make_tool("b"), make_tool("a")])
    registry.register(make_tool("c-1_x"))
    assert registry.names == ["b", "a", "c-1_x"]
    assert registry.specs() == [
        ToolSpec("b", "b tool", ECHO_SCHEMA),
        ToolSpec("a", "a tool", ECHO_SCHEMA),
        ToolSpec("c-1_x", "c-1_x tool", ECHO_SCHEMA),
    ]
    tool = registry.get("a")
    assert tool is not None and tool.name == "a"
    assert registry.get("zzz") is None
    assert "b" in registry and len(registry) == 3


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        (make_tool("has space"), "invalid tool name"),
        (make_tool(""), "invalid tool name"),
        (make_tool("x" * 65), "invalid tool name"),
        (make_tool("dotted.name"), "invalid tool name"),
        (make_tool(schema={"type": "object", "properties": 5}), "not a valid JSON Schema"),
        (make_tool(schema={"type": "objekt"}), "not a valid JSON Schema"),
        (make_tool(schema={"type": "string"}), '"type": "object"'),
        (make_tool(schema={"properties": {}}), '"type": "object"'),
        (make_tool(timeout_s=0), "timeout_s"),
    ],
)
def test_register_rejects_bad_tools(tool: Tool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ToolRegistry([tool])


def test_register_rejects_duplicates() -> None:
    registry = ToolRegistry([make_tool("echo")])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(make_tool("echo"))


def test_builtins_register_cleanly() -> None:
    registry = ToolRegistry(builtin_tools())
    assert registry.names == ["current_time", "calculator", "fetch_url"]
    for spec in registry.specs():
        assert spec.input_schema["additionalProperties"] is False
        assert len(spec.description) > 40


# --- registry: running --------------------------------------------------------------------------


async def test_run_success() -> None:
    outcome = await ToolRegistry([make_tool()]).run("echo", {"text": "hi"}, CTX)
    assert (outcome.output, outcome.is_error) == ("hi", False)
    assert 0 <= outcome.duration_s < 1


async def test_unknown_tool_lists_available() -> None:
    outcome = await ToolRegistry([make_tool("echo"), make_tool("other")]).run("nope", {}, CTX)
    assert outcome.is_error
    assert "unknown tool 'nope'" in outcome.output and "echo, other" in outcome.output


async def test_arguments_not_an_object() -> None:
    outcome = await ToolRegistry([make_tool()]).run("echo", None, CTX)
    assert outcome.is_error and "not a JSON object" in outcome.output


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "invalid input: 'text' is a required property"),
        ({"text": 3}, "invalid input: 3 is not of type 'string' (at $.text)"),
        ({"text": "a", "extra": 1}, "invalid input: Additional properties are not allowed"),
        ({"text": "a", "options": {"count": 0}}, "(at $.options.count)"),
    ],
)
async def test_validation_failure_does_not_run_the_tool(arguments: dict[str, Any], expected: str) -> None:
    calls: list[dict[str, Any]] = []

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        calls.append(args)
        return "ran"

    outcome = await ToolRegistry([make_tool(handler=handler)]).run("echo", arguments, CTX)
    assert outcome.is_error and expected in outcome.output
    assert calls == []


async def test_tool_error_message_is_returned() -> None:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        raise ToolError("no such customer")

    outcome = await ToolRegistry([make_tool(handler=handler)]).run("echo", {"text": "x"}, CTX)
    assert (outcome.output, outcome.is_error) == ("no such customer", True)


async def test_unexpected_exception_is_reported_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="core.tools.registry"):
        outcome = await ToolRegistry([make_tool(handler=handler)]).run("echo", {"text": "x"}, CTX)
    assert (outcome.output, outcome.is_error) == ("tool failed: RuntimeError: boom", True)
    assert "Traceback" not in outcome.output
    assert caplog.records and caplog.records[0].exc_info is not None


async def test_timeout_error_raised_by_the_tool_is_a_failure_not_a_timeout() -> None:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        raise TimeoutError("upstream slow")

    outcome = await ToolRegistry([make_tool(handler=handler)]).run("echo", {"text": "x"}, CTX)
    assert outcome.output == "tool failed: TimeoutError: upstream slow"


async def test_timeout() -> None:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        await asyncio.sleep(10)
        return "late"

    outcome = await ToolRegistry([make_tool(handler=handler, timeout_s=0.05)]).run("echo", {"text": "x"}, CTX)
    assert (outcome.output, outcome.is_error) == ("tool timed out after 0.05s", True)
    assert outcome.duration_s < 1


async def test_long_output_is_truncated() -> None:
    registry = ToolRegistry([make_tool()], max_output_chars=10)
    outcome = await registry.run("echo", {"text": "x" * 25}, CTX)
    assert outcome.output == "x" * 10 + "\n[output truncated: 10 of 25 characters shown]"
    assert not outcome.is_error


async def test_cancellation_propagates() -> None:
    started = asyncio.Event()

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        started.set()
        await asyncio.sleep(10)
        return "late"

    task = asyncio.create_task(ToolRegistry([make_tool(handler=handler)]).run("echo", {"text": "x"}, CTX))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- current_time -------------------------------------------------------------------------------

SUMMER = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)  # a Monday
WINTER = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("now", "zone", "iso", "offset"),
    [
        (SUMMER, None, "2024-07-01T12:00:00+00:00", "UTC+00:00"),
        (SUMMER, "Europe/Berlin", "2024-07-01T14:00:00+02:00", "(CEST, UTC+02:00)"),
        (WINTER, "Europe/Berlin", "2024-01-15T13:00:00+01:00", "(CET, UTC+01:00)"),
        (SUMMER, "America/New_York", "2024-07-01T08:00:00-04:00", "UTC-04:00"),
        (SUMMER, "Asia/Kolkata", "2024-07-01T17:30:00+05:30", "UTC+05:30"),
    ],
)
async def test_current_time(now: datetime, zone: str | None, iso: str, offset: str) -> None:
    registry = ToolRegistry([current_time_tool(now=lambda: now)])
    outcome = await registry.run("current_time", {} if zone is None else {"timezone": zone}, CTX)
    assert not outcome.is_error
    assert f"datetime: {iso}" in outcome.output
    assert "weekday: Monday" in outcome.output
    assert offset in outcome.output


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime"])
async def test_current_time_unknown_zone(zone: str) -> None:
    outcome = await ToolRegistry([current_time_tool()]).run("current_time", {"timezone": zone}, CTX)
    assert (outcome.output, outcome.is_error) == (f"unknown timezone {zone!r}", True)


async def test_current_time_real_clock() -> None:
    outcome = await ToolRegistry(builtin_tools()).run("current_time", {"timezone": "Asia/Tokyo"}, CTX)
    assert not outcome.is_error and "+09:00" in outcome.output


# --- calculator ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("0.1 + 0.2", "0.3"),
        ("7 / 2", "3.5"),
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2 ** 10", "1024"),
        ("-2 ** 2", "-4"),
        ("+5", "5"),
        ("2 ** 100", str(2**100)),
        ("sqrt(16)", "4"),
        ("log(1000, 10)", "3"),
        ("log10(0.001)", "-3"),
        ("exp(0)", "1"),
        ("sin(0) + cos(0)", "1"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("abs(-3.5)", "3.5"),
        ("round(2.567, 2)", "2.57"),
        ("min(3, 1, 2) + max(3, 1, 2)", "4"),
        ("pi", "3.14159265358979"),
        ("tau / 2 - pi", "0"),
        ("e", "2.71828182845905"),
        ("1_000 * 3", "3000"),
    ],
)
async def test_calculator(expression: str, expected: str) -> None:
    outcome = await ToolRegistry([calculator_tool()]).run("calculator", {"expression": expression}, CTX)
    assert (outcome.output, outcome.is_error) == (expected, False)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("5 // 0.0", "division by zero"),
        ("__import__('os').system('id')", "unsupported expression"),
        ("x + 1", "unsupported expression"),
        ("'a' * 3", "unsupported expression"),
        ("(1).real", "unsupported expression"),
        ("open('/etc/passwd')", "unsupported expression"),
        ("pi()", "unsupported expression"),
        ("sqrt(x=4)", "unsupported expression"),
        ("max(*[1, 2])", "unsupported expression"),
        ("[1, 2]", "unsupported expression"),
        ("1 < 2", "unsupported expression"),
        ("True + 1", "unsupported expression"),
        ("lambda: 1", "unsupported expression"),
        ("1 +", "could not parse"),
        ("sqrt(-1)", "math error"),
        ("min()", "wrong number or type of arguments for min()"),
        ("(-8) ** (1/3)", "not a real number"),
        ("exp(1000)", "result too large"),
        ("10.0 ** 400", "result too large"),
        ("1e308 * 10", "result too large"),
        ("10 ** 400 / 3", "result too large"),
        ("round(5, -10 ** 50)", "round() digits"),
    ],
)
def test_calculator_refusals(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate(expression)


@pytest.mark.parametrize(
    "expression", ["9**9**9", "2 ** 10 ** 10", "10 ** 2000 * 10 ** 2000", "(-3) ** 99999"]
)
def test_calculator_huge_results_are_refused_quickly(expression: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ToolError, match="result too large"):
        evaluate(expression)
    assert time.perf_counter() - start < 0.1


async def test_calculator_expression_length_is_capped_by_schema() -> None:
    outcome = await ToolRegistry([calculator_tool()]).run("calculator", {"expression": "1+" * 300 + "1"}, CTX)
    assert outcome.is_error and outcome.output.startswith("invalid input:")


# --- fetch_url: helpers -------------------------------------------------------------------------


def test_html_to_text() -> None:
    page = html_to_text(
        "<html><head><title> My  Page </title><style>p{color:red}</style>"
        "<script>alert('x')</script></head><body><h1>Hello</h1><p>First   para,\n"
        "<b>bold</b> &amp; more.</p><noscript>enable js</noscript><ul><li>one</li><li>two</li></ul>"
        "<svg><title>icon</title><text>junk</text></svg>line<br>break</body></html>"
    )
    assert page.title == "My Page"
    assert page.text == "Hello\n\nFirst para, bold & more.\n\n- one\n\n- two\n\nline\nbreak"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_non_public_reason(address: str, reason: str | None) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) == reason


# --- fetch_url against a local server -----------------------------------------------------------

HTML = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Team Wiki</title>"
    "<script>var secret = 1;</script></head><body><h1>Welcome</h1><p>Deploys happen on Tuesdays.</p>"
    "</body></html>"
)


def _app() -> web.Application:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text=HTML, content_type="text/html")

    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="just   text\nkept as is", content_type="text/plain")

    async def data(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def big(request: web.Request) -> web.Response:
        return web.Response(text="a" * 5000, content_type="text/plain")

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"\0" * 100, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        # ?to= an absolute target; otherwise a relative one, to check Location is resolved.
        raise web.HTTPFound(request.query.get("to", "/page"))

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"/loop?n={int(request.query.get('n', '0')) + 1}")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    for path, handler in [
        ("/page", page),
        ("/plain", plain),
        ("/data", data),
        ("/big", big),
        ("/image", image),
        ("/redirect", redirect),
        ("/loop", loop),
        ("/slow", slow),
    ]:
        app.router.add_get(path, handler)
    return app


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    test_server = TestServer(_app(), host="127.0.0.1")
    await test_server.start_server()
    try:
        yield test_server
    finally:
        await test_server.close()


def _url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def _fetch(registry: ToolRegistry, url: str, **extra: Any) -> tuple[str, bool]:
    outcome = await registry.run("fetch_url", {"url": url, **extra}, CTX)
    return outcome.output, outcome.is_error


@pytest.fixture
def open_registry() -> ToolRegistry:
    return ToolRegistry(builtin_tools(fetch_allow_private=True, fetch_max_bytes=1000, fetch_timeout_s=0.3))


async def test_fetch_html(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/page"))
    assert not is_error
    assert output.startswith(f"URL: {_url(server, '/page')}\nStatus: 200 OK\nTitle: Team Wiki\n\n")
    assert output.endswith("Welcome\n\nDeploys happen on Tuesdays.")
    assert "secret" not in output


async def test_fetch_plain_text_and_json_as_is(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/plain"))
    assert not is_error and output.endswith("\n\njust   text\nkept as is") and "Title:" not in output
    output, is_error = await _fetch(open_registry, _url(server, "/data"))
    assert not is_error and output.endswith('\n\n{"ok": true}')


async def test_fetch_byte_limit_and_max_chars(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/big"))
    assert not is_error
    assert "[body truncated: only the first 1000 bytes were downloaded]" in output
    assert output.endswith("\n\n" + "a" * 1000)
    output, _ = await _fetch(open_registry, _url(server, "/big"), max_chars=100)
    assert output.endswith("a" * 100 + "\n[content truncated: 100 of 1000 characters shown]")


async def test_fetch_refuses_binary(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/image"))
    assert is_error and "'image/png', which is not text" in output


async def test_fetch_http_error(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/missing"))
    assert (output, is_error) == (f"HTTP 404 from {_url(server, '/missing')}", True)


async def test_fetch_follows_redirects(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/redirect"))
    assert not is_error and output.startswith(f"URL: {_url(server, '/page')}\n")
    output, is_error = await _fetch(open_registry, _url(server, "/loop"))
    assert (output, is_error) == ("too many redirects (more than 5)", True)


async def test_fetch_timeout(server: TestServer, open_registry: ToolRegistry) -> None:
    output, is_error = await _fetch(open_registry, _url(server, "/slow"))
    assert is_error and output.endswith("timed out after 0.3s")


async def test_fetch_refuses_private_addresses(server: TestServer) -> None:
    registry = ToolRegistry(builtin_tools())
    output, is_error = await _fetch(registry, _url(server, "/page"))
    assert is_error and "127.0.0.1, a loopback address" in output and output.startswith("refusing to fetch")
    # A name is checked where it is resolved, inside the connector.
    output, is_error = await _fetch(registry, f"http://localhost:{server.port}/page")
    assert is_error and "localhost resolves to" in output and "loopback address" in output


async def test_fetch_refuses_redirect_to_private_address(server: TestServer) -> None:
    # The test server itself is exempt (it stands in for a public site); where it redirects is not.
    policy = AddressPolicy(exempt=frozenset({("127.0.0.1", server.port or 0)}))
    registry = ToolRegistry([fetch_url_tool(FetchSettings(policy=policy))])
    output, is_error = await _fetch(registry, _url(server, "/page"))
    assert not is_error and "Team Wiki" in output
    for target in ("http://127.0.0.1:1/admin", "http://localhost:1/admin", "http://[::1]:1/"):
        output, is_error = await _fetch(registry, _url(server, f"/redirect?to={target}"))
        assert is_error and output.startswith("refusing to fetch http") and "loopback address" in output


async def test_fetch_refuses_other_schemes() -> None:
    registry = ToolRegistry(builtin_tools(fetch_allow_private=True))
    output, is_error = await _fetch(registry, "file:///etc/passwd")
    assert is_error and output.startswith("invalid input:")  # the schema refuses it first
    # ...and the handler refuses it too, should it ever be called without the registry.
    tool = registry.get("fetch_url")
    assert tool is not None
    with pytest.raises(ToolError, match="only http and https"):
        await tool.handler({"url": "file:///etc/passwd"}, CTX)
