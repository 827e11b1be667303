"""One dev cluster's state directory: where it lives, ``state.json``, the up/down lock.

Everything of one cluster is under it (PKI, etcd data, configs, kubeconfigs, real
nodes' files, a log file per component). ``state.json`` records what ``up``
started (components with pids and ports, kwok and real node names, the node
binaries); ``down`` deletes everything but the logs and the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from sriov_dra_agent.atomic_file import write_atomically

from sriov_dra_devcluster.processes import RunningComponent

STATE_DIR_ENV: Final = "SRIOV_DRA_STATE_DIR"
STATE_FILE: Final = "state.json"
LOG_DIR: Final = "logs"
# Kept across `down` so a failed run can still be read afterwards.
LOCK_FILE: Final = ".lock"
_KEEP_ON_DOWN: Final = frozenset({LOG_DIR, LOCK_FILE})


def default_state_dir() -> Path:
    """``$SRIOV_DRA_STATE_DIR``, else ``$XDG_STATE_HOME/sriov-dra/devcluster``, else /var/tmp."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "sriov-dra" / "devcluster"
    return Path("/var/tmp/sriov-dra/devcluster")


class StateDir:
    """The directory ``path`` and the record of what runs from it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def log_dir(self) -> Path:
        return self.path / LOG_DIR

    @property
    def node_root(self) -> Path:
        """Where real nodes keep their files: ``<state dir>/nodes/<node>``."""
        return self.path / "nodes"

    @property
    def _state_file(self) -> Path:
        return self.path / STATE_FILE

    def load(self) -> dict[str, Any]:
        """``state.json``'s content; empty when there is none (or it is unreadable)."""
        try:
            data: dict[str, Any] = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def save(self, state: dict[str, Any]) -> None:
        """Replace ``state.json`` (atomically: ``status`` may read it meanwhile)."""
        write_atomically(self._state_file, json.dumps(state, indent=2).encode(), mode=0o644)

    def components(self) -> list[RunningComponent]:
        """The components ``up`` recorded, in start order."""
        return [RunningComponent.from_json(c) for c in self.load().get("components", [])]

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Serialise up/down on this directory across processes (two shells, two sessions)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def fresh_logs(self) -> None:
        """An empty log directory; the previous run's logs move to ``logs.previous``."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.log_dir.exists():
            previous = self.path / f"{LOG_DIR}.previous"
            shutil.rmtree(previous, ignore_errors=True)
            self.log_dir.rename(previous)
        self.log_dir.mkdir()

    def clear(self) -> None:
        """Delete everything but the logs (this run's and the previous) and the lock."""
        if not self.path.exists():
            return
        for entry in self.path.iterdir():
            if entry.name in _KEEP_ON_DOWN or entry.name.startswith(f"{LOG_DIR}."):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
