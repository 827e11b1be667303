"""A dev cluster's state directory: state.json, log rotation, and what `down` leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from sriov_dra_devcluster.kwok_nodes import is_simulated, node_manifest, node_order
from sriov_dra_devcluster.state_dir import STATE_DIR_ENV, StateDir, default_state_dir


def test_state_round_trips_and_a_missing_or_torn_file_reads_empty(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    assert state.load() == {}
    state.save({"version": 1, "nodes": ["sim-node-1"]})
    assert state.load() == {"version": 1, "nodes": ["sim-node-1"]}
    (tmp_path / "state.json").write_text('{"version": ')
    assert state.load() == {}


def test_fresh_logs_keeps_the_previous_runs_logs_once(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.fresh_logs()
    (state.log_dir / "etcd.log").write_text("run 1")
    state.fresh_logs()
    (state.log_dir / "etcd.log").write_text("run 2")
    state.fresh_logs()
    assert list(state.log_dir.iterdir()) == []
    assert (tmp_path / "logs.previous" / "etcd.log").read_text() == "run 2"


def test_clear_keeps_only_logs_and_the_lock(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.fresh_logs()
    state.fresh_logs()
    with state.exclusive():
        state.save({"version": 1})
    for name in ("pki", "etcd", "nodes"):
        (tmp_path / name).mkdir()
    (tmp_path / "kubeconfig").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    state.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "logs", "logs.previous"]


def test_default_state_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, "/tmp/explicit")
    assert default_state_dir() == Path("/tmp/explicit")
    monkeypatch.delenv(STATE_DIR_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", "/tmp/xdg")
    assert default_state_dir() == Path("/tmp/xdg/sriov-dra/devcluster")


def test_kwok_nodes_sort_by_number_and_are_told_apart_by_annotation() -> None:
    names = ["sim-node-10", "other", "sim-node-2"]
    assert sorted(names, key=node_order) == ["sim-node-2", "sim-node-10", "other"]
    assert is_simulated(node_manifest("sim-node-1"))
    assert not is_simulated({"metadata": {"name": "node-1"}})
