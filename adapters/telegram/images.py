"""Images a user sent to the bot: the largest photo size or an image document, fetched with getFile.

An album (several photos sent at once) arrives as several messages sharing a `media_group_id`; the
adapter gathers them and passes them here together, so the model sees one question with its images.
Downloads run concurrently, before the core is called. Whatever is skipped or fails is said in a short
note appended to the text, so the model knows; a failed download never loses the text.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from telegram import Bot, Message
from telegram.error import TelegramError

from core.conversation import ImageBlock
from core.images import MAX_IMAGE_BYTES, MAX_IMAGE_MB, MAX_IMAGES, SUPPORTED_TYPES, count, sniff_image_type
from core.inbound import InboundMessage

log = logging.getLogger(__name__)

# Media a message can carry that the model cannot see (a document is checked by its type).
_OTHER_MEDIA = ("animation", "audio", "video", "video_note", "voice")


@dataclass(frozen=True, slots=True)
class Wanted:
    """An image to download: its file id, declared type and size (when Telegram gave them)."""

    file_id: str
    media_type: str
    size: int | None


class _TooLarge(Exception):
    pass


@dataclass
class _Notes:
    not_image: int = 0
    too_large: int = 0
    over_limit: int = 0
    failed: int = 0

    def text(self) -> str:
        notes = []
        if self.not_image:
            notes.append(f"[{count(self.not_image, 'attachment')} skipped: not an image]")
        if self.too_large:
            notes.append(f"[{count(self.too_large, 'image')} too large: max {MAX_IMAGE_MB} MB]")
        if self.over_limit:
            notes.append(f"[{count(self.over_limit, 'image')} skipped: max {MAX_IMAGES} per message]")
        if self.failed:
            notes.append(f"[{count(self.failed, 'image')} could not be downloaded]")
        return " ".join(notes)


def has_media(message: Message) -> bool:
    return bool(message.photo or message.document or any(getattr(message, a) for a in _OTHER_MEDIA))


def _wanted(message: Message, notes: _Notes) -> Wanted | None:
    """The image in one message, or None (counting what is skipped)."""
    if message.photo:
        # Sizes come smallest first; take the largest that fits (Telegram photos are always JPEG).
        fitting = [p for p in message.photo if p.file_size is None or p.file_size <= MAX_IMAGE_BYTES]
        if not fitting:
            notes.too_large += 1
            return None
        best = max(fitting, key=lambda p: p.width * p.height)
        return Wanted(best.file_id, "image/jpeg", best.file_size)
    document = message.document
    if document is not None and message.animation is None:  # a GIF "animation" is an mp4 on Telegram
        media_type = (document.mime_type or "").lower()
        if media_type not in SUPPORTED_TYPES:
            notes.not_image += 1
            return None
        if document.file_size is not None and document.file_size > MAX_IMAGE_BYTES:
            notes.too_large += 1
            return None
        return Wanted(document.file_id, media_type, document.file_size)
    if any(getattr(message, a) for a in _OTHER_MEDIA):
        notes.not_image += 1
    return None


async def with_images(bot: Bot, messages: Sequence[Message], inbound: InboundMessage) -> InboundMessage:
    """`inbound` with the images of `messages` attached and a note for anything left out."""
    notes = _Notes()
    wanted = [w for w in (_wanted(m, notes) for m in messages) if w is not None]
    if len(wanted) > MAX_IMAGES:
        notes.over_limit += len(wanted) - MAX_IMAGES
        wanted = wanted[:MAX_IMAGES]
    results = await asyncio.gather(*(_download(bot, w) for w in wanted), return_exceptions=True)
    images: list[ImageBlock] = []
    for result in results:
        if isinstance(result, ImageBlock):
            images.append(result)
        elif isinstance(result, _TooLarge):
            notes.too_large += 1
        elif isinstance(result, Exception):  # never lose the text over an image
            notes.failed += 1
            log.warning("downloading an image failed: %s", _describe(result, bot.token))
        elif isinstance(result, BaseException):
            raise result  # cancelled: the bot is stopping
    note = notes.text()
    if not images and not note:
        return inbound
    text = f"{inbound.text}\n\n{note}".strip() if note else inbound.text
    return replace(inbound, text=text, images=inbound.images + tuple(images))


async def _download(bot: Bot, wanted: Wanted) -> ImageBlock:
    file = await bot.get_file(wanted.file_id)
    if file.file_size is not None and file.file_size > MAX_IMAGE_BYTES:
        raise _TooLarge
    data = bytes(await file.download_as_bytearray())
    if len(data) > MAX_IMAGE_BYTES:
        raise _TooLarge
    return ImageBlock(
        media_type=sniff_image_type(data) or wanted.media_type, data_b64=base64.b64encode(data).decode()
    )


def _describe(error: BaseException, token: str) -> str:
    """An error for the log: its kind and message, never the bot token (download URLs contain it)."""
    message = error.message if isinstance(error, TelegramError) else str(error)
    return f"{type(error).__name__}: {message.replace(token, '<token>')}"
