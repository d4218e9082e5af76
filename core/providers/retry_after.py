"""Reading a server's requested back-off from HTTP headers (both SDKs expose the same headers)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (preferred, more precise) or `retry-after`."""
    try:
        if value := headers.get("retry-after-ms"):
            return max(0.0, float(value) / 1000)
        if value := headers.get("retry-after"):
            try:
                return max(0.0, float(value))
            except ValueError:  # the HTTP-date form
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError):
        return None
    return None
