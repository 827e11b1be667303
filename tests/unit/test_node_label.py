"""Which node label a claim should carry, so that each agent's label-filtered watch sees it."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.constants import DRIVER_NAME, FINALIZER, KUBE_DELETE_PROTECTION, NODE_LABEL
from sriov_dra.node_label import (
    NodeLabelChange,
    allocated_node,
    current_node_label,
    node_label_change,
)
from sriov_dra.node_selector import node_selector

OTHER_DRIVER = "gpu.example.com"


def result(pool: str, driver: str = DRIVER_NAME, **more: Any) -> dict[str, Any]:
    return {"driver": driver, "pool": pool, "device": "0000-3b-02-0", "request": "vf", **more}


def claim(
    results: list[dict[str, Any]] | None,
    *,
    label: str | None = None,
    finalizers: tuple[str, ...] = (),
    pinned: str | None = None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"uid": "u-1", "finalizers": list(finalizers)}
    if label is not None:
        metadata["labels"] = {NODE_LABEL: label, "app": "x"}
    body: dict[str, Any] = {"metadata": metadata, "status": {}}
    if results is not None:
        allocation: dict[str, Any] = {"devices": {"results": results}}
        if pinned is not None:
            allocation["nodeSelector"] = node_selector(pinned)
        body["status"]["allocation"] = allocation
    return body


@pytest.mark.parametrize(
    ("body", "node"),
    [
        pytest.param(claim([result("node-a")]), "node-a", id="our-result"),
        pytest.param(claim(None), None, id="unallocated"),
        pytest.param(claim([result("node-a", OTHER_DRIVER)]), None, id="other-driver-only"),
        pytest.param(claim([result("node-a", adminAccess=True)]), None, id="admin-access-only"),
        pytest.param(
            claim([result("node-b", OTHER_DRIVER), result("node-a")]), "node-a", id="mixed"
        ),
        pytest.param(
            claim([result("node-b"), result("node-a")], pinned="node-b"), "node-b", id="pinned"
        ),
        pytest.param(claim([result("node-b"), result("node-a")]), "node-a", id="first-by-name"),
        pytest.param(
            claim([result("node-a.pool")], pinned="node-a"), "node-a", id="pinned-not-pool"
        ),
        pytest.param(claim([], pinned="node-a"), None, id="pinned-but-no-result"),
    ],
)
def test_allocated_node(body: dict[str, Any], node: str | None) -> None:
    assert allocated_node(body, driver=DRIVER_NAME) == node


def test_current_node_label() -> None:
    assert current_node_label(claim(None, label="node-a")) == "node-a"
    assert current_node_label(claim(None)) is None


@pytest.mark.parametrize(
    ("body", "change"),
    [
        pytest.param(
            claim([result("node-a")], finalizers=(KUBE_DELETE_PROTECTION,)),
            NodeLabelChange("node-a"),
            id="scheduler-allocated-gets-label",
        ),
        pytest.param(
            claim([result("node-a")], label="node-a", finalizers=(KUBE_DELETE_PROTECTION,)),
            None,
            id="already-labelled",
        ),
        pytest.param(
            claim([result("node-a")], label="node-b"), NodeLabelChange("node-a"), id="wrong-node"
        ),
        pytest.param(claim(None, label="node-a"), NodeLabelChange(None), id="deallocated-unlabel"),
        pytest.param(claim(None), None, id="unallocated-unlabelled"),
        pytest.param(
            claim([result("node-a", OTHER_DRIVER)], label="node-a"),
            NodeLabelChange(None),
            id="no-result-of-ours",
        ),
        pytest.param(
            claim([result("node-a")], finalizers=(FINALIZER,)),
            NodeLabelChange("node-a"),
            id="ours-label-removed-comes-back",
        ),
        pytest.param(
            claim(None, label="node-a", finalizers=(FINALIZER,)),
            None,
            id="ours-marked-before-allocation",
        ),
    ],
)
def test_node_label_change(body: dict[str, Any], change: NodeLabelChange | None) -> None:
    assert node_label_change(body, driver=DRIVER_NAME) == change
