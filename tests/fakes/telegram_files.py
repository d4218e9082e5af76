"""Files in the fake Bot API: multipart uploads (sendPhoto) checked the way Telegram checks them, and
the error shapes every fake method raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_CAPTION = 1024
MAX_PHOTO_BYTES = 10 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class Upload:
    """A file part of a multipart/form-data request."""

    filename: str | None
    content_type: str
    data: bytes


def visible_caption(params: dict[str, Any], parse_html: Callable[[str], str]) -> str:
    """The caption as shown (HTML parsed by the fake's strict parser), within the 1,024 limit."""
    caption = str(params.get("caption") or "")
    mode = params.get("parse_mode")
    visible = parse_html(caption) if isinstance(mode, str) and mode.upper() == "HTML" else caption
    if len(visible) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    return visible


def uploaded(params: dict[str, Any], name: str) -> Upload:
    """A file sent with multipart/form-data, directly under `name` or as `attach://<part>`."""
    value = params.get(name)
    if isinstance(value, str) and value.startswith("attach://"):
        value = params.get(value.removeprefix("attach://"))
    if value is None:
        raise bad_request(f"there is no {name} in the request")
    if not isinstance(value, Upload):
        raise bad_request("wrong file identifier/HTTP URL specified")  # the fake knows no file ids
    if len(value.data) > MAX_PHOTO_BYTES:
        raise ApiError(413, "Request Entity Too Large")
    if not (value.data.startswith(PNG_SIGNATURE) or value.data.startswith(b"\xff\xd8\xff")):
        raise bad_request("IMAGE_PROCESS_FAILED")
    width, height = image_size(value.data)
    if width + height > 10_000 or max(width, height) > 20 * max(1, min(width, height)):
        raise bad_request("PHOTO_INVALID_DIMENSIONS")
    return value


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG (from IHDR); other images are reported as 800x600."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return 800, 600
