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


MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # getFile refuses bigger files ("file is too big")


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    path: str  # the file_path getFile answers; served at /file/bot<token>/<path>
    available: bool = True  # False: listed in updates, but the download answers 404


class FileStore:
    """Files users sent, as the Bot API knows them: by file_id (getFile) and by file_path (download)."""

    def __init__(self) -> None:
        self.by_id: dict[str, StoredFile] = {}
        self.by_path: dict[str, StoredFile] = {}
        self.downloads: list[str] = []  # file paths downloaded, in order

    def add(self, data: bytes, folder: str, extension: str) -> StoredFile:
        n = len(self.by_id)
        stored = StoredFile(f"AgAC{n:04d}file-id", f"AQAD{n:04d}", data, f"{folder}/file_{n}.{extension}")
        self.by_id[stored.file_id] = stored
        self.by_path[stored.path] = stored
        return stored

    def get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self.by_id.get(str(params.get("file_id") or ""))
        if stored is None:
            raise bad_request("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise bad_request("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.path,
        }

    def download(self, path: str) -> bytes | None:
        stored = self.by_path.get(path)
        if stored is None or not stored.available:
            return None
        self.downloads.append(path)
        return stored.data

    def photo_sizes(self, data: bytes, thumbnail: bytes) -> list[dict[str, Any]]:
        """A photo as an update carries it: several sizes, smallest first, each its own file."""
        sizes = []
        for blob, (width, height) in ((thumbnail, (90, 68)), (data, image_size(data))):
            stored = self.add(blob, "photos", "jpg")
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": len(blob),
                    "width": width,
                    "height": height,
                }
            )
        return sizes

    def document(self, data: bytes, mime_type: str, file_name: str) -> dict[str, Any]:
        stored = self.add(data, "documents", file_name.rpartition(".")[2] or "bin")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
            "file_name": file_name,
            "mime_type": mime_type,
        }
