"""From a node's inventory to the ResourceSlices that advertise its VFs (pure).

One pool per node, named after the node, with ``spec.nodeName`` set. Devices are
named from the VF PCI address (:func:`sriov_dra.naming.device_name`) and carry the
attributes the Go driver publishes, so selectors written for it keep working.
A slice holds at most :data:`MAX_DEVICES_PER_SLICE` devices; a bigger pool is
spread over several slices that all carry ``resourceSliceCount``.

The pool generation is bumped whenever the published content changes (not
only when more than one slice changes, as the Go helper does): consumers
then never mix slices of two inventories.

Devices may carry ``taints`` (resource.k8s.io/v1, gate ``DRADeviceTaints``): the
agent's device health taints the VFs of a PF whose link is down
(:mod:`sriov_dra.device_health`), so that no new claim gets them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sriov_dra import constants
from sriov_dra.advertisement import MAX_ATTRIBUTES_PER_DEVICE, Advertisement
from sriov_dra.naming import device_name

from sriov_dra_agent.vf.inventory import Inventory, VfInfo
from sriov_dra_agent.vf.resource_names import ResourceNames

MAX_DEVICES_PER_SLICE: Final = 128
"""``ResourceSliceMaxDevices`` of resource.k8s.io/v1 in Kubernetes 1.34."""

MAX_STRING_ATTRIBUTE: Final = 64
"""Longest string value a device attribute may hold."""

MAX_OBJECT_NAME: Final = 253

Device = dict[str, Any]
"""A ResourceSlice device as the API serves it (``{name, attributes}``)."""


def _string(value: str) -> dict[str, str]:
    return {"string": value[:MAX_STRING_ATTRIBUTE]}


def vf_device(vf: VfInfo, node: str) -> Device:
    """The ResourceSlice device of one VF of ``node``, with the Go driver's attributes.

    Only attributes that do not change while a VF is in use are published (not
    its bound driver or host netdev), so attaching a VF never bumps the pool.
    """
    attributes: dict[str, dict[str, Any]] = {
        constants.ATTR_VENDOR: _string(vf.vendor),
        constants.ATTR_DEVICE_ID: _string(vf.device_id),
        constants.ATTR_PF_DEVICE_ID: _string(vf.pf_device_id),
        constants.ATTR_PCI_ADDRESS: _string(vf.pci_address),
        constants.ATTR_PF_NAME: _string(vf.pf_name),
        constants.ATTR_PF_PCI_ADDRESS: _string(vf.pf_pci_address),
        constants.ATTR_ESWITCH_MODE: _string(vf.eswitch_mode),
        constants.ATTR_VF_ID: {"int": vf.vf_index},
        constants.ATTR_LINK_TYPE: _string(vf.link_type),
        constants.ATTR_RDMA_CAPABLE: {"bool": vf.rdma_capable},
        constants.ATTR_CNI_DEVICE_ID: _string(vf.pci_address),
        constants.ATTR_PCI_BUS_ID: _string(vf.pci_address),
        constants.ATTR_NUMA_NODE: {"int": vf.numa_node},
        constants.ATTR_NODE_NAME: _string(node),
    }
    if vf.pcie_root:
        attributes[constants.ATTR_PCIE_ROOT] = _string(vf.pcie_root)
    if vf.simulated:
        attributes[constants.ATTR_SIMULATED] = {"bool": True}
    return {"name": device_name(vf.pci_address), "attributes": attributes}


def with_resource_names(
    devices: Sequence[Device], inventory: Inventory, resource_names: ResourceNames | None
) -> list[Device]:
    """``devices`` with the Multus attribute ``k8s.cni.cncf.io/resourceName`` where the
    setting names their PF, unless they carry one already (from a DeviceAttributes).

    Its twin ``k8s.cni.cncf.io/deviceID`` (the VF's PCI address) is on every VF already.
    """
    if resource_names is None:
        return list(devices)
    names = {device_name(vf.pci_address): resource_names.for_vf(vf) for vf in inventory.vfs()}
    named = []
    for device in devices:
        resource = names.get(device["name"])
        if resource and constants.ATTR_CNI_RESOURCE_NAME not in device["attributes"]:
            attributes = {
                **device["attributes"],
                constants.ATTR_CNI_RESOURCE_NAME: _string(resource),
            }
            device = {**device, "attributes": attributes}
        named.append(device)
    return named


def resource_names_of(slices: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Device name -> ``k8s.cni.cncf.io/resourceName``, for the devices of ``slices`` with one."""
    return {
        str(device["name"]): str(device["attributes"][constants.ATTR_CNI_RESOURCE_NAME]["string"])
        for item in slices
        for device in (item.get("spec") or {}).get("devices") or []
        if constants.ATTR_CNI_RESOURCE_NAME in device.get("attributes", {})
    }


def pool_devices(inventory: Inventory) -> list[Device]:
    """Every VF of the node as a device, sorted by device name, duplicates refused.

    Raises ``ValueError`` when two VFs map to the same device name: the
    allocator would mark the whole pool invalid.
    """
    devices: dict[str, Device] = {}
    for vf in inventory.vfs():
        device = vf_device(vf, inventory.node)
        if device["name"] in devices:
            raise ValueError(
                f"two VFs of node {inventory.node} have PCI address {vf.pci_address}; "
                "fix: discovery must report each VF once"
            )
        devices[device["name"]] = device
    return [devices[name] for name in sorted(devices)]


def advertised(devices: Sequence[Device], advertisement: Advertisement | None) -> list[Device]:
    """The devices ``advertisement`` publishes, each with its policy's extra attributes.

    None publishes every device unchanged. A built-in attribute always keeps its
    value, and extras stop at the API's attributes-per-device limit.
    """
    if advertisement is None:
        return list(devices)
    published = []
    for device in devices:
        if not advertisement.publishes(device["name"]):
            continue
        attributes = dict(device["attributes"])
        for name, value in advertisement.devices[device["name"]].items():
            if name not in attributes and len(attributes) < MAX_ATTRIBUTES_PER_DEVICE:
                attributes[name] = dict(value)
        published.append({**device, "attributes": attributes})
    return published


def with_taints(
    devices: Sequence[Device], taints: Mapping[str, Sequence[Mapping[str, Any]]] | None
) -> list[Device]:
    """``devices`` with ``taints[name]`` as their ``taints``; devices without any get none."""
    if not taints:
        return list(devices)
    tainted = []
    for device in devices:
        extra = taints.get(device["name"])
        if extra:
            device = {**device, "taints": [dict(taint) for taint in extra]}
        tainted.append(device)
    return tainted


def chunk_devices(
    devices: Sequence[Device], limit: int = MAX_DEVICES_PER_SLICE
) -> list[list[Device]]:
    """Split devices into slices of at most ``limit``; an empty pool still gets one slice."""
    if limit < 1:
        raise ValueError(f"limit must be positive, got {limit}")
    if not devices:
        return [[]]
    return [list(devices[i : i + limit]) for i in range(0, len(devices), limit)]


def slice_name(node: str, driver: str, index: int) -> str:
    """Deterministic slice name ``<node>-<driver>-<index>``, hashed down when too long."""
    name = f"{node}-{driver}-{index}"
    if len(name) <= MAX_OBJECT_NAME:
        return name
    digest = hashlib.sha256(f"{node}/{driver}".encode()).hexdigest()[:10]
    suffix = f"-{digest}-{index}"
    return node[: MAX_OBJECT_NAME - len(suffix)].rstrip("-.") + suffix


def build_slices(
    inventory: Inventory,
    *,
    driver: str,
    generation: int,
    owner: Mapping[str, str] | None = None,
    limit: int = MAX_DEVICES_PER_SLICE,
    resource_names: ResourceNames | None = None,
    advertisement: Advertisement | None = None,
    taints: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """The complete ResourceSlice objects of ``inventory``'s pool at ``generation``.

    ``owner`` is ``{"name", "uid"}`` of the Node: the slices then go away with it.
    ``resource_names`` gives VFs their Multus resource name (:func:`with_resource_names`).
    ``advertisement`` chooses the VFs published and their extra attributes (:func:`advertised`).
    ``taints`` are device name -> taints of that device (:func:`with_taints`).
    """
    devices = with_taints(
        with_resource_names(
            advertised(pool_devices(inventory), advertisement), inventory, resource_names
        ),
        taints,
    )
    chunks = chunk_devices(devices, limit)
    slices: list[dict[str, Any]] = []
    for index, devices in enumerate(chunks):
        metadata: dict[str, Any] = {"name": slice_name(inventory.node, driver, index)}
        if owner is not None:
            metadata["ownerReferences"] = [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": owner["name"],
                    "uid": owner["uid"],
                    "controller": True,
                }
            ]
        slices.append(
            {
                "apiVersion": "resource.k8s.io/v1",
                "kind": "ResourceSlice",
                "metadata": metadata,
                "spec": {
                    "driver": driver,
                    "nodeName": inventory.node,
                    "pool": {
                        "name": inventory.node,
                        "generation": generation,
                        "resourceSliceCount": len(chunks),
                    },
                    "devices": devices,
                },
            }
        )
    return slices


def content_key(slices: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any, int]]:
    """What makes two publications equal: slice names, devices and slice count, not generation."""
    key = []
    for item in slices:
        spec = item.get("spec") or {}
        pool = spec.get("pool") or {}
        key.append(
            (
                str((item.get("metadata") or {}).get("name", "")),
                spec.get("devices") or [],
                int(pool.get("resourceSliceCount") or 0),
            )
        )
    return sorted(key, key=lambda entry: entry[0])


def next_generation(
    existing: Sequence[Mapping[str, Any]], desired: Sequence[Mapping[str, Any]]
) -> int | None:
    """The generation to publish ``desired`` under, or None when ``existing`` already says it.

    ``existing`` are the pool's slices on the API server (any generations);
    ``desired`` is built at any generation. A pool whose slices disagree on the
    generation is stale too and gets a fresh one.
    """
    generations = {
        int(((s.get("spec") or {}).get("pool") or {}).get("generation") or 0) for s in existing
    }
    current = max(generations, default=0)
    if existing and len(generations) == 1 and content_key(existing) == content_key(desired):
        return None
    return current + 1 if existing else 0
