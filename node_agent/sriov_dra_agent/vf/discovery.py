"""Find PFs and VFs by walking a sysfs-shaped tree.

The same walk runs over the real ``/sys`` and over the simulated NIC's tree: a PF is
a PCI device with ``sriov_totalvfs``; its VFs are its ``virtfnN`` links. Cheap
enough to call on every resync, so VFs created after start-up are found.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Final

from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo

log = logging.getLogger(__name__)

SIMULATED_MARKER: Final = "sriov_dra_simulated"
"""File present in a PCI device directory of the simulated NIC (never in real sysfs)."""

_VIRTFN: Final = re.compile(r"^virtfn(\d+)$")
_PCIE_ROOT: Final = re.compile(r"^pci[0-9a-f]{4}:[0-9a-f]{2}$")
_LINK_TYPES: Final = {"1": "ethernet", "32": "infiniband"}


def _read(path: Path) -> str:
    return path.read_text().strip()


def _hex_id(path: Path) -> str:
    """``0x8086`` -> ``8086``."""
    value = _read(path).lower()
    return value[2:] if value.startswith("0x") else value


def _numa(path: Path) -> int:
    try:
        return int(_read(path))
    except (OSError, ValueError):
        return -1


def _driver(device: Path) -> str | None:
    link = device / "driver"
    if not link.is_symlink():
        return None
    return os.path.basename(os.readlink(link))


def _netdevs(device: Path) -> list[str]:
    try:
        return sorted(os.listdir(device / "net"))
    except OSError:
        return []


def _link_type(device: Path, netdev: str) -> str:
    try:
        return _LINK_TYPES.get(_read(device / "net" / netdev / "type"), "unknown")
    except OSError:
        return "unknown"


def _rdma_capable(device: Path) -> bool:
    """The function has an RDMA device: the kernel lists it under ``<pci>/infiniband/``."""
    try:
        return any((device / "infiniband").iterdir())
    except OSError:
        return False


def _pcie_root(device: Path) -> str | None:
    for part in device.resolve().parts:
        if _PCIE_ROOT.match(part):
            return part
    return None


def _vf(pf: PfInfo, pf_dir: Path, index: int, link: Path, pcie_root: str | None) -> VfInfo:
    vf_dir = link.resolve()
    netdevs = _netdevs(vf_dir)
    numa = _numa(vf_dir / "numa_node")
    return VfInfo(
        pci_address=vf_dir.name,
        vf_index=index,
        pf_name=pf.name,
        pf_pci_address=pf.pci_address,
        vendor=pf.vendor,
        device_id=_hex_id(vf_dir / "device"),
        pf_device_id=pf.device_id,
        driver=_driver(vf_dir),
        netdev=netdevs[0] if netdevs else None,
        numa_node=numa if numa >= 0 else pf.numa_node,
        link_type=pf.link_type,
        rdma_capable=_rdma_capable(vf_dir),
        pcie_root=pcie_root,
        simulated=(vf_dir / SIMULATED_MARKER).exists() or (pf_dir / SIMULATED_MARKER).exists(),
    )


def _pf(pf_dir: Path) -> PfInfo | None:
    netdevs = _netdevs(pf_dir)
    if not netdevs:
        log.warning(
            "SR-IOV PF has no netdev (bound to a non-network driver?); skipped",
            extra={"pci": pf_dir.name},
        )
        return None
    name = netdevs[0]
    pf = PfInfo(
        name=name,
        pci_address=pf_dir.name,
        vendor=_hex_id(pf_dir / "vendor"),
        device_id=_hex_id(pf_dir / "device"),
        total_vfs=int(_read(pf_dir / "sriov_totalvfs")),
        num_vfs=int(_read(pf_dir / "sriov_numvfs")),
        numa_node=_numa(pf_dir / "numa_node"),
        link_type=_link_type(pf_dir, name),
    )
    pcie_root = _pcie_root(pf_dir)
    links = sorted(
        (
            (int(m.group(1)), pf_dir / entry)
            for entry in os.listdir(pf_dir)
            if (m := _VIRTFN.match(entry))
        ),
    )
    vfs: list[VfInfo] = []
    for index, link in links:
        try:
            vfs.append(_vf(pf, pf_dir, index, link, pcie_root))
        except (OSError, ValueError) as exc:
            # VFs appear and vanish while sriov_numvfs changes; the next walk sees them.
            log.warning(
                "VF not readable; skipped", extra={"pf": name, "vf": index, "error": str(exc)}
            )
    return pf.model_copy(update={"vfs": tuple(vfs)})


def discover(node: str, sysfs_root: Path = Path("/sys")) -> Inventory:
    """Every SR-IOV PF under ``sysfs_root/bus/pci/devices`` and its VFs, in PCI order."""
    devices = sysfs_root / "bus" / "pci" / "devices"
    pfs: list[PfInfo] = []
    for entry in sorted(os.listdir(devices)) if devices.is_dir() else []:
        device = devices / entry
        if not (device / "sriov_totalvfs").exists():
            continue
        try:
            pf = _pf(device.resolve())
        except (OSError, ValueError) as exc:
            log.warning("PF not readable; skipped", extra={"pci": entry, "error": str(exc)})
            continue
        if pf is not None:
            pfs.append(pf)
    return Inventory(node=node, pfs=tuple(pfs))
