"""An acting tool for approval tests: it "posts a note" and remembers what really ran."""

from __future__ import annotations

from typing import Any

from core.tools.base import Tool, ToolContext

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


class Notes:
    """`tool()` is `post_note`, an acting tool (read_only=False: it asks first by default); `posted`
    lists the texts of the calls that really ran."""

    def __init__(self) -> None:
        self.posted: list[str] = []

    def tool(self) -> Tool:
        async def post_note(args: dict[str, Any], ctx: ToolContext) -> str:
            self.posted.append(str(args["text"]))
            return "posted"

        return Tool("post_note", "posts a note", SCHEMA, post_note)
