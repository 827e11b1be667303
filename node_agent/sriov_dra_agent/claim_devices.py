"""Which VFs of this node a ResourceClaim holds, and how each is to be set up (pure).

Works for claims the operator allocated (it adds the allocation annotation with
ifName and NAD per VF) and for claims allocated by anyone else (the scheduler):
then the same facts are derived from ``status.allocation`` with the operator's
own rules (:func:`sriov_dra.vfconfig.effective_vfconfig`,
:func:`~sriov_dra.vfconfig.assign_interface_names`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriov_dra import allocation_record
from sriov_dra.constants import ALLOCATION_ANNOTATION, NODE_LABEL
from sriov_dra.errors import InvalidVfConfig
from sriov_dra.naming import claim_ref, pci_address
from sriov_dra.vfconfig import assign_interface_names, effective_vfconfig, nad_reference


@dataclass(frozen=True)
class ClaimDevice:
    """One VF of a claim on this node."""

    request: str
    pool: str
    device: str
    pci_address: str
    if_name: str
    driver: str
    """VfConfig ``driver``: ``""`` keeps the bound driver."""
    nad: tuple[str, str] | None
    """(namespace, name) of the NetworkAttachmentDefinition, None when none is named."""


def meta(claim: Mapping[str, Any]) -> Mapping[str, Any]:
    value: Mapping[str, Any] = claim.get("metadata") or {}
    return value


def ref(claim: Mapping[str, Any]) -> str:
    """``namespace/name`` of a claim."""
    return claim_ref(str(meta(claim).get("namespace", "")), str(meta(claim).get("name", "")))


def uid(claim: Mapping[str, Any]) -> str:
    return str(meta(claim).get("uid", ""))


def is_deleting(claim: Mapping[str, Any]) -> bool:
    return bool(meta(claim).get("deletionTimestamp"))


def is_reserved(claim: Mapping[str, Any]) -> bool:
    return bool((claim.get("status") or {}).get("reservedFor"))


def labelled_for(claim: Mapping[str, Any], node: str) -> bool:
    return (meta(claim).get("labels") or {}).get(NODE_LABEL) == node


def _selector_nodes(allocation: Mapping[str, Any]) -> set[str] | None:
    """Node names an allocation's nodeSelector pins it to; None = no metadata.name pin."""
    selector = allocation.get("nodeSelector")
    if not selector:
        return None
    names: set[str] = set()
    pinned = False
    for term in selector.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                pinned = True
                names.update(field.get("values") or [])
    return names if pinned else None


def our_results(claim: Mapping[str, Any], *, node: str, driver: str) -> list[Mapping[str, Any]]:
    """Allocation results of ``driver`` in this node's pool (adminAccess ones excluded)."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    nodes = _selector_nodes(allocation)
    if nodes is not None and node not in nodes:
        return []
    results = (allocation.get("devices") or {}).get("results") or []
    return [
        r
        for r in results
        if r.get("driver") == driver and r.get("pool") == node and not r.get("adminAccess")
    ]


def claim_devices(claim: Mapping[str, Any], *, node: str, driver: str) -> list[ClaimDevice]:
    """This node's VFs of ``claim``, in allocation-result order.

    Raises :class:`InvalidVfConfig` (config or annotation unusable) naming the field.
    """
    allocation = (claim.get("status") or {}).get("allocation") or {}
    all_results = [
        r
        for r in (allocation.get("devices") or {}).get("results") or []
        if r.get("driver") == driver and not r.get("adminAccess")
    ]
    mine = our_results(claim, node=node, driver=driver)
    if not mine:
        return []
    config = (allocation.get("devices") or {}).get("config") or []
    cfgs = [effective_vfconfig(config, str(r["request"]), driver=driver) for r in all_results]
    names = assign_interface_names(
        [(str(r["request"]), cfg) for r, cfg in zip(all_results, cfgs, strict=True)]
    )
    records = {}
    annotation = (meta(claim).get("annotations") or {}).get(ALLOCATION_ANNOTATION)
    if annotation:
        try:
            records = {(r.pool, r.device): r for r in allocation_record.decode(annotation)}
        except ValueError as exc:
            raise InvalidVfConfig(
                str(exc),
                field=f"metadata.annotations[{ALLOCATION_ANNOTATION}]",
                fix="let the sriov-dra operator write this annotation; remove a hand-edited one",
            ) from exc
    namespace = str(meta(claim).get("namespace", ""))
    devices = []
    for result, cfg, name in zip(all_results, cfgs, names, strict=True):
        if result not in mine:
            continue
        record = records.get((str(result["pool"]), str(result["device"])))
        if record is not None:
            if_name = record.if_name
            nad = tuple(record.nad.split("/", 1)) if record.nad else None
        else:
            if_name = name
            nad = nad_reference(cfg, claim_namespace=namespace, allowed_namespaces=frozenset())
        devices.append(
            ClaimDevice(
                request=str(result["request"]),
                pool=str(result["pool"]),
                device=str(result["device"]),
                pci_address=pci_address(str(result["device"])),
                if_name=if_name,
                driver=cfg.driver,
                nad=(nad[0], nad[1]) if nad else None,
            )
        )
    return devices
