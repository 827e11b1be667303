"""A VF's RDMA character devices, as its CDI device gives them to the pod.

The kernel puts the class devices of an RDMA-capable PCI function under the
function's own sysfs directory (``/sys/bus/pci/devices/<pci>``):
``infiniband/<ibdev>`` (the RDMA device), ``infiniband_verbs/uverbsN``,
``infiniband_mad/umadN`` and ``infiniband_mad/issmN``, each with a ``dev`` file
``major:minor``; udev names their nodes ``/dev/infiniband/<name>``. Every RDMA
process also needs ``/dev/infiniband/rdma_cm`` (librdmacm; a misc device,
``/sys/class/misc/rdma_cm``), shared by all functions. A node that is missing, or
whose numbers cannot be read, is :class:`~sriov_dra_agent.kubelet.cdi.DeviceNodeMissing`
naming the module to load.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from sriov_dra_agent.kubelet.cdi import CharDevice, DeviceNodeMissing

_PER_FUNCTION: Final = (
    ("infiniband_verbs", "uverbs", "UVERB"),
    ("infiniband_mad", "umad", "UMAD"),
    ("infiniband_mad", "issm", "ISSM"),
)
"""(class directory under the function, node name prefix, env kind)."""

_FIX: Final = (
    "load the RDMA modules on {node} (modprobe ib_uverbs ib_umad rdma_ucm, and the NIC's "
    "RDMA driver such as mlx5_ib), or set rdma: false in the VfConfig"
)


def _numbers(dev_file: Path, node_path: Path) -> tuple[int, int] | None:
    """``major:minor`` from sysfs' ``dev`` file, else from the node itself; None if neither."""
    try:
        major, minor = dev_file.read_text().strip().split(":")
        return int(major), int(minor)
    except (OSError, ValueError):
        pass
    try:
        info = node_path.stat()
    except OSError:
        return None
    if not stat.S_ISCHR(info.st_mode):
        return None
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def _char_device(
    dev_file: Path, dev_root: Path, name: str, kind: str, *, pci: str, node: str
) -> CharDevice:
    node_path = dev_root / "infiniband" / name
    numbers = _numbers(dev_file, node_path) if node_path.exists() else None
    if numbers is None:
        raise DeviceNodeMissing(
            f"/dev/infiniband/{name} (RDMA device of VF {pci}) is missing on node {node}",
            field="VfConfig.rdma",
            fix=_FIX.format(node=node),
        )
    return CharDevice(f"/dev/infiniband/{name}", numbers[0], numbers[1], kind)


def rdma_char_devices(
    sysfs_root: Path, dev_root: Path, pci: str, *, node: str
) -> tuple[CharDevice, ...]:
    """The RDMA character devices of VF ``pci``, with ``rdma_cm``; ``()`` when it has none.

    ``sysfs_root`` and ``dev_root`` are where the host's ``/sys`` and ``/dev`` are
    seen (the agent's ``--sysfs-root`` and ``--dev-root``).
    """
    function = sysfs_root / "bus/pci/devices" / pci
    found = [
        _char_device(entry / "dev", dev_root, entry.name, kind, pci=pci, node=node)
        for class_dir, prefix, kind in _PER_FUNCTION
        for entry in sorted((function / class_dir).glob(f"{prefix}[0-9]*"))
    ]
    if not found:
        return ()
    cm = sysfs_root / "class/misc/rdma_cm/dev"
    return (*found, _char_device(cm, dev_root, "rdma_cm", "CM", pci=pci, node=node))


def rdma_device_names(sysfs_root: Path, pci: str) -> tuple[str, ...]:
    """Names of VF ``pci``'s RDMA devices (``mlx5_2``), from ``<pci>/infiniband/``; sorted."""
    function = sysfs_root / "bus/pci/devices" / pci / "infiniband"
    if not function.is_dir():
        return ()
    return tuple(sorted(entry.name for entry in function.iterdir()))
