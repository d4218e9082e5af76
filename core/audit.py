"""The audit of tool calls as text: a table for `bot audit`, a compact Markdown list for `/audit`.

Rows come from `Store.audit_entries` (newest first). Times are shown in the report timezone, the same
one days mean everywhere else (REPORT_TIMEZONE).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.storage.base import AuditRecord

SINCE_HELP = "use a duration like 30m, 24h or 7d, or a date YYYY-MM-DD"
_DURATION = re.compile(r"^(\d{1,6})\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

DECISIONS = {
    "allowed": "allowed",
    "approved": "approved",
    "always": "always allowed",
    "denied": "denied",
    "policy_denied": "denied by policy",
    "expired": "expired",
    "cancelled": "stopped",
}
# Who decided when no person did (decided_by == "").
_NOBODY = {"allowed": "policy", "policy_denied": "policy", "always": "earlier grant", "expired": "timeout"}

COLUMNS = (
    "time",
    "platform",
    "conversation",
    "asked by",
    "tool",
    "arguments",
    "decision",
    "decided by",
    "waited",
    "ran for",
    "outcome",
)
_WIDEST = {"conversation": 28, "asked by": 20, "tool": 24, "arguments": 40, "decided by": 20, "outcome": 40}


def parse_since(text: str, now: datetime, zone: ZoneInfo) -> datetime:
    """`24h` / `7d` / `30m` / `2w` before `now`, or the start of a day YYYY-MM-DD in `zone`.
    Raises ValueError with a message fit to show as it is."""
    word = text.strip().lower()
    match = _DURATION.match(word)
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise ValueError(f"cannot read {text.strip()!r}: the duration must be more than 0")
        return now - timedelta(**{_UNITS[match.group(2)]: amount})
    try:
        day = datetime.strptime(word, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError(f"cannot read {text.strip()!r}: {SINCE_HELP}") from None
    return datetime.combine(day, time(), zone)


def when(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def span(ms: float) -> str:
    """`350ms`, `2.4s`, `1m 05s`, `2h 03m`; `-` for nothing."""
    if ms <= 0:
        return "-"
    if ms < 1000:
        return f"{ms:.0f}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def conversation(key: str) -> str:
    """A conversation key without its platform: `T1/C0123/1700.1` for `slack|T1|C0123|1700.1`."""
    parts = [part for part in key.split("|")[1:] if part]
    return "/".join(parts) or key


def decided_by(record: AuditRecord) -> str:
    return record.decided_by or _NOBODY.get(record.decision, "-")


def outcome(record: AuditRecord) -> str:
    if record.outcome == "ok":
        return "ok"
    shown = "error" if record.outcome == "error" else "not run"
    detail = " ".join(record.detail.split())
    return f"{shown}: {detail}" if detail else shown


def _cells(record: AuditRecord, zone: ZoneInfo) -> list[str]:
    return [
        when(record.ts, zone),
        record.platform,
        conversation(record.conversation_key),
        record.asked_by,
        record.tool,
        " ".join(record.arguments.split()) or "-",
        DECISIONS.get(record.decision, record.decision),
        decided_by(record),
        span(record.waited_ms),
        span(record.duration_ms),
        outcome(record),
    ]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def audit_table(records: Sequence[AuditRecord], zone: ZoneInfo) -> str:
    """A plain-text table, one row per call, columns as wide as their widest cell (long ones cut)."""
    rows = [list(COLUMNS)]
    for record in records:
        cells = _cells(record, zone)
        rows.append(
            [_fit(cell, _WIDEST.get(column, 40)) for column, cell in zip(COLUMNS, cells, strict=True)]
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _code(text: str) -> str:
    return "`" + text.replace("`", "'") + "`"


def audit_line(record: AuditRecord, zone: ZoneInfo) -> str:
    """One call as a Markdown list item (for chat: short, the details that matter first)."""
    call = _code(record.tool)
    if record.arguments.strip():
        call += " " + _code(_fit(" ".join(record.arguments.split()), 80))
    decision = DECISIONS.get(record.decision, record.decision)
    if record.decided_by or record.decision in _NOBODY:
        decision += f" by {decided_by(record)}"
    if record.waited_ms > 0:
        decision += f" after {span(record.waited_ms)}"
    result = outcome(record) if record.outcome != "ok" else f"ok in {span(record.duration_ms)}"
    where = f"{record.platform} {conversation(record.conversation_key)}"
    stamp = record.ts.astimezone(zone).strftime("%m-%d %H:%M")
    return f"• {stamp} {call}: {decision}; {_fit(result, 80)} ({where}, asked by {record.asked_by})"


def audit_markdown(records: Sequence[AuditRecord], since: datetime, zone: ZoneInfo) -> str:
    start = since.astimezone(zone).strftime("%Y-%m-%d %H:%M")
    if not records:
        return f"No tool calls since {start} ({zone.key})."
    header = f"**Tool calls since {start} ({zone.key})**, newest first:"
    return "\n".join([header, *(audit_line(record, zone) for record in records)])
