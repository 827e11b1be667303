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
from typing import Any

from sriov_dra.allocation_explain import explain
from sriov_dra.allocation_result import Allocation
from sriov_dra.allocation_search import Search, claim_constraints, compile_requests
from sriov_dra.constants import MAX_ALLOCATION_RESULTS
from sriov_dra.device_pools import DeviceKey, DeviceUsage, Pool
from sriov_dra.errors import NoDeviceAvailable

_NODE_CACHE: dict[tuple[str, tuple[int, ...]], tuple[Sequence[Pool], dict[str, list[Pool]]]] = {}


def _nodes(pools: Sequence[Pool], driver: str) -> dict[str, list[Pool]]:
    """Usable (complete, sound) pools of ``driver`` by node, in name order (cached).

    The cache entry keeps the pools alive, so their ids cannot be reused meanwhile.
    """
    key = (driver, tuple(map(id, pools)))
    cached = _NODE_CACHE.get(key)
    if cached is not None:
        return cached[1]
    nodes: dict[str, list[Pool]] = {}
    for pool in sorted(pools, key=lambda p: (p.node, p.name)):
        if pool.driver == driver and not pool.problem and pool.complete:
            nodes.setdefault(pool.node, []).append(pool)
    if len(_NODE_CACHE) >= 8:
        _NODE_CACHE.clear()
    _NODE_CACHE[key] = (tuple(pools), nodes)
    return nodes


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
    nodes = _nodes(pools, driver)
    need = sum(min(a.need for a in r.alternatives) for r in requests)
    usage = in_use if isinstance(in_use, DeviceUsage) else None
    taken = usage.held if usage is not None else in_use
    for node, node_pools in nodes.items():
        if usage is not None:
            free = 0
            for pool in node_pools:
                free += usage.free_in(pool)
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
    raise explain(requests, constraints, nodes, taken, incomplete)
