"""Where the `post_message` tool posts: one poster per connected platform, from its adapter.

The tool lives in the core, which never imports an adapter. `bot run` fills one `Posters` with each
configured adapter's `post_announcement` and offers the tool with it (bot/cli.py); the console has no
other channel to post to. A platform's own errors are turned into the core's `DeliveryError` here,
with a reason a model (and the person reading its answer) can act on; they never carry a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from core.adapter import Adapter
from core.surface import DeliveryError

log = logging.getLogger(__name__)

Post = Callable[[str, str], Awaitable[None]]  # (channel, markdown): an adapter's post_announcement

# What a channel id looks like, for the model when it sent something else.
ID_HINTS = {
    "slack": "use the channel id such as C0123ABCD (or #channel-name)",
    "discord": "use the numeric channel id (Developer Mode, right-click the channel, Copy Channel ID)",
    "telegram": "use a chat id such as -1001234567890 or a channel @username, optionally :<topic id>",
}

# Slack's refusals of chat.postMessage, in words (https://docs.slack.dev/reference/methods/chat.postMessage).
SLACK_REASONS = {
    "channel_not_found": "there is no such channel, or the bot cannot see it",
    "not_in_channel": "the bot is not a member of that channel: someone has to invite it first",
    "is_archived": "that channel is archived",
    "restricted_action": "the workspace does not let the bot post there",
    "restricted_action_read_only_channel": "that channel is read-only",
    "restricted_action_thread_only_channel": "that channel only takes thread replies",
    "restricted_action_non_threadable_channel": "the workspace does not let the bot post there",
    "cannot_reply_to_message": "the workspace does not let the bot post there",
    "msg_blocks_too_long": "the message is too long for Slack",
}


class Posters:
    """A `core.tools.builtins.Poster`: `await posters(platform, channel, text)`."""

    def __init__(self) -> None:
        self._posts: dict[str, Post] = {}

    def add(self, platform: str, post: Post) -> None:
        self._posts[platform] = post

    def add_adapters(self, adapters: Iterable[Adapter]) -> None:
        for adapter in adapters:
            self.add(adapter.name, adapter.post_announcement)

    @property
    def platforms(self) -> frozenset[str]:
        return frozenset(self._posts)

    async def __call__(self, platform: str, channel: str, text: str) -> None:
        """Post through `platform`'s adapter. Raises LookupError (no such adapter), ValueError (not a
        channel id there, with a hint) or DeliveryError (the platform refused or failed the post)."""
        post = self._posts.get(platform)
        if post is None:
            raise LookupError(platform)
        try:
            await post(channel, text)
        except DeliveryError:
            raise
        except ValueError:  # the adapter could not read the destination
            raise ValueError(ID_HINTS.get(platform, "use the channel id as the platform shows it")) from None
        except Exception as error:
            translated = platform_error(platform, error)
            if translated is None:
                raise
            raise translated from None


def allowed_channels(entries: Iterable[str]) -> Callable[[str, str], bool] | None:
    """With ALLOWED_CHANNELS set, `post_message` posts only to the channels it lists by id
    (`platform:id` or a bare id); a `workspace:` entry does not count, since a destination's workspace
    is unknown before posting. None (no limit) when the list is empty."""
    listed = frozenset(e.strip() for e in entries if e.strip())
    if not listed:
        return None

    def allowed(platform: str, channel: str) -> bool:
        ident = channel.removeprefix("<#").removesuffix(">")  # a pasted Discord mention
        if platform == "telegram":
            ident = ident.partition(":")[0]  # a forum topic lives in its chat
        return f"{platform}:{ident}" in listed or ident in listed

    return allowed


def platform_error(platform: str, error: Exception) -> DeliveryError | None:
    """`error` from `platform`'s library as a DeliveryError; None when it is none of that library's."""
    if platform == "slack":
        return _slack_error(error)
    if platform == "telegram":
        return _telegram_error(error)
    if platform == "discord":
        return _discord_error(error)
    return None


# The imports below are lazy: only a connected platform's errors arrive, so its library is loaded.


def _slack_error(error: Exception) -> DeliveryError | None:
    from adapters.slack.client import FAILURES, delivery_error

    if not isinstance(error, FAILURES):
        return None
    failure = delivery_error("chat.postMessage", error)
    reason = SLACK_REASONS.get(failure.code)
    if reason is None:
        return failure
    return DeliveryError(f"{reason} (Slack: {failure.code})", transient=failure.transient)


def _telegram_error(error: Exception) -> DeliveryError | None:
    from telegram.error import TelegramError

    from adapters.telegram.surface import delivery_error

    return delivery_error(error) if isinstance(error, TelegramError) else None


def _discord_error(error: Exception) -> DeliveryError | None:
    import aiohttp
    import discord

    from adapters.discord.api import http_error

    if isinstance(error, discord.RateLimited):
        return DeliveryError("Discord rate limited the post", transient=True, retry_after=error.retry_after)
    if isinstance(error, discord.HTTPException):
        return http_error("sending the message", error)
    if isinstance(error, aiohttp.ClientError | OSError):  # TimeoutError is an OSError
        return DeliveryError(f"could not reach Discord ({type(error).__name__})", transient=True)
    return None
