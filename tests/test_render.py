"""The shared streaming policy and the splitter, through an in-memory adapter sink."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from core.render import Capabilities, EditStreamer
from core.textsplit import split_text


class MemorySink:
    def __init__(self) -> None:
        self.messages: dict[str, str] = {}
        self.log: list[tuple[str, str, float]] = []

    async def post(self, text: str) -> str:
        message_id = str(len(self.messages) + 1)
        self.messages[message_id] = text
        self.log.append(("post", message_id, asyncio.get_running_loop().time()))
        return message_id

    async def edit(self, message_id: str, text: str) -> None:
        assert message_id in self.messages
        self.messages[message_id] = text
        self.log.append(("edit", message_id, asyncio.get_running_loop().time()))


def test_short_text_is_one_part() -> None:
    assert split_text("hello", 100) == ["hello"]
    assert split_text("", 100) == [""]


def test_split_prefers_paragraphs_and_keeps_all_text() -> None:
    text = ("word " * 30 + "\n\n") * 10
    parts = split_text(text, 400)
    assert all(len(p) <= 400 for p in parts)
    assert "".join(parts) == text
    assert all(p.endswith("\n\n") for p in parts[:-1])


def test_split_without_boundaries_cuts_hard() -> None:
    parts = split_text("x" * 1000, 300)
    assert [len(p) for p in parts] == [296, 296, 296, 112]
    assert "".join(parts) == "x" * 1000


def test_split_closes_and_reopens_code_fences() -> None:
    code = "\n".join(f"line_{i} = {i}" for i in range(200))
    text = "Here:\n\n```python\n" + code + "\n```\nDone."
    parts = split_text(text, 500)
    assert all(len(p) <= 500 for p in parts)
    for part in parts:
        assert part.count("```") % 2 == 0, part  # every part renders as balanced Markdown
    assert parts[1].startswith("```python\n")
    body = "".join(p.replace("```python\n", "").replace("\n```", "") for p in parts)
    assert all(f"line_{i} = {i}" in body for i in range(200))


def test_split_rejects_tiny_limit() -> None:
    with pytest.raises(ValueError):
        split_text("abc", 10)


async def test_streamer_paces_edits_by_time_and_ends_exact() -> None:
    sink = MemorySink()
    streamer = EditStreamer(sink, Capabilities(max_message_chars=2000, edit_interval_s=0.05))
    await streamer.start()
    words = [f"w{i} " for i in range(200)]
    for word in words:
        streamer.append(word)
        await asyncio.sleep(0.001)
    ids = await streamer.finish()
    assert ids == ["1"]
    assert sink.messages["1"] == "".join(words)
    edits = [t for kind, _, t in sink.log if kind == "edit"]
    gaps = [b - a for a, b in itertools.pairwise(edits)]
    assert all(gap >= 0.045 for gap in gaps), gaps  # never faster than the cadence
    assert len(edits) < 20  # ~0.3 s of streaming at 50 ms -> a handful of edits, not one per word


async def test_streamer_overflows_into_new_messages() -> None:
    sink = MemorySink()
    streamer = EditStreamer(sink, Capabilities(max_message_chars=100, edit_interval_s=0.01))
    await streamer.start()
    text = "".join(f"sentence number {i}. " for i in range(40))
    streamer.append(text)
    ids = await streamer.finish()
    assert len(ids) > 1
    shown = [sink.messages[i] for i in ids]
    assert all(len(s) <= 100 for s in shown)
    assert "".join(shown) == text


async def test_streamer_final_text_replaces_streamed_text() -> None:
    sink = MemorySink()
    streamer = EditStreamer(sink, Capabilities(max_message_chars=100, edit_interval_s=0.01))
    await streamer.start()
    streamer.append("draft")
    await streamer.finish("final answer")
    assert sink.messages == {"1": "final answer"}


async def test_streamer_without_edit_posts_once_at_the_end() -> None:
    sink = MemorySink()
    streamer = EditStreamer(sink, Capabilities(max_message_chars=100, edit_interval_s=0.01, can_edit=False))
    await streamer.start()
    streamer.append("all at once")
    await streamer.finish()
    assert [kind for kind, _, _ in sink.log] == ["post"]
    assert sink.messages == {"1": "all at once"}
