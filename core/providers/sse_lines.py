"""A streamed SSE body cut into lines, as it arrives in pieces: shared by the providers' decoders.

SSE allows LF, CRLF and bare CR line ends; a CRLF can straddle two network reads, and the last line of
a read is usually incomplete (carried over to the next one).
"""

from __future__ import annotations


class SSELines:
    __slots__ = ("_skip_lf", "pending")

    def __init__(self) -> None:
        self.pending = b""  # an incomplete line carried over to the next piece
        self._skip_lf = False

    def split(self, data: bytes) -> list[bytes]:
        """The complete lines `data` ends (without their line ends); the rest waits in `pending`."""
        if self._skip_lf and data:  # the previous piece ended in CR: a LF here ends the same line
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if self.pending:
            data = self.pending + data
        if b"\r" in data:  # CRLF or bare CR line endings (rare)
            self._skip_lf = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = data.split(b"\n")
        self.pending = lines.pop()
        return lines
