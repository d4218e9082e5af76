"""How the adapter's reply calls reach Discord: one attempt each, every failure a `DeliveryError`.

discord.py retries a 429 (sleeping its retry_after) and a 5xx (1 s, 3 s, 5 s, ...) up to five times
inside one call, on bot routes and interaction webhooks alike, with no switch to turn that off. For a
reply that is wrong: the core's presenter retries the final text itself for minutes honouring
retry_after, and skips interim edits and typing under pressure instead of queueing them behind a rate
limit. So the HTTP trace on discord.py's aiohttp session (every REST call, interaction webhooks and
CDN downloads go through it) stops a 429 or 5xx answer to a call made inside `reply_call` before
discord.py's retry loop sees it, and `reply_call` turns it into a transient DeliveryError carrying
Discord's retry_after. discord.py's pre-emptive bucket waits stay (they avoid 429s rather than cause
them); `MAX_RATELIMIT_WAIT_S` on the client makes a wait longer than that raise `RateLimited` instead
of sleeping, and calls outside `reply_call` (defers, reports, command sync) keep discord.py's retries.

The trace also reports every 429 to the observer once, retried or not, as "METHOD /resource" (no ids,
never an interaction token). Error messages name the call and Discord's status, never a URL (an
interaction webhook URL holds its token).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from types import SimpleNamespace
from typing import TypeVar

import aiohttp
import discord
import yarl
from discord.http import Route

from core.surface import DeliveryError

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_RATELIMIT_WAIT_S = 30.0  # the smallest `max_ratelimit_timeout` discord.py accepts
_ONE_ATTEMPT: contextvars.ContextVar[bool] = contextvars.ContextVar("discord_one_attempt", default=False)


class Unanswered(Exception):
    """Discord answered 429 or 5xx to a reply call; raised from the trace, before discord.py retries."""

    def __init__(self, status: int, retry_after: float | None, bot_wide: bool = False) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after
        self.bot_wide = bot_wide  # X-RateLimit-Global: the bot's global limit, not one channel's bucket


def http_trace(report_429: Callable[[str], None]) -> aiohttp.TraceConfig:
    """The trace for discord.py's HTTP session: reports each 429 as "METHOD /resource" (e.g. "PATCH
    /webhooks") and, inside `reply_call`, stops 429s and 5xx from being retried by discord.py."""

    async def on_request_end(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        status = params.response.status
        if status == 429:
            report_429(f"{params.method} /{_resource(params.url)}")
        if _ONE_ATTEMPT.get() and (status == 429 or status >= 500):
            retry_after = await _retry_after(params.response) if status == 429 else None
            bot_wide = params.response.headers.get("X-RateLimit-Global", "").lower() == "true"
            raise Unanswered(status, retry_after, bot_wide)

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace


def _resource(url: yarl.URL) -> str:
    base = yarl.URL(Route.BASE).path.rstrip("/")
    path = url.path.removeprefix(base) if url.path.startswith(base + "/") else url.path
    return path.strip("/").split("/", 1)[0]


async def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    """Seconds to wait: the body's `retry_after` (a float), else the headers (Retry-After is whole
    seconds, rounded up)."""
    try:
        data = await response.json(content_type=None)
        if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
            return float(data["retry_after"])
    except (aiohttp.ClientError, ValueError):
        pass
    return _header_wait(response.headers)


def _header_wait(headers: Mapping[str, str]) -> float | None:
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value)
            except ValueError:
                continue
    return None


async def reply_call(what: str, call: Awaitable[T]) -> T:
    """Await one reply call (a coroutine not yet started) with discord.py's retries off; its failure
    as a DeliveryError: 429 / RateLimited (with retry_after), 5xx, timeouts and lost connections are
    transient, any other refusal is permanent."""
    token = _ONE_ATTEMPT.set(True)
    try:
        return await call
    except Unanswered as error:
        raise DeliveryError(
            f"{what}: Discord answered {error.status}",
            transient=True,
            retry_after=error.retry_after,
            platform_wide=error.bot_wide,
        ) from None
    except discord.RateLimited as error:
        raise DeliveryError(f"{what}: rate limited", transient=True, retry_after=error.retry_after) from None
    except discord.HTTPException as error:
        raise http_error(what, error) from error
    except (aiohttp.ClientError, OSError) as error:  # TimeoutError is an OSError
        raise DeliveryError(f"{what}: {type(error).__name__}", transient=True) from None
    finally:
        _ONE_ATTEMPT.reset(token)


def http_error(what: str, error: discord.HTTPException) -> DeliveryError:
    status = error.status
    message = f"{what}: Discord answered {status} ({error.code}: {error.text[:200]})"
    if status == 429:
        return DeliveryError(message, transient=True, retry_after=_header_wait(error.response.headers))
    return DeliveryError(message, transient=status >= 500)
