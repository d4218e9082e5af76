"""Context for log lines: which platform, conversation and turn a record belongs to.

The core sets it where a turn starts; contextvars follow the work into the tasks and worker threads it
starts, so every record logged on the way (agent, providers, tools, store) carries it. `bot/logs.py`
adds the fields to each record. Nothing here knows about logging handlers or formats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType

# The names log records get (also the JSON keys), in the order they are shown.
FIELDS = ("platform", "conversation", "turn_id")

_EMPTY: Mapping[str, str | int] = MappingProxyType({})
_current: ContextVar[Mapping[str, str | int]] = ContextVar("log_context", default=_EMPTY)


def current() -> Mapping[str, str | int]:
    """The fields known here, e.g. {"platform": "slack", "conversation": "slack|T1|C1|", "turn_id": 7}."""
    return _current.get()


def _merged(platform: str | None, conversation: str | None, turn_id: int | None) -> Mapping[str, str | int]:
    given = {"platform": platform, "conversation": conversation, "turn_id": turn_id}
    return MappingProxyType({**_current.get(), **{k: v for k, v in given.items() if v is not None}})


@contextlib.contextmanager
def log_context(
    *, platform: str | None = None, conversation: str | None = None, turn_id: int | None = None
) -> Iterator[None]:
    """Within the block (and the tasks started in it), log records carry these fields. Use it inside
    one coroutine or function, not across an async generator's yields (resetting needs the same task)."""
    token = _current.set(_merged(platform, conversation, turn_id))
    try:
        yield
    finally:
        _current.reset(token)


def bind(*, platform: str | None = None, conversation: str | None = None, turn_id: int | None = None) -> None:
    """Set fields for the rest of the current task (a task owns a copy of the context, so this never
    leaks into its caller): for a task started to serve one platform or one turn."""
    _current.set(_merged(platform, conversation, turn_id))
