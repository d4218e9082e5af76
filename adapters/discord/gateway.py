"""Gateway robustness: a payload discord.py cannot parse is skipped, JSON that orjson refuses is read
anyway, and voice warnings stay quiet.

discord.py hands each gateway dispatch to `ConnectionState.parsers[event](data)` inside its websocket
loop; an exception there (a MESSAGE_CREATE with only an `id`, a partial MESSAGE_UPDATE) leaves
`Client.connect` and stops the whole client. Wrapping each parser skips that one payload instead:
one warning line, and the next event is handled as usual. READY stays unwrapped: a session whose
READY cannot be read is unusable, and the adapter's supervisor (bot/serve.py) restarts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import discord.utils
import orjson
from discord.voice_client import VoiceClient

log = logging.getLogger(__name__)

UNGUARDED = frozenset({"READY"})
MAX_DETAIL = 200  # an exception's text can quote payload values: keep the line short

Parser = Callable[[Any], None]


def guard_parsers(parsers: dict[str, Parser], on_skipped: Callable[[str], None]) -> None:
    """Replace, in place, every parser but READY's with one that logs and skips what it cannot parse.
    In place, because discord.py hands this same dict to every new websocket (`_discord_parsers`)."""
    for event, parse in list(parsers.items()):
        if event not in UNGUARDED:
            parsers[event] = _guarded(event, parse, on_skipped)


def _guarded(event: str, parse: Parser, on_skipped: Callable[[str], None]) -> Parser:
    def parse_or_skip(data: Any) -> None:
        try:
            parse(data)
        except Exception as error:
            fields = ",".join(sorted(map(str, data)))[:MAX_DETAIL] if isinstance(data, dict) else "-"
            detail = str(error)[:MAX_DETAIL]
            log.warning(
                "Discord %s payload skipped: discord.py could not parse it (%s: %s; fields: %s)",
                event,
                type(error).__name__,
                detail,
                fields,
            )
            log.debug("the parse error of that %s payload", event, exc_info=True)
            on_skipped(event)

    return parse_or_skip


def silence_voice_warnings() -> None:
    """discord.py warns at every client start that PyNaCl and davey (voice support) are missing; the
    bot never joins voice, so the warnings only worry operators. Only these two flags are cleared."""
    VoiceClient.warn_nacl = False
    VoiceClient.warn_dave = False


def tolerate_lone_surrogates() -> None:
    """discord.py reads gateway frames and REST bodies with orjson when it is installed (we install it
    for the model streams), and orjson rejects valid JSON holding an unpaired surrogate escape
    (`"\\ud800"`): the frame raises inside discord.py's websocket loop and stops the client. The
    standard library reads such JSON, so it reads what orjson refuses (the core replaces the lone
    halves before anything is stored). discord.py looks `utils._from_json` up on every call."""
    discord.utils._from_json = _from_json


def _from_json(data: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
