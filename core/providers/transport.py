"""What a transport failure was, whichever HTTP transport the SDK used.

The SDKs' aiohttp transport maps every `aiohttp.ClientConnectionError` to httpx's `ConnectTimeout`,
so a refused connection would read "did not answer in time". The exception chain still holds the
original error: an OS-level connection error that is not a timeout means "could not connect".
"""

from __future__ import annotations


def timed_out(exc: BaseException, looks_like_timeout: bool) -> bool:
    """`looks_like_timeout`: what the SDK's exception type says; the chain's root cause overrides it."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, TimeoutError):
            return True
        if isinstance(cause, OSError):
            return False  # refused, reset, unreachable: not a timeout
        cause = cause.__cause__ or cause.__context__
    return looks_like_timeout
