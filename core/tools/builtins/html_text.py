"""HTML -> readable plain text with the stdlib parser, for feeding a web page to a model.

Not a renderer: the goal is the words a person would read, in order, with paragraph breaks, and none
of the scripts, styles or markup that would waste the model's context.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

# Content that is never read by a person. <head> is not skipped wholesale because </head> is optional
# in HTML; its only text-bearing children are <title> (kept) and script/style (skipped).
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
# Elements that start a new line of text.
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "details", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
        "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tr",
        "ul", "caption", "option",
    }
)  # fmt: skip
_CELL = frozenset({"td", "th"})
_SPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class PageText:
    title: str
    text: str


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._skip_stack: list[str] = []
        self._in_title = False
        self._title_parts: list[str] = []
        self.title_done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title" and not self.title_done and not self._skip_stack:
            self._in_title = True  # an svg <title> (a tooltip) is inside a skipped element
            return
        if tag in _SKIP:
            self._skip_stack.append(tag)
            return
        if self._skip_stack:
            return
        if tag in _BLOCK:
            self._parts.append("\n")
            if tag == "li":
                self._parts.append("- ")
        elif tag in _CELL:
            self._parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/>, <p/> and friends: no content, but a block still breaks the line.
        if not self._skip_stack and tag in _BLOCK:
            self._parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self._in_title = False
            self.title_done = True
            return
        if self._skip_stack and tag in self._skip_stack:
            # Pop back to the matching opener, tolerating unclosed tags inside it.
            while self._skip_stack and self._skip_stack.pop() != tag:
                pass
            return
        if not self._skip_stack and tag in _BLOCK:
            self._parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title_parts.append(data)
        elif not self._skip_stack:
            self._parts.append(_SPACE_RE.sub(" ", data))

    def result(self) -> PageText:
        lines = (" ".join(line.split()) for line in "".join(self._parts).split("\n"))
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):  # keep at most one blank line between paragraphs
                out.append(line)
        title = " ".join("".join(self._title_parts).split())
        return PageText(title=title, text="\n".join(out).strip())


def html_to_text(html: str) -> PageText:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.result()
