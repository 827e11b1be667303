"""The simulated NIC's sysfs-shaped tree: PCI device directories and their marker files.

Under ``<root>/<node>/sys``: PCI devices with ``vendor``, ``device``, ``sriov_totalvfs``,
``sriov_numvfs``, ``virtfnN``, ``physfn``, ``driver``, ``numa_node``, ``net/<ifname>``,
which :mod:`~sriov_dra_agent.vf.discovery` walks as it walks the real ``/sys``. Each
device directory holds a ``sriov_dra_simulated`` JSON file: the marker, plus the "PF
firmware" memory of the VF (admin MAC, VLAN, link state, original name/MAC) that
survives the VF netdev being destroyed, as a real PF keeps VF settings. Only files
here: the kernel objects are :class:`~sriov_dra_agent.vf.backends.simulated_nic.SimulatedNic`'s.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Final

from sriov_dra_agent.atomic_file import write_atomically

MARKER: Final = "sriov_dra_simulated"
VENDOR: Final = "8086"
PF_DEVICE: Final = "1592"
VF_DEVICE: Final = "1889"
PF_DRIVER: Final = "sriovsim"
VF_DRIVER: Final = "sriovsim-vf"


def pf_pci(pf_index: int) -> str:
    """PCI address of PF ``pf_index`` (bus 0x3b, 0x3d, ...)."""
    return f"0000:{0x3B + 2 * pf_index:02x}:00.0"


def vf_pci(pf_index: int, vf_index: int) -> str:
    """PCI address of VF ``vf_index`` of PF ``pf_index``, on the PF's bus as on real NICs."""
    device, function = divmod(vf_index, 8)
    return f"0000:{0x3B + 2 * pf_index:02x}:{0x02 + device:02x}.{function}"


class SimulatedSysfs:
    """The device tree under ``sysfs_root``; callers serialise changes (the NIC's lock)."""

    def __init__(self, sysfs_root: Path) -> None:
        self.sysfs_root = sysfs_root

    def _devices(self) -> Path:
        return self.sysfs_root / "bus" / "pci" / "devices"

    def device_dir(self, pci: str) -> Path:
        """``bus/pci/devices/<pci>``, resolved to the device's directory."""
        return (self._devices() / pci).resolve()

    def _write_device(
        self,
        pci: str,
        parent: Path,
        *,
        device_id: str,
        driver: str,
        numa: int,
        marker: dict[str, Any],
    ) -> Path:
        path = parent / pci
        (path / "net" / marker["ifname"]).mkdir(parents=True, exist_ok=True)
        (path / "net" / marker["ifname"] / "type").write_text("1\n")
        (path / "vendor").write_text(f"0x{VENDOR}\n")
        (path / "device").write_text(f"0x{device_id}\n")
        (path / "numa_node").write_text(f"{numa}\n")
        (path / MARKER).write_text(json.dumps(marker, sort_keys=True))
        drivers = self.sysfs_root / "bus" / "pci" / "drivers" / driver
        drivers.mkdir(parents=True, exist_ok=True)
        link = path / "driver"
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(drivers, path))
        bus_link = self._devices() / pci
        self._devices().mkdir(parents=True, exist_ok=True)
        if not bus_link.is_symlink():
            bus_link.symlink_to(os.path.relpath(path, self._devices()))
        return path

    def write_pf(self, marker: dict[str, Any], *, total_vfs: int, numa: int) -> None:
        """PF ``marker["pf_index"]``'s device directory (kept as is when it exists)."""
        pf_index = int(marker["pf_index"])
        parent = self.sysfs_root / "devices" / f"pci0000:{0x3A + 2 * pf_index:02x}"
        parent = parent / f"0000:{0x3A + 2 * pf_index:02x}:00.0"
        pf_dir = self._write_device(
            marker["pci"], parent, device_id=PF_DEVICE, driver=PF_DRIVER, numa=numa, marker=marker
        )
        (pf_dir / "sriov_totalvfs").write_text(f"{total_vfs}\n")
        if not (pf_dir / "sriov_numvfs").exists():
            (pf_dir / "sriov_numvfs").write_text("0\n")

    def num_vfs(self, pf: dict[str, Any]) -> int:
        """The PF's ``sriov_numvfs``."""
        return int((self.device_dir(pf["pci"]) / "sriov_numvfs").read_text())

    def has_vf(self, pf: dict[str, Any], n: int) -> bool:
        """Whether the PF has its ``virtfn<n>`` link."""
        return (self.device_dir(pf["pci"]) / f"virtfn{n}").is_symlink()

    def add_vf(self, pf: dict[str, Any], n: int, marker: dict[str, Any]) -> None:
        """VF ``n``'s device directory beside its PF, linked both ways."""
        pf_dir = self.device_dir(pf["pci"])
        vf_dir = self._write_device(
            marker["pci"],
            pf_dir.parent,
            device_id=VF_DEVICE,
            driver=VF_DRIVER,
            numa=int(pf["numa_node"]),
            marker=marker,
        )
        (vf_dir / "physfn").symlink_to(f"../{pf['pci']}")
        (pf_dir / f"virtfn{n}").symlink_to(f"../{marker['pci']}")

    def remove_vf(self, pf: dict[str, Any], n: int) -> None:
        """Remove VF ``n``'s device directory and links."""
        pf_dir = self.device_dir(pf["pci"])
        pci = vf_pci(int(pf["pf_index"]), n)
        (pf_dir / f"virtfn{n}").unlink()
        (self._devices() / pci).unlink()
        shutil.rmtree(pf_dir.parent / pci)

    def remove_pf(self, pf: dict[str, Any]) -> None:
        """Remove the PF's device directory and bus link (its VFs are gone already)."""
        pf_dir = self.device_dir(pf["pci"])
        (self._devices() / pf["pci"]).unlink()
        shutil.rmtree(pf_dir)

    def set_num_vfs(self, pf: dict[str, Any], count: int) -> None:
        """Write the PF's ``sriov_numvfs``."""
        (self.device_dir(pf["pci"]) / "sriov_numvfs").write_text(f"{count}\n")

    def read_marker(self, pci: str) -> dict[str, Any]:
        """The simulated device's saved data (see the module docstring)."""
        data: dict[str, Any] = json.loads((self._devices() / pci / MARKER).read_text())
        return data

    def update_marker(self, pci: str, **changes: Any) -> dict[str, Any]:
        """Change the device's saved data (atomically); returns it."""
        marker = self.read_marker(pci)
        marker.update(changes)
        write_atomically(
            self._devices() / pci / MARKER, json.dumps(marker, sort_keys=True).encode(), mode=0o644
        )
        return marker

    def pfs(self) -> list[dict[str, Any]]:
        """Markers of every PF, by PF index."""
        if not self._devices().is_dir():
            return []
        found = []
        for entry in os.listdir(self._devices()):
            marker = self.read_marker(entry)
            if marker.get("role") == "pf":
                found.append(marker)
        return sorted(found, key=lambda m: int(m["pf_index"]))

    def vf_markers(self, pf_name: str | None = None) -> list[dict[str, Any]]:
        """Markers of the VFs that exist now (per ``sriov_numvfs``)."""
        out = []
        for pf in self.pfs():
            if pf_name is not None and pf["ifname"] != pf_name:
                continue
            num = self.num_vfs(pf)
            out += [self.read_marker(vf_pci(int(pf["pf_index"]), n)) for n in range(num)]
        return out
