"""Names derived from hardware and objects: device names, claim references."""

from __future__ import annotations

import re
from typing import Final

_PCI_ADDRESS: Final = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def is_pci_address(value: str) -> bool:
    """True for a full lower-case PCI address such as ``0000:08:00.2``."""
    return bool(_PCI_ADDRESS.match(value))


def device_name(pci_address: str) -> str:
    """ResourceSlice device name of a VF: its PCI address as a DNS label.

    ``0000:08:00.2`` becomes ``0000-08-00-2``, as the Go driver names it.
    """
    address = pci_address.lower()
    if not is_pci_address(address):
        raise ValueError(f"not a PCI address: {pci_address!r} (want e.g. 0000:08:00.2)")
    return address.replace(":", "-").replace(".", "-")


def pci_address(device: str) -> str:
    """Inverse of :func:`device_name`."""
    parts = device.split("-")
    if len(parts) != 4:
        raise ValueError(f"not a device name made from a PCI address: {device!r}")
    address = f"{parts[0]}:{parts[1]}:{parts[2]}.{parts[3]}"
    if not is_pci_address(address):
        raise ValueError(f"not a device name made from a PCI address: {device!r}")
    return address


def claim_ref(namespace: str, name: str) -> str:
    """``namespace/name``, the way logs and Events name a claim."""
    return f"{namespace}/{name}"
