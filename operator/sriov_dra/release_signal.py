"""The node agent's word that a deleted claim's VFs are reset, as the operator reads it.

The agent says it in the claim's ``status.devices``: condition
:data:`~sriov_dra.constants.RELEASED_CONDITION` True on its entry of each VF. Only
the claim's node agent can write that: a tenant's ``edit`` role has no
``resourceclaims/status``, and the ValidatingAdmissionPolicy of ``manifests/``
confines each agent to the claims allocated on its node. An annotation, which the
hand-over once was, is writable by anyone who may patch the claim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sriov_dra.constants import DRIVER_NAME, RELEASED_CONDITION


def allocated_vfs(claim: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """(pool, device) of every allocation result of our driver (adminAccess ones excluded)."""
    allocation = (claim.get("status") or {}).get("allocation") or {}
    results = (allocation.get("devices") or {}).get("results") or []
    return frozenset(
        (str(r.get("pool")), str(r.get("device")))
        for r in results
        if r.get("driver") == DRIVER_NAME and not r.get("adminAccess")
    )


def released_vfs(claim: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """(pool, device) of our driver's ``status.devices`` entries with condition Released True."""
    released = set()
    for entry in (claim.get("status") or {}).get("devices") or []:
        if entry.get("driver") != DRIVER_NAME:
            continue
        conditions = entry.get("conditions") or []
        if any(
            c.get("type") == RELEASED_CONDITION and c.get("status") == "True" for c in conditions
        ):
            released.add((str(entry.get("pool")), str(entry.get("device"))))
    return frozenset(released)


def released_by_agent(claim: Mapping[str, Any]) -> bool:
    """Every VF allocated to the claim is reported released by its node agent."""
    allocated = allocated_vfs(claim)
    return bool(allocated) and allocated <= released_vfs(claim)
