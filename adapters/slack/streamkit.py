"""Pieces of the native stream that need no Slack call: where to cut a stream message, the code fence
it ends in, and the gate every reply shares before it starts a stream."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from adapters.slack.client import SlackDeliveryError

log = logging.getLogger(__name__)

_FENCE = re.compile(r"^\s*(```+|~~~+)(.*)$", re.MULTILINE)
# Errors saying this host or app cannot stream at all: stop trying for the process's lifetime.
_NO_STREAMING = frozenset(
    {"unknown_method", "method_not_supported_for_channel_type", "not_allowed_token_type"}
)


class StreamGate:
    """Shared by all replies: after a 429 on chat.startStream nobody starts a stream until Retry-After
    has passed (one 429 must not become hundreds), and a host without streaming is asked only once."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._closed_until = 0.0

    def open(self) -> bool:
        return self._clock() >= self._closed_until

    def refused(self, error: SlackDeliveryError) -> None:
        if error.code in _NO_STREAMING:
            log.warning("Slack refused native streaming (%s); posting and editing instead", error.code)
            self._closed_until = float("inf")
        elif error.status == 429:
            wait = error.retry_after if error.retry_after is not None else 1.0
            self._closed_until = max(self._closed_until, self._clock() + wait)


def cut_point(text: str, room: int) -> int:
    """Where to end a stream message so it fits `room`: a paragraph, line or word break in the second
    half of the window, else a hard cut."""
    window = text[:room]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= room // 2:
            return at + len(separator)
    return room


def open_fence(text: str) -> str | None:
    opening: str | None = None
    for match in _FENCE.finditer(text):
        opening = None if opening is not None else match.group(1) + match.group(2).strip()
    return opening


def common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
