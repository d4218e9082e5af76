"""Built-in tools that are safe to offer in a team chat."""

from __future__ import annotations

from core.tools.base import Tool
from core.tools.builtins.calculator import calculator_tool
from core.tools.builtins.clock import current_time_tool
from core.tools.builtins.fetch import FetchSettings, fetch_url_tool
from core.tools.builtins.netguard import AddressPolicy
from core.tools.builtins.post_message import PostAllowed, Poster, post_message_tool

__all__ = [
    "PostAllowed",
    "Poster",
    "builtin_tools",
    "calculator_tool",
    "current_time_tool",
    "fetch_url_tool",
    "post_message_tool",
]


def builtin_tools(
    *, fetch_allow_private: bool = False, fetch_max_bytes: int = 1_000_000, fetch_timeout_s: float = 10.0
) -> list[Tool]:
    """current_time, calculator and fetch_url. `fetch_allow_private` disables SSRF protection.
    (`post_message_tool` is not among them: it needs the running adapters, see bot/app.py.)"""
    settings = FetchSettings(
        policy=AddressPolicy(allow_private=fetch_allow_private),
        max_bytes=fetch_max_bytes,
        timeout_s=fetch_timeout_s,
    )
    return [current_time_tool(), calculator_tool(), fetch_url_tool(settings)]
