"""Which files some process on this host holds open, by device and inode.

``open_files`` reads ``/proc``: each ``/proc/PID/fd/N`` is stat-ed, which
follows the descriptor to its file even after a rename, so a second name
for the file cannot hide it; each mapped file is taken from
``/proc/PID/map_files`` (a file mapped into memory is in use after its
descriptor is closed), or from the device and inode columns of
``/proc/PID/maps`` when that folder may not be read. Identities are
``(st_dev, st_ino)`` pairs, compared with an ``lstat`` of the candidate.
Processes whose descriptors this service may not read (another user's,
unless it runs as root) are counted, never guessed: the count goes into
the action's record so a reader knows how complete the answer was. A
process that exits during the scan is skipped.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ActionError

FileId = tuple[int, int]  # (st_dev, st_ino)


class OpenFilesUnknown(ActionError):
    default_code = "E603"


@dataclass(frozen=True, slots=True)
class OpenFiles:
    held: frozenset[FileId]
    uninspectable: int  # processes whose open files could not be read

    def holds(self, info: os.stat_result) -> bool:
        return (info.st_dev, info.st_ino) in self.held


def open_files(proc: Path = Path("/proc")) -> OpenFiles:
    if not (proc / "self" / "fd").is_dir():
        raise OpenFilesUnknown(
            f"{proc} does not list open files on this system, so files in use "
            "cannot be told apart; run the service on Linux with /proc mounted."
        )
    held: set[FileId] = set()
    hidden = 0
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            held |= _descriptors(Path(entry.path))
        except PermissionError:
            hidden += 1
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue
        held |= _mapped(Path(entry.path))
    return OpenFiles(frozenset(held), hidden)


def _descriptors(process: Path) -> set[FileId]:
    return _regular_targets(process / "fd")


def _mapped(process: Path) -> set[FileId]:
    try:
        return _regular_targets(process / "map_files")
    except PermissionError:
        return _maps_column(process / "maps")
    except (FileNotFoundError, ProcessLookupError):
        return set()


def _regular_targets(folder: Path) -> set[FileId]:
    found: set[FileId] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                info = os.stat(entry.path)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                found.add((info.st_dev, info.st_ino))
    return found


def _maps_column(maps: Path) -> set[FileId]:
    try:
        text = maps.read_text()
    except OSError:
        return set()
    found: set[FileId] = set()
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[4] == "0":
            continue
        major, _, minor = fields[3].partition(":")
        device = os.makedev(int(major, 16), int(minor, 16))
        found.add((device, int(fields[4])))
    return found
