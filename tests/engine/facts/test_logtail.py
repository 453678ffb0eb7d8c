from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.facts.logtail import LogTail


def append(path: Path, text: str) -> None:
    with path.open("ab") as handle:
        handle.write(text.encode())


def read(tail: LogTail) -> list[str]:
    return [line.decode() for line in tail.lines()]


def test_reads_only_lines_written_since_the_last_call(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "one\ntwo\n")
    tail = LogTail(log)
    assert read(tail) == ["one", "two"]
    append(log, "three\n")
    assert read(tail) == ["three"]
    assert read(tail) == []


def test_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "whole\npart")
    tail = LogTail(log)
    assert read(tail) == ["whole"]
    append(log, "ial\n")
    assert read(tail) == ["partial"]


def test_rotation_reads_rest_of_old_file_then_new_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "a\n")
    tail = LogTail(log)
    assert read(tail) == ["a"]
    append(log, "b\n")
    log.rename(tmp_path / "access.log.1")
    append(log, "c\n")
    assert read(tail) == ["b", "c"]
    assert tail.rotations == 1
    append(log, "d\n")
    assert read(tail) == ["d"]


def test_unterminated_tail_of_rotated_file_is_kept_as_a_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "a\nlast-without-newline")
    tail = LogTail(log)
    assert read(tail) == ["a"]
    log.rename(tmp_path / "access.log.1")
    append(log, "new\n")
    assert read(tail) == ["last-without-newline", "new"]


def test_truncation_starts_again_from_the_beginning(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "old line one\nold line two\n")
    tail = LogTail(log)
    assert len(read(tail)) == 2
    with log.open("r+b") as handle:  # copytruncate keeps the inode
        handle.truncate(0)
    append(log, "fresh\n")
    assert read(tail) == ["fresh"]
    assert tail.truncations == 1


def test_first_read_starts_at_backlog_and_skips_cut_line(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = [f"line-{i:04d}" for i in range(1000)]
    append(log, "".join(line + "\n" for line in lines))
    tail = LogTail(log, backlog_bytes=105)
    got = read(tail)
    assert got == lines[-len(got) :]
    assert 0 < len(got) < 11
    assert tail.bytes_read == 105


def test_reads_in_chunks_smaller_than_the_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    lines = [f"entry {i} " + "x" * (i % 37) for i in range(5000)]
    append(log, "".join(line + "\n" for line in lines))
    tail = LogTail(log, chunk_bytes=4096)
    assert read(tail) == lines


def test_overlong_line_is_dropped_and_reading_resumes(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "before\n" + "y" * 5000 + "\nafter\n")
    tail = LogTail(log, chunk_bytes=1024, max_line_bytes=2048)
    assert read(tail) == ["before", "after"]
    assert tail.dropped_lines == 1


def test_missing_file_raises_until_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    tail = LogTail(log)
    with pytest.raises(FileNotFoundError):
        read(tail)
    append(log, "first\n")
    assert read(tail) == ["first"]


def test_deleted_file_keeps_being_read_until_a_new_one_appears(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    append(log, "a\n")
    tail = LogTail(log)
    read(tail)
    with log.open("ab") as handle:
        os.unlink(log)
        handle.write(b"written after unlink\n")
        handle.flush()
        assert read(tail) == ["written after unlink"]


def test_backlog_starting_on_a_line_boundary_keeps_the_next_line(
    tmp_path: Path,
) -> None:
    log = tmp_path / "access.log"
    append(log, "old\n")
    tail = LogTail(log, backlog_bytes=0)
    assert read(tail) == []
    append(log, "new\n")
    assert read(tail) == ["new"]
