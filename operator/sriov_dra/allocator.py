"""Allocate devices from ResourceSlices to a static ResourceClaim, as kube-scheduler would.

Inputs are plain API dicts; nothing here does I/O. :func:`allocate` is where a VF
is chosen; the parts are in their own modules: the pools and taken devices
(:mod:`sriov_dra.device_pools`), the search on one node
(:mod:`sriov_dra.allocation_search`), why nothing fits
(:mod:`sriov_dra.allocation_explain`) and the ``status.allocation`` to write
(:mod:`sriov_dra.allocation_result`).

**Node choice (deterministic)**: every device of a claim comes from one node.
Nodes (of complete, sound pools) are tried in name order and the first node
where the whole claim fits wins.

**Results limit**: a claim whose requests need more than
:data:`~sriov_dra.constants.MAX_ALLOCATION_RESULTS` devices even with their
smallest alternatives is refused up front, as kube-scheduler refuses it; below
that, the search chooses the alternatives jointly under the limit.

**Speed**: pass a :class:`~sriov_dra.device_pools.DeviceUsage` as ``in_use`` to
let :func:`allocate` skip full nodes without scanning them; selector results and
matching devices are memoized on the pools.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sriov_dra.allocation_explain import explain
from sriov_dra.allocation_result import Allocation
from sriov_dra.allocation_search import Search, claim_constraints, compile_requests
from sriov_dra.constants import MAX_ALLOCATION_RESULTS
from sriov_dra.device_pools import DeviceKey, DeviceUsage, Pool
from sriov_dra.errors import NoDeviceAvailable


@dataclass
class _NodeOrder:
    """Usable pools by node in name order, and how far the nodes are known to be full."""

    pools: Sequence[Pool]
    """Kept so their ids, part of the cache key, cannot be reused meanwhile."""
    nodes: dict[str, list[Pool]]
    order: tuple[tuple[str, list[Pool]], ...]
    full_prefix: dict[int, tuple[int, int]] = field(default_factory=dict)
    """DeviceUsage serial -> (its releases then, index): every node before the index had no
    free device. Only a release can free one, so the prefix holds until the next release."""


_NODE_CACHE: dict[tuple[str, tuple[int, ...]], _NodeOrder] = {}


def _nodes(pools: Sequence[Pool], driver: str) -> _NodeOrder:
    """Usable (complete, sound) pools of ``driver`` by node, in name order (cached)."""
    key = (driver, tuple(map(id, pools)))
    cached = _NODE_CACHE.get(key)
    if cached is not None:
        return cached
    nodes: dict[str, list[Pool]] = {}
    for pool in sorted(pools, key=lambda p: (p.node, p.name)):
        if pool.driver == driver and not pool.problem and pool.complete:
            nodes.setdefault(pool.node, []).append(pool)
    if len(_NODE_CACHE) >= 8:
        _NODE_CACHE.clear()
    found = _NODE_CACHE[key] = _NodeOrder(tuple(pools), nodes, tuple(nodes.items()))
    return found


def allocate(
    claim: Mapping[str, Any],
    *,
    device_classes: Mapping[str, Mapping[str, Any]],
    pools: Sequence[Pool],
    in_use: Collection[DeviceKey],
    driver: str,
) -> Allocation:
    """Choose devices for ``claim`` (see the module doc for rules and order).

    Raises NoDeviceAvailable (with counts of matching and free VFs) or SelectorError.
    """
    requests = compile_requests(claim, device_classes)
    if not requests:
        return Allocation(node="", results=[], devices=[])
    fewest = sum(min(a.fewest_results for a in r.alternatives) for r in requests)
    if fewest > MAX_ALLOCATION_RESULTS:
        raise NoDeviceAvailable(
            f"the requests need at least {fewest} devices together, and a claim gets at most "
            f"{MAX_ALLOCATION_RESULTS} (resource.k8s.io AllocationResultsMaxSize)",
            field="spec.devices.requests",
            fix=f"lower the counts (or add smaller firstAvailable alternatives) to "
            f"{MAX_ALLOCATION_RESULTS} devices in all, or split the requests over several claims",
        )
    # Most results the claim could get: when even that is within the limit, the search
    # need not check it (All counts as unbounded, its size depends on the node).
    most = sum(
        max(MAX_ALLOCATION_RESULTS + 1 if a.all_mode else a.count for a in r.alternatives)
        for r in requests
    )
    constraints = claim_constraints(claim)
    known = _nodes(pools, driver)
    need = sum(min(a.need for a in r.alternatives) for r in requests)
    usage = in_use if isinstance(in_use, DeviceUsage) else None
    taken = usage.held if usage is not None else in_use
    first = 0
    if usage is not None and need > 0:
        # Nodes fill in name order: start after those known to be full, so a decision
        # does not walk more nodes as more claims are allocated. (A claim that needs no
        # free device, adminAccess only, may still be served by a full node.)
        prefix = known.full_prefix.get(usage.serial)
        if prefix is not None and prefix[0] == usage.releases:
            first = prefix[1]
    full_before = first
    for index in range(first, len(known.order)):
        node, node_pools = known.order[index]
        if usage is not None:
            free = 0
            for pool in node_pools:
                free += usage.free_in(pool)
            if free == 0 and full_before == index:
                full_before = index + 1
                known.full_prefix[usage.serial] = (usage.releases, full_before)
            if free < need:
                continue
        picked = Search(
            node_pools, requests, constraints, taken, limit=most > MAX_ALLOCATION_RESULTS
        ).run()
        if picked is not None:
            results = []
            for alternative, device in picked:
                result: dict[str, Any] = {
                    "request": alternative.name,
                    "driver": device.key.driver,
                    "pool": device.key.pool,
                    "device": device.key.device,
                }
                if alternative.admin:
                    result["adminAccess"] = True
                results.append(result)
            return Allocation(node=node, results=results, devices=[d.data for _, d in picked])
    incomplete = [p for p in pools if p.driver == driver and not p.problem and not p.complete]
    raise explain(requests, constraints, known.nodes, taken, incomplete)
