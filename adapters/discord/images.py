"""Images users attach to a message, downloaded for the model.

Discord puts uploaded files in `message.attachments`, each with a `content_type` (when Discord could tell),
a `size` and a signed CDN URL that `Attachment.read()` fetches through the client's HTTP session (no bot
token is sent to the CDN). Images of the accepted types are downloaded concurrently and become
`ImageBlock`s; anything skipped or failed is said in a short note appended to the text, so the model knows
the user sent something it cannot see, and the text itself is never lost.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import discord

from core.conversation import ImageBlock
from core.images import MAX_IMAGE_BYTES, MAX_IMAGE_MB, MAX_IMAGES, count, sniff_image_type

log = logging.getLogger(__name__)

ACCEPTED_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Images:
    blocks: tuple[ImageBlock, ...] = ()
    notes: tuple[str, ...] = ()

    def annotate(self, text: str) -> str:
        """The user's text followed by the notes about what the model will not see."""
        return "\n".join(part for part in (text, *self.notes) if part)


def media_type_of(attachment: discord.Attachment) -> str | None:
    """The attachment's declared type (`image/png; charset=…` -> `image/png`), else from its filename."""
    declared = (attachment.content_type or "").split(";")[0].strip().lower()
    if not declared:
        declared = (mimetypes.guess_type(attachment.filename)[0] or "").lower()
    return "image/jpeg" if declared == "image/jpg" else declared or None


async def _download(attachment: discord.Attachment, declared: str) -> ImageBlock | str:
    """The image, or the note to add when it cannot be used."""
    try:
        data = await asyncio.wait_for(attachment.read(), DOWNLOAD_TIMEOUT_S)
    except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError) as error:
        status = getattr(error, "status", type(error).__name__)
        log.warning("could not download Discord attachment %s (%s)", attachment.id, status)
        return f"[image {attachment.filename} could not be downloaded]"
    if len(data) > MAX_IMAGE_BYTES:
        return f"[image {attachment.filename} too large: max {MAX_IMAGE_MB} MB]"
    media_type = sniff_image_type(data) or declared
    if media_type not in ACCEPTED_TYPES:
        return f"[attachment {attachment.filename} skipped: not a supported image]"
    encoded = await asyncio.to_thread(base64.b64encode, data)
    return ImageBlock(media_type=media_type, data_b64=encoded.decode("ascii"))


async def collect(attachments: Sequence[discord.Attachment]) -> Images:
    """Download the message's images (at most MAX_IMAGES, MAX_IMAGE_BYTES each) concurrently."""
    if not attachments:
        return Images()
    notes: list[str] = []
    wanted: list[tuple[discord.Attachment, str]] = []
    not_images = 0
    over_count = 0
    for attachment in attachments:
        declared = media_type_of(attachment)
        if declared not in ACCEPTED_TYPES:
            not_images += 1
        elif attachment.size > MAX_IMAGE_BYTES:  # known before downloading
            notes.append(f"[image {attachment.filename} too large: max {MAX_IMAGE_MB} MB]")
        elif len(wanted) >= MAX_IMAGES:
            over_count += 1
        else:
            wanted.append((attachment, declared))
    if not_images:
        notes.append(f"[{count(not_images, 'attachment')} skipped: not an image]")
    if over_count:
        notes.append(f"[{count(over_count, 'image')} skipped: at most {MAX_IMAGES} per message]")
    results = await asyncio.gather(*(_download(a, t) for a, t in wanted))
    blocks = tuple(r for r in results if isinstance(r, ImageBlock))
    notes.extend(r for r in results if isinstance(r, str))
    return Images(blocks, tuple(notes))
