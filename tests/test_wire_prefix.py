"""The Anthropic request builder reuses the previous call's merged history; it must equal a fresh build."""

from __future__ import annotations

import copy

from core.conversation import Message, TextBlock, ToolResultBlock, ToolUseBlock
from core.providers.anthropic import wire_messages


def fresh(messages: list[Message]) -> list[object]:
    clones = [Message(m.role, m.blocks) for m in messages]  # new objects: no memos at all
    return wire_messages(clones)


def conversation(turns: int) -> list[Message]:
    history: list[Message] = []
    for i in range(turns):
        history.append(Message.user(f"question {i}"))
        if i % 3 == 1:
            history.append(
                Message("assistant", (TextBlock("checking"), ToolUseBlock(f"t{i}", "calc", {"x": i})))
            )
            history.append(Message("user", (ToolResultBlock(f"t{i}", str(i)),)))
        if i % 5 == 4:
            history.append(Message.user("and another thing"))  # same role twice: merged on the wire
        history.append(Message.assistant(f"answer {i}"))
    return history


def test_incremental_builds_equal_fresh_builds() -> None:
    full = conversation(40)
    for end in range(1, len(full) + 1):
        window = full[:end]
        built = copy.deepcopy(wire_messages(window))
        assert built == fresh(window), end


def test_a_new_first_message_starts_afresh() -> None:
    history = conversation(10)
    wire_messages(history)
    summary = Message.user("[Summary of the earlier conversation]\\nthey talked")
    compacted = [summary, Message.assistant("Understood."), *history[6:]]
    assert wire_messages(compacted) == fresh(compacted)


def test_the_last_block_alone_carries_the_cache_breakpoint() -> None:
    history = conversation(5)
    wire_messages(history)
    history.append(Message.user("next"))
    out = wire_messages(history)
    marked = [b for m in out for b in m["content"] if "cache_control" in b]
    assert marked == [out[-1]["content"][-1]]
