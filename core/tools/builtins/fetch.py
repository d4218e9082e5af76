"""`fetch_url`: read a web page or text document someone linked in the chat.

Bounded in every direction a hostile page could push: time (one deadline for the whole fetch,
redirects included), size (the body is streamed and cut at `max_bytes`, after decompression, so a
gzip bomb stops early too), redirects (at most five, each target re-checked) and reach (see
`netguard`). Only text comes back; binaries are refused before their body is downloaded.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from core.tools.base import Tool, ToolContext, ToolError
from core.tools.builtins.html_text import html_to_text
from core.tools.builtins.netguard import AddressPolicy, BlockedAddressError, GuardedResolver

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TEXT_TYPES = frozenset(
    {"application/json", "application/xml", "application/javascript", "application/x-ndjson"}
)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HEADERS = {
    "User-Agent": "teammate-bot/0.1 (fetch_url tool)",
    "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,application/json;q=0.9,*/*;q=0.1",
}

_DESCRIPTION = (
    "Fetch a web page or text document over HTTP(S) and return its readable text (HTML is converted to "
    "plain text; plain text and JSON are returned as is). Use it when someone shares a link or asks about "
    "the content of a specific URL. The result starts with the final URL (after redirects), the HTTP "
    "status and the page title. Images and other binary files are not supported, and addresses on "
    "private or internal networks cannot be reached."
)

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {
            "type": "string",
            "description": "Absolute http:// or https:// URL to fetch.",
            "minLength": 8,
            "maxLength": 2048,
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
        },
        "max_chars": {
            "type": "integer",
            "description": "Maximum characters of page text to return (default 8000). Ask for more only "
            "when the first part was not enough.",
            "minimum": 100,
            "maximum": 15000,
            "default": 8000,
        },
    },
    "required": ["url"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class FetchSettings:
    policy: AddressPolicy
    max_bytes: int = 1_000_000
    timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class _Page:
    url: URL
    status: int
    reason: str
    kind: str  # "html" or "text"
    text: str
    truncated_at: int | None  # byte limit hit, if any


def _text_kind(content_type: str) -> str | None:
    if content_type in _HTML_TYPES:
        return "html"
    if (
        content_type.startswith("text/")
        or content_type in _TEXT_TYPES
        or content_type.endswith(("+json", "+xml"))
    ):
        return "text"
    return None


def _decode(body: bytes, charset: str | None, kind: str) -> str:
    if charset is None and kind == "html":
        match = _META_CHARSET_RE.search(body[:4096])
        charset = match.group(1).decode("ascii") if match else None
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return body.decode("utf-8", errors="replace")


async def _read_limited(response: aiohttp.ClientResponse, max_bytes: int) -> tuple[bytes, bool]:
    """Stream the body, stopping as soon as it exceeds `max_bytes` (so memory stays bounded)."""
    buffer = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK):
        buffer += chunk
        if len(buffer) > max_bytes:
            return bytes(buffer[:max_bytes]), True
    return bytes(buffer), False


def _redirect_target(response: aiohttp.ClientResponse) -> URL | None:
    if response.status not in _REDIRECT_STATUSES:
        return None
    location = response.headers.get("Location")
    if not location:
        return None
    try:
        return response.url.join(URL(location))  # Location may be relative
    except ValueError:
        status, url = response.status, response.url
        raise ToolError(f"HTTP {status} from {url} with an invalid Location header") from None


async def _read_page(response: aiohttp.ClientResponse, settings: FetchSettings) -> _Page:
    if response.status >= 400:
        raise ToolError(f"HTTP {response.status} from {response.url}")
    kind = _text_kind(response.content_type)
    if kind is None:
        raise ToolError(f"{response.url} returned content type {response.content_type!r}, which is not text")
    body, truncated = await _read_limited(response, settings.max_bytes)
    return _Page(
        url=response.url,
        status=response.status,
        reason=response.reason or "",
        kind=kind,
        text=_decode(body, response.charset, kind),
        truncated_at=settings.max_bytes if truncated else None,
    )


async def _hop(session: aiohttp.ClientSession, url: URL, settings: FetchSettings) -> _Page | URL:
    """One request: the page, or where it redirects to."""
    try:
        settings.policy.check_url(url)
        async with session.get(url, allow_redirects=False) as response:
            target = _redirect_target(response)
            return target if target is not None else await _read_page(response, settings)
    except BlockedAddressError as exc:  # from check_url, or from the resolver mid-request
        raise ToolError(f"refusing to fetch {url}: {exc}") from None


async def _fetch(url: URL, settings: FetchSettings) -> _Page:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(settings.policy), use_dns_cache=False)
    # trust_env=False: a proxy from the environment would do its own resolving, bypassing the guard.
    async with aiohttp.ClientSession(
        connector=connector, headers=_HEADERS, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
    ) as session:
        for _ in range(MAX_REDIRECTS + 1):
            result = await _hop(session, url, settings)
            if isinstance(result, _Page):
                return result
            url = result
    raise ToolError(f"too many redirects (more than {MAX_REDIRECTS})")


def _render(page: _Page, max_chars: int) -> str:
    lines = [f"URL: {page.url}", f"Status: {page.status} {page.reason}".rstrip()]
    text = page.text
    if page.kind == "html":
        extracted = html_to_text(text)
        text = extracted.text
        if extracted.title:
            lines.append(f"Title: {extracted.title}")
    if page.truncated_at is not None:
        lines.append(f"[body truncated: only the first {page.truncated_at} bytes were downloaded]")
    if len(text) > max_chars:
        text = f"{text[:max_chars]}\n[content truncated: {max_chars} of {len(text)} characters shown]"
    return "\n".join(lines) + "\n\n" + text


async def fetch_text(raw_url: str, max_chars: int, settings: FetchSettings) -> str:
    """Fetch `raw_url` and render it for the model; every failure is a ToolError."""
    try:
        url = URL(raw_url.strip())
    except (ValueError, TypeError):
        raise ToolError(f"invalid URL {raw_url!r}") from None
    try:
        async with asyncio.timeout(settings.timeout_s):
            page = await _fetch(url, settings)
    except TimeoutError:
        raise ToolError(f"fetching {url} timed out after {settings.timeout_s:g}s") from None
    except aiohttp.ClientError as exc:
        raise ToolError(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # e.g. a host name IDNA cannot encode
        raise ToolError(f"invalid URL {url}: {exc}") from None
    return _render(page, max_chars)


def fetch_url_tool(settings: FetchSettings) -> Tool:
    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        return await fetch_text(args["url"], int(args.get("max_chars", 8000)), settings)

    # The registry's deadline is a backstop; our own, shorter one produces the clearer message.
    return Tool(
        name="fetch_url",
        description=_DESCRIPTION,
        input_schema=_SCHEMA,
        handler=handler,
        timeout_s=settings.timeout_s + 5.0,
        read_only=True,  # a GET; the network guard refuses private addresses
    )
