"""Line framing for Stratum: bytes in, whole lines out, with a hard bound on buffering.

Theory of operation
-------------------
The driver feeds whatever the socket produced (``receive_data(b)``, ``b""`` at EOF) and pulls
events with ``next_line()`` until it answers ``NEED_DATA``. A line ends at ``\\n``; a preceding
``\\r`` is dropped and blank lines are skipped, so ``\\n`` and ``\\r\\n`` peers both work. The
search for the next newline resumes where the previous search stopped, so a line trickling in
one byte at a time costs linear time overall.

No line may be longer than ``max_line`` bytes (16 KiB, stratum.md). As soon as the buffer holds
that many bytes without a newline the splitter reports ``LineTooLong`` (with the first bytes of
the line, from which the session may recover a request id) and stops: it never buffers more than
``max_line`` plus one ``receive_data`` chunk. After ``LineTooLong`` or ``EndOfStream`` every
further call returns the same terminal event; the connection is over.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from stratum.core.messages import MAX_LINE_BYTES

#: How much of an oversize line is kept for the error report (id recovery, logs).
OVERSIZE_PREFIX_BYTES: Final = 256


class NeedData(enum.Enum):
    """Sentinel type: no complete line is buffered yet."""

    NEED_DATA = "need_data"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """The peer sent more than ``limit`` bytes without a newline. Terminal."""

    limit: int
    prefix: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer closed its side. ``partial`` holds an unterminated last line, if any. Terminal."""

    partial: bytes = b""


LineEvent = bytes | LineTooLong | EndOfStream | NeedData


class LineSplitter:
    """Split a byte stream into lines of at most ``max_line`` bytes (terminator excluded)."""

    __slots__ = ("_buffer", "_eof", "_max_line", "_scan_from", "_terminal")

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._max_line = max_line
        self._buffer = bytearray()
        self._scan_from = 0
        self._eof = False
        self._terminal: LineTooLong | EndOfStream | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that are not yet part of a returned line."""
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side.

        Raises ``RuntimeError`` if data arrives after EOF (a driver bug).
        """
        if self._eof:
            if data:
                raise RuntimeError("receive_data after EOF")
            return
        if not data:
            self._eof = True
            return
        if self._terminal is None:
            self._buffer += data

    def next_line(self) -> LineEvent:
        """The next complete line (without terminator), or an event.

        Returns ``NEED_DATA`` when more bytes are needed, ``LineTooLong`` when the bound was
        crossed and ``EndOfStream`` after EOF once every complete line has been returned.
        """
        if self._terminal is not None:
            return self._terminal
        buffer = self._buffer
        while True:
            newline = buffer.find(b"\n", self._scan_from)
            if newline < 0:
                break
            end = newline
            if end > 0 and buffer[end - 1] == 0x0D:  # "\r\n"
                end -= 1
            if end > self._max_line:
                return self._oversize()
            line = bytes(buffer[:end])
            del buffer[: newline + 1]
            self._scan_from = 0
            if line:
                return line
        self._scan_from = len(buffer)
        excess = len(buffer) - self._max_line
        # A single excess byte may be the "\r" of a "\r\n" split across reads.
        if excess > 1 or (excess == 1 and buffer[-1] != 0x0D):
            return self._oversize()
        if self._eof:
            partial = bytes(buffer).rstrip(b"\r")
            buffer.clear()
            self._terminal = EndOfStream(partial)
            return self._terminal
        return NEED_DATA

    def _oversize(self) -> LineTooLong:
        self._terminal = LineTooLong(self._max_line, bytes(self._buffer[:OVERSIZE_PREFIX_BYTES]))
        self._buffer = bytearray()
        self._scan_from = 0
        return self._terminal
