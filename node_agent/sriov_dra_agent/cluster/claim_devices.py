"""Which VFs of this node a ResourceClaim holds, and how each is to be set up (pure).

Everything comes from ``status.allocation``: the results name the VFs, the
opaque configs the allocator copied to ``devices.config`` (``FromClass`` then
``FromClaim``) give each VF its ifName, driver and NAD, by the operator's own
rules (:func:`sriov_dra.vfconfig.effective_vfconfig`,
:func:`~sriov_dra.vfconfig.assign_interface_names`,
:func:`~sriov_dra.vfconfig.nad_reference`). The claim's spec is immutable and its
status is written only through the status subresource, which tenants normally
may not; its metadata is not so protected. So the operator's allocation
annotation (metadata) never decides anything here: :func:`annotation_mismatches`
only tells where it disagrees, for a Warning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sriov_dra import allocation_record
from sriov_dra.constants import ALLOCATION_ANNOTATION
from sriov_dra.errors import InvalidVfConfig
from sriov_dra.naming import claim_ref, is_device_name, pci_address
from sriov_dra.node_selector import pinned_nodes
from sriov_dra.vfconfig import (
    CONFIG_FIELD,
    VfConfig,
    assign_interface_names,
    effective_vfconfig,
    nad_reference,
)


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
    vhost: bool = False
    """VfConfig ``addVhostMount``: the pod also gets ``/dev/vhost-net`` and ``/dev/net/tun``."""
    rdma: bool | None = None
    """VfConfig ``rdma``: None gives the VF's RDMA devices when it has them, True requires them."""


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


def our_results(claim: Mapping[str, Any], *, node: str, driver: str) -> list[Mapping[str, Any]]:
    """Allocation results of ``driver`` in this node's pool (adminAccess ones excluded).

    Only devices named from a PCI address, as this agent publishes every VF: a device of
    another publisher in our pool is no VF we can program, and reading its name as one
    would stop the agent (the operator never offers such a device; the scheduler might).
    """
    allocation = (claim.get("status") or {}).get("allocation") or {}
    nodes = pinned_nodes(allocation)
    if nodes is not None and node not in nodes:
        return []
    results = (allocation.get("devices") or {}).get("results") or []
    return [
        r
        for r in results
        if r.get("driver") == driver
        and r.get("pool") == node
        and not r.get("adminAccess")
        and is_device_name(str(r.get("device") or ""))
    ]


def _nad_of(
    cfg: VfConfig, request: str, *, claim_namespace: str, nad_namespaces: frozenset[str]
) -> tuple[str, str] | None:
    """The NAD of one request by the operator's rule, checked against the agent's allow-list."""
    try:
        return nad_reference(
            cfg, claim_namespace=claim_namespace, allowed_namespaces=nad_namespaces
        )
    except InvalidVfConfig as exc:
        raise InvalidVfConfig(
            exc.message, field=f"{CONFIG_FIELD} (request {request!r}).{exc.field}", fix=exc.fix
        ) from exc


def claim_devices(
    claim: Mapping[str, Any],
    *,
    node: str,
    driver: str,
    nad_namespaces: frozenset[str] = frozenset(),
) -> list[ClaimDevice]:
    """This node's VFs of ``claim``, in allocation-result order, configured from status.

    A NAD outside the claim's namespace must be in ``nad_namespaces`` (``"*"``
    allows all), as the operator's ``--nad-namespaces``. Raises
    :class:`InvalidVfConfig` naming the field when a config is unusable.
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
    # Names over every result of the claim, as the operator assigns them, so that a
    # VF's ifName does not depend on which node looks.
    names = assign_interface_names(
        [(str(r["request"]), cfg) for r, cfg in zip(all_results, cfgs, strict=True)]
    )
    namespace = str(meta(claim).get("namespace", ""))
    devices = []
    for result, cfg, name in zip(all_results, cfgs, names, strict=True):
        if result not in mine:
            continue
        request = str(result["request"])
        devices.append(
            ClaimDevice(
                request=request,
                pool=str(result["pool"]),
                device=str(result["device"]),
                pci_address=pci_address(str(result["device"])),
                if_name=name,
                driver=cfg.driver,
                vhost=cfg.add_vhost_mount,
                rdma=cfg.rdma,
                nad=_nad_of(cfg, request, claim_namespace=namespace, nad_namespaces=nad_namespaces),
            )
        )
    return devices


@dataclass(frozen=True)
class NodeScope:
    """The node and driver an agent serves, and the NAD namespaces it allows besides a
    claim's own (``"*"``: all; the operator's ``--nad-namespaces``)."""

    node: str
    driver: str
    nad_namespaces: frozenset[str] = frozenset()

    def devices(self, claim: Mapping[str, Any]) -> list[ClaimDevice]:
        """This node's VFs of ``claim`` as ``status.allocation`` configures them.

        Raises :class:`~sriov_dra.errors.InvalidVfConfig` naming the field.
        """
        return claim_devices(
            claim, node=self.node, driver=self.driver, nad_namespaces=self.nad_namespaces
        )

    def results(self, claim: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The claim's allocation results on this node, whatever their config says."""
        return our_results(claim, node=self.node, driver=self.driver)


def log_context(claim: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    """The ``extra`` of a log line about ``claim``: its ``namespace/name`` and uid."""
    return {"claim": ref(claim), "uid": uid(claim), **more}


def annotation_mismatches(
    claim: Mapping[str, Any], devices: Sequence[ClaimDevice], *, node: str
) -> list[str]:
    """Where the allocation annotation disagrees with ``devices`` (derived from status).

    Only this node's records count; an absent annotation (scheduler allocation)
    disagrees with nothing. Each item names the device and both values.
    """
    annotation = (meta(claim).get("annotations") or {}).get(ALLOCATION_ANNOTATION)
    if not annotation:
        return []
    try:
        records = allocation_record.decode(annotation)
    except ValueError:
        return ["the annotation is not a list of allocation records"]
    by_key = {(d.pool, d.device): d for d in devices}
    problems = []
    for record in records:
        if record.node != node and record.pool != node:
            continue
        device = by_key.get((record.pool, record.device))
        if device is None:
            problems.append(
                f"{record.pool}/{record.device} is in the annotation but not allocated "
                f"on node {node} in status.allocation"
            )
            continue
        status_nad = "/".join(device.nad) if device.nad else ""
        for what, annotated, derived in (
            ("request", record.request, device.request),
            ("pciAddress", record.pci_address, device.pci_address),
            ("ifName", record.if_name, device.if_name),
            ("nad", record.nad, status_nad),
        ):
            if annotated != derived:
                problems.append(
                    f"{record.device}: {what} is {annotated!r} in the annotation "
                    f"but {derived!r} in status.allocation"
                )
    return problems
