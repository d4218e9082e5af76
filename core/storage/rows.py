"""Row <-> record conversions shared by the SQLite and PostgreSQL stores (same columns, same order)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol, cast

from core.inbound import ConversationRef
from core.storage.base import SessionRecord, TurnRecord, TurnStatus


class Row(Protocol):
    """A result row of either driver (sqlite3.Row, asyncpg.Record): indexable by column position."""

    def __getitem__(self, index: int, /) -> Any: ...


SESSION_COLUMNS = "id, platform, workspace, channel, thread, model, summary, summary_tokens, created_at"
TURN_COLUMNS = (
    "id, session_id, platform, workspace, channel, thread, sender_id, text, event_id, status, created_at,"
    " reply_address, is_dm, sender_name, answer, delivered_at, shown, regenerates, model"
)


def to_epoch(moment: datetime) -> float:
    """UTC epoch seconds. Naive datetimes are rejected: guessing their zone silently skews accounting."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass a timezone-aware datetime")
    return moment.timestamp()


def from_epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def ref_parts(ref: ConversationRef) -> tuple[str, str, str, str]:
    return (ref.platform, ref.workspace, ref.channel, ref.thread)


def shown_entry(message_id: str) -> str:
    """One message id as appended to `turns.shown` (whitespace-separated; ids never contain any)."""
    if not message_id or any(c.isspace() for c in message_id):
        raise ValueError(f"not a message id: {message_id!r}")
    return f" {message_id}"


def session_from_row(row: Row) -> SessionRecord:
    """A SESSION_COLUMNS row. The ref is rebuilt from its stored parts, not from the key: the key
    escapes "|" and is lossy."""
    ref = ConversationRef(str(row[1]), str(row[2]), str(row[3]), str(row[4]))
    model = None if row[5] is None else str(row[5])
    return SessionRecord(int(row[0]), ref, model, str(row[6]), int(row[7]), from_epoch(float(row[8])))


def turn_from_row(row: Row) -> TurnRecord:
    """A TURN_COLUMNS row."""
    ref = ConversationRef(str(row[2]), str(row[3]), str(row[4]), str(row[5]))
    status = cast(TurnStatus, str(row[9]))  # guaranteed by the CHECK constraint
    created = from_epoch(float(row[10]))
    return TurnRecord(
        *(int(row[0]), int(row[1]), ref, str(row[6]), str(row[7]), str(row[8]), status, created),
        reply_address=str(row[11]),
        is_dm=bool(row[12]),  # SQLite: 0/1, PostgreSQL: a boolean
        sender_name=str(row[13]),
        answer=None if row[14] is None else str(row[14]),
        delivered_at=None if row[15] is None else from_epoch(float(row[15])),
        shown=tuple(str(row[16]).split()),
        regenerates=int(row[17]),
        model=str(row[18]),
    )
