"""Names derived from hardware and objects: device names, claim references."""

from __future__ import annotations

import re
from typing import Final

_PCI_ADDRESS: Final = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


def is_pci_address(value: str) -> bool:
    """True for a full lower-case PCI address such as ``0000:08:00.2``."""
    return bool(_PCI_ADDRESS.fullmatch(value))


def device_name(pci_address: str) -> str:
    """ResourceSlice device name of a VF: its PCI address as a DNS label.

    ``0000:08:00.2`` becomes ``0000-08-00-2``, as the Go driver names it.
    """
    address = pci_address.lower()
    if not is_pci_address(address):
        raise ValueError(f"not a PCI address: {pci_address!r} (want e.g. 0000:08:00.2)")
    return address.replace(":", "-").replace(".", "-")


def _address_of(device: str) -> str:
    parts = device.split("-")
    return f"{parts[0]}:{parts[1]}:{parts[2]}.{parts[3]}" if len(parts) == 4 else ""


def is_device_name(device: str) -> bool:
    """True for a device name made from a PCI address by :func:`device_name`."""
    return is_pci_address(_address_of(device))


def pci_address(device: str) -> str:
    """Inverse of :func:`device_name`; raises ``ValueError`` for any other name."""
    if not is_device_name(device):
        raise ValueError(f"not a device name made from a PCI address: {device!r}")
    return _address_of(device)


def claim_ref(namespace: str, name: str) -> str:
    """``namespace/name``, the way logs and Events name a claim."""
    return f"{namespace}/{name}"
