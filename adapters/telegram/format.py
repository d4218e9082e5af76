"""Model Markdown -> Telegram HTML (the `parse_mode="HTML"` dialect).

HTML rather than MarkdownV2: only `<`, `>` and `&` need escaping, so arbitrary model text (underscores,
dots, half-written `**`) can never produce an unparsable message. Constructs Telegram lacks are mapped
to the nearest thing it has: headings become bold lines, list items get bullets, tables stay monospace.
The visible text is never longer than the Markdown source, so a part that fits 4,096 source characters
also fits after Telegram's entity parsing.
"""

from __future__ import annotations

import html
import re

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])
_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_LANGUAGE = re.compile(r"[^A-Za-z0-9_+#.-]")
_TAG = re.compile(r"<[^>]*>")
_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")  # CommonMark's escapable ASCII punctuation

_INLINE_TAGS = {"strong": "b", "em": "i", "s": "s"}


def escape(text: str) -> str:
    """Telegram HTML escaping: `&`, `<`, `>` (and `"` inside attributes)."""
    return html.escape(text, quote=False)


def literal_markdown(text: str) -> str:
    """`text` as Markdown that shows exactly these characters: every ASCII punctuation character is
    backslash-escaped, so nothing in it is read as syntax."""
    return _PUNCTUATION.sub(r"\\\g<0>", text)


def footer_markdown(text: str) -> str:
    """A short line shown under an answer (the cost footer, a notice) as Markdown for `to_html`: one
    italic line, taken literally."""
    flat = " ".join(text.split())
    return "*" + literal_markdown(flat) + "*" if flat else ""


def visible_length(markup: str) -> int:
    """Characters Telegram counts after parsing our HTML (tags removed, entities decoded)."""
    return len(html.unescape(_TAG.sub("", markup)))


def to_html(markdown: str) -> str:
    """Render Markdown as Telegram HTML. Never raises on odd input: unknown syntax stays literal."""
    tree = SyntaxTreeNode(_PARSER.parse(markdown))
    lines = markdown.split("\n")
    return _blocks(tree.children, lines, "\n\n").strip("\n")


def _blocks(nodes: list[SyntaxTreeNode], lines: list[str], separator: str) -> str:
    """Blocks joined as in the source: a blank line only where the source had one (so the visible
    text does not grow), `separator` where the source gives no line numbers."""
    out: list[str] = []
    previous_end: int | None = None
    for node in nodes:
        part = _block(node, lines)
        if not part:
            continue
        if out:
            start = node.map[0] if node.map else None
            gap = separator if start is None or previous_end is None else "\n" * (1 + (start > previous_end))
            out.append(gap)
        out.append(part)
        previous_end = node.map[1] if node.map else None
    return "".join(out)


def _block(node: SyntaxTreeNode, lines: list[str]) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline_children(node)
    if kind == "heading":
        return f"<b>{_inline_children(node)}</b>"
    if kind in ("fence", "code_block"):
        return _pre(node.content.rstrip("\n"), node.info.strip().split(" ")[0] if kind == "fence" else "")
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, lines)
    if kind == "blockquote":
        return f"<blockquote>{_blocks(node.children, lines, chr(10))}</blockquote>"
    if kind == "hr":
        return "———"
    if kind == "table" and node.map:
        start, end = node.map
        return _pre("\n".join(lines[start:end]).strip("\n"), "")
    if kind == "html_block":
        return escape(node.content.rstrip("\n"))
    return _blocks(node.children, lines, "\n\n")


def _pre(code: str, language: str) -> str:
    language = _LANGUAGE.sub("", language)
    if language:
        return f'<pre><code class="language-{language}">{escape(code)}</code></pre>'
    return f"<pre>{escape(code)}</pre>"


def _list(node: SyntaxTreeNode, lines: list[str]) -> str:
    ordered = node.type == "ordered_list"
    number = int(node.attrs.get("start", 1) or 1) if ordered else 0
    items: list[str] = []
    for item in node.children:
        marker = f"{number}. " if ordered else "• "
        number += 1
        body = _blocks(item.children, lines, "\n")
        # Continuation lines of an item (nested lists, extra paragraphs) are indented under its text.
        indent = " " * len(marker)
        first, *rest = body.split("\n")
        continued = [indent + line if line else line for line in rest]
        items.append("\n".join([(marker + first).rstrip(" "), *continued]))
    return "\n".join(items)


def _inline_children(node: SyntaxTreeNode) -> str:
    return "".join(_inline(child) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "inline":
        return _inline_children(node)
    if kind == "text":
        return escape(node.content)
    if kind == "code_inline":
        return f"<code>{escape(node.content)}</code>"
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind in _INLINE_TAGS:
        tag = _INLINE_TAGS[kind]
        return f"<{tag}>{_inline_children(node)}</{tag}>"
    if kind == "link":
        return _link(str(node.attrs.get("href", "")), _inline_children(node))
    if kind == "image":
        alt = escape(node.content or "image")
        return _link(str(node.attrs.get("src", "")), alt)
    if kind == "html_inline":
        return escape(node.content)
    return _inline_children(node) if node.children else escape(node.content)


def _link(href: str, label: str) -> str:
    if not href.lower().startswith(_SAFE_SCHEMES):
        return label  # relative or script links: Telegram rejects them; keep the words
    return f'<a href="{html.escape(href, quote=True)}">{label}</a>'
