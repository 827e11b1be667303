"""The ``nodeSelector`` of a node-local allocation: written by the allocator, read by both sides.

An allocation from a node-local pool (ours, or kube-scheduler's) pins its node
with ``matchFields: [{key: metadata.name, operator: In, values: [node]}]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def node_selector(node: str) -> dict[str, Any]:
    """The ``status.allocation.nodeSelector`` that pins an allocation to ``node``."""
    return {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ]
    }


def pinned_nodes(allocation: Mapping[str, Any]) -> frozenset[str] | None:
    """Node names the allocation's nodeSelector pins it to; None when it pins no name."""
    selector = allocation.get("nodeSelector")
    if not selector:
        return None
    names: set[str] = set()
    pinned = False
    for term in selector.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                pinned = True
                names.update(str(value) for value in field.get("values") or ())
    return frozenset(names) if pinned else None


def allocation_node(allocation: Mapping[str, Any]) -> str | None:
    """The one node the allocation is pinned to, None unless it names exactly one."""
    names = pinned_nodes(allocation)
    return next(iter(names)) if names is not None and len(names) == 1 else None
