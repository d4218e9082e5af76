"""Long polling that loses nothing: an update is confirmed to Telegram only once it has been admitted.

Telegram forgets updates when a getUpdates call asks for a higher `offset`. PTB's Updater sends that
call right away, before the update was handled: a crash in between loses the message. Here each batch is
handed over first (`take`: parsed, images fetched, the turn stored with its event claim by
`Router.admit`), and only then is the next batch requested with offset = last update_id + 1, which is
what confirms the batch. Answering happens elsewhere (in its own tasks), so a long answer never holds up
polling; a batch whose hand-over takes longer than `batch_wait_s` is logged and confirmed anyway, so one
slow download cannot stall every chat.

Photos sent together (an album) arrive as several updates and may straddle two batches: when a batch
holds an album, the poller waits `album_wait_s` and asks again from the same offset (which confirms
nothing) for the rest.

While the router is draining (shutting down), no batch is fetched or handed over: Telegram keeps the
updates for the next process, instead of them getting a "restarting" reply.

An update python-telegram-bot cannot parse is logged once and skipped (confirmed with the batch), never
fetched again in a loop; PTB's own CRITICAL line for it (the whole batch's raw JSON, users' messages
included, and a traceback) is dropped, since the skip is logged here. Failed calls back off as PTB's
Updater does: RetryAfter waits as asked, a timeout retries at once, other errors (Conflict: another
poller or a webhook; network trouble) wait 1 s growing to 30 s.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from telegram import Bot, Update
from telegram.error import InvalidToken, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBUserWarning

from adapters.telegram.errors import TelegramStartError
from adapters.telegram.limiter import retry_seconds

log = logging.getLogger(__name__)

ALBUM_WAIT_S = 0.6  # how long an album's first photo waits for the others
BATCH_WAIT_S = 10.0  # longest a batch may take to be admitted before it is confirmed anyway
MAX_BACKOFF_S = 30.0
PAUSE_CHECK_S = 0.2

Take = Callable[[list[Update]], Coroutine[Any, Any, None]]
_PTB_PARSE_ERROR = "Error while parsing updates!"  # how Bot.get_updates logs a batch it cannot parse
_PTB_BOT_LOGGERS = ("telegram.Bot", "telegram.ext.ExtBot")


class _DropPtbParseError(logging.Filter):
    """Drops PTB's CRITICAL record for a batch it cannot parse: the poller takes the batch apart and
    logs the one update it skips, without the users' messages PTB's record quotes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_PTB_PARSE_ERROR))


_DROP_PTB_PARSE_ERROR = _DropPtbParseError()


def in_album(update: Update) -> bool:
    return update.message is not None and bool(update.message.media_group_id)


class Poller:
    def __init__(
        self,
        bot: Bot,
        take: Take,
        *,
        timeout: int,
        allowed_updates: Sequence[str],
        accepting: Callable[[], bool] = lambda: True,
        album_wait_s: float = ALBUM_WAIT_S,
        batch_wait_s: float = BATCH_WAIT_S,
    ) -> None:
        self._bot = bot
        self._take = take  # admits a batch; must not raise
        self._timeout = timeout
        self._allowed = list(allowed_updates)
        self._accepting = accepting  # False while draining: leave new updates with Telegram
        self._album_wait_s = album_wait_s
        self._batch_wait_s = batch_wait_s
        self._late: set[asyncio.Task[None]] = set()  # hand-overs still running (cancelled with the poller)
        self.offset: int | None = None  # the next getUpdates' offset: everything below is confirmed
        self._skipped: set[int] = set()  # unparseable updates already logged (an album's refetch)
        for name in _PTB_BOT_LOGGERS:
            logging.getLogger(name).addFilter(_DROP_PTB_PARSE_ERROR)  # the same filter is added once

    async def run(self) -> None:
        """Poll until cancelled. Raises TelegramStartError when Telegram rejects the token."""
        backoff = 0.0
        try:
            while True:
                while not self._accepting():  # noqa: ASYNC110 (the router's flag has no event to wait on)
                    await asyncio.sleep(PAUSE_CHECK_S)
                try:
                    updates, offset = await self._fetch(self.offset, self._timeout)
                    if any(in_album(update) for update in updates):
                        updates, offset = await self._rest_of_albums(updates, offset)
                except InvalidToken:
                    raise TelegramStartError("Telegram rejected TELEGRAM_BOT_TOKEN (getUpdates)") from None
                except RetryAfter as error:
                    wait = retry_seconds(error) + 0.5
                    log.warning("getUpdates: flood control, waiting %.1fs", wait)
                    await asyncio.sleep(wait)
                    continue
                except TimedOut:
                    continue  # the long poll outlived the connection: ask again at once
                except TelegramError as error:  # Conflict, network trouble, 5xx
                    backoff = 1.0 if backoff == 0 else min(MAX_BACKOFF_S, backoff * 1.5)
                    log.warning("getUpdates failed (%s); retrying in %.1fs", error.message, backoff)
                    await asyncio.sleep(backoff)
                    continue
                backoff = 0.0
                if not self._accepting():
                    continue  # draining: leave the batch unconfirmed, the next process gets it
                if updates:
                    await self._hand_over(updates)
                if offset is not None:
                    self.offset = offset  # the next call confirms this batch
                    self._skipped = {update_id for update_id in self._skipped if update_id >= offset}
        finally:
            for task in self._late:
                task.cancel()
            await asyncio.gather(*self._late, return_exceptions=True)

    async def _fetch(self, offset: int | None, poll_s: int) -> tuple[list[Update], int | None]:
        """One getUpdates call: the updates, and the offset that confirms them (None: no updates)."""
        try:
            updates = await self._bot.get_updates(
                offset=offset, timeout=poll_s, allowed_updates=self._allowed
            )
        except TelegramError:
            raise
        except Exception:  # PTB could not parse the batch: take it apart to skip just the bad update
            return await self._fetch_one_by_one(offset)
        return list(updates), (updates[-1].update_id + 1 if updates else None)

    async def _fetch_one_by_one(self, offset: int | None) -> tuple[list[Update], int | None]:
        with warnings.catch_warnings():  # "use Bot.get_updates": we need the raw JSON
            warnings.simplefilter("ignore", PTBUserWarning)
            raw: Any = await self._bot.do_api_request(
                "getUpdates", api_kwargs={"offset": offset, "timeout": 0, "allowed_updates": self._allowed}
            )
        updates: list[Update] = []
        last: int | None = None
        for item in raw if isinstance(raw, list) else []:
            update_id = item.get("update_id") if isinstance(item, dict) else None
            if isinstance(update_id, int):
                last = max(last or update_id, update_id)
            try:
                update = Update.de_json(item, self._bot)
            except Exception as error:
                if not isinstance(update_id, int) or update_id not in self._skipped:
                    log.warning(
                        "skipping update %s: python-telegram-bot cannot parse it (%s)",
                        update_id,
                        type(error).__name__,
                    )
                if isinstance(update_id, int):
                    self._skipped.add(update_id)
                continue
            updates.append(update)
        return updates, (last + 1 if last is not None else None)

    async def _rest_of_albums(
        self, updates: list[Update], offset: int | None
    ) -> tuple[list[Update], int | None]:
        """The batch with any album photos that arrived just after it (asked for from the batch's own
        offset, so nothing is confirmed yet)."""
        await asyncio.sleep(self._album_wait_s)
        try:
            again, later = await self._fetch(self.offset, 0)
        except TelegramError as error:
            log.debug("could not look for the rest of an album: %s", error.message)
            return updates, offset
        seen = max(update.update_id for update in updates)
        more = [update for update in again if update.update_id > seen]
        return updates + more, max(later or 0, offset or 0) or None

    async def _hand_over(self, updates: list[Update]) -> None:
        """Wait until the batch is admitted (at most `batch_wait_s`); cancelled with the poller."""
        task = asyncio.create_task(self._take(updates))
        self._late.add(task)
        task.add_done_callback(self._late.discard)
        done, _ = await asyncio.wait({task}, timeout=self._batch_wait_s)
        if task not in done:
            log.warning(
                "%d update(s) were not admitted within %.0fs; confirming them anyway",
                len(updates),
                self._batch_wait_s,
            )
        elif not task.cancelled() and task.exception() is not None:
            log.error("handling a batch of updates failed", exc_info=task.exception())
