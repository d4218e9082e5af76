"""The set of tools a bot offers, and the one place a tool call is executed.

`ToolRegistry.run` is the boundary between the model and our code: whatever the model sends and
whatever a tool does, it comes back as a `ToolOutcome` the model can read, never as an exception that
would abort the turn. The one exception is cancellation, which must reach the turn that is being
cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from core.providers.base import ToolSpec
from core.tools.base import Tool, ToolContext, ToolError, ToolOutcome

logger = logging.getLogger(__name__)

# Both Anthropic and OpenAI accept exactly this alphabet and length for tool names.
_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Validation messages quote the offending value, which can be as long as the model likes.
_MAX_VALIDATION_MESSAGE = 300


class ToolRegistry:
    """Registered tools in registration order, each with its input validator compiled once."""

    def __init__(self, tools: Iterable[Tool] = (), *, max_output_chars: int = 16000) -> None:
        if max_output_chars < 1:
            raise ValueError("max_output_chars must be positive")
        self._max_output_chars = max_output_chars
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """Add a tool; raises ValueError for a bad name, a duplicate or an unusable input schema."""
        if not _NAME_RE.fullmatch(tool.name):
            raise ValueError(f"invalid tool name {tool.name!r}: must match {_NAME_RE.pattern}")
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        if tool.timeout_s <= 0:
            raise ValueError(f"tool {tool.name!r}: timeout_s must be positive")
        schema = tool.input_schema
        if not isinstance(schema, dict):
            raise ValueError(f"tool {tool.name!r}: input_schema must be a dict")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise ValueError(
                f"tool {tool.name!r}: input_schema is not a valid JSON Schema: {exc.message}"
            ) from exc
        # Providers require the top level to describe a JSON object (the call's named arguments).
        if schema.get("type") != "object":
            raise ValueError(f'tool {tool.name!r}: input_schema must have "type": "object"')
        self._tools[tool.name] = tool
        self._validators[tool.name] = Draft202012Validator(schema)

    def specs(self) -> list[ToolSpec]:
        """What to advertise to a provider, in registration order (stable, so prompt caching holds)."""
        return [ToolSpec(t.name, t.description, t.input_schema) for t in self._tools.values()]

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    async def run(self, name: str, arguments: dict[str, Any] | None, ctx: ToolContext) -> ToolOutcome:
        """Execute one tool call. Never raises, except asyncio.CancelledError."""
        start = time.perf_counter()
        output, is_error = await self._execute(name, arguments, ctx)
        return ToolOutcome(
            output=self._truncate(output),
            is_error=is_error,
            duration_s=time.perf_counter() - start,
        )

    async def _execute(
        self, name: str, arguments: dict[str, Any] | None, ctx: ToolContext
    ) -> tuple[str, bool]:
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self._tools) or "(none)"
            return f"unknown tool {name!r}; available tools: {available}", True
        if not isinstance(arguments, dict):
            return "invalid input: the tool arguments were not a JSON object", True
        problem = self._validation_problem(name, arguments)
        if problem is not None:
            return f"invalid input: {problem}", True

        deadline = asyncio.timeout(tool.timeout_s)
        try:
            async with deadline:
                output = await tool.handler(arguments, ctx)
        except ToolError as exc:
            return str(exc) or type(exc).__name__, True
        except TimeoutError as exc:
            # Only our own deadline is a timeout; a TimeoutError from inside the tool is just a failure.
            if deadline.expired():
                return f"tool timed out after {tool.timeout_s:g}s", True
            return self._failure(name, exc), True
        except Exception as exc:
            return self._failure(name, exc), True
        if not isinstance(output, str):  # a sloppy handler should not crash the turn either
            output = str(output)
        return output, False

    def _validation_problem(self, name: str, arguments: dict[str, Any]) -> str | None:
        error: ValidationError | None = best_match(self._validators[name].iter_errors(arguments))
        if error is None:
            return None
        message = error.message
        if len(message) > _MAX_VALIDATION_MESSAGE:
            message = message[: _MAX_VALIDATION_MESSAGE - 3] + "..."
        if error.absolute_path:
            return f"{message} (at {error.json_path})"
        return message

    @staticmethod
    def _failure(name: str, exc: BaseException) -> str:
        # The model gets the type and message only; the traceback is for the operator's logs.
        logger.exception("tool %r failed", name, exc_info=exc)
        message = str(exc)
        kind = type(exc).__name__
        return f"tool failed: {kind}: {message}" if message else f"tool failed: {kind}"

    def _truncate(self, output: str) -> str:
        limit = self._max_output_chars
        if len(output) <= limit:
            return output
        return f"{output[:limit]}\n[output truncated: {limit} of {len(output)} characters shown]"
