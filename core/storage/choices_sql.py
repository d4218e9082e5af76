"""Tool approvals (choices, grants), the audit log, answer ratings and the regenerate helpers
(migration 7), written once for both backends: the SQL, the row conversions and `ChoiceMethods`, the
`Store` methods both stores inherit.

Written in the SQL that SQLite and PostgreSQL both speak, with `?` placeholders (the PostgreSQL store
numbers them with `usage_sql.numbered`). Timestamps are epoch seconds in both schemas.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, cast

from core.storage.base import (
    AuditDecision,
    AuditOutcome,
    AuditRecord,
    ChoiceRecord,
    ChoiceStatus,
    RatingDimension,
    RatingTotals,
    TurnRecord,
)
from core.storage.rows import TURN_COLUMNS, Row, from_epoch, to_epoch, turn_from_row

CHOICE_STATUSES: Final = "'pending', 'approved', 'denied', 'expired', 'cancelled'"
# Decisions a person makes; these must also beat the clock. Expiry and cancel only need the choice to
# still be pending (an expiry is written once the clock has run out, by definition).
PERSON_DECISIONS: Final = frozenset({"approved", "denied"})

CHOICE_COLUMNS: Final = (
    "id, turn_id, conversation_key, call_id, tool, arguments, step, requested_by, status, created_at,"
    " expires_at, decided_by, decided_by_name, decided_at, message_id, ran_at"
)
INSERT_CHOICE_SQL: Final = (
    "INSERT INTO choices (turn_id, conversation_key, call_id, tool, arguments, step, requested_by,"
    " status, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)"
    f" RETURNING {CHOICE_COLUMNS}"
)
GET_CHOICE_SQL: Final = f"SELECT {CHOICE_COLUMNS} FROM choices WHERE id = ?"
TURN_CHOICES_SQL: Final = f"SELECT {CHOICE_COLUMNS} FROM choices WHERE turn_id = ? ORDER BY id"
SET_CHOICE_MESSAGE_SQL: Final = "UPDATE choices SET message_id = ? WHERE id = ?"
# One conditional write decides a choice: whoever's UPDATE matches first wins, every later one (in this
# process or another, on either backend) finds it no longer pending and changes nothing.
_DECIDE: Final = (
    "UPDATE choices SET status = ?, decided_by = ?, decided_by_name = ?, decided_at = ?"
    " WHERE id = ? AND status = 'pending'{clock}"
    f" RETURNING {CHOICE_COLUMNS}"
)
DECIDE_CHOICE_SQL: Final = _DECIDE.format(clock=" AND expires_at > ?")
END_CHOICE_SQL: Final = _DECIDE.format(clock="")
# An approved call is marked before it runs, once: a second resume (another replica, a restart) sees it.
MARK_CHOICE_RAN_SQL: Final = (
    "UPDATE choices SET ran_at = ? WHERE id = ? AND status = 'approved' AND ran_at IS NULL"
)

GRANT_TOOL_SQL: Final = (
    "INSERT INTO tool_grants (conversation_key, tool, granted_by, created_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (conversation_key, tool) DO NOTHING"
)
GRANTED_TOOLS_SQL: Final = "SELECT tool FROM tool_grants WHERE conversation_key = ?"

AUDIT_COLUMNS: Final = (
    "ts, platform, conversation_key, turn_id, asked_by, tool, arguments, decision, decided_by,"
    " waited_ms, duration_ms, outcome, detail"
)
INSERT_AUDIT_SQL: Final = (
    f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

# Last click wins. Inserting from the turn row makes an unknown turn change nothing (0 rows). The casts
# give PostgreSQL the parameters' types (a bare parameter in a SELECT list would be taken for text).
RATE_ANSWER_SQL: Final = (
    "INSERT INTO ratings (turn_id, user_id, rating, ts)"
    " SELECT id, CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS DOUBLE PRECISION) FROM turns WHERE id = ?"
    " ON CONFLICT (turn_id, user_id) DO UPDATE SET rating = excluded.rating, ts = excluded.ts"
)

TURN_BEFORE_SQL: Final = (
    f"SELECT {TURN_COLUMNS} FROM turns WHERE conversation_key = ? AND id < ? ORDER BY id DESC LIMIT 1"
)
DROP_MESSAGES_FROM_SQL: Final = (
    "UPDATE messages SET compacted = 1 WHERE session_id = ? AND compacted = 0 AND id >= ?"
)

_RATING_KEYS: Final[dict[str, str]] = {
    "model": "t.model",
    "channel": "t.platform || ':' || t.channel",
}


def decide_choice_sql(status: ChoiceStatus, now: float) -> tuple[str, tuple[Any, ...]]:
    """The conditional UPDATE for `status` and its trailing parameters (after the id)."""
    if status == "pending":
        raise ValueError("a choice cannot be decided back to pending")
    if status in PERSON_DECISIONS:
        return DECIDE_CHOICE_SQL, (now,)
    return END_CHOICE_SQL, ()


def audit_entries_sql(since: float, limit: int, platform: str | None) -> tuple[str, list[Any]]:
    """Audit rows from `since` on, newest first (id breaks ties between rows of the same instant)."""
    where = "ts >= ?"
    params: list[Any] = [since]
    if platform is not None:
        where += " AND platform = ?"
        params.append(platform)
    params.append(max(0, limit))
    return f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {where} ORDER BY ts DESC, id DESC LIMIT ?", params


def rating_totals_sql(
    since: float, until: float, by: RatingDimension, platform: str | None
) -> tuple[str, list[Any]]:
    """Ratings given in [since, until) per `by` key, most rated first."""
    key = _RATING_KEYS.get(by)
    if key is None:  # interpolated into the SQL: only the known expressions may pass
        raise ValueError(f"unknown rating dimension: {by!r}")
    where = "r.ts >= ? AND r.ts < ?"
    params: list[Any] = [since, until]
    if platform is not None:
        where += " AND t.platform = ?"
        params.append(platform)
    sql = (
        f"SELECT {key} AS rated, SUM(CASE WHEN r.rating > 0 THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN r.rating < 0 THEN 1 ELSE 0 END)"
        f" FROM ratings r JOIN turns t ON t.id = r.turn_id WHERE {where}"
        " GROUP BY rated ORDER BY COUNT(*) DESC, rated"
    )
    return sql, params


def choice_from_row(row: Row) -> ChoiceRecord:
    """A CHOICE_COLUMNS row."""
    return ChoiceRecord(
        *(int(row[0]), int(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]), str(row[6])),
        requested_by=str(row[7]),
        status=cast(ChoiceStatus, str(row[8])),  # guaranteed by the CHECK constraint
        created_at=from_epoch(float(row[9])),
        expires_at=from_epoch(float(row[10])),
        decided_by=str(row[11]),
        decided_by_name=str(row[12]),
        decided_at=None if row[13] is None else from_epoch(float(row[13])),
        message_id=str(row[14]),
        ran_at=None if row[15] is None else from_epoch(float(row[15])),
    )


def audit_params(record: AuditRecord, ts: float) -> tuple[Any, ...]:
    """INSERT_AUDIT_SQL's parameters (`ts`: the record's time as epoch seconds)."""
    r = record
    return (
        *(ts, r.platform, r.conversation_key, r.turn_id, r.asked_by, r.tool, r.arguments),
        *(r.decision, r.decided_by, r.waited_ms, r.duration_ms, r.outcome, r.detail),
    )


def audit_from_row(row: Row) -> AuditRecord:
    """An AUDIT_COLUMNS row."""
    return AuditRecord(
        ts=from_epoch(float(row[0])),
        platform=str(row[1]),
        conversation_key=str(row[2]),
        turn_id=None if row[3] is None else int(row[3]),
        asked_by=str(row[4]),
        tool=str(row[5]),
        arguments=str(row[6]),
        decision=cast(AuditDecision, str(row[7])),
        decided_by=str(row[8]),
        waited_ms=float(row[9]),
        duration_ms=float(row[10]),
        outcome=cast(AuditOutcome, str(row[11])),
        detail=str(row[12]),
    )


def rating_totals(rows: Sequence[Row]) -> list[RatingTotals]:
    return [RatingTotals(str(row[0]), int(row[1]), int(row[2])) for row in rows]


def check_rating(rating: int) -> None:
    if rating not in (1, -1):
        raise ValueError(f"a rating is +1 or -1, not {rating!r}")


class ChoiceMethods(ABC):
    """The migration-7 `Store` methods, written once for both backends on two primitives each backend
    provides: `_fetch` (rows of a statement; `write` says whether it changes anything, which SQLite
    routes through group commit) and `_change` (rows a statement changed). SQL uses `?` placeholders."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any], *, write: bool) -> list[Row]: ...

    @abstractmethod
    async def _change(self, sql: str, params: Sequence[Any]) -> int: ...

    # Choices

    async def add_choice(
        self,
        turn_id: int,
        conversation_key: str,
        call_id: str,
        tool: str,
        arguments: str,
        step: str,
        requested_by: str,
        expires_at: datetime,
    ) -> ChoiceRecord:
        params = (turn_id, conversation_key, call_id, tool, arguments, step, requested_by)
        rows = await self._fetch(INSERT_CHOICE_SQL, (*params, time.time(), to_epoch(expires_at)), write=True)
        return choice_from_row(rows[0])

    async def get_choice(self, choice_id: int) -> ChoiceRecord | None:
        rows = await self._fetch(GET_CHOICE_SQL, (choice_id,), write=False)
        return choice_from_row(rows[0]) if rows else None

    async def turn_choices(self, turn_id: int) -> list[ChoiceRecord]:
        return [choice_from_row(row) for row in await self._fetch(TURN_CHOICES_SQL, (turn_id,), write=False)]

    async def set_choice_message(self, choice_id: int, message_id: str) -> None:
        if await self._change(SET_CHOICE_MESSAGE_SQL, (message_id, choice_id)) != 1:
            raise LookupError(f"no choice with id {choice_id!r}")

    async def decide_choice(
        self, choice_id: int, status: ChoiceStatus, decided_by: str, decided_by_name: str, now: datetime
    ) -> ChoiceRecord | None:
        moment = to_epoch(now)
        sql, clock = decide_choice_sql(status, moment)
        rows = await self._fetch(
            sql, (status, decided_by, decided_by_name, moment, choice_id, *clock), write=True
        )
        return choice_from_row(rows[0]) if rows else None

    async def mark_choice_ran(self, choice_id: int, now: datetime) -> bool:
        return await self._change(MARK_CHOICE_RAN_SQL, (to_epoch(now), choice_id)) == 1

    async def grant_tool(self, conversation_key: str, tool: str, granted_by: str) -> None:
        await self._change(GRANT_TOOL_SQL, (conversation_key, tool, granted_by, time.time()))

    async def granted_tools(self, conversation_key: str) -> frozenset[str]:
        rows = await self._fetch(GRANTED_TOOLS_SQL, (conversation_key,), write=False)
        return frozenset(str(row[0]) for row in rows)

    # Audit and ratings

    async def record_audit(self, record: AuditRecord) -> None:
        await self._change(INSERT_AUDIT_SQL, audit_params(record, to_epoch(record.ts)))

    async def audit_entries(
        self, since: datetime, *, limit: int = 50, platform: str | None = None
    ) -> list[AuditRecord]:
        sql, params = audit_entries_sql(to_epoch(since), limit, platform)
        return [audit_from_row(row) for row in await self._fetch(sql, params, write=False)]

    async def rate_answer(self, turn_id: int, user_id: str, rating: int, now: datetime) -> bool:
        check_rating(rating)
        return await self._change(RATE_ANSWER_SQL, (user_id, rating, to_epoch(now), turn_id)) == 1

    async def rating_totals(
        self, since: datetime, until: datetime, by: RatingDimension, *, platform: str | None = None
    ) -> list[RatingTotals]:
        sql, params = rating_totals_sql(to_epoch(since), to_epoch(until), by, platform)
        return rating_totals(await self._fetch(sql, params, write=False))

    # Regenerate

    async def turn_before(self, conversation_key: str, turn_id: int) -> TurnRecord | None:
        rows = await self._fetch(TURN_BEFORE_SQL, (conversation_key, turn_id), write=False)
        return turn_from_row(rows[0]) if rows else None

    async def drop_messages_from(self, session_id: int, message_id: int) -> int:
        return await self._change(DROP_MESSAGES_FROM_SQL, (session_id, message_id))
