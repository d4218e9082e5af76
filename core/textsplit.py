"""Split long answers into messages that fit a platform's limit, at sensible boundaries.

Preference: paragraph break, line break, sentence end, space, then a hard cut. A Markdown code fence
cut in two is closed at the end of one part and reopened (with its language) at the start of the next,
so each part renders on its own.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*(```+|~~~+)(.*)$")
_SENTENCE_END = re.compile(r"[.!?。](\s)")


def open_fence(text: str) -> str | None:
    """The opening line of a fence left open at the end of `text`, else None."""
    opening: str | None = None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match:
            opening = None if opening is not None else match.group(1) + match.group(2).strip()
    return opening


def _cut_index(text: str, limit: int) -> int:
    window = text[:limit]
    floor = limit // 2  # a boundary in the first half would make tiny parts; cut harder instead
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator)
        if at >= floor:
            return at + len(separator)
    sentence_ends = [m.end(1) for m in _SENTENCE_END.finditer(window)]
    if sentence_ends and sentence_ends[-1] >= floor:
        return sentence_ends[-1]
    at = window.rfind(" ")
    if at >= floor:
        return at + 1
    return limit


def split_text(text: str, limit: int) -> list[str]:
    """Parts of `text`, each at most `limit` characters; joined they carry all of the text."""
    if limit < 32:
        raise ValueError("limit too small to split sensibly")
    parts: list[str] = []
    rest = text
    reopen = ""
    while len(reopen) + len(rest) > limit:
        budget = limit - len(reopen)
        cut = _cut_index(rest, budget - 4)  # room to close a fence ("\n```")
        head = reopen + rest[:cut]
        fence = open_fence(head)
        if fence is not None:
            head = head.rstrip("\n") + "\n```"
            reopen = fence + "\n"
        else:
            reopen = ""
        parts.append(head)
        rest = rest[cut:]
    if rest or not parts:
        parts.append(reopen + rest)
    return parts
