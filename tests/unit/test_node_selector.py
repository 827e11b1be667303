"""The nodeSelector the allocator writes, and the node both sides read back from it."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.node_selector import allocation_node, node_selector, pinned_nodes


def test_what_is_written_reads_back_as_its_node() -> None:
    allocation = {"nodeSelector": node_selector("node-a")}
    assert allocation["nodeSelector"] == {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
        ]
    }
    assert pinned_nodes(allocation) == {"node-a"}
    assert allocation_node(allocation) == "node-a"


def term(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"matchFields": list(fields)}


def name_in(*nodes: str) -> dict[str, Any]:
    return {"key": "metadata.name", "operator": "In", "values": list(nodes)}


@pytest.mark.parametrize(
    ("selector", "pinned", "node"),
    [
        (None, None, None),
        ({"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone"}]}]}, None, None),
        ({"nodeSelectorTerms": [term({**name_in("a"), "operator": "NotIn"})]}, None, None),
        ({"nodeSelectorTerms": [term(name_in("a", "b"))]}, {"a", "b"}, None),
        ({"nodeSelectorTerms": [term(name_in("a")), term(name_in("b"))]}, {"a", "b"}, None),
        ({"nodeSelectorTerms": [term(name_in("a")), term(name_in("a"))]}, {"a"}, "a"),
    ],
    ids=["none", "no-name-pin", "not-in", "two-names", "two-terms", "same-name-twice"],
)
def test_only_metadata_name_in_pins(
    selector: dict[str, Any] | None, pinned: set[str] | None, node: str | None
) -> None:
    allocation = {} if selector is None else {"nodeSelector": selector}
    assert pinned_nodes(allocation) == pinned
    assert allocation_node(allocation) == node
