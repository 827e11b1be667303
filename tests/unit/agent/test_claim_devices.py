"""Which VFs of this node a claim holds, with or without the operator's annotation."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra import allocation_record, constants
from sriov_dra.errors import InvalidVfConfig
from sriov_dra_agent.claim_devices import ClaimDevice, claim_devices, our_results

DRIVER = constants.DRIVER_NAME


def vfconfig(**fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.VFCONFIG_API_VERSION,
        "kind": constants.VFCONFIG_KIND,
        **fields,
    }


def claim(
    results: list[dict[str, Any]],
    *,
    config: list[dict[str, Any]] | None = None,
    node_selector: list[str] | None = None,
    annotation: str | None = None,
) -> dict[str, Any]:
    allocation: dict[str, Any] = {"devices": {"results": results, "config": config or []}}
    if node_selector is not None:
        allocation["nodeSelector"] = {
            "nodeSelectorTerms": [
                {
                    "matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": node_selector}
                    ]
                }
            ]
        }
    metadata: dict[str, Any] = {"name": "c", "namespace": "ns", "uid": "u-1"}
    if annotation is not None:
        metadata["annotations"] = {constants.ALLOCATION_ANNOTATION: annotation}
    return {"metadata": metadata, "status": {"allocation": allocation}}


def result(
    device: str, *, pool: str = "node-a", request: str = "vf", **extra: Any
) -> dict[str, Any]:
    return {"request": request, "driver": DRIVER, "pool": pool, "device": device, **extra}


def test_scheduler_allocation_derives_names_and_nad() -> None:
    body = claim(
        [result("0000-3b-02-0"), result("0000-3b-02-1")],
        config=[
            {
                "source": "FromClaim",
                "requests": [],
                "opaque": {
                    "driver": DRIVER,
                    "parameters": vfconfig(netAttachDefName="net-a", ifName="net1"),
                },
            },
        ],
        node_selector=["node-a"],
    )
    assert claim_devices(body, node="node-a", driver=DRIVER) == [
        ClaimDevice("vf", "node-a", "0000-3b-02-0", "0000:3b:02.0", "net1", "", ("ns", "net-a")),
        ClaimDevice("vf", "node-a", "0000-3b-02-1", "0000:3b:02.1", "net2", "", ("ns", "net-a")),
    ]


def test_operator_annotation_wins_for_names_and_nad() -> None:
    record = allocation_record.AllocatedVf(
        request="vf", pool="node-a", device="0000-3b-02-0", node="node-a", pf="simpf0",
        pciAddress="0000:3b:02.0", vfIndex=0, ifName="data0", nad="other/net-b",
    )  # fmt: skip
    body = claim(
        [result("0000-3b-02-0")],
        config=[
            {
                "source": "FromClaim",
                "opaque": {"driver": DRIVER, "parameters": vfconfig(driver="vfio-pci")},
            }
        ],
        annotation=allocation_record.encode([record]),
    )
    (device,) = claim_devices(body, node="node-a", driver=DRIVER)
    assert (device.if_name, device.nad, device.driver) == ("data0", ("other", "net-b"), "vfio-pci")


@pytest.mark.parametrize(
    ("results", "selector", "expected"),
    [
        ([result("0000-3b-02-0", pool="node-b")], None, []),
        ([result("0000-3b-02-0")], ["node-b"], []),
        ([result("0000-3b-02-0", driver="other.example.com")], None, []),
        ([result("0000-3b-02-0", adminAccess=True)], None, []),
        ([result("0000-3b-02-0")], ["node-a"], ["0000-3b-02-0"]),
        ([result("0000-3b-02-0")], None, ["0000-3b-02-0"]),
    ],
    ids=[
        "other-pool",
        "pinned-to-other-node",
        "other-driver",
        "admin-access",
        "pinned-here",
        "no-selector-our-pool",
    ],
)
def test_only_this_nodes_results_count(
    results: list[dict[str, Any]], selector: list[str] | None, expected: list[str]
) -> None:
    found = our_results(claim(results, node_selector=selector), node="node-a", driver=DRIVER)
    assert [r["device"] for r in found] == expected


def test_nad_in_another_namespace_is_refused_without_the_operator() -> None:
    body = claim(
        [result("0000-3b-02-0")],
        config=[{"source": "FromClaim", "opaque": {"driver": DRIVER,
                 "parameters": vfconfig(netAttachDefName="n", netAttachDefNamespace="x")}}],
    )  # fmt: skip
    with pytest.raises(InvalidVfConfig) as info:
        claim_devices(body, node="node-a", driver=DRIVER)
    assert info.value.field == "netAttachDefNamespace"


def test_hand_edited_annotation_is_reported() -> None:
    body = claim([result("0000-3b-02-0")], annotation="not json")
    with pytest.raises(InvalidVfConfig) as info:
        claim_devices(body, node="node-a", driver=DRIVER)
    assert info.value.field == f"metadata.annotations[{constants.ALLOCATION_ANNOTATION}]"
    assert info.value.fix == (
        "let the sriov-dra operator write this annotation; remove a hand-edited one"
    )


def test_unallocated_claim_has_no_devices() -> None:
    assert claim_devices({"metadata": {"uid": "u"}, "status": {}}, node="n", driver=DRIVER) == []
