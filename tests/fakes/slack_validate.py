"""The checks the fake Slack makes on message content, with Slack's error codes and documented limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_TEXT = 40_000  # longer `text` is truncated by Slack
MAX_MARKDOWN = 12_000  # markdown_text and the markdown block
MAX_SECTION = 3_000
MAX_BLOCKS = 50
MAX_HEADER = 150  # header block plain_text
MAX_FIELDS = 10  # section fields
MAX_FIELD = 2_000  # one section field
TASK_STATUSES = {"pending", "in_progress", "complete", "error"}


class SlackError(Exception):
    def __init__(self, error: str, status: int = 200, retry_after: float = 0) -> None:
        super().__init__(error)
        self.error, self.status, self.retry_after = error, status, retry_after


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def check_content(args: Mapping[str, Any]) -> str:
    """A message needs text, blocks or markdown_text; markdown_text goes alone. Returns visible text."""
    text, blocks, markdown = args.get("text"), _decoded(args.get("blocks")), args.get("markdown_text")
    if markdown is not None:
        if text is not None or blocks is not None:
            raise SlackError("markdown_text_conflict")
        if not isinstance(markdown, str) or not markdown.strip():
            raise SlackError("no_text")
        if len(markdown) > MAX_MARKDOWN:
            raise SlackError("msg_too_long")
        return markdown
    if not (isinstance(text, str) and text.strip()) and not blocks and not args.get("attachments"):
        raise SlackError("no_text")
    return (text or "")[:MAX_TEXT]


def check_blocks(raw: Any) -> list[dict[str, Any]] | None:
    blocks = _decoded(raw)
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > MAX_BLOCKS:
        raise SlackError("invalid_blocks")
    for block in blocks:
        if not isinstance(block, dict):
            raise SlackError("invalid_blocks")
        kind = block.get("type")
        if kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                raise SlackError("invalid_blocks")
            for element in elements:
                if element.get("type") not in ("mrkdwn", "plain_text", "image"):
                    raise SlackError("invalid_blocks")
                if len(element.get("text", "")) > MAX_SECTION:
                    raise SlackError("invalid_blocks")
        elif kind == "markdown":
            if not isinstance(block.get("text"), str) or len(block["text"]) > MAX_MARKDOWN:
                raise SlackError("invalid_blocks")
        elif kind == "section":
            _check_section(block)
        elif kind == "header":
            text = block.get("text") or {}
            if text.get("type") != "plain_text" or not 1 <= len(str(text.get("text", ""))) <= MAX_HEADER:
                raise SlackError("invalid_blocks")
        elif kind != "divider":
            raise SlackError("invalid_blocks")
    if sum(len(b.get("text", "")) for b in blocks if b.get("type") == "markdown") > MAX_MARKDOWN:
        raise SlackError("msg_blocks_too_long")
    return blocks


def _check_section(block: Mapping[str, Any]) -> None:
    """A section has text (≤3,000) and/or fields (≤10 text objects of ≤2,000); one of them at least."""
    text, fields = block.get("text"), block.get("fields")
    if text is None and fields is None:
        raise SlackError("invalid_blocks")
    if text is not None and (
        not isinstance(text, dict)
        or text.get("type") not in ("mrkdwn", "plain_text")
        or not 1 <= len(str(text.get("text", ""))) <= MAX_SECTION
    ):
        raise SlackError("invalid_blocks")
    if fields is not None:
        if not isinstance(fields, list) or not 1 <= len(fields) <= MAX_FIELDS:
            raise SlackError("invalid_blocks")
        for item in fields:
            if item.get("type") not in ("mrkdwn", "plain_text") or not item.get("text"):
                raise SlackError("invalid_blocks")
            if len(item["text"]) > MAX_FIELD:
                raise SlackError("invalid_blocks")


def check_chunks(args: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Streaming content: `markdown_text` and/or `chunks`; returns all of it as chunks."""
    chunks = _decoded(args.get("chunks")) or []
    markdown = args.get("markdown_text")
    if not isinstance(chunks, list):
        raise SlackError("invalid_chunks")
    out: list[dict[str, Any]] = []
    if markdown is not None:
        if chunks:
            raise SlackError("invalid_arguments")
        chunks = [{"type": "markdown_text", "text": markdown}]
    for chunk in chunks:
        if not isinstance(chunk, dict):
            raise SlackError("invalid_chunks")
        kind = chunk.get("type")
        if kind == "markdown_text":
            if not isinstance(chunk.get("text"), str) or len(chunk["text"]) > MAX_MARKDOWN:
                raise SlackError(
                    "invalid_chunks" if not isinstance(chunk.get("text"), str) else "msg_too_long"
                )
        elif kind == "task_update":
            if not (chunk.get("id") and chunk.get("title")) or chunk.get("status") not in TASK_STATUSES:
                raise SlackError("invalid_chunks")
        elif kind == "plan_update":
            if not chunk.get("title"):
                raise SlackError("invalid_chunks")
        elif kind == "blocks":
            check_blocks(chunk.get("blocks"))
        else:
            raise SlackError("invalid_chunks")
        out.append(chunk)
    if sum(len(c.get("text", "")) for c in out if c["type"] == "markdown_text") > MAX_MARKDOWN:
        raise SlackError("msg_too_long")
    return out
