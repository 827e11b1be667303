"""The one interface both VF backends implement."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Protocol

from sriov_dra_agent.vf.inventory import Inventory, VfInfo
from sriov_dra_agent.vf.vf_settings import ApplyResult, VfSettings

KERNEL_DEFAULT: Final = "default"
"""``bind_driver`` target (the VfConfig's ``driver: default``): no driver_override, so
the probe binds whatever driver the kernel matches to the VF."""

USERSPACE_DRIVERS: Final = frozenset({"vfio-pci", "uio_pci_generic", "igb_uio"})
"""Drivers that hand the VF to userspace (DPDK, VMs) instead of giving it a netdev."""


class VfBackend(Protocol):
    """Hardware operations on one node's PFs and VFs. Synchronous and thread-safe."""

    kind: str
    """``sysfs`` or ``simulated``."""
    node: str

    def discover(self) -> Inventory:
        """Walk the sysfs tree now (cheap; call it again to see new VFs)."""
        ...

    def present(self, pci: str) -> bool:
        """Whether PCI function ``pci`` exists now (a VF goes when ``sriov_numvfs`` drops)."""
        ...

    def hotplug_dir(self) -> Path | None:
        """A directory whose entries come and go with the PCI functions, for inotify (the
        simulated tree); None where kernel uevents say it (real sysfs has no inotify)."""
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

    def driver_override(self, vf: VfInfo) -> str | None:
        """The VF's driver_override now, ``None`` when unset."""
        ...

    def bind_driver(self, vf: VfInfo, driver: str) -> None:
        """Bind the VF to ``driver`` (``vfio-pci`` or a kernel driver; no-op when bound),
        or with :data:`KERNEL_DEFAULT` to the kernel's choice, which must be a kernel
        driver (rebinds even when bound: the caller decides whether that is wanted).

        Raises :class:`sriov_dra.errors.VfProgrammingError` when impossible.
        """
        ...

    def restore_driver(self, vf: VfInfo, driver: str | None, override: str | None) -> None:
        """Put the VF back as it was found: bound to ``driver`` (``None``: unbound), with
        driver_override ``override`` (``None``: unset). No-op when it already is.

        Raises :class:`sriov_dra.errors.VfProgrammingError` when impossible.
        """
        ...

    def is_vf_netdev(self, link: Any, pci: str) -> bool:
        """Whether netlink link message ``link`` is VF ``pci``'s netdev, in any netns and
        under any name (attach renames it and moves it into pods)."""
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
