"""What a node has: PFs and their VFs, as discovery reports them.

Produced by :mod:`~sriov_dra_agent.vf.discovery` (over a real or simulated sysfs
tree), consumed by :mod:`~sriov_dra_agent.cluster.slices` (ResourceSlice devices), the
VF lifecycle and the backends. Pure data.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class VfInfo(BaseModel):
    """One Virtual Function."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pci_address: str
    """e.g. ``0000:08:00.2``."""
    vf_index: int
    """N of the PF's ``virtfnN`` link."""
    pf_name: str
    pf_pci_address: str
    vendor: str
    """PCI vendor id of the PF, hex without 0x (``8086``)."""
    device_id: str
    """PCI device id of the VF, hex without 0x."""
    pf_device_id: str
    driver: str | None
    """Bound kernel driver (``iavf``, ``vfio-pci``), None when unbound."""
    netdev: str | None
    """Host netdev name when bound to a network driver and in the host netns."""
    numa_node: int = -1
    link_type: str = "ethernet"
    eswitch_mode: str = "legacy"
    rdma_capable: bool = False
    pcie_root: str | None = None
    simulated: bool = False


class PfInfo(BaseModel):
    """One Physical Function and its VFs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pci_address: str
    vendor: str
    device_id: str
    total_vfs: int
    num_vfs: int
    numa_node: int = -1
    link_type: str = "ethernet"
    vfs: tuple[VfInfo, ...] = ()


class Inventory(BaseModel):
    """Everything discovery found on one node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str
    pfs: tuple[PfInfo, ...] = ()

    def vfs(self) -> list[VfInfo]:
        """All VFs of all PFs, in PF then VF order."""
        return [vf for pf in self.pfs for vf in pf.vfs]
