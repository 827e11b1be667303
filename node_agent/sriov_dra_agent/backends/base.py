"""The one interface both VF backends implement."""

from __future__ import annotations

from typing import Protocol

from sriov_dra_agent.inventory import Inventory, VfInfo
from sriov_dra_agent.vf_programmer import ApplyResult, VfSettings


class VfBackend(Protocol):
    """Hardware operations on one node's PFs and VFs. Synchronous and thread-safe."""

    kind: str
    """``sysfs`` or ``simulated``."""
    node: str

    def discover(self) -> Inventory:
        """Walk the sysfs tree now (cheap; call it again to see new VFs)."""
        ...

    def host_netns(self) -> str | None:
        """Path of the netns holding the PF and VF netdevs; ``None`` = the agent's own."""
        ...

    def read_vf_state(self, vf: VfInfo) -> VfSettings:
        """The VF's current PF-side settings; ``None`` where the backend cannot read one."""
        ...

    def apply_vf_settings(self, vf: VfInfo, changes: VfSettings) -> ApplyResult:
        """Send ``changes``; report each setting as applied or unsupported (with why).

        Raises :class:`sriov_dra.errors.VfProgrammingError` when the kernel refuses
        a supported setting.
        """
        ...

    def current_driver(self, vf: VfInfo) -> str | None:
        """Driver bound to the VF now, ``None`` when unbound."""
        ...

    def bind_driver(self, vf: VfInfo, driver: str) -> None:
        """Bind the VF to ``driver`` (``vfio-pci`` or a kernel driver); no-op when bound.

        Raises :class:`sriov_dra.errors.VfProgrammingError` when impossible.
        """
        ...

    def host_netdev(self, vf: VfInfo) -> str | None:
        """Current name of the VF's netdev in the host netns, ``None`` when not there."""
        ...

    def repair(self) -> list[str]:
        """Recreate VF netdevs that vanished with a pod netns (simulated only).

        Returns the names recreated; real VFs return to the host by themselves, so the
        real backend returns ``[]``.
        """
        ...
