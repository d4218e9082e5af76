"""Discord wire shapes for the fake server: payload builders, request validation, errors, rate limits.

Shapes follow the Discord API v10 docs (resources/user, guild, channel, message; interactions) closely
enough that discord.py 2.7.1 parses them as it parses the real ones. Validation covers the rules an
adapter can break (lengths, empty messages, embed limits), answered with Discord's real error bodies.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
_counter = itertools.count()

CONTENT_LIMIT = 2000
EMBED_LIMITS = {"title": 256, "description": 4096, "footer": 2048, "author": 256}
EMBEDS_TOTAL = 6000
FIELD_NAME, FIELD_VALUE, MAX_FIELDS, MAX_EMBEDS = 256, 1024, 25, 10

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7


def option_type(value: Any) -> int:
    """The application command option type of a value: STRING 3, INTEGER 4, BOOLEAN 5, NUMBER 10."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


def snowflake() -> int:
    """A time-based id, as Discord mints them (so discord.py's created_at is right)."""
    millis = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (millis << 22) | (next(_counter) % (1 << 22))


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class ApiError(Exception):
    """An error reply with Discord's JSON error body."""

    def __init__(self, status: int, code: int, message: str, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.body: dict[str, Any] = {"message": message, "code": code}
        if errors:
            self.body["errors"] = errors


def form_error(path: str, code: str, message: str) -> ApiError:
    """400 Invalid Form Body (code 50035) with the nested `errors` object the real API sends."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        node = {part: node}
    return ApiError(400, 50035, "Invalid Form Body", node)


def unknown(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}")


# --- payload builders ------------------------------------------------------------------------------


def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {
        "id": str(user_id),
        "username": name,
        "global_name": name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "system": False,
        "public_flags": 0,
    }


def member(user_payload: dict[str, Any], roles: list[int]) -> dict[str, Any]:
    return {
        "user": user_payload,
        "nick": None,
        "avatar": None,
        "roles": [str(r) for r in roles],
        "joined_at": iso_now(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "permissions": "2248473465835073",
    }


def text_channel(channel_id: int, guild_id: int, name: str, channel_type: int = 0) -> dict[str, Any]:
    return {
        "id": str(channel_id),
        "type": channel_type,
        "guild_id": str(guild_id),
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def thread_channel(
    thread_id: int, guild_id: int, parent_id: int, owner_id: int, name: str, archive: int
) -> dict[str, Any]:
    return {
        "id": str(thread_id),
        "type": 11,
        "guild_id": str(guild_id),
        "parent_id": str(parent_id),
        "owner_id": str(owner_id),
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": archive,
            "archive_timestamp": iso_now(),
            "locked": False,
            "create_timestamp": iso_now(),
        },
    }


def dm_channel(channel_id: int, recipient: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(channel_id), "type": 1, "last_message_id": None, "recipients": [recipient], "flags": 0}


def role(role_id: int, name: str, position: int = 0) -> dict[str, Any]:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": "2248473465835073",
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def guild(
    guild_id: int,
    name: str,
    owner_id: int,
    channels: list[dict[str, Any]],
    threads: list[dict[str, Any]],
    roles: list[dict[str, Any]],
    bot_member: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "owner_id": str(owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "vanity_url_code": None,
        "description": None,
        "banner": None,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": None,
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "stickers": [],
        "joined_at": iso_now(),
        "large": False,
        "unavailable": False,
        "member_count": 2,
        "voice_states": [],
        "members": [bot_member],
        "channels": channels,
        "threads": threads,
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    }


def message(
    message_id: int,
    channel_id: int,
    author: dict[str, Any],
    content: str,
    *,
    guild_id: int | None = None,
    embeds: list[dict[str, Any]] | None = None,
    flags: int = 0,
    mentions: list[dict[str, Any]] | None = None,
    message_type: int = 0,
    webhook_id: int | None = None,
    application_id: int | None = None,
    author_member: dict[str, Any] | None = None,
    attachments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": content,
        "timestamp": iso_now(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions or [],
        "mention_roles": [],
        "attachments": attachments or [],
        "embeds": embeds or [],
        "pinned": False,
        "type": message_type,
        "flags": flags,
        "components": [],
    }
    if guild_id is not None:
        payload["guild_id"] = str(guild_id)
    if author_member is not None:
        payload["member"] = author_member
    if webhook_id is not None:
        payload["webhook_id"] = str(webhook_id)
    if application_id is not None:
        payload["application_id"] = str(application_id)
    return payload


# --- validation ------------------------------------------------------------------------------------


def _embed_text_size(embed: dict[str, Any]) -> int:
    size = len(embed.get("title") or "") + len(embed.get("description") or "")
    size += len((embed.get("footer") or {}).get("text") or "") + len(
        (embed.get("author") or {}).get("name") or ""
    )
    for item in embed.get("fields") or []:
        size += len(item.get("name") or "") + len(item.get("value") or "")
    return size


def check_embeds(embeds: list[dict[str, Any]]) -> None:
    if len(embeds) > MAX_EMBEDS:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_EMBEDS} or fewer in length.")
    for index, embed in enumerate(embeds):
        for key, limit in EMBED_LIMITS.items():
            value = embed.get(key)
            text = value.get("text" if key == "footer" else "name", "") if isinstance(value, dict) else value
            if text is not None and len(text) > limit:
                raise form_error(
                    f"embeds.{index}.{key}", "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length."
                )
        fields = embed.get("fields") or []
        if len(fields) > MAX_FIELDS:
            raise form_error(f"embeds.{index}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer.")
        for number, item in enumerate(fields):
            if not item.get("name") or not item.get("value"):
                raise form_error(
                    f"embeds.{index}.fields.{number}", "BASE_TYPE_REQUIRED", "This field is required"
                )
            if len(item["name"]) > FIELD_NAME or len(item["value"]) > FIELD_VALUE:
                raise form_error(f"embeds.{index}.fields.{number}", "BASE_TYPE_MAX_LENGTH", "Too long.")
    if sum(_embed_text_size(e) for e in embeds) > EMBEDS_TOTAL:
        raise form_error("embeds", "BASE_TYPE_MAX_LENGTH", "Embed size exceeds maximum size of 6000")


def check_message_body(body: Any, *, editing: bool, has_files: bool = False) -> None:
    """The rules for create/edit message bodies (channel messages, webhooks, interaction responses)."""
    if not isinstance(body, dict):
        raise ApiError(400, 50109, "The request body contains invalid JSON.")
    content = body.get("content")
    if content is not None and not isinstance(content, str):
        raise form_error("content", "STRING_TYPE_CONVERT", "Could not interpret value as string.")
    if content is not None and len(content) > CONTENT_LIMIT:
        raise form_error("content", "BASE_TYPE_MAX_LENGTH", f"Must be {CONTENT_LIMIT} or fewer in length.")
    embeds = body.get("embeds") or []
    check_embeds(embeds)
    has_content = bool(content and content.strip())
    if not editing and not has_content and not embeds and not has_files:
        raise ApiError(400, 50006, "Cannot send an empty message")


def check_editable_result(message_payload: dict[str, Any]) -> None:
    """An edit must not leave a message with neither content nor embeds."""
    if not (message_payload.get("content") or "").strip() and not message_payload.get("embeds"):
        raise ApiError(400, 50006, "Cannot send an empty message")


# --- rate limits -----------------------------------------------------------------------------------


@dataclass
class Bucket:
    limit: int
    period_s: float
    count: int = 0
    reset_at: float = 0.0


@dataclass
class RateLimiter:
    """Fixed-window buckets per (route, major parameter), like Discord's, plus the 50/s global limit
    for non-interaction routes. Every answer carries the X-RateLimit-* headers discord.py reads."""

    limits: dict[str, tuple[int, float]] = field(
        default_factory=lambda: {"channel": (5, 5.0), "webhook": (5, 2.0), "typing": (5, 5.0)}
    )
    global_limit: int = 50
    buckets: dict[str, Bucket] = field(default_factory=dict)
    global_bucket: Bucket = field(default_factory=lambda: Bucket(50, 1.0))
    received_429: int = 0

    def check(self, kind: str | None, major: str, now: float) -> tuple[dict[str, str], float | None, bool]:
        """Headers, and the retry-after when limited (plus whether the limit was the global one)."""
        if kind is None:  # interaction callbacks: not bound to per-route or global limits
            return {}, None, False
        if kind != "webhook":
            self.global_bucket.limit = self.global_limit
            if self._take(self.global_bucket, now) is not None:
                self.received_429 += 1
                return {"X-RateLimit-Global": "true"}, self.global_bucket.reset_at - now, True
        limit, period = self.limits[kind]
        key = f"{kind}:{major}"
        bucket = self.buckets.setdefault(key, Bucket(limit, period))
        retry = self._take(bucket, now)
        headers = {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(max(0, bucket.limit - bucket.count)),
            "X-RateLimit-Reset-After": f"{max(0.0, bucket.reset_at - now):.3f}",
            "X-RateLimit-Reset": f"{time.time() + max(0.0, bucket.reset_at - now):.3f}",
            "X-RateLimit-Bucket": f"fake-{kind}",
        }
        if retry is not None:
            self.received_429 += 1
        return headers, retry, False

    @staticmethod
    def _take(bucket: Bucket, now: float) -> float | None:
        if now >= bucket.reset_at:
            bucket.count, bucket.reset_at = 0, now + bucket.period_s
        if bucket.count >= bucket.limit:
            return bucket.reset_at - now
        bucket.count += 1
        return None


def rate_limited_body(retry_after: float, is_global: bool) -> dict[str, Any]:
    return {
        "message": "You are being rate limited.",
        "retry_after": round(retry_after, 3),
        "global": is_global,
    }
