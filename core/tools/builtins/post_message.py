"""`post_message`: post a Markdown message to another channel of the platform the question came from.

An acting tool (`read_only=False`): BOT_TOOL_POLICY asks a person before it runs unless told otherwise.
The core never imports an adapter: the application hands in a `Poster` (bot/destinations.py) that
reaches the running adapters, and reports a platform's refusal as a `DeliveryError`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.surface import DeliveryError
from core.tools.base import Tool, ToolContext, ToolError

log = logging.getLogger(__name__)

# (platform, channel, markdown) -> posted. Raises DeliveryError when the platform refused or failed it,
# LookupError when that platform has no poster, ValueError when `channel` is no channel id there.
Poster = Callable[[str, str, str], Awaitable[None]]
# (platform, channel) -> may the bot post there (ALLOWED_CHANNELS).
PostAllowed = Callable[[str, str], bool]

MAX_TEXT_CHARS = 4000  # below every platform's message limit once converted (Discord splits at 2,000)
MAX_CHANNEL_CHARS = 200

_DESCRIPTION = (
    "Post a message to another channel or chat of the chat platform this conversation is on (never "
    "another platform). Use it only when the user asks you to post, share or announce something "
    "elsewhere; your normal answer already goes to this conversation. `channel` is the channel id as the "
    "platform shows it: Slack `C0123ABCD` (or `#name`), Discord the numeric channel id (`<#id>` is "
    "fine), Telegram the chat id such as `-1001234567890` or a channel `@username` (optionally "
    "`:<topic id>`). Ask the user for the id if you do not know it; do not guess. `text` is Markdown, "
    f"at most {MAX_TEXT_CHARS} characters. A person may have to approve the post first."
)

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "channel": {
            "type": "string",
            "description": "The destination's id as the platform shows it, e.g. C0123ABCD, "
            "123456789012345678, -1001234567890 or @team_news.",
        },
        "text": {"type": "string", "description": "The message, in Markdown."},
    },
    "required": ["channel", "text"],
    "additionalProperties": False,
}


def post_message_tool(poster: Poster, allowed: PostAllowed | None = None) -> Tool:
    """The tool, posting through `poster`; `allowed`, when given, refuses channels it says no to."""

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        channel, text = _checked(args)
        platform = ctx.ref.platform
        if allowed is not None and not allowed(platform, channel):
            raise ToolError(
                f"posting to {channel} is not allowed: this bot may only post to the channels an admin "
                "allowed (ALLOWED_CHANNELS)"
            )
        try:
            await poster(platform, channel, text)
        except DeliveryError as error:
            again = " (a temporary failure: trying once more later may work)" if error.transient else ""
            raise ToolError(f"could not post to {channel}: {error}{again}") from None
        except LookupError:
            raise ToolError(f"posting to other channels is not available on {platform}") from None
        except ValueError as error:
            raise ToolError(f"{channel!r} is not a {platform} channel id: {error}") from None
        except ToolError:
            raise
        except Exception as error:  # the adapter's own bug: say little to the model, log the rest
            log.warning("post_message to %s:%s failed", platform, channel, exc_info=True)
            raise ToolError(f"could not post to {channel} ({type(error).__name__})") from None
        return f"Posted to {channel} on {platform} ({len(text):,} characters)."

    return Tool(
        name="post_message",
        description=_DESCRIPTION,
        input_schema=_SCHEMA,
        handler=handler,
        timeout_s=30.0,
        read_only=False,  # it acts: never run twice on a resume, and asked for by default
    )


def _checked(args: dict[str, Any]) -> tuple[str, str]:
    """The stripped channel and text, or a ToolError that says what to change."""
    channel = str(args.get("channel", "")).strip()
    text = str(args.get("text", "")).strip()
    if not channel:
        raise ToolError("channel is empty: give the destination's channel id")
    if len(channel) > MAX_CHANNEL_CHARS or any(c.isspace() for c in channel):
        raise ToolError("channel must be one channel id as the platform shows it (no spaces)")
    if not text:
        raise ToolError("text is empty: there is nothing to post")
    if len(text) > MAX_TEXT_CHARS:
        raise ToolError(
            f"text is {len(text):,} characters; the limit is {MAX_TEXT_CHARS:,}: shorten it and try again"
        )
    return channel, text
