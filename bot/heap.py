"""The start-up heap, moved out of the garbage collector's sight once everything is imported.

The SDKs and platform libraries leave ~250,000 long-lived objects (classes, pydantic schemas, tables);
every full collection walks all of them (~100-200 ms on the 2-core machine) while the event loop
waits, and a busy bot triggers one every few seconds. `gc.freeze()` moves them to the permanent
generation, so collections only look at what was allocated since (the pattern CPython documents for
forking servers, used here for a long-running one).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_start_up_heap() -> None:
    started = time.perf_counter()
    gc.collect()  # garbage from the imports is freed first, not frozen
    gc.freeze()
    log.debug(
        "froze %d start-up objects in %.0f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1e3
    )
