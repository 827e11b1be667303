"""Why no node fits a claim: the ``NoDeviceAvailable`` texts, with counts and the fix.

The first request that fits no node even alone is named, with how many VFs
match it and how many of those are free; when every request fits somewhere
alone, the combination (and its ``matchAttribute`` constraints) is at fault, or,
when every node that could satisfy it would give more than
:data:`~sriov_dra.constants.MAX_ALLOCATION_RESULTS` results (``All`` on a large
node), the claim-wide limit.
Pools skipped as incomplete are named, and the fix then says the wait is
transient. Devices the request's selectors match but that are not offered
(``Pool.refused``: no node agent could prepare them) are named with why and the fix,
and so are those a taint keeps from the request (:mod:`sriov_dra.device_taints`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final

from sriov_dra.allocation_search import CompiledAlternative, CompiledRequest, Constraint, Search
from sriov_dra.constants import MAX_ALLOCATION_RESULTS
from sriov_dra.device_pools import REFUSAL_FIX, Device, DeviceKey, Pool
from sriov_dra.device_taints import describe, untolerated
from sriov_dra.errors import NoDeviceAvailable, SelectorError

_FIX_BUSY: Final = (
    "delete a claim that holds a matching VF, publish more VFs, or relax the request's selectors"
)
_FIX_NONE: Final = (
    "no published VF matches: check the DeviceClass and request selectors, or publish matching VFs"
)


def _plural(count: int) -> str:
    return f"{count} VF matches" if count == 1 else f"{count} VFs match"


_FIX_TAINTED: Final = (
    "a tainted VF is offered again when its taint goes (pf-link-down: when its PF's link is "
    "back up); or tolerate the taint in the request's tolerations"
)

_NAMED_INCOMPLETE: Final = 3
"""Incomplete pools named in a NoDeviceAvailable message; the rest are counted."""


def _incomplete_note(incomplete: Sequence[Pool]) -> str:
    """``; not counted: pool a is being republished (1 of 2 slices), ...`` or ''."""
    if not incomplete:
        return ""
    named = [
        f"pool {p.name} is being republished ({p.slices} of {p.expected_slices} slices)"
        for p in incomplete[:_NAMED_INCOMPLETE]
    ]
    more = len(incomplete) - len(named)
    if more:
        named.append(f"{more} more pool{'s' if more > 1 else ''} likewise")
    return "; not counted until complete: " + ", ".join(named)


def _selected(alternative: CompiledAlternative, device: Device) -> bool:
    try:
        return all(selector.test(device) for selector in alternative.selectors)
    except SelectorError:
        return False


def _refused_note(request: CompiledRequest, nodes: Mapping[str, Sequence[Pool]]) -> str:
    """``; not offered: device p/d (why), ...`` for refused devices the request selects, or ''."""
    refused = [
        device
        for pools in nodes.values()
        for pool in pools
        for device in pool.refused
        if any(_selected(alternative, device) for alternative in request.alternatives)
    ]
    if not refused:
        return ""
    named = [
        f"device {d.key.pool}/{d.key.device} ({d.refusal})" for d in refused[:_NAMED_INCOMPLETE]
    ]
    more = len(refused) - len(named)
    if more:
        named.append(f"{more} more device{'s' if more > 1 else ''} likewise")
    return "; not offered: " + ", ".join(named)


def _tainted_note(request: CompiledRequest, nodes: Mapping[str, Sequence[Pool]]) -> str:
    """``; tainted: device p/d (key=value:effect), ...`` for devices the request selects
    that a taint keeps from every alternative selecting them, or ''."""
    tainted: list[tuple[Device, str]] = []
    for pools in nodes.values():
        for pool in pools:
            for device in pool.devices:
                if not device.taints:
                    continue
                selecting = [a for a in request.alternatives if _selected(a, device)]
                kept = [untolerated(device.taints, a.tolerations) for a in selecting]
                if kept and all(kept):
                    tainted.append((device, ", ".join(describe(t) for t in kept[0])))
    if not tainted:
        return ""
    named = [
        f"device {d.key.pool}/{d.key.device} ({why})" for d, why in tainted[:_NAMED_INCOMPLETE]
    ]
    more = len(tainted) - len(named)
    if more:
        named.append(f"{more} more device{'s' if more > 1 else ''} likewise")
    return "; tainted: " + ", ".join(named)


def explain(
    requests: Sequence[CompiledRequest],
    constraints: Sequence[Constraint],
    nodes: Mapping[str, Sequence[Pool]],
    in_use: Collection[DeviceKey],
    incomplete: Sequence[Pool],
) -> NoDeviceAvailable:
    """Why nothing fits: the first request that fits no node alone, else the combination.

    Pools skipped as ``incomplete`` are named, with a fix that says the wait is transient.
    """
    note = _incomplete_note(incomplete)
    transient = (
        "; or just wait: the claim is retried by itself as soon as the pools named are complete"
        if incomplete
        else ""
    )
    summaries = []
    for request in requests:
        matching: dict[int, Device] = {}
        fits_somewhere = False
        for pools in nodes.values():
            search = Search(pools, [request], [], in_use)
            for alternative in request.alternatives:
                for pool in pools:
                    for device in pool.matching(alternative.selectors):
                        matching[id(device)] = device
                found = search.candidates(alternative)
                needed = 1 if alternative.all_mode else alternative.count
                fits_somewhere |= found is not None and len(found) >= needed
        total = len(matching)
        free = sum(1 for d in matching.values() if d.key not in in_use)
        counts = f"{_plural(total)}, {free} free"
        summaries.append(f'request "{request.name}": {counts}')
        if fits_somewhere:
            continue
        detail = ""
        first = request.alternatives[0]
        if len(request.alternatives) == 1 and first.all_mode:
            detail = "; All needs every matching VF of a node free"
        elif len(request.alternatives) == 1 and first.count > 1 and free >= first.count:
            detail = f"; {first.count} are needed on one node"
        refused = _refused_note(request, nodes)
        tainted = _tainted_note(request, nodes)
        return NoDeviceAvailable(
            f'no free VF matches request "{request.name}": '
            f"{counts}{detail}{refused}{tainted}{note}",
            field=f"spec.devices.requests[{request.index}]",
            fix=(_FIX_NONE if total == 0 else _FIX_BUSY)
            + (f"; for the devices not offered: {REFUSAL_FIX}" if refused else "")
            + (f"; {_FIX_TAINTED}" if tainted else "")
            + transient,
        )
    fewest = [Search(pools, requests, [], in_use).fewest_results() for pools in nodes.values()]
    possible = [f for f in fewest if f is not None]
    if possible and min(possible) > MAX_ALLOCATION_RESULTS:
        return NoDeviceAvailable(
            f"every node that could satisfy the claim would give it at least {min(possible)} "
            f"results, and a claim gets at most {MAX_ALLOCATION_RESULTS} "
            f"(resource.k8s.io AllocationResultsMaxSize): " + "; ".join(summaries) + note,
            field="spec.devices.requests",
            fix="narrow the selectors of the All requests, give them a firstAvailable "
            "alternative with a count, or split the requests over several claims" + transient,
        )
    attributes = ", ".join(c.attribute for c in constraints)
    why = f" with matchAttribute {attributes}" if attributes else ""
    return NoDeviceAvailable(
        f"no node has free VFs for all requests together{why}: " + "; ".join(summaries) + note,
        field="spec.devices",
        fix="free VFs on one node, or relax spec.devices.constraints and the selectors" + transient,
    )
