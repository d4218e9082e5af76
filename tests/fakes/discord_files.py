"""File uploads on the fake Discord: `multipart/form-data` message bodies as the real API takes them.

Wire format (what discord.py sends): a `payload_json` part holding the JSON message body, and one part
per file named `files[n]` with a filename. The body's `attachments` array (`{"id": n, "filename": ...}`)
refers to `files[n]`; an embed shows an uploaded file with `"image": {"url": "attachment://<filename>"}`,
which Discord rewrites to the file's CDN URL in the created message. Limits: 10 files, 10 MiB per request
(bots without boosts); a bad reference is a form error; a file posted where the bot may not attach
files is 403 Missing Permissions (50013).
"""

from __future__ import annotations

import json
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from tests.fakes import discord_wire as wire
from tests.fakes.discord_wire import ApiError, snowflake

MAX_FILES = 10
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
FILES_KEY = "__files__"  # where the parsed files ride along with the JSON body inside the fake
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CDN = "https://cdn.discordapp.com/attachments"


@dataclass(frozen=True)
class Upload:
    field: str  # files[n]
    filename: str
    data: bytes


async def read_multipart(request: web.Request) -> dict[str, Any]:
    """The JSON body of a multipart request, with its files under FILES_KEY."""
    reader = await request.multipart()
    body: dict[str, Any] | None = None
    uploads: list[Upload] = []
    total = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, 50035, "Invalid Form Body")
        data = bytes(await part.read())
        total += len(data)
        if total > MAX_UPLOAD_BYTES:
            raise ApiError(413, 40005, "Request entity too large")
        if part.name == "payload_json":
            try:
                body = json.loads(data)
            except ValueError:
                raise ApiError(400, 50109, "The request body contains invalid JSON.") from None
        elif part.name and part.name.startswith("files[") and part.filename:
            uploads.append(Upload(part.name, part.filename, data))
    if len(uploads) > MAX_FILES:
        raise wire.form_error("files", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_FILES} or fewer in length.")
    result: dict[str, Any] = body if isinstance(body, dict) else {}
    result[FILES_KEY] = uploads
    return result


async def read_body(request: web.Request) -> Any:
    """A request's body: JSON, or a multipart message (see `read_multipart`); None if unreadable."""
    if request.content_type == "multipart/form-data":
        return await read_multipart(request)
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _attachment(channel_id: int, upload: Upload, spec: dict[str, Any]) -> dict[str, Any]:
    attachment_id = snowflake()
    url = f"{CDN}/{channel_id}/{attachment_id}/{upload.filename}"
    payload: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": spec.get("filename") or upload.filename,
        "size": len(upload.data),
        "url": url,
        "proxy_url": url.replace("cdn.discordapp.com", "media.discordapp.net"),
        "content_type": "application/octet-stream",
    }
    if spec.get("description"):
        payload["description"] = spec["description"]
    size = _png_size(upload.data)
    if size is not None:
        payload |= {"content_type": "image/png", "width": size[0], "height": size[1]}
    return payload


def attach(channel_id: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's attachment objects; embed `attachment://` images are resolved in `body` in place."""
    uploads: list[Upload] = body.pop(FILES_KEY, [])
    specs = body.get("attachments") or [{"id": n, "filename": u.filename} for n, u in enumerate(uploads)]
    by_field = {upload.field: upload for upload in uploads}
    attachments: list[dict[str, Any]] = []
    for number, spec in enumerate(specs):
        upload = by_field.get(f"files[{spec.get('id')}]")
        if upload is None:
            raise wire.form_error(f"attachments.{number}", "ATTACHMENT_NOT_FOUND", "Unknown attachment")
        attachments.append(_attachment(channel_id, upload, spec))
    by_name = {a["filename"]: a for a in attachments}
    for index, embed in enumerate(body.get("embeds") or []):
        for key in ("image", "thumbnail"):
            url = (embed.get(key) or {}).get("url") or ""
            if not url.startswith("attachment://"):
                continue
            target = by_name.get(url.removeprefix("attachment://"))
            if target is None:
                raise wire.form_error(
                    f"embeds.{index}.{key}.url", "URL_TYPE_INVALID_URL", "Not a well formed URL."
                )
            embed[key] = {
                "url": target["url"],
                "proxy_url": target["proxy_url"],
                "width": target.get("width", 0),
                "height": target.get("height", 0),
            }
    return attachments


def upload_bytes(body: dict[str, Any]) -> dict[str, bytes]:
    """Filename -> bytes of the files riding with a body (read before `attach` consumes them)."""
    return {upload.filename: upload.data for upload in body.get(FILES_KEY, [])}


# --- the CDN: files users attach to their messages -----------------------------------------------------


class FakeCdn:
    """Serves user attachments the way cdn.discordapp.com does: a plain GET (no bot token) of the
    attachment's signed URL (`?ex=<hex expiry>&is=<hex issued>&hm=<hex signature>`) returns the bytes with
    the file's content type; a missing, deleted or wrongly signed file is a 404 with a plain text body."""

    def __init__(self) -> None:
        self.base_url = ""  # set once the fake listens: http://127.0.0.1:<port>
        self.files: dict[str, tuple[bytes, str]] = {}  # attachment id -> (bytes, content type)
        self.signatures: dict[str, str] = {}
        self.failing: dict[str, int] = {}  # attachment id -> status the CDN answers instead
        self.gets: list[str] = []  # attachment ids requested

    def attachment(
        self, channel_id: int, filename: str, data: bytes, content_type: str | None
    ) -> dict[str, Any]:
        """A user-uploaded attachment object as it appears in MESSAGE_CREATE."""
        attachment_id = str(snowflake())
        self.files[attachment_id] = (data, content_type or "application/octet-stream")
        self.signatures[attachment_id] = secrets.token_hex(32)
        issued = int(time.time())
        query = f"ex={issued + 86400:x}&is={issued:x}&hm={self.signatures[attachment_id]}"
        url = f"{self.base_url}/attachments/{channel_id}/{attachment_id}/{filename}?{query}"
        payload: dict[str, Any] = {
            "id": attachment_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url.replace("/attachments/", "/media/attachments/", 1),
        }
        if content_type is not None:  # Discord omits it when it cannot tell
            payload["content_type"] = content_type
        size = _png_size(data)
        if size is not None:
            payload |= {"width": size[0], "height": size[1]}
        return payload

    async def serve(self, request: web.Request) -> web.Response:
        attachment_id = request.match_info["attachment_id"]
        self.gets.append(attachment_id)
        stored = self.files.get(attachment_id)
        if attachment_id in self.failing:
            return web.Response(status=self.failing[attachment_id], text="upstream error")
        if stored is None or request.query.get("hm") != self.signatures.get(attachment_id):
            return web.Response(status=404, text="This content is no longer available.")
        data, content_type = stored
        return web.Response(body=data, headers={"Content-Type": content_type})
