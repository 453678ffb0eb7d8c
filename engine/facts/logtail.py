"""Incremental, bounded reading of a log file that other programs append to.

``LogTail`` remembers the open file, its inode and the byte offset it has
read up to. Each call to ``lines()`` yields the complete lines written since
the previous call, reading in fixed-size chunks, so memory stays bounded
whatever the size of the log. It copes with the three things logs do:

- rotation (the path now names another inode): the rest of the old file is
  read to its end first, then the new file from its start;
- truncation (``copytruncate``: the file is shorter than the offset): reading
  starts again from the beginning;
- a partial last line (the writer is mid-line): it is held back until its
  newline arrives; a line longer than ``max_line_bytes`` is dropped.

On the first open, ``backlog_bytes`` bounds how far back it starts: a 10 GB
log is not read from its beginning when the service starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 64 << 10


class LogTail:
    def __init__(
        self,
        path: Path,
        *,
        backlog_bytes: int | None = None,
        chunk_bytes: int = CHUNK_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self.path = path
        self.backlog_bytes = backlog_bytes
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.rotations = 0
        self.truncations = 0
        self.dropped_lines = 0
        self.bytes_read = 0  # in the last call to lines()
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] = (0, 0)  # (device, inode)
        self._offset = 0
        self._pending = b""
        self._discarding = False  # inside an over-long or cut-off line

    @property
    def offset(self) -> int:
        return self._offset

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def lines(self) -> Iterator[bytes]:
        """Yield every complete line written since the last call.

        Raises ``FileNotFoundError`` when the path does not exist and no
        earlier file is open.
        """
        self.bytes_read = 0
        current = _identity_of(self.path)
        if self._file is None:
            if current is None:
                raise FileNotFoundError(self.path)
            self._open_first()
        elif current is not None and current != self._identity:
            yield from self._drain_rotated()
            self._open_new()
        else:
            self._notice_truncation()
        yield from self._read_to_end()

    def _open_first(self) -> None:
        self._open(0)
        size = os.fstat(self._handle().fileno()).st_size
        backlog = self.backlog_bytes
        if backlog is not None and size > backlog:
            start = size - backlog
            self._seek(start - 1)
            # Starting mid-line: the first line read is cut, skip it.
            self._discarding = self._handle().read(1) != b"\n"
            self._offset = start

    def _open_new(self) -> None:
        self.close()
        self.rotations += 1
        self._open(0)

    def _open(self, offset: int) -> None:
        handle = self.path.open("rb")
        stat = os.fstat(handle.fileno())
        self._file = handle
        self._identity = (stat.st_dev, stat.st_ino)
        self._pending = b""
        self._discarding = False
        self._seek(offset)

    def _seek(self, offset: int) -> None:
        self._handle().seek(offset)
        self._offset = offset

    def _handle(self) -> BinaryIO:
        if self._file is None:
            raise RuntimeError("LogTail used after close()")
        return self._file

    def _notice_truncation(self) -> None:
        size = os.fstat(self._handle().fileno()).st_size
        if size < self._offset:
            self.truncations += 1
            self._seek(0)
            self._pending = b""
            self._discarding = False

    def _drain_rotated(self) -> Iterator[bytes]:
        yield from self._read_to_end()
        # The old file is finished: its unterminated tail is a whole line.
        if self._pending and not self._discarding:
            yield self._pending
        self._pending = b""

    def _read_to_end(self) -> Iterator[bytes]:
        handle = self._handle()
        # Stop at the size seen now, so a fast writer cannot keep us here.
        end = os.fstat(handle.fileno()).st_size
        while self._offset < end:
            chunk = handle.read(min(self.chunk_bytes, end - self._offset))
            if not chunk:
                break
            self._offset += len(chunk)
            self.bytes_read += len(chunk)
            yield from self._split(chunk)

    def _split(self, chunk: bytes) -> Iterator[bytes]:
        cut = chunk.rfind(b"\n")
        if cut < 0:
            self._hold(chunk)
            return
        complete = self._pending + chunk[:cut]
        self._pending = b""
        lines = complete.split(b"\n")
        if self._discarding:
            lines = lines[1:]
            self._discarding = False
        yield from lines
        self._hold(chunk[cut + 1 :])

    def _hold(self, tail: bytes) -> None:
        if self._discarding:
            return
        self._pending += tail
        if len(self._pending) > self.max_line_bytes:
            self.dropped_lines += 1
            self._pending = b""
            self._discarding = True


def _identity_of(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)
