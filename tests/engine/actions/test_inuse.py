"""Open files of real processes, read from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.actions.inuse import OpenFilesUnknown, open_files


def test_a_file_this_process_holds_open_is_seen_and_a_closed_one_is_not(
    tmp_path: Path,
) -> None:
    held, closed = tmp_path / "held", tmp_path / "closed"
    held.write_text("x")
    closed.write_text("y")

    with held.open():
        found = open_files()

    assert found.holds(os.stat(held))
    assert not found.holds(os.stat(closed))


def test_a_second_name_for_an_open_file_is_seen_too(tmp_path: Path) -> None:
    original = tmp_path / "original"
    original.write_text("x")
    with original.open():
        os.rename(original, tmp_path / "renamed")
        found = open_files()

    assert found.holds(os.stat(tmp_path / "renamed"))


def test_no_proc_means_no_answer_rather_than_a_guess(tmp_path: Path) -> None:
    with pytest.raises(OpenFilesUnknown) as unknown:
        open_files(tmp_path)

    assert "files in use cannot be told apart" in unknown.value.message
