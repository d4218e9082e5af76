"""Images people attach to a message -> image blocks for the model.

A Slack message's files arrive as file objects in the event's `files` list; the bytes are behind
`url_private_download`, fetched with the bot token as Bearer (needs the `files:read` scope). Without a
valid token Slack does not answer 401 but redirects to a sign-in page, so the bytes are checked to be
the image they claim to be. Anything not sent to the model is told to it in a short note, and a failed
download never loses the message's text.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from core.conversation import ImageBlock
from core.images import MAX_IMAGE_BYTES, MAX_IMAGE_MB, MAX_IMAGES, count, sniff_image_type

log = logging.getLogger(__name__)

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DOWNLOAD_TIMEOUT_S = 30.0
# The bot token is only ever sent to Slack's own hosts (and the configured API host, e.g. a test server).
SLACK_FILE_DOMAINS = ("slack.com", "slack-gov.com")


@dataclass(frozen=True, slots=True)
class FileRef:
    """The parts of a Slack file object an image download needs."""

    id: str
    mimetype: str
    size: int | None
    url: str | None  # url_private_download; None when Slack gives no way to fetch it


@dataclass
class Attachments:
    """The outcome for one message: images for the model and notes about what was left out."""

    images: tuple[ImageBlock, ...] = ()
    notes: list[str] = field(default_factory=list)

    def text_with_notes(self, text: str) -> str:
        return "\n".join([t for t in (text.strip(), *self.notes) if t])


def file_refs(files: Any) -> tuple[FileRef, ...]:
    """The event's `files` list -> FileRefs (pure; odd entries are kept so they can be noted)."""
    if not isinstance(files, list):
        return ()
    out: list[FileRef] = []
    for item in files:
        if not isinstance(item, Mapping):
            continue
        size = item.get("size")
        url = item.get("url_private_download") or item.get("url_private")
        fetchable = item.get("mode", "hosted") in ("hosted", "snippet", "post") and isinstance(url, str)
        if item.get("file_access") == "check_file_info":  # Slack Connect: the object is a stub
            fetchable = False
        out.append(
            FileRef(
                id=str(item.get("id") or "?"),
                mimetype=str(item.get("mimetype") or "").lower(),
                size=size if isinstance(size, int) else None,
                url=url if fetchable else None,
            )
        )
    return tuple(out)


async def fetch_images(
    session: aiohttp.ClientSession,
    token: str,
    api_url: str,
    files: Iterable[FileRef],
    on_rate_limited: Callable[[], None] | None = None,
) -> Attachments:
    """Download the message's images concurrently; skip and note what is not a usable image.
    `on_rate_limited` hears of each download Slack answered with 429."""
    not_image = too_large = over_limit = failed = 0
    wanted: list[FileRef] = []
    for ref in files:
        if ref.mimetype not in IMAGE_TYPES:
            not_image += 1
        elif ref.size is not None and ref.size > MAX_IMAGE_BYTES:
            too_large += 1
        elif len(wanted) >= MAX_IMAGES:
            over_limit += 1
        else:
            wanted.append(ref)
    allowed = _allowed_hosts(api_url)
    results = await asyncio.gather(*(_fetch(session, token, allowed, ref, on_rate_limited) for ref in wanted))
    images = tuple(r for r in results if isinstance(r, ImageBlock))
    too_large += sum(1 for r in results if r == "too_large")
    failed += sum(1 for r in results if r == "failed")
    notes: list[str] = []
    if not_image:
        notes.append(f"[{count(not_image, 'attachment')} skipped: not an image]")
    if too_large:
        notes.append(f"[{count(too_large, 'image')} skipped: too large, max {MAX_IMAGE_MB} MB]")
    if over_limit:
        notes.append(f"[{count(over_limit, 'image')} skipped: at most {MAX_IMAGES} per message]")
    if failed:
        notes.append(f"[{count(failed, 'image')} could not be downloaded]")
    return Attachments(images, notes)


async def _fetch(
    session: aiohttp.ClientSession,
    token: str,
    allowed: frozenset[str],
    ref: FileRef,
    on_rate_limited: Callable[[], None] | None,
) -> ImageBlock | str:
    if ref.url is None:
        log.warning("Slack file %s has no download URL (external, hidden or Slack Connect)", ref.id)
        return "failed"
    host = (urlsplit(ref.url).hostname or "").lower()
    if host not in allowed and not any(host.endswith("." + d) for d in SLACK_FILE_DOMAINS):
        log.warning("Slack file %s is not on a Slack host; not downloaded", ref.id)
        return "failed"
    try:
        async with session.get(
            ref.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S),
        ) as response:
            if response.status == 429 and on_rate_limited is not None:
                on_rate_limited()
            if response.status != 200:
                log.warning("Slack file %s download failed: HTTP %s", ref.id, response.status)
                return "failed"
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > MAX_IMAGE_BYTES:
                    return "too_large"
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("Slack file %s download failed: %s", ref.id, type(error).__name__)
        return "failed"
    media_type = sniff_image_type(bytes(data[:16]))
    if media_type is None:  # e.g. the sign-in page Slack serves for a missing or wrong token
        log.warning("Slack file %s download is not an image (is the files:read scope granted?)", ref.id)
        return "failed"
    return ImageBlock(media_type=media_type, data_b64=base64.b64encode(data).decode("ascii"))


def _allowed_hosts(api_url: str) -> frozenset[str]:
    host = (urlsplit(api_url).hostname or "").lower()
    return frozenset({*SLACK_FILE_DOMAINS, host} - {""})
