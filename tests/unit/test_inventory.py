"""The inventory view: VF states, who holds what, waiting claims, paging and bad queries."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from allocator_inputs import D, node_vfs
from inventory_inputs import NET, claim, entry
from sriov_dra.device_pools import pools_from_slices
from sriov_dra.inventory import (
    Inventory,
    InventoryQueryError,
    NodeNotFound,
    build_inventory,
    parse_query,
    select,
)


def inventory(
    claims: list[dict[str, Any]],
    *,
    nodes: set[str] | None = None,
    last_events: Mapping[str, tuple[str, str]] | None = None,
    slices: list[dict[str, Any]] | None = None,
) -> Inventory:
    return build_inventory(
        pools=pools_from_slices(slices if slices is not None else [node_vfs("node-a")], driver=D),
        claims=claims,
        nodes=nodes,
        last_events=last_events or {},
        ours=lambda c: not c["metadata"]["name"].startswith("gpu"),
        driver=D,
    )


# Devices of node_vfs("node-a"): PF ens1f0 has 0000-01-00-2 (VF 0) and 0000-01-00-3 (VF 1),
# PF ens1f1 has 0000-02-00-2 and 0000-02-00-3.


def states(inv: Inventory) -> dict[str, str]:
    return {vf.device: vf.state for n in inv.nodes for pf in n.pfs for vf in pf.vfs}


def test_each_state_comes_from_allocation_status_devices_and_deletion() -> None:
    inv = inventory(
        [
            claim("allocated", "0000-01-00-2"),
            claim("configured", "0000-01-00-3",
                  status_devices=[entry("0000-01-00-3", configured="True")]),
            claim("attached", "0000-02-00-2", pods=("pod0",),
                  status_devices=[entry("0000-02-00-2", configured="True", network=NET)]),
        ]
    )  # fmt: skip
    assert states(inv) == {
        "0000-01-00-2": "allocated",
        "0000-01-00-3": "configured",
        "0000-02-00-2": "attached",
        "0000-02-00-3": "free",
    }
    assert inv.summary.states == {
        "free": 1, "allocated": 1, "configured": 1, "attached": 1, "releasing": 0,
    }  # fmt: skip
    [node] = inv.nodes
    assert (node.name, node.total, node.free) == ("node-a", 4, 1)
    assert [(pf.name, pf.total, pf.free) for pf in node.pfs] == [("ens1f0", 2, 0), ("ens1f1", 2, 1)]


def test_an_attached_vf_shows_claim_pod_nad_ip_and_mac() -> None:
    inv = inventory(
        [claim("static-vf-claim", "0000-02-00-2", pods=("pod0",),
               status_devices=[entry("0000-02-00-2", configured="True", network=NET)])]
    )  # fmt: skip
    vf = inv.nodes[0].pfs[1].vfs[0]
    assert vf.model_dump() == {
        "device": "0000-02-00-2",
        "pci_address": "0000:02:00.2",
        "vf_id": 0,
        "state": "attached",
        "claim": "ns/static-vf-claim",
        "claim_uid": "uid-static-vf-claim",
        "pods": ["pod0"],
        "nad": "ns/nad-a",
        "if_name": "net1",
        "ips": ["10.0.3.2/24"],
        "mac": "02:00:00:00:00:01",
        "detail": "",
    }


def test_a_failed_configuration_stays_allocated_and_says_why() -> None:
    failed = entry("0000-01-00-2", configured="False", reason="VfProgrammingFailed",
                   message="vlan 5: operation not supported")  # fmt: skip
    inv = inventory([claim("c", "0000-01-00-2", status_devices=[failed])])
    vf = inv.nodes[0].pfs[0].vfs[0]
    assert (vf.state, vf.detail) == (
        "allocated",
        "VfProgrammingFailed: vlan 5: operation not supported",
    )


def test_before_the_agent_answers_nad_and_ifname_come_from_the_allocation_annotation() -> None:
    record = {
        "request": "vf", "pool": "node-a", "device": "0000-01-00-2", "node": "node-a",
        "pf": "ens1f0", "pciAddress": "0000:01:00.2", "vfIndex": 0, "ifName": "net7",
        "nad": "ns/from-annotation",
    }  # fmt: skip
    inv = inventory([claim("c", "0000-01-00-2", annotation=[record])])
    vf = inv.nodes[0].pfs[0].vfs[0]
    assert (vf.state, vf.nad, vf.if_name) == ("allocated", "ns/from-annotation", "net7")


def test_a_deleted_claim_releases_its_vf_and_waits_for_the_release() -> None:
    inv = inventory(
        [claim("gone", "0000-01-00-2", deleting=True)],
        last_events={"uid-gone": ("AwaitingRelease", "waits for node-a's agent")},
    )
    assert states(inv)["0000-01-00-2"] == "releasing"
    [waiting] = inv.waiting
    assert (waiting.claim, waiting.waits_for, waiting.reason, waiting.warning) == (
        "ns/gone", "release", "AwaitingRelease", False,
    )  # fmt: skip


def test_a_vf_the_agent_reported_released_says_the_operator_hands_it_on() -> None:
    released = {
        "driver": D, "pool": "node-a", "device": "0000-01-00-2",
        "conditions": [{"type": "Released", "status": "True", "reason": "Released", "message": ""}],
    }  # fmt: skip
    inv = inventory(
        [
            claim("gone", "0000-01-00-2", deleting=True, status_devices=[released]),
            claim("going", "0000-01-00-3", deleting=True),
        ]
    )
    details = {vf.claim: vf.detail for vf in inv.nodes[0].pfs[0].vfs}
    assert details == {
        "ns/gone": "the agent reset it; the operator hands it on",
        "ns/going": "the claim is deleted; the node agent detaches and resets the VF",
    }


def test_unallocated_claims_of_ours_wait_with_the_operators_last_warning() -> None:
    inv = inventory(
        [claim("no-nad"), claim("gpu-claim"), claim("quiet"), claim("done", "0000-01-00-2")],
        last_events={"uid-no-nad": ("NetworkAttachmentDefinitionNotFound", "nad x is missing")},
    )
    assert [(w.claim, w.reason, w.warning) for w in inv.waiting] == [
        ("ns/no-nad", "NetworkAttachmentDefinitionNotFound", True),
        ("ns/quiet", "", False),
    ]
    assert inv.summary.waiting == 2


def test_every_node_is_listed_even_without_vfs_and_a_slice_without_node_says_so() -> None:
    inv = inventory([], nodes={"node-b", "control-plane"})
    assert [(n.name, n.total, n.node_missing) for n in inv.nodes] == [
        ("control-plane", 0, False),
        ("node-a", 4, True),
        ("node-b", 0, False),
    ]


def test_a_vf_held_but_in_no_slice_is_shown_under_its_node() -> None:
    record = {
        "request": "vf", "pool": "node-gone", "device": "0000-09-00-2", "node": "node-gone",
        "pf": "ens9", "pciAddress": "0000:09:00.2", "vfIndex": 0, "ifName": "net1", "nad": "",
    }  # fmt: skip
    held = claim("orphan", "0000-09-00-2", node="node-gone", annotation=[record])
    inv = inventory([held])
    node = next(n for n in inv.nodes if n.name == "node-gone")
    vf = node.pfs[0].vfs[0]
    assert (node.pfs[0].name, vf.pci_address, vf.claim) == (
        "(not published)", "0000:09:00.2", "ns/orphan",
    )  # fmt: skip
    assert "in no ResourceSlice" in vf.detail


def test_a_vf_in_two_allocations_names_both_claims() -> None:
    inv = inventory([claim("b", "0000-01-00-2"), claim("a", "0000-01-00-2")])
    vf = inv.nodes[0].pfs[0].vfs[0]
    assert (vf.claim, vf.detail) == ("ns/a", "also in the allocation of ns/b")


def test_an_incomplete_pool_is_a_problem_of_its_node() -> None:
    half = node_vfs("node-a")
    half["spec"]["pool"]["resourceSliceCount"] = 2
    inv = inventory([], slices=[half])
    assert "1 of 2 ResourceSlices" in inv.nodes[0].problems[0]


def test_hostile_names_are_kept_verbatim_for_the_templates_to_escape() -> None:
    # A claim name may hold dots and digits only, but a Warning message is free text.
    hostile = "<script>alert('x')</script>"
    inv = inventory([claim("a.b-1")], last_events={"uid-a.b-1": ("InvalidVfConfig", hostile)})
    assert inv.waiting[0].message == hostile
    assert json.loads(inv.model_dump_json())["waiting"][0]["message"] == hostile


def many_nodes(count: int) -> Inventory:
    return inventory([], slices=[node_vfs(f"node-{i:04d}", pfs=1, per_pf=1) for i in range(count)])


def test_pages_cover_every_node_once_and_the_summary_stays_whole() -> None:
    inv = many_nodes(1000)
    seen: list[str] = []
    page = select(inv, page=1, per_page=50)
    assert page.pages == 20
    for number in range(1, 21):
        page = select(inv, page=number, per_page=50)
        assert page.summary.nodes == 1000
        seen += [n.name for n in page.nodes]
    assert seen == [n.name for n in inv.nodes]


def test_no_page_means_every_node_and_a_node_by_name_means_that_one() -> None:
    inv = many_nodes(3)
    assert len(select(inv).nodes) == 3
    assert [n.name for n in select(inv, node="node-0001").nodes] == ["node-0001"]


def test_unknown_node_and_page_past_the_end_are_refused_with_the_fix() -> None:
    inv = many_nodes(3)
    with pytest.raises(NodeNotFound) as missing:
        select(inv, node="node-9")
    assert missing.value.field == "node"
    with pytest.raises(InventoryQueryError) as past:
        select(inv, page=2, per_page=50)
    assert "use a page from 1 to 1" in past.value.describe()


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ([("page", "0")], "page"),
        ([("page", "-1")], "page"),
        ([("page", "x" * 100)], "page"),
        ([("page", "99999999999999")], "page"),
        ([("per_page", "1001")], "per_page"),
        ([("node", "a"), ("node", "b")], "node"),
        ([("delete", "all")], "delete"),
    ],
)
def test_bad_query_parameters_name_the_parameter(query: list[tuple[str, str]], field: str) -> None:
    with pytest.raises(InventoryQueryError) as refused:
        parse_query(query)
    assert refused.value.field == field
    assert refused.value.fix


def test_query_parameters_are_read() -> None:
    assert parse_query([]) == ("", None, 50)
    assert parse_query([("page", "3"), ("per_page", "10")]) == ("", 3, 10)
    assert parse_query([("per_page", "10")]) == ("", 1, 10)
    assert parse_query([("node", "node-1")]) == ("node-1", None, 50)
