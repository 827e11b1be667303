"""Device-info files of prepared VFs, as the Network Plumbing WG device-info spec lays them out.

A meta-plugin such as Multus, attaching a VF through a NAD whose
``k8s.v1.cni.cncf.io/resourceName`` names the VF's resource, copies the "Device
Plugin Device Information File" ``<dir>/<resourceName>-<deviceID>-device.json``
(``/`` in either part becomes ``-``; ``<dir>`` is
``/var/run/k8s.cni.cncf.io/devinfo/dp``) into its CNI device-info file and the
pod's ``network-status`` annotation. The Go driver writes the same file per
prepared VF with deviceID = the VF's PCI address (the ``k8s.cni.cncf.io/deviceID``
attribute), and so do we: ``{"type": "pci", "version": "1.1.0", "pci":
{"pci-address", "pf-pci-address", "rdma-device" when it has one}}``.

Building is pure (:func:`pci_device_info`, :func:`file_name`); writing replaces the
file atomically, so a reader never sees a torn one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Final

from sriov_dra.naming import is_pci_address

from sriov_dra_agent.atomic_file import remove_durably, write_atomically

SPEC_VERSION: Final = "1.1.0"
"""Device Information Specification version the files follow."""

DEFAULT_DEVICE_INFO_DIR: Final = "/var/run/k8s.cni.cncf.io/devinfo/dp"

_SUFFIX: Final = "-device.json"
_FILE: Final = re.compile(
    r"^(?P<resource>.+)-(?P<pci>[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])-device\.json$"
)


def _part(value: str) -> str:
    return value.replace("/", "-")


def file_name(resource_name: str, device_id: str) -> str:
    """``<resourceName>-<deviceID>-device.json`` with ``/`` replaced by ``-``, as the spec says."""
    if not resource_name or not is_pci_address(device_id):
        raise ValueError(
            f"device-info file for resource {resource_name!r} and device {device_id!r}: "
            "want a resource name and a VF PCI address such as 0000:08:00.2"
        )
    return f"{_part(resource_name)}-{_part(device_id)}{_SUFFIX}"


def pci_device_info(
    pci_address: str, pf_pci_address: str, rdma_devices: Sequence[str] = ()
) -> dict[str, Any]:
    """The device-info map of a VF: its PCI address, its PF's, its RDMA devices (comma-joined)."""
    pci: dict[str, str] = {"pci-address": pci_address}
    if pf_pci_address:
        pci["pf-pci-address"] = pf_pci_address
    if rdma_devices:
        pci["rdma-device"] = ",".join(rdma_devices)
    return {"type": "pci", "version": SPEC_VERSION, "pci": pci}


def write_device_info(directory: Path, name: str, info: dict[str, Any]) -> Path:
    """Atomically (re)write one device-info file, creating ``directory`` as the spec asks."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    # Read-only, as the NAD client's SaveDeviceInfoForDP leaves its files.
    write_atomically(path, (json.dumps(info) + "\n").encode(), mode=0o444)
    return path


def remove_device_info(directory: Path, name: str) -> bool:
    """Remove one device-info file; False when there was none (idempotent)."""
    return remove_durably(directory / name)


def files_of(directory: Path, resource_names: Collection[str]) -> list[str]:
    """The device-info files in ``directory`` that name one of ``resource_names`` and a VF.

    The directory is shared with device plugins: a file under any other resource
    name is theirs and is never listed.
    """
    if not directory.is_dir() or not resource_names:
        return []
    ours = {_part(name) for name in resource_names}
    found = []
    for path in directory.iterdir():
        match = _FILE.match(path.name)
        if match and match.group("resource") in ours:
            found.append(path.name)
    return sorted(found)
