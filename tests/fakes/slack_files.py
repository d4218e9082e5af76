"""Files for the fake Slack: uploads in the wire format slack-sdk's `files_upload_v2` speaks, and files
people share, served as Slack serves them.

Uploads:

1. `files.getUploadURLExternal` (filename, length) -> `{"upload_url", "file_id"}`
2. POST the bytes to `upload_url` (no token: the URL is the credential) -> 200 `OK - <length>`
3. `files.completeUploadExternal` (files=`[{"id", "title"}]` JSON, channel_id, initial_comment,
   thread_ts) -> `{"files": [...]}`; only now is the file shared in the channel.

Checks as Slack makes them: a length that does not match the bytes, completing a file never uploaded
or twice, or a `channel_id` that is not an id, is refused with Slack's error codes.

Shared files (`share_file`): a Slack file object for a message event's `files` list, whose
`url_private_download` answers an authenticated GET (`Authorization: Bearer <bot token>`) with the
bytes. Like Slack, a missing or wrong token is not a 401: it redirects to an HTML sign-in page.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass
class SharedFile:
    """A file a person attached to a message."""

    id: str
    name: str
    mimetype: str
    data: bytes
    fail_status: int | None = None  # answer downloads with this status instead of the bytes
    downloads: list[str] = field(default_factory=list)  # "ok" / "unauthorized" per GET


class FileUploads:
    """Mixed into FakeSlack: needs `port`, `new_ts()` and the `_thread_exists` check."""

    port: int
    bot_token: str  # the token a file download must carry
    files: dict[str, SlackFile]
    shared: dict[str, SharedFile]
    _file_ids: itertools.count[int]

    def _init_files(self, app: web.Application) -> None:
        self.files = {}
        self.shared = {}
        self._file_ids = itertools.count(1)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{key}/download/{name}", self._download)
        app.router.add_get("/files-pri/{key}/{name}", self._download)
        app.router.add_get("/signin", self._signin)

    # --- files people share -----------------------------------------------------------------

    def share_file(
        self,
        name: str,
        data: bytes,
        mimetype: str,
        *,
        size: int | None = None,
        fail_status: int | None = None,
        user: str = "U0ALICE",
        team: str = "T0FAKE",
    ) -> dict[str, Any]:
        """Store a file and return its Slack file object (`size` may claim another size)."""
        file_id = f"F0SHARE{next(self._file_ids):04d}"
        self.shared[file_id] = SharedFile(file_id, name, mimetype, data, fail_status)
        base = f"http://127.0.0.1:{self.port}/files-pri/{team}-{file_id}"
        filetype = mimetype.rsplit("/", 1)[-1]
        return {
            "id": file_id,
            "created": 1_700_000_000,
            "timestamp": 1_700_000_000,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": filetype.upper(),
            "user": user,
            "user_team": team,
            "editable": False,
            "size": len(data) if size is None else size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": False,
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base}/{name}",
            "url_private_download": f"{base}/download/{name}",
            "permalink": f"https://fake.slack.com/files/{user}/{file_id}/{name}",
            "file_access": "visible",
        }

    async def _download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["key"].rsplit("-", 1)[-1]
        file = self.shared.get(file_id)
        if file is None or request.match_info["name"] != file.name:
            return web.Response(status=404, text="Not Found")
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            file.downloads.append("unauthorized")  # Slack sends the browser to sign in
            raise web.HTTPFound(f"http://127.0.0.1:{self.port}/signin?redir={request.path}")
        file.downloads.append("ok")
        if file.fail_status is not None:
            return web.Response(status=file.fail_status, text="error")
        return web.Response(body=file.data, content_type=file.mimetype)

    async def _signin(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<!DOCTYPE html><html><body>Sign in to Slack</body></html>", content_type="text/html"
        )

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
