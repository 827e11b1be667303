"""Where each simulated node keeps its "host" directories in the dev cluster.

A real node has ``/var/lib/kubelet/plugins_registry``, ``/var/lib/kubelet/plugins``,
``/var/run/cdi``, ``/var/lib/cni`` and ``/sys``. Every simulated node gets its own
copy of these under one runtime root, so that the agent of ``sim-node-1`` and the
node emulator playing ``sim-node-1``'s kubelet meet in the same directories, and
two nodes never see each other's sockets or CDI specs.

The root is short (``/run/sriov-dra/<id>``) on purpose: unix socket paths are
limited to 107 bytes, and the DRA socket path already carries the 36-character
driver name twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RUNTIME_BASE: Final = Path("/run/sriov-dra")
SOCKET_PATH_MAX: Final = 107


def runtime_root(state_dir: Path) -> Path:
    """The per-cluster root for node directories: ``/run/sriov-dra/<8 hex of state_dir>``."""
    digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:8]
    return RUNTIME_BASE / digest


@dataclass(frozen=True)
class NodeLayout:
    """The directories of one simulated node under ``root``."""

    root: Path
    node: str

    @property
    def directory(self) -> Path:
        return self.root / self.node

    @property
    def registrar_dir(self) -> Path:
        """Plays ``/var/lib/kubelet/plugins_registry`` (registration sockets)."""
        return self.directory / "plugins_registry"

    @property
    def plugins_dir(self) -> Path:
        """Plays ``/var/lib/kubelet/plugins`` (the DRA socket lives in ``<driver>/``)."""
        return self.directory / "plugins"

    @property
    def cdi_dir(self) -> Path:
        """Plays ``/var/run/cdi`` (dynamic CDI specs written by the agent)."""
        return self.directory / "cdi"

    @property
    def cni_data_dir(self) -> Path:
        """Plays ``/var/lib/cni`` (host-local IPAM leases)."""
        return self.directory / "cni"

    @property
    def agent_state_dir(self) -> Path:
        """The agent's checkpoints."""
        return self.directory / "agent"

    @property
    def sysfs_root(self) -> Path:
        """The simulated NIC's sysfs-shaped tree (plays ``/sys``)."""
        return self.directory / "sys"

    @property
    def emulator_dir(self) -> Path:
        """The node emulator's checkpoints and OCI bundles for this node."""
        return self.directory / "emulator"

    def create(self) -> None:
        """Create every directory (idempotent)."""
        for path in (
            self.registrar_dir,
            self.plugins_dir,
            self.cdi_dir,
            self.cni_data_dir,
            self.agent_state_dir,
            self.emulator_dir,
        ):
            path.mkdir(parents=True, exist_ok=True)
