"""Where every VF is: the inventory view shared by the operator's page and ``sriov-dra inventory``.

Pure: plain API dicts in (our driver's pools, ResourceClaims, node names, the
operator's last Event per claim), typed models out. The operator builds it from
its cache, the CLI from what it lists with the user's kubeconfig, so both show
the same thing and their JSON is equal for the same cluster state.

**A VF's state**, from the claim whose ``status.allocation`` holds it (the same
rule as the allocator's :func:`~sriov_dra.device_pools.held_devices`) and what
the node agent reports in that claim's ``status.devices`` entry for the device:

- ``free``: no claim's allocation holds it;
- ``allocated``: a claim holds it, the agent has not (or not successfully)
  configured it: no entry yet, or ``VfConfigured`` is not ``True`` (then
  ``detail`` carries the condition's reason and message, e.g. a
  ``VfProgrammingFailed``);
- ``configured``: ``VfConfigured`` is ``True`` (driver bound, NAD settings
  applied) and the VF is in no pod;
- ``attached``: the agent reports ``networkData`` (it does only while the VF is in
  a pod's netns: ``net1``, its IPs and MAC) or ``NetworkReady`` is ``True``;
- ``releasing``: the holding claim is deleted (``deletionTimestamp``); the
  allocation, and so the VF, stays until the node agent reported the VF detached
  and reset (:mod:`sriov_dra.release_signal`; ``detail`` says whether it did), then
  the operator clears it.

The NAD and ifName come from the agent's ``status.devices[].data`` (derived
from ``status.allocation``), else from the operator's allocation annotation
(:mod:`sriov_dra.allocation_record`), which is for people only but is there
before the agent answers.

**A claim waits** when it is ours (the shell's ownership rule, passed in as
``ours``) and has no allocation, or when it is deleted and still holds VFs of
ours. Each shows the operator's last Event on it (``warning`` unless its reason
is one of the operator's Normal reasons): why it waits.

**At 1,000 nodes** :func:`select` pages the nodes (``per_page`` at a time) or
picks one node by name; the summary and the waiting claims always cover the
whole cluster.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from sriov_dra import allocation_record
from sriov_dra.constants import (
    ALLOCATION_ANNOTATION,
    ATTR_PCI_ADDRESS,
    ATTR_PF_NAME,
    ATTR_PF_PCI_ADDRESS,
    ATTR_VF_ID,
)
from sriov_dra.device_pools import Device, DeviceKey, Pool, held_devices
from sriov_dra.errors import SriovDraError
from sriov_dra.naming import claim_ref, pci_address
from sriov_dra.release_signal import released_vfs

VfState = Literal["free", "allocated", "configured", "attached", "releasing"]
VF_STATES: Final[tuple[VfState, ...]] = ("free", "allocated", "configured", "attached", "releasing")

OPERATOR_NORMAL_REASONS: Final = frozenset(
    {"Allocated", "Adopted", "AllocationClearedByScheduler", "AwaitingRelease"}
)
"""The reasons of the operator's Normal Events; every other reason it posts is a Warning."""

PER_PAGE: Final = 50
"""Nodes per page by default: each is one collapsed row on the page."""
MAX_PER_PAGE: Final = 1000

UNPUBLISHED_PF: Final = "(not published)"
"""The PF of a VF held by a claim but in no ResourceSlice (its node or agent is gone)."""


class InventoryQueryError(SriovDraError):
    """A query parameter of the inventory is not usable."""

    reason = "BadQuery"


class NodeNotFound(InventoryQueryError):
    """The node asked for has no Node object and no VFs (any more)."""

    reason = "NotFound"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vf(_Model):
    """One VF and who uses it."""

    device: str
    """ResourceSlice device name."""
    pci_address: str
    vf_id: int | None
    state: VfState
    claim: str = ""
    """``namespace/name`` of the claim holding it; empty when free."""
    claim_uid: str = ""
    pods: list[str] = []
    """Pods the claim is reserved for (``status.reservedFor``), in the claim's namespace."""
    nad: str = ""
    """``namespace/name`` of the NetworkAttachmentDefinition."""
    if_name: str = ""
    ips: list[str] = []
    mac: str = ""
    detail: str = ""
    """Why a held VF is not configured, a second holder, or that it is not published."""


class Pf(_Model):
    """A PF of one node and its VFs."""

    name: str
    pci_address: str
    total: int
    free: int
    vfs: list[Vf]


class Node(_Model):
    """A node: its PFs, or none (a node without our VFs)."""

    name: str
    total: int
    free: int
    pfs: list[Pf]
    node_missing: bool = False
    """VFs are published or held for it, but no Node object of that name exists."""
    problems: list[str] = []
    """Why some of its VFs are not offered (incomplete or broken pool, refused devices)."""


class WaitingClaim(_Model):
    """A claim of ours that is not allocated yet, or is deleted and waits for its release."""

    claim: str
    uid: str
    waits_for: Literal["allocation", "release"]
    reason: str = ""
    """Reason of the operator's last Event on it ('' when none was posted)."""
    message: str = ""
    warning: bool = False


class Summary(_Model):
    """Counts over the whole cluster."""

    nodes: int
    pfs: int
    vfs: int
    states: dict[str, int]
    waiting: int


class Inventory(_Model):
    """Every node, PF and VF, and the claims that wait."""

    summary: Summary
    nodes: list[Node]
    waiting: list[WaitingClaim]


class InventoryPage(_Model):
    """What one request shows: the summary, some nodes, every waiting claim."""

    summary: Summary
    node: str = ""
    """The node asked for ('' when paging)."""
    page: int
    pages: int
    per_page: int
    nodes: list[Node]
    waiting: list[WaitingClaim]


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    value: Mapping[str, Any] = body.get("metadata") or {}
    return value


def _ref(claim: Mapping[str, Any]) -> str:
    return claim_ref(str(_meta(claim).get("namespace") or ""), str(_meta(claim).get("name") or ""))


def _attribute(device: Device, qualified: str) -> Any:
    found = device.attribute(qualified)
    return None if found is None else found[1]


def _device_entry(claim: Mapping[str, Any], key: DeviceKey) -> Mapping[str, Any]:
    """The claim's ``status.devices`` entry for ``key`` (empty when the agent wrote none)."""
    for entry in (claim.get("status") or {}).get("devices") or []:
        if (entry.get("driver"), entry.get("pool"), entry.get("device")) == key:
            found: Mapping[str, Any] = entry
            return found
    return {}


def _condition(entry: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in entry.get("conditions") or []:
        if condition.get("type") == kind:
            found: Mapping[str, Any] = condition
            return found
    return {}


def _annotation_records(claim: Mapping[str, Any]) -> dict[tuple[str, str], Any]:
    """(pool, device) -> the operator's allocation record; empty when absent or unreadable."""
    value = (_meta(claim).get("annotations") or {}).get(ALLOCATION_ANNOTATION)
    if not value:
        return {}
    try:
        records = allocation_record.decode(str(value))
    except ValueError:
        return {}
    return {(r.pool, r.device): r for r in records}


def vf_state(claim: Mapping[str, Any], key: DeviceKey) -> tuple[VfState, str]:
    """The state of a VF held by ``claim`` and its detail (see the module docstring)."""
    if _meta(claim).get("deletionTimestamp"):
        if (key.pool, key.device) in released_vfs(claim):
            return "releasing", "the agent reset it; the operator hands it on"
        return "releasing", "the claim is deleted; the node agent detaches and resets the VF"
    entry = _device_entry(claim, key)
    network = entry.get("networkData") or {}
    if network.get("interfaceName") or _condition(entry, "NetworkReady").get("status") == "True":
        return "attached", ""
    configured = _condition(entry, "VfConfigured")
    if configured.get("status") == "True":
        return "configured", ""
    if configured:
        return "allocated", f"{configured.get('reason', '')}: {configured.get('message', '')}"
    return "allocated", ""


def held_vf(claim: Mapping[str, Any], key: DeviceKey, *, pci_address: str, vf_id: int | None) -> Vf:
    """The view of one VF held by ``claim``."""
    state, detail = vf_state(claim, key)
    entry = _device_entry(claim, key)
    network = entry.get("networkData") or {}
    data = entry.get("data") or {}
    record = _annotation_records(claim).get((key.pool, key.device))
    pods = [
        str(r.get("name") or "")
        for r in (claim.get("status") or {}).get("reservedFor") or []
        if r.get("resource") == "pods"
    ]
    return Vf(
        device=key.device,
        pci_address=pci_address,
        vf_id=vf_id,
        state=state,
        claim=_ref(claim),
        claim_uid=str(_meta(claim).get("uid") or ""),
        pods=pods,
        nad=str(data.get("networkAttachmentDefinition") or (record.nad if record else "")),
        if_name=str(
            network.get("interfaceName") or data.get("ifName") or (record.if_name if record else "")
        ),
        ips=[str(ip) for ip in network.get("ips") or []],
        mac=str(network.get("hardwareAddress") or ""),
        detail=detail,
    )


def _pci_address(device: Device) -> str:
    value = _attribute(device, ATTR_PCI_ADDRESS)
    if value:
        return str(value)
    try:
        return pci_address(device.key.device)
    except ValueError:
        return ""


def _vf_id(device: Device) -> int | None:
    value = _attribute(device, ATTR_VF_ID)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _vf(key: DeviceKey, holders: Sequence[Mapping[str, Any]], *, pci: str, vf_id: int | None) -> Vf:
    if not holders:
        return Vf(device=key.device, pci_address=pci, vf_id=vf_id, state="free")
    vf = held_vf(holders[0], key, pci_address=pci, vf_id=vf_id)
    if len(holders) == 1:
        return vf
    others = ", ".join(_ref(c) for c in holders[1:])
    detail = "; ".join(d for d in (vf.detail, f"also in the allocation of {others}") if d)
    return vf.model_copy(update={"detail": detail})


def _holders(
    claims: Iterable[Mapping[str, Any]], driver: str
) -> dict[DeviceKey, list[Mapping[str, Any]]]:
    """Our devices -> the claims whose allocation holds them, by namespace/name."""
    holders: dict[DeviceKey, list[Mapping[str, Any]]] = defaultdict(list)
    for claim in claims:
        for key in held_devices(claim):
            if key.driver == driver:
                holders[key].append(claim)
    for found in holders.values():
        found.sort(key=_ref)
    return holders


def _pool_problems(pool: Pool) -> list[str]:
    problems = [pool.problem] if pool.problem else []
    if not pool.complete:
        problems.append(
            f"pool {pool.name} is incomplete ({pool.slices} of {pool.expected_slices} "
            "ResourceSlices of its newest generation): its VFs are not allocated from until "
            "the agent has published them all"
        )
    problems += [f"{d.key.device} is not offered: {d.refusal}" for d in pool.refused]
    return problems


def _waiting(
    claims: Iterable[Mapping[str, Any]],
    holders: Mapping[DeviceKey, Sequence[Mapping[str, Any]]],
    *,
    ours: Callable[[Mapping[str, Any]], bool],
    last_events: Mapping[str, tuple[str, str]],
) -> list[WaitingClaim]:
    holding = {str(_meta(c).get("uid") or "") for held in holders.values() for c in held}
    waiting = []
    for claim in claims:
        uid = str(_meta(claim).get("uid") or "")
        if _meta(claim).get("deletionTimestamp"):
            if uid not in holding:
                continue
            waits_for: Literal["allocation", "release"] = "release"
        elif not (claim.get("status") or {}).get("allocation") and ours(claim):
            waits_for = "allocation"
        else:
            continue
        reason, message = last_events.get(uid, ("", ""))
        waiting.append(
            WaitingClaim(
                claim=_ref(claim),
                uid=uid,
                waits_for=waits_for,
                reason=reason,
                message=message,
                warning=bool(reason) and reason not in OPERATOR_NORMAL_REASONS,
            )
        )
    waiting.sort(key=lambda w: (w.claim, w.uid))
    return waiting


def build_inventory(
    *,
    pools: Iterable[Pool],
    claims: Iterable[Mapping[str, Any]],
    nodes: Collection[str] | None,
    last_events: Mapping[str, tuple[str, str]],
    ours: Callable[[Mapping[str, Any]], bool],
    driver: str,
) -> Inventory:
    """The whole inventory (see the module docstring).

    ``pools`` are our driver's (:func:`~sriov_dra.device_pools.pools_from_slices`),
    ``nodes`` the Node names (None when unknown), ``last_events`` claim uid ->
    (reason, message) of the operator's last Event, ``ours`` the ownership rule.
    """
    claims = list(claims)
    holders = _holders(claims, driver)
    vfs: dict[str, dict[tuple[str, str], list[Vf]]] = defaultdict(lambda: defaultdict(list))
    problems: dict[str, list[str]] = defaultdict(list)
    published: set[DeviceKey] = set()
    for pool in pools:
        node = pool.node or pool.name
        problems[node] += _pool_problems(pool)
        for device in (*pool.devices, *pool.refused):
            published.add(device.key)
            pf = (
                str(_attribute(device, ATTR_PF_NAME) or ""),
                str(_attribute(device, ATTR_PF_PCI_ADDRESS) or ""),
            )
            vfs[node][pf].append(
                _vf(device.key, holders.get(device.key, []), pci=_pci_address(device),
                    vf_id=_vf_id(device))
            )  # fmt: skip
    for key, held in holders.items():
        if key in published:
            continue
        record = _annotation_records(held[0]).get((key.pool, key.device))
        vf = _vf(key, held, pci=record.pci_address if record else "", vf_id=None)
        detail = "; ".join(d for d in (vf.detail, "in no ResourceSlice of its node") if d)
        vfs[record.node if record else key.pool][(UNPUBLISHED_PF, "")].append(
            vf.model_copy(update={"detail": detail})
        )
    names = set(nodes or ()) | vfs.keys()
    node_views = [_node(name, vfs.get(name, {}), problems.get(name, []), nodes) for name in
                  sorted(names)]  # fmt: skip
    waiting = _waiting(claims, holders, ours=ours, last_events=last_events)
    states: dict[str, int] = dict.fromkeys(VF_STATES, 0)
    for node_view in node_views:
        for pf_view in node_view.pfs:
            for vf_view in pf_view.vfs:
                states[vf_view.state] += 1
    summary = Summary(
        nodes=len(node_views),
        pfs=sum(len(n.pfs) for n in node_views),
        vfs=sum(n.total for n in node_views),
        states=states,
        waiting=len(waiting),
    )
    return Inventory(summary=summary, nodes=node_views, waiting=waiting)


def _node(
    name: str,
    pfs: Mapping[tuple[str, str], list[Vf]],
    problems: list[str],
    nodes: Collection[str] | None,
) -> Node:
    pf_views = [
        Pf(
            name=pf_name,
            pci_address=pf_pci,
            total=len(vfs),
            free=sum(vf.state == "free" for vf in vfs),
            vfs=sorted(vfs, key=lambda v: (v.vf_id is None, v.vf_id or 0, v.device)),
        )
        for (pf_name, pf_pci), vfs in sorted(pfs.items())
    ]
    return Node(
        name=name,
        total=sum(p.total for p in pf_views),
        free=sum(p.free for p in pf_views),
        pfs=pf_views,
        node_missing=nodes is not None and name not in nodes,
        problems=problems,
    )


def parse_query(items: Iterable[tuple[str, str]]) -> tuple[str, int | None, int]:
    """``(node, page, per_page)`` from query parameters ``node``, ``page``, ``per_page``.

    Raises :class:`InventoryQueryError` naming the parameter and the fix for an
    unknown or repeated parameter or a number out of range. No ``page`` (and no
    ``per_page``) means every node.
    """
    seen: dict[str, str] = {}
    for name, value in items:
        if name not in ("node", "page", "per_page"):
            raise InventoryQueryError(
                f"unknown query parameter {name!r}",
                field=name,
                fix="use node=<name>, page=<n> and per_page=<n> only",
            )
        if name in seen:
            raise InventoryQueryError(
                f"query parameter {name!r} is given more than once", field=name, fix="give it once"
            )
        seen[name] = value
    page = _number(seen, "page", 1, None) if "page" in seen else None
    per_page = _number(seen, "per_page", 1, MAX_PER_PAGE) if "per_page" in seen else PER_PAGE
    if page is None and "per_page" in seen:
        page = 1
    return seen.get("node", ""), page, per_page


def _number(seen: Mapping[str, str], name: str, low: int, high: int | None) -> int:
    text = seen[name]
    fix = f"a whole number from {low}" + (f" to {high}" if high else "")
    if not text.isdigit() or len(text) > 9:
        raise InventoryQueryError(f"{text[:40]!r} is not a page number", field=name, fix=fix)
    value = int(text)
    if value < low or (high is not None and value > high):
        raise InventoryQueryError(f"{value} is out of range", field=name, fix=fix)
    return value


def select(
    inventory: Inventory, *, node: str = "", page: int | None = None, per_page: int = PER_PAGE
) -> InventoryPage:
    """One node by name, one page of ``per_page`` nodes, or (``page`` None) every node.

    Raises :class:`NodeNotFound` for a node that is not in the inventory and
    :class:`InventoryQueryError` for a page past the last.
    """
    if node:
        found = [n for n in inventory.nodes if n.name == node]
        if not found:
            raise NodeNotFound(
                f"node {node[:253]!r} has no Node object and no VFs of ours",
                field="node",
                fix="pick a node from the inventory's list, or leave node= out",
            )
        return InventoryPage(
            summary=inventory.summary, node=node, page=1, pages=1, per_page=1, nodes=found,
            waiting=inventory.waiting,
        )  # fmt: skip
    if page is None:
        return InventoryPage(
            summary=inventory.summary, page=1, pages=1, per_page=max(len(inventory.nodes), 1),
            nodes=inventory.nodes, waiting=inventory.waiting,
        )  # fmt: skip
    pages = max(math.ceil(len(inventory.nodes) / per_page), 1)
    if page > pages:
        raise InventoryQueryError(
            f"page {page} is past the last page ({pages} of {per_page} nodes)",
            field="page",
            fix=f"use a page from 1 to {pages}",
        )
    start = (page - 1) * per_page
    return InventoryPage(
        summary=inventory.summary, page=page, pages=pages, per_page=per_page,
        nodes=inventory.nodes[start : start + per_page], waiting=inventory.waiting,
    )  # fmt: skip
