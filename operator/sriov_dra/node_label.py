"""Which node label a ResourceClaim should carry, so that each agent watches only its own.

Agents watch claims with the label selector ``NODE_LABEL=<node>`` (server-side), so
a claim reaches a node agent only while it carries that label. The operator sets it
with its own marks when it allocates or adopts a claim
(:mod:`sriov_dra_operator.status_writer`); a claim someone else allocated (a
template claim kube-scheduler allocated for its pod, a claim that mixes our VFs with
other drivers' devices) gets it here: the node of its allocation results for our
driver. When such a claim loses those results, the label goes again.

A claim carrying our finalizer is the operator's own: its state machine sets and
removes the label with the finalizer (a claim is marked just before its allocation
is written, and unmarked just after it is cleared). Only while such a claim holds
VFs is its label checked here, so a label somebody removed comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sriov_dra.constants import FINALIZER, NODE_LABEL
from sriov_dra.node_selector import allocation_node


@dataclass(frozen=True)
class NodeLabelChange:
    """The node label a claim should carry instead of the one it has."""

    node: str | None
    """The label's new value; None removes it."""


def current_node_label(claim: Mapping[str, Any]) -> str | None:
    """The claim's node label as it is (None when absent)."""
    labels = (claim.get("metadata") or {}).get("labels") or {}
    value = labels.get(NODE_LABEL)
    return None if value is None else str(value)


def allocated_node(claim: Mapping[str, Any], *, driver: str) -> str | None:
    """The node whose agent programs the claim's VFs, None when no result is ``driver``'s.

    The node the allocation is pinned to (its nodeSelector names one), else the pool
    of its results (the agent names its pool after its node), the first by name when
    there are several, so the answer is stable. adminAccess results program nothing
    and do not count.
    """
    allocation = (claim.get("status") or {}).get("allocation") or {}
    pools = sorted(
        {
            str(r.get("pool"))
            for r in (allocation.get("devices") or {}).get("results") or []
            if r.get("driver") == driver and not r.get("adminAccess") and r.get("pool")
        }
    )
    if not pools:
        return None
    return allocation_node(allocation) or pools[0]


def node_label_change(claim: Mapping[str, Any], *, driver: str) -> NodeLabelChange | None:
    """How the claim's node label must change, None when it is right (module docstring)."""
    wanted = allocated_node(claim, driver=driver)
    current = current_node_label(claim)
    if wanted == current:
        return None
    finalizers = (claim.get("metadata") or {}).get("finalizers") or []
    if wanted is None and FINALIZER in finalizers:
        # Marked before its allocation is written, unmarked after it is cleared: the
        # operator's state machine, not ours to undo.
        return None
    return NodeLabelChange(node=wanted)
