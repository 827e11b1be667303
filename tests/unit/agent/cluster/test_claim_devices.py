"""Which VFs of this node a claim holds and how each is set up: from status.allocation only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from sriov_dra import allocation_record, constants
from sriov_dra.errors import InvalidVfConfig
from sriov_dra_agent.cluster.claim_devices import (
    ClaimDevice,
    annotation_mismatches,
    claim_devices,
    our_results,
)

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


def record(**fields: Any) -> allocation_record.AllocatedVf:
    """The operator's annotation record for VF 0000:3b:02.0 of node-a, as allocated."""
    values: dict[str, Any] = {
        "request": "vf", "pool": "node-a", "device": "0000-3b-02-0", "node": "node-a",
        "pf": "simpf0", "pciAddress": "0000:3b:02.0", "vfIndex": 0, "ifName": "net1",
        "nad": "ns/net-a",
    }  # fmt: skip
    return allocation_record.AllocatedVf.model_validate({**values, **fields})


def entry(source: str, requests: Sequence[str] = (), **fields: Any) -> dict[str, Any]:
    """A ``status.allocation.devices.config`` item of our driver (no requests: all)."""
    parameters = vfconfig(**fields)
    return {
        "source": source,
        "requests": list(requests),
        "opaque": {"driver": DRIVER, "parameters": parameters},
    }


NET_A = [entry("FromClaim", ["vf"], netAttachDefName="net-a", ifName="net1")]


def test_edited_annotation_never_decides_nad_or_names() -> None:
    """A tenant who can patch metadata points the annotation at another tenant's NAD."""
    edited = record(nad="victim/net-b", ifName="eth9", request="vf")
    body = claim(
        [result("0000-3b-02-0")],
        config=NET_A,
        annotation=allocation_record.encode([edited]),
    )
    (device,) = claim_devices(body, node="node-a", driver=DRIVER)
    assert (device.if_name, device.nad) == ("net1", ("ns", "net-a"))


DERIVED = [
    pytest.param(
        [entry("FromClass", ["vf"], netAttachDefName="class-nad", driver="vfio-pci"),
         entry("FromClaim", (), ifName="data")],
        frozenset(),
        ("data", "vfio-pci", ("ns", "class-nad")),
        id="class-then-claim-merge",
    ),
    pytest.param(
        [entry("FromClaim", ["vf"], netAttachDefName="claim-nad"),
         entry("FromClass", ["vf"], netAttachDefName="class-nad")],
        frozenset(),
        ("vfnet0", "", ("ns", "claim-nad")),
        id="claim-overrides-class-whatever-the-order",
    ),
    pytest.param(
        [entry("FromClaim", ["other"], netAttachDefName="not-mine"),
         entry("FromClaim", ["vf"], netAttachDefName="mine")],
        frozenset(),
        ("vfnet0", "", ("ns", "mine")),
        id="requests-name-which-request",
    ),
    pytest.param(
        [{"source": "FromClaim", "opaque": {"driver": "other.example.com",
                                            "parameters": {"netAttachDefName": "x"}}}],
        frozenset(),
        ("vfnet0", "", None),
        id="other-drivers-config-ignored",
    ),
    pytest.param(
        [entry("FromClaim", (), netAttachDefName="n", netAttachDefNamespace="ns")],
        frozenset(),
        ("vfnet0", "", ("ns", "n")),
        id="own-namespace-spelled-out",
    ),
    pytest.param(
        [entry("FromClaim", (), netAttachDefName="n", netAttachDefNamespace="shared")],
        frozenset({"shared"}),
        ("vfnet0", "", ("shared", "n")),
        id="cross-namespace-allowed",
    ),
    pytest.param(
        [entry("FromClaim", (), netAttachDefName="n", netAttachDefNamespace="shared")],
        frozenset({"*"}),
        ("vfnet0", "", ("shared", "n")),
        id="cross-namespace-star",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("config", "allowed", "expected"), DERIVED)
def test_device_config_comes_from_status_config(
    config: list[dict[str, Any]],
    allowed: frozenset[str],
    expected: tuple[str, str, tuple[str, str] | None],
) -> None:
    body = claim([result("0000-3b-02-0")], config=config)
    (device,) = claim_devices(body, node="node-a", driver=DRIVER, nad_namespaces=allowed)
    assert (device.if_name, device.driver, device.nad) == expected


NOT_ALLOWED = (
    "status.allocation.devices.config (request 'vf').netAttachDefNamespace: "
    "NetworkAttachmentDefinition x/n is outside the claim's namespace 'ns' and namespace "
    "'x' is not allowed; fix: create the NAD in namespace 'ns', or start the operator and "
    "every node agent with --nad-namespaces=x"
)

REFUSED = [
    pytest.param(
        [entry("FromClaim", (), netAttachDefName="n", netAttachDefNamespace="x")],
        frozenset(),
        NOT_ALLOWED,
        id="cross-namespace-not-allowed",
    ),
    pytest.param(
        [entry("FromClass", (), netAttachDefName="n", netAttachDefNamespace="x")],
        frozenset({"shared"}),
        NOT_ALLOWED,
        id="cross-namespace-other-allowed",
    ),
    pytest.param(
        [entry("FromClaim", (), netAttachDefNamespace="x")],
        frozenset(),
        "status.allocation.devices.config (request 'vf').netAttachDefName: "
        "netAttachDefNamespace 'x' is set but netAttachDefName is empty; fix: set "
        "netAttachDefName to the NetworkAttachmentDefinition's name, or remove "
        "netAttachDefNamespace",
        id="namespace-without-name",
    ),
    pytest.param(
        [entry("FromClaim", (), bogus="1")],
        frozenset(),
        "status.allocation.devices.config[0].opaque.parameters.bogus: unknown field 'bogus'; "
        "fix: remove it; VfConfig fields are driver, ifName, netAttachDefName, "
        "netAttachDefNamespace, addVhostMount, rdma",
        id="invalid-vfconfig",
    ),
]


@pytest.mark.parametrize(("config", "allowed", "message"), REFUSED)
def test_unusable_status_config_is_refused(
    config: list[dict[str, Any]], allowed: frozenset[str], message: str
) -> None:
    body = claim([result("0000-3b-02-0")], config=config)
    with pytest.raises(InvalidVfConfig) as info:
        claim_devices(body, node="node-a", driver=DRIVER, nad_namespaces=allowed)
    assert str(info.value) == message


MISMATCHES = [
    pytest.param(None, [], id="no-annotation"),
    pytest.param(allocation_record.encode([record()]), [], id="agrees"),
    pytest.param(
        allocation_record.encode([record(nad="victim/net-b")]),
        ["0000-3b-02-0: nad is 'victim/net-b' in the annotation but 'ns/net-a' "
         "in status.allocation"],
        id="nad-of-another-namespace",
    ),
    pytest.param(
        allocation_record.encode([record(ifName="eth9", pciAddress="0000:3b:02.7")]),
        ["0000-3b-02-0: pciAddress is '0000:3b:02.7' in the annotation but '0000:3b:02.0' "
         "in status.allocation",
         "0000-3b-02-0: ifName is 'eth9' in the annotation but 'net1' in status.allocation"],
        id="pci-and-ifname",
    ),
    pytest.param(
        allocation_record.encode([record(), record(device="0000-3b-02-5", request="x")]),
        ["node-a/0000-3b-02-5 is in the annotation but not allocated on node node-a in "
         "status.allocation"],
        id="extra-device",
    ),
    pytest.param(
        allocation_record.encode(
            [record(), record(node="node-b", pool="node-b", nad="victim/net-b")]
        ),
        [],
        id="other-nodes-records-ignored",
    ),
    pytest.param("not json", ["the annotation is not a list of allocation records"],
                 id="not-json"),
]  # fmt: skip


@pytest.mark.parametrize(("annotation", "expected"), MISMATCHES)
def test_annotation_mismatches(annotation: str | None, expected: list[str]) -> None:
    body = claim([result("0000-3b-02-0")], config=NET_A, annotation=annotation)
    devices = claim_devices(body, node="node-a", driver=DRIVER)
    assert annotation_mismatches(body, devices, node="node-a") == expected


@pytest.mark.parametrize(
    ("results", "selector", "expected"),
    [
        ([result("0000-3b-02-0", pool="node-b")], None, []),
        ([result("0000-3b-02-0")], ["node-b"], []),
        ([result("0000-3b-02-0", driver="other.example.com")], None, []),
        ([result("0000-3b-02-0", adminAccess=True)], None, []),
        ([result("0000-3b-02-0")], ["node-a"], ["0000-3b-02-0"]),
        ([result("0000-3b-02-0")], None, ["0000-3b-02-0"]),
        ([result("eth-vf-a"), result("0000-3b-02-0")], None, ["0000-3b-02-0"]),
    ],
    ids=[
        "other-pool",
        "pinned-to-other-node",
        "other-driver",
        "admin-access",
        "pinned-here",
        "no-selector-our-pool",
        "foreign-device-name",
    ],
)
def test_only_this_nodes_results_count(
    results: list[dict[str, Any]], selector: list[str] | None, expected: list[str]
) -> None:
    found = our_results(claim(results, node_selector=selector), node="node-a", driver=DRIVER)
    assert [r["device"] for r in found] == expected


def test_a_device_not_named_from_a_pci_address_is_not_read_as_a_vf() -> None:
    # The scheduler may allocate a device another publisher put in our pool; before,
    # reading its name as a PCI address raised and stopped the agent's start-up sweep.
    body = claim([result("eth-vf-a"), result("0000-3b-02-0", request="vf2")])
    found = claim_devices(body, node="node-a", driver=DRIVER)
    assert [d.pci_address for d in found] == ["0000:3b:02.0"]


def test_unallocated_claim_has_no_devices() -> None:
    assert claim_devices({"metadata": {"uid": "u"}, "status": {}}, node="n", driver=DRIVER) == []


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [({}, False), ({"addVhostMount": True}, True), ({"addVhostMount": False}, False)],
    ids=["unset", "true", "false"],
)
def test_add_vhost_mount_reaches_the_device(parameters: dict[str, Any], expected: bool) -> None:
    body = claim(
        [result("0000-3b-02-0")],
        config=[
            {
                "source": "FromClaim",
                "requests": [],
                "opaque": {"driver": DRIVER, "parameters": vfconfig(**parameters)},
            }
        ],
        node_selector=["node-a"],
    )
    (device,) = claim_devices(body, node="node-a", driver=DRIVER)
    assert device.vhost is expected


def test_a_subrequest_result_finds_its_parent_requests_config() -> None:
    """The scheduler chose ``net/fast``: entries naming ``net``, ``net/fast`` or no
    request apply to it; one naming the unchosen ``net/slow`` does not."""
    body = claim(
        [result("0000-3b-02-0", request="net/fast")],
        config=[
            entry("FromClass", ["net/fast"], driver="vfio-pci"),
            entry("FromClaim", ["net"], netAttachDefName="net-a"),
            entry("FromClaim", ["net/slow"], ifName="slow0", netAttachDefName="net-b"),
            entry("FromClaim", (), ifName="fast0"),
        ],
    )
    assert claim_devices(body, node="node-a", driver=DRIVER) == [
        ClaimDevice(
            "net/fast", "node-a", "0000-3b-02-0", "0000:3b:02.0", "fast0", "vfio-pci",
            ("ns", "net-a"),
        )
    ]  # fmt: skip
