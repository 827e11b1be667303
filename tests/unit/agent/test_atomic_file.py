"""The agent's one way to replace a file: all or nothing, with the asked mode, no leftovers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sriov_dra_agent import atomic_file
from sriov_dra_agent.atomic_file import remove_durably, write_atomically


def test_replaces_content_with_the_asked_mode(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    write_atomically(target, b"new", mode=0o755)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert os.listdir(tmp_path) == ["record.json"]


def test_default_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    write_atomically(target, b"{}")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_rename_keeps_the_old_content_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "spec.json"
    target.write_text("old")

    def refuse(src: str, dst: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic_file.os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(target, b"new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["spec.json"]


def test_temp_file_is_hidden_from_json_watchers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: Path) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(atomic_file.os, "replace", spy)
    write_atomically(tmp_path / "claim.json", b"{}")
    assert len(seen) == 1
    assert seen[0].startswith(".claim.json.")
    assert not seen[0].endswith(".json")


def test_remove_durably_says_whether_it_removed(tmp_path: Path) -> None:
    target = tmp_path / "spec.json"
    target.write_text("x")
    assert remove_durably(target) is True
    assert not target.exists()
    assert remove_durably(target) is False
