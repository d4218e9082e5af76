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
MAX_ACTIONS = 25  # elements in an actions block
MAX_CONTEXT_ACTIONS = 5  # elements in a context_actions block
MAX_BUTTON_TEXT = 75  # button / feedback button / icon button text, accessibility labels
MAX_ACTION_ID = 255  # action_id, block_id
MAX_VALUE = 2_000  # a button's value
ICONS = {"trash"}  # the only icon an icon_button may show so far


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
        elif kind == "actions":
            _check_elements(block, MAX_ACTIONS, _check_button)
        elif kind == "context_actions":
            _check_elements(block, MAX_CONTEXT_ACTIONS, _check_context_action)
        elif kind != "divider":
            raise SlackError("invalid_blocks")
        if len(str(block.get("block_id", ""))) > MAX_ACTION_ID:
            raise SlackError("invalid_blocks")
    if sum(len(b.get("text", "")) for b in blocks if b.get("type") == "markdown") > MAX_MARKDOWN:
        raise SlackError("msg_blocks_too_long")
    return blocks


def _check_elements(block: Mapping[str, Any], limit: int, check: Any) -> None:
    """1..`limit` interactive elements, each checked by `check`, action_ids unique in the block."""
    elements = block.get("elements")
    if not isinstance(elements, list) or not 1 <= len(elements) <= limit:
        raise SlackError("invalid_blocks")
    ids = [element.get("action_id") for element in elements if isinstance(element, dict)]
    if len(ids) != len(elements) or len([i for i in ids if i]) != len({i for i in ids if i}):
        raise SlackError("invalid_blocks")  # not objects, or an action_id twice
    for element in elements:
        check(element)


def _check_plain(text: Any, limit: int = MAX_BUTTON_TEXT) -> None:
    if not isinstance(text, dict) or text.get("type") != "plain_text":
        raise SlackError("invalid_blocks")
    if not isinstance(text.get("text"), str) or not 1 <= len(text["text"]) <= limit:
        raise SlackError("invalid_blocks")


def _check_action_fields(element: Mapping[str, Any], *, value_required: bool = False) -> None:
    action_id, value = element.get("action_id"), element.get("value")
    if action_id is not None and (not isinstance(action_id, str) or not 1 <= len(action_id) <= MAX_ACTION_ID):
        raise SlackError("invalid_blocks")
    if (value is None and value_required) or (
        value is not None and (not isinstance(value, str) or not 1 <= len(value) <= MAX_VALUE)
    ):
        raise SlackError("invalid_blocks")
    label = element.get("accessibility_label")
    if label is not None and (not isinstance(label, str) or len(label) > MAX_BUTTON_TEXT):
        raise SlackError("invalid_blocks")


def _check_button(element: Mapping[str, Any]) -> None:
    """A button in an actions block: plain text ≤75, optional action_id/value, primary or danger."""
    if element.get("type") != "button":
        raise SlackError("invalid_blocks")  # the only interactive element the bot sends
    _check_plain(element.get("text"))
    _check_action_fields(element)
    if "style" in element and element["style"] not in ("primary", "danger"):
        raise SlackError("invalid_blocks")


def _check_context_action(element: Mapping[str, Any]) -> None:
    """feedback_buttons (a positive and a negative button, each with text and value) or icon_button."""
    kind = element.get("type")
    if kind == "feedback_buttons":
        _check_action_fields(element)
        for side in ("positive_button", "negative_button"):
            half = element.get(side)
            if not isinstance(half, dict) or set(half) - {"text", "value", "accessibility_label"}:
                raise SlackError("invalid_blocks")
            _check_plain(half.get("text"))
            _check_action_fields(half, value_required=True)
    elif kind == "icon_button":
        if element.get("icon") not in ICONS:
            raise SlackError("invalid_blocks")
        _check_plain(element.get("text"))
        _check_action_fields(element)
    else:
        raise SlackError("invalid_blocks")


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
