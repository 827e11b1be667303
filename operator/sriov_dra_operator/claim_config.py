"""What the operator derives from a claim before it allocates: config per request, VF records.

Pure: the claim, its DeviceClasses and the published devices in, values out.
Each request's VfConfig is merged as the agent will merge the copy in
``status.allocation.devices.config`` (class entries, then the claim's), but
validated here first, so a bad entry is refused naming the field it is in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sriov_dra import allocation_record, naming
from sriov_dra.claim_requests import request_classes
from sriov_dra.constants import ATTR_PCI_ADDRESS, ATTR_PF_NAME, ATTR_VF_ID
from sriov_dra.device_pools import DeviceKey
from sriov_dra.vfconfig import (
    VfConfig,
    assign_interface_names,
    effective_vfconfig,
    parse_vfconfig,
)

from .cache import Ref
from .slices import PublishedDevice


def config_entries(
    claim: Mapping[str, Any],
    class_name: str,
    classes: Mapping[str, Mapping[str, Any]],
) -> list[tuple[dict[str, Any], str]]:
    """Config entries for a request of class ``class_name``, with the path naming each.

    Shape as in ``status.allocation.devices.config``: the class's entries
    (``FromClass``) then the claim's (``FromClaim``).
    """
    entries: list[tuple[dict[str, Any], str]] = []
    device_class = classes.get(class_name) or {}
    for i, item in enumerate((device_class.get("spec") or {}).get("config") or []):
        entries.append(
            (
                {"source": "FromClass", "opaque": item.get("opaque") or {}},
                f"DeviceClass {class_name} spec.config[{i}].opaque.parameters",
            )
        )
    claim_config = ((claim.get("spec") or {}).get("devices") or {}).get("config") or []
    for i, item in enumerate(claim_config):
        entries.append(
            (
                {
                    "source": "FromClaim",
                    "requests": item.get("requests") or [],
                    "opaque": item.get("opaque") or {},
                },
                f"spec.devices.config[{i}].opaque.parameters",
            )
        )
    return entries


def effective_configs(
    claim: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]], *, driver: str
) -> dict[str, VfConfig]:
    """Validated VfConfig per request/subrequest; raises InvalidVfConfig naming the field."""
    result: dict[str, VfConfig] = {}
    for request, class_name in request_classes(claim).items():
        entries = config_entries(claim, class_name, classes)
        for entry, path in entries:
            if entry["opaque"].get("driver") == driver:
                parse_vfconfig(entry["opaque"].get("parameters") or {}, field=path)
        # Each entry was checked above with its own path; what the merge alone can
        # refuse (driver vfio-pci from one entry, rdma from another) names them all.
        result[request] = effective_vfconfig(
            [e for e, _ in entries], request, driver=driver, field="DeviceClass and claim config"
        )
    return result


def _pci_of(key: DeviceKey, device: PublishedDevice | None) -> str:
    """The VF's PCI address: published, else from its name, else '' (a name of someone else's)."""
    published = device.attribute(ATTR_PCI_ADDRESS) if device else None
    if isinstance(published, str) and published:
        return published
    return naming.pci_address(key.device) if naming.is_device_name(key.device) else ""


def _vf_index(device: PublishedDevice | None) -> int:
    """The published VF index; 0 when it is missing or not an int."""
    index = device.attribute(ATTR_VF_ID) if device else None
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def allocation_records(
    results: Sequence[Mapping[str, Any]],
    node: str,
    configs: Mapping[str, VfConfig],
    devices: Mapping[DeviceKey, PublishedDevice],
    nad_refs: Mapping[str, Ref | None],
) -> list[allocation_record.AllocatedVf]:
    """The annotation records for an allocation's results, in result order.

    Never fails on what a slice publishes: a device the scheduler allocated from
    someone else's slice gets what can be read of it (the allocator offers none).
    """
    names = assign_interface_names(
        [(str(r["request"]), configs[str(r["request"])]) for r in results]
    )
    records = []
    for result, if_name in zip(results, names, strict=True):
        key = DeviceKey(str(result["driver"]), str(result["pool"]), str(result["device"]))
        device = devices.get(key)
        nad = nad_refs.get(str(result["request"]))
        records.append(
            allocation_record.AllocatedVf(
                request=str(result["request"]),
                pool=key.pool,
                device=key.device,
                node=node,
                pf=str((device.attribute(ATTR_PF_NAME) if device else None) or ""),
                pciAddress=_pci_of(key, device),
                vfIndex=_vf_index(device),
                ifName=if_name,
                nad=f"{nad[0]}/{nad[1]}" if nad else "",
            )
        )
    return records
