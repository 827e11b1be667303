"""The simulated NIC as a VF backend: honest about what it cannot do.

Supported: admin MAC (set on the VF netdev), VLAN (which bridge the VF's switch
port joins; QoS 0 and 802.1Q only), link_state (``disable`` takes the switch port
down, so the VF loses carrier). Unsupported, and reported as such: non-zero QoS,
802.1ad, spoofchk and trust (no per-port source filtering is emulated), tx rates,
and binding any driver other than the simulated one (there is no PCI device to
hand to vfio-pci). The simulated VF driver is the VFs' kernel default, so binding
``default`` succeeds without a change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute
from sriov_dra.errors import VfProgrammingError

from sriov_dra_agent.vf import discovery
from sriov_dra_agent.vf.backends.base import KERNEL_DEFAULT
from sriov_dra_agent.vf.backends.simulated_nic import SimulatedNic
from sriov_dra_agent.vf.backends.simulated_sysfs import VF_DRIVER
from sriov_dra_agent.vf.inventory import Inventory, VfInfo
from sriov_dra_agent.vf.vf_settings import ApplyResult, VfSettings

UNSUPPORTED: Final = {
    "spoofchk": "the simulated NIC has no source-MAC filtering on switch ports",
    "trust": "the simulated NIC has no trusted-VF mode",
    "min_tx_rate": "the simulated NIC has no rate limiting",
    "max_tx_rate": "the simulated NIC has no rate limiting",
}


class SimulatedBackend:
    """VF operations on a :class:`SimulatedNic`."""

    kind = "simulated"

    def __init__(self, nic: SimulatedNic, *, sysfs_root: Path | None = None) -> None:
        self.nic = nic
        self.node = nic.node
        self.sysfs_root = sysfs_root or nic.sysfs_root

    def discover(self) -> Inventory:
        return discovery.discover(self.node, self.sysfs_root)

    def present(self, pci: str) -> bool:
        return (self.sysfs_root / "bus/pci/devices" / pci).is_dir()

    def hotplug_dir(self) -> Path | None:
        return self.sysfs_root / "bus/pci/devices"

    def host_netns(self) -> str | None:
        return self.nic.host_netns_path

    def read_vf_state(self, vf: VfInfo) -> VfSettings:
        marker = self.nic.tree.read_marker(vf.pci_address)
        return VfSettings(
            mac=marker["admin_mac"],
            vlan=self.nic.vf_vlan(vf.pci_address),
            qos=0,
            proto="802.1q",
            link_state=marker["link_state"],
        )

    def apply_vf_settings(self, vf: VfInfo, changes: VfSettings) -> ApplyResult:
        applied: list[str] = []
        unsupported: dict[str, str] = {}
        pci = vf.pci_address
        if changes.vlan is not None:
            self.nic.set_vf_vlan(pci, changes.vlan)
            applied.append("vlan")
        if changes.qos:
            unsupported["qos"] = "the simulated switch carries no 802.1p priority"
        elif changes.qos is not None:
            applied.append("qos")
        if changes.proto == "802.1ad":
            unsupported["proto"] = "the simulated switch has no 802.1ad"
        elif changes.proto is not None:
            applied.append("proto")
        if changes.mac is not None:
            self.nic.set_vf_mac(pci, changes.mac)
            applied.append("mac")
        if changes.link_state is not None:
            self.nic.set_vf_link_state(pci, changes.link_state)
            applied.append("link_state")
        for name in changes.fields_set():
            if name in UNSUPPORTED:
                unsupported[name] = UNSUPPORTED[name]
        return ApplyResult(applied=tuple(applied), unsupported=unsupported)

    def current_driver(self, vf: VfInfo) -> str | None:
        link = self.sysfs_root / "bus/pci/devices" / vf.pci_address / "driver"
        return link.readlink().name if link.is_symlink() else None

    def driver_override(self, vf: VfInfo) -> str | None:
        return None  # the simulated tree has no driver_override

    def bind_driver(self, vf: VfInfo, driver: str) -> None:
        self._stay_on(vf, VF_DRIVER if driver == KERNEL_DEFAULT else driver)

    def restore_driver(self, vf: VfInfo, driver: str | None, override: str | None) -> None:
        self._stay_on(vf, driver)

    def _stay_on(self, vf: VfInfo, driver: str | None) -> None:
        """Succeed when ``driver`` is the bound one: nothing can rebind a simulated VF."""
        current = self.current_driver(vf)
        if driver != current:
            raise VfProgrammingError(
                f"the simulated VF {vf.pci_address} can only use driver {current!r}, "
                f"not {driver!r}",
                field="driver",
                fix='use driver "" or "default" in the VfConfig on simulated nodes',
            )

    def is_vf_netdev(self, link: Any, pci: str) -> bool:
        return self.nic.is_vf_netdev(link, pci)

    def host_netdev(self, vf: VfInfo) -> str | None:
        with IPRoute(netns=self.nic.host_ns, flags=0) as host:
            index = self.nic.find_vf_netdev(host, vf.pci_address)
            if index is None:
                return None
            (link,) = host.link("get", index=index)
            return str(link.get("IFLA_IFNAME"))

    def repair(self) -> list[str]:
        return self.nic.ensure_vfs()
