"""Images people attach, the same rules on every platform: which types, how many, how big.

Adapters download attachments their own way; this module says what is accepted and what the bytes
really are (providers refuse an image whose declared media type does not match its bytes).
"""

from __future__ import annotations

SUPPORTED_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_IMAGES = 4  # per message
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # per image (Anthropic's limit for one image)
MAX_IMAGE_MB = MAX_IMAGE_BYTES // (1024 * 1024)


def sniff_image_type(data: bytes) -> str | None:
    """The supported media type the bytes really are, or None (not an image we can send)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def count(n: int, noun: str) -> str:
    """`1 image`, `2 images`: for the short notes that tell the model what was skipped."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
