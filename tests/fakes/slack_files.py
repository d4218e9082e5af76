"""File uploads for the fake Slack, in the wire format slack-sdk's `files_upload_v2` speaks:

1. `files.getUploadURLExternal` (filename, length) -> `{"upload_url", "file_id"}`
2. POST the bytes to `upload_url` (no token: the URL is the credential) -> 200 `OK - <length>`
3. `files.completeUploadExternal` (files=`[{"id", "title"}]` JSON, channel_id, initial_comment,
   thread_ts) -> `{"files": [...]}`; only now is the file shared in the channel.

Checks as Slack makes them: a length that does not match the bytes, completing a file never uploaded
or twice, or a `channel_id` that is not an id, is refused with Slack's error codes.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.slack_validate import SlackError


@dataclass
class SlackFile:
    id: str
    filename: str
    length: int
    alt_txt: str | None = None
    data: bytes | None = None  # set by the upload POST
    title: str = ""
    channel: str | None = None  # set by files.completeUploadExternal
    thread_ts: str | None = None
    initial_comment: str | None = None
    shared_at_ts: str = ""  # the file message's ts in the channel

    @property
    def shared(self) -> bool:
        return self.channel is not None


class FileUploads:
    """Mixed into FakeSlack: needs `port`, `new_ts()` and the `_thread_exists` check."""

    port: int
    files: dict[str, SlackFile]
    _file_ids: itertools.count[int]

    def _init_files(self, app: web.Application) -> None:
        self.files = {}
        self._file_ids = itertools.count(1)
        app.router.add_post("/upload/{file_id}", self._upload)

    if TYPE_CHECKING:  # provided by FakeSlack

        def new_ts(self) -> str: ...

        def _thread_exists(self, channel: str, thread_ts: Any) -> None: ...

    def shared_files(self, channel: str) -> list[SlackFile]:
        return [f for f in self.files.values() if f.channel == channel]

    def _m_files_getUploadURLExternal(self, args: Mapping[str, Any]) -> dict[str, Any]:
        filename = args.get("filename")
        length = str(args.get("length") or "")
        if not filename or not length.isdigit() or int(length) <= 0:
            raise SlackError("invalid_arguments")
        file_id = f"F0FAKE{next(self._file_ids):04d}"
        self.files[file_id] = SlackFile(file_id, str(filename), int(length), args.get("alt_txt"))
        return {"upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        file = self.files.get(request.match_info["file_id"])
        data = await request.read()
        if file is None or file.data is not None:
            return web.Response(status=404, text="Not Found")
        if len(data) != file.length:  # Slack checks the declared length
            return web.Response(status=400, text="length mismatch")
        file.data = data
        return web.Response(text=f"OK - {len(data)}")

    def _m_files_completeUploadExternal(self, args: Mapping[str, Any]) -> dict[str, Any]:
        try:
            entries = json.loads(str(args.get("files") or ""))
        except json.JSONDecodeError as error:
            raise SlackError("invalid_arguments") from error
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        channel = args.get("channel_id")
        if channel is not None and str(channel)[:1] not in ("C", "G", "D"):
            raise SlackError("invalid_channel")  # an id, never a #name
        if channel is not None:
            self._thread_exists(str(channel), args.get("thread_ts"))
        out = [self._complete(entry, channel, args) for entry in entries]
        return {"files": out}

    def _complete(self, entry: Any, channel: Any, args: Mapping[str, Any]) -> dict[str, Any]:
        file = self.files.get(entry.get("id", "")) if isinstance(entry, dict) else None
        if file is None:
            raise SlackError("file_not_found")
        if file.data is None or file.shared:
            raise SlackError("file_upload_not_completed" if file.data is None else "already_completed")
        file.title = str(entry.get("title") or file.filename)
        if channel is not None:
            file.channel, file.thread_ts = str(channel), args.get("thread_ts")
            file.initial_comment, file.shared_at_ts = args.get("initial_comment"), self.new_ts()
        return {"id": file.id, "name": file.filename, "title": file.title, "size": file.length}
