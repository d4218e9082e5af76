"""Markdown -> plain terminal text for whole replies (command answers, refusals): `/help` must not show
`**` and backticks. The streamed answer is printed as it comes: a marker split across chunks cannot be
recognised before it is on the screen, and a terminal cannot take it back.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
# Single * or _ only at word edges, so 2*3*4 and snake_case_names stay as they are.
_EMPHASIS = re.compile(
    r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"  # *word*
    r"|(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)"  # _word_
)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!~|>])")
_HIDDEN = 0xF0000  # plane 15, private use: never in a reply, and every ASCII marker fits
_REVEAL = re.compile("[\U000f0000-\U000f007f]")


def plain(markdown: str) -> str:
    lines: list[str] = []
    in_code = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            in_code = not in_code
            continue  # the fence itself is markup; the code stays as written
        lines.append(line if in_code else _plain_line(line))
    return "\n".join(lines)


def _plain_line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading:
        line = heading.group(1)
    line = _BULLET.sub(r"\1• ", line)
    # Code first: what is inside backticks is literal, never emphasis.
    parts = _CODE.split(line)
    for index in range(0, len(parts), 2):
        parts[index] = _inline(parts[index])
    return "".join(parts)


def _inline(text: str) -> str:
    # An escaped marker (\*) is hidden in the private use area while markers are removed.
    text = _ESCAPE.sub(lambda m: chr(_HIDDEN + ord(m.group(1))), text)
    text = _LINK.sub(_link, text)
    text = _STRONG.sub(r"\2", text)
    text = _STRIKE.sub(r"\1", text)
    text = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
    return _REVEAL.sub(lambda m: chr(ord(m.group(0)) - _HIDDEN), text)


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    return url if label == url else f"{label} ({url})"
