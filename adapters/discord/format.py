"""Discord's flavour of Markdown, the small print of notes under answers, and the embeds of tool calls.

Discord renders the Markdown models write (bold, italics, lists, code fences, quotes, masked links,
`#`-`###` headings) as is, so answers pass through nearly untouched: only headings deeper than `###`,
which Discord shows as literal hashes, become bold lines. Mentions never ping (the client sends
`allowed_mentions` = none), so model text needs no escaping. Notes (the cost footer, a failure, a
lasting notice) are Discord subtext lines (`-# …`) with an icon per kind.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import discord

from core.surface import Note, NoteKind

_DEEP_HEADING = re.compile(r"^#{4,6}\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")

SMALL_PRINT = "-# "
NOTE_ICONS: dict[NoteKind, str] = {"info": "ℹ️", "failure": "⚠️", "stopped": "⏹", "footer": ""}
ToolState = Literal["running", "ok", "error"]
COLOURS: dict[ToolState, int] = {"running": 0xF1C40F, "ok": 0x2ECC71, "error": 0xE74C3C}
ICONS: dict[ToolState, str] = {"running": "⏳", "ok": "✅", "error": "❌"}
ARGUMENTS_LIMIT = 300
OUTPUT_LIMIT = 500


def to_discord(text: str) -> str:
    """Model Markdown -> Discord Markdown; never longer than the input (parts are split beforehand)."""
    if "#" not in text:
        return text
    lines: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
        match = None if in_code else _DEEP_HEADING.match(line)
        lines.append(f"**{match.group(1)}**" if match else line)
    return "\n".join(lines)


def small_print(note: Note) -> str:
    """A note under an answer as Discord subtext: a `-# ` line per line, the first with the kind's icon."""
    lines = [" ".join(line.split()) for line in note.text.splitlines()]
    lines = [line for line in lines if line] or [""]
    icon = NOTE_ICONS[note.kind]
    if icon:
        lines[0] = f"{icon} {lines[0]}"
    return "\n".join(SMALL_PRINT + line for line in lines)


def notes_outside_code(text: str, limit: int) -> str:
    """Close a code block the answer left open (a cut-off turn) before the small print under it, so a
    failure line or the footer shows as small print, not as code; unchanged if that would pass `limit`."""
    lines = text.split("\n")
    start = len(lines)
    while start > 0 and (lines[start - 1].startswith(SMALL_PRINT) or not lines[start - 1].strip()):
        start -= 1
    notes = "\n".join(lines[start:]).strip("\n")
    body = lines[:start]
    if not notes or not body or sum(1 for line in body if _FENCE.match(line)) % 2 == 0:
        return text
    closed = "\n".join(body).rstrip("\n") + "\n```\n\n" + notes
    return closed if len(closed) <= limit else text


def _flat(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str) -> str:
    # A triple backtick inside would close the block early; a zero-width space breaks it up.
    return "```\n" + text.replace("```", "`\u200b``") + "\n```"


def arguments_summary(arguments: dict[str, Any]) -> str:
    """The key arguments, one per line, for a glance (not the full JSON)."""
    lines = [f"**{name}**: {_clip(_flat(value), 120)}" for name, value in arguments.items()]
    return _clip("\n".join(lines), ARGUMENTS_LIMIT) if lines else "(no arguments)"


def tool_embed(
    name: str,
    arguments: dict[str, Any],
    state: ToolState,
    *,
    duration_s: float | None = None,
    output: str | None = None,
) -> discord.Embed:
    embed = discord.Embed(
        title=_clip(f"{ICONS[state]} {name}", 256),
        description=arguments_summary(arguments),
        colour=COLOURS[state],
    )
    if output is not None and output.strip():
        embed.add_field(name="Output", value=_code(_clip(output.strip(), OUTPUT_LIMIT)), inline=False)
    if state == "running":
        embed.set_footer(text="running…")
    else:
        verb = "done" if state == "ok" else "failed"
        embed.set_footer(text=f"{verb} in {duration_s or 0.0:.2f} s")
    return embed
