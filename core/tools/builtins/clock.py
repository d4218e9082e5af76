"""`current_time`: models have no clock, and "what day is it in Tokyo?" comes up in any team."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.tools.base import Tool, ToolContext, ToolError

_DESCRIPTION = (
    "Get the current date and time. Use this whenever the answer depends on today's date, the time of "
    "day, the weekday, or the time in another place. Returns an ISO 8601 timestamp, the weekday and the "
    "UTC offset for the requested IANA time zone (default UTC)."
)

_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "timezone": {
            "type": "string",
            "description": 'IANA time zone name, e.g. "Europe/Berlin", "America/New_York", "Asia/Tokyo". '
            'Defaults to "UTC".',
            "minLength": 1,
            "maxLength": 64,
        },
    },
    "additionalProperties": False,
}


def _format_offset(offset: timedelta | None) -> str:
    minutes = int((offset or timedelta()).total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


def _load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # ValueError covers keys zoneinfo refuses outright (absolute paths, "..", empty components).
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown timezone {name!r}") from None


def current_time_tool(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Tool:
    """`now` must return an aware datetime; tests pass a fixed one to check DST and offsets."""

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        name = args.get("timezone") or "UTC"
        zone = _load_zone(name)
        local = now().astimezone(zone)
        abbreviation = local.tzname() or ""
        return "\n".join(
            [
                f"datetime: {local.isoformat(timespec='seconds')}",
                f"weekday: {local.strftime('%A')}",
                f"timezone: {name} ({abbreviation}, {_format_offset(local.utcoffset())})",
            ]
        )

    return Tool(
        name="current_time",
        description=_DESCRIPTION,
        input_schema=_SCHEMA,
        handler=handler,
        timeout_s=5.0,
        read_only=True,
    )
