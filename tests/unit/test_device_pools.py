"""Pools from ResourceSlices (newest generation, completeness, problems) and taken devices."""

from __future__ import annotations

from typing import Any

import pytest
from allocator_inputs import D, node_vfs, slice_, vf
from sriov_dra.device_pools import DeviceKey, DeviceUsage, held_devices, pools_from_slices


def test_pools_newest_generation_and_completeness() -> None:
    slices = [
        slice_("node-a", [vf(0, 0)], generation=1),
        slice_("node-a", [vf(0, 1)], generation=2, count=2),
        slice_("node-b", [vf(0, 0)], generation=0),
        slice_("node-c", [vf(0, 0)], driver="other.example.com"),
    ]
    pools = pools_from_slices(slices, driver=D)
    assert [
        (
            p.name,
            p.generation,
            p.slices,
            p.expected_slices,
            p.complete,
            [d.key.device for d in p.devices],
        )
        for p in pools
    ] == [
        ("node-a", 2, 1, 2, False, ["0000-01-00-3"]),
        ("node-b", 0, 1, 1, True, ["0000-01-00-2"]),
    ]


def test_pool_problems() -> None:
    no_node = slice_("x", [vf(0, 0)])
    del no_node["spec"]["nodeName"]
    no_node["spec"]["allNodes"] = True
    pools = pools_from_slices([no_node, slice_("node-a", [vf(0, 0), vf(0, 0)])], driver=D)
    assert [p.problem for p in pools] == [
        "pool node-a publishes device 0000-01-00-2 more than once",
        "pool x is not node-local (no spec.nodeName)",
    ]


def test_a_device_no_agent_could_find_is_not_offered() -> None:
    devices = [
        vf(0, 0),
        {"name": "vf-a", "attributes": {}},
        {"name": "vf-b", "attributes": {f"{D}/pciAddress": {"string": "0000:01:00.4"}}},
        {"name": "0000-01-00-9", "attributes": {}},
    ]
    (pool,) = pools_from_slices([slice_("node-a", devices)], driver=D)
    assert [d.key.device for d in pool.devices] == ["0000-01-00-2"]
    assert [(d.key.device, d.refusal) for d in pool.refused] == [
        (
            "0000-01-00-9",
            f"it has no {D}/pciAddress attribute and its name is not made from a PCI address",
        ),
        (
            "vf-a",
            f"it has no {D}/pciAddress attribute and its name is not made from a PCI address",
        ),
        (
            "vf-b",
            "its name is not made from a PCI address, and the node agent finds the VF by its name",
        ),
    ]
    assert pool.problem == ""


def result(device: str, driver: str = D, **extra: Any) -> dict[str, Any]:
    return {"request": "vf", "driver": driver, "pool": "p", "device": device, **extra}


@pytest.mark.parametrize(
    ("results", "held"),
    [
        ([result("d1"), result("d2", adminAccess=True)], {DeviceKey(D, "p", "d1")}),
        ([result("d1", driver="gpu.example.com")], {DeviceKey("gpu.example.com", "p", "d1")}),
        (None, set()),
    ],
    ids=["admin-access-takes-nothing", "any-driver", "no-allocation"],
)
def test_held_devices(results: list[dict[str, Any]] | None, held: set[DeviceKey]) -> None:
    status = {} if results is None else {"allocation": {"devices": {"results": results}}}
    assert held_devices({"metadata": {"name": "c"}, "status": status}) == held


def test_device_usage() -> None:
    usage = DeviceUsage({DeviceKey(D, "node-a", "0000-01-00-2"): "ns/a"})
    pool = pools_from_slices([node_vfs("node-a")], driver=D)[0]
    assert usage.free_in(pool) == 3
    usage.add(DeviceKey(D, "node-a", "0000-01-00-3"), "ns/b")
    usage.add(DeviceKey(D, "node-a", "gone"), "ns/c")
    assert usage.free_in(pool) == 2
    usage.discard(DeviceKey(D, "node-a", "0000-01-00-2"))
    usage.discard(DeviceKey(D, "node-a", "never-held"))
    assert (usage.free_in(pool), len(usage), usage.owner(DeviceKey(D, "node-a", "gone"))) == (
        3,
        2,
        "ns/c",
    )
