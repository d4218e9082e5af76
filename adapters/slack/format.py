"""How tool calls, notices and failures look in Slack: task-update chunks in a native stream, compact
Block Kit context lines otherwise. Long tool output is cut with a note, never flooding a channel."""

from __future__ import annotations

from typing import Any

from core.events import ToolFinished, ToolStarted
from core.surface import Note

ARGS_PREVIEW = 120
OUTPUT_PREVIEW = 300  # in a task update
LINE_PREVIEW = 160  # in a context line


def escape_mrkdwn(text: str) -> str:
    """mrkdwn needs only &, < and > escaped (Slack's formatting reference)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """One line of at most `limit` characters, saying how much was cut."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    note = f"… ({len(flat):,} chars, truncated)"
    return flat[: max(0, limit - len(note))] + note


def arguments_text(arguments: dict[str, Any]) -> str:
    return clip(", ".join(f"{key}={value!r}" for key, value in arguments.items()), ARGS_PREVIEW)


def task_title(name: str) -> str:
    return f"Running {name}"


def task_started_chunk(event: ToolStarted) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "type": "task_update",
        "id": event.call_id,
        "title": task_title(event.name),
        "status": "in_progress",
    }
    if event.arguments:
        chunk["details"] = arguments_text(event.arguments)
    return chunk


def task_finished_chunk(event: ToolFinished) -> dict[str, Any]:
    verb = "failed" if event.is_error else "finished"
    return {
        "type": "task_update",
        "id": event.call_id,
        "title": f"{event.name} {verb} in {event.duration_s:.1f}s",
        "status": "error" if event.is_error else "complete",
        "output": clip(event.output, OUTPUT_PREVIEW) or "(no output)",
    }


def context_blocks(mrkdwn: str) -> list[dict[str, Any]]:
    return [{"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}]


def tool_started_line(event: ToolStarted) -> str:
    args = f" `{escape_mrkdwn(arguments_text(event.arguments))}`" if event.arguments else ""
    return f":gear: *{escape_mrkdwn(event.name)}*{args} …"


def tool_finished_line(started: ToolStarted | None, event: ToolFinished) -> str:
    mark = ":x:" if event.is_error else ":white_check_mark:"
    args = f" `{escape_mrkdwn(arguments_text(started.arguments))}`" if started and started.arguments else ""
    result = escape_mrkdwn(clip(event.output, LINE_PREVIEW)) or "(no output)"
    return f"{mark} *{escape_mrkdwn(event.name)}*{args} · {event.duration_s:.1f}s · {result}"


def failure_line(message: str) -> str:
    return f":warning: {escape_mrkdwn(message)}"


def notice_line(message: str) -> str:
    return f":information_source: {escape_mrkdwn(message)}"


NOTE_MARKS = {
    "info": ":information_source:",
    "failure": ":warning:",
    "stopped": ":octagonal_sign:",
    "footer": "",
}


def note_markdown(note: Note) -> str:
    """A note under an answer as Slack's small print in Markdown: one italic line after its mark (plain
    where italics would clash with the note's own formatting characters)."""
    text = " ".join(note.text.split())
    if text and not any(mark in text for mark in "_*`~"):
        text = f"_{text}_"
    return f"{NOTE_MARKS.get(note.kind, '')} {text}".strip()


def markdown_blocks(text: str) -> list[dict[str, Any]]:
    """Standard Markdown rendered by Slack itself (the `markdown` block, ≤12,000 chars)."""
    return [{"type": "markdown", "text": text[:12_000]}]
