"""The pure allocator: pools, taken devices, requests, constraints, node choice, status."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sriov_dra.allocator import (
    DeviceKey,
    DeviceUsage,
    allocate,
    allocated_devices,
    pools_from_slices,
)
from sriov_dra.errors import NoDeviceAvailable, SelectorError

D = "sriovnetwork.k8snetworkplumbingwg.io"
VFCONFIG = {"apiVersion": f"{D}/v1alpha1", "kind": "VfConfig"}
CLASS = {
    "metadata": {"name": D},
    "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{D}"'}}]},
}
CLASSES = {D: CLASS}


def vf(pf: int, index: int, numa: int = 0, **extra: Any) -> dict[str, Any]:
    """A VF device dict: PF ens1f<pf>, VF <index>."""
    name = f"0000-0{pf + 1}-00-{index + 2}"
    attributes: dict[str, Any] = {
        "PFName": {"string": f"ens1f{pf}"},
        "vfID": {"int": index},
        "dra.net/numaNode": {"int": numa},
        **extra,
    }
    return {"name": name, "attributes": attributes}


def slice_(
    node: str,
    devices: list[dict[str, Any]],
    *,
    pool: str | None = None,
    generation: int = 0,
    count: int = 1,
    driver: str = D,
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{node}-{generation}"},
        "spec": {
            "driver": driver,
            "nodeName": node,
            "pool": {"name": pool or node, "generation": generation, "resourceSliceCount": count},
            "devices": devices,
        },
    }


def node_vfs(node: str, pfs: int = 2, per_pf: int = 2, numa_by_pf: bool = False) -> dict[str, Any]:
    return slice_(
        node,
        [vf(p, i, numa=p if numa_by_pf else 0) for p in range(pfs) for i in range(per_pf)],
    )


def request(
    name: str = "vf",
    count: int = 1,
    selectors: list[str] | None = None,
    mode: str = "ExactCount",
    **extra: Any,
) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": D, "allocationMode": mode, **extra}
    if mode == "ExactCount":
        exactly["count"] = count
    if selectors:
        exactly["selectors"] = [{"cel": {"expression": e}} for e in selectors]
    return {"name": name, "exactly": exactly}


def claim(
    *requests: dict[str, Any],
    constraints: list[dict[str, Any]] | None = None,
    config: list[dict[str, Any]] | None = None,
    name: str = "c",
) -> dict[str, Any]:
    devices: dict[str, Any] = {"requests": list(requests) or [request()]}
    if constraints:
        devices["constraints"] = constraints
    if config:
        devices["config"] = config
    return {"metadata": {"namespace": "ns", "name": name}, "spec": {"devices": devices}}


def picks(allocation: Any) -> list[tuple[str, str, str]]:
    return [(r["request"], r["pool"], r["device"]) for r in allocation.results]


def run(c: dict[str, Any], slices: list[dict[str, Any]], in_use: Any = frozenset()) -> Any:
    return allocate(
        c,
        device_classes=CLASSES,
        pools=pools_from_slices(slices, driver=D),
        in_use=in_use,
        driver=D,
    )


TWO_NODES = [node_vfs("node-b"), node_vfs("node-a")]

GOOD = [
    pytest.param(
        claim(),
        TWO_NODES,
        frozenset(),
        [("vf", "node-a", "0000-01-00-2")],
        id="first-node-by-name-first-device",
    ),
    pytest.param(
        claim(),
        TWO_NODES,
        {DeviceKey(D, "node-a", f"0000-0{p}-00-{i}") for p in (1, 2) for i in (2, 3)},
        [("vf", "node-b", "0000-01-00-2")],
        id="node-a-full",
    ),
    pytest.param(
        claim(request(count=3)),
        TWO_NODES,
        frozenset(),
        [
            ("vf", "node-a", "0000-01-00-2"),
            ("vf", "node-a", "0000-01-00-3"),
            ("vf", "node-a", "0000-02-00-2"),
        ],
        id="count-3",
    ),
    pytest.param(
        claim(request(count=2)),
        TWO_NODES,
        {
            DeviceKey(D, "node-a", "0000-01-00-2"),
            DeviceKey(D, "node-a", "0000-02-00-2"),
            DeviceKey(D, "node-a", "0000-02-00-3"),
        },
        [("vf", "node-b", "0000-01-00-2"), ("vf", "node-b", "0000-01-00-3")],
        id="all-on-one-node",
    ),
    pytest.param(
        claim(request(count=2), constraints=[{"matchAttribute": f"{D}/PFName"}]),
        [slice_("node-a", [vf(0, 0), vf(1, 0), vf(1, 1)])],
        frozenset(),
        [("vf", "node-a", "0000-02-00-2"), ("vf", "node-a", "0000-02-00-3")],
        id="same-pf-backtracks",
    ),
    pytest.param(
        claim(request("a"), request("b"), constraints=[{"matchAttribute": "dra.net/numaNode"}]),
        [node_vfs("node-a", numa_by_pf=True)],
        {DeviceKey(D, "node-a", "0000-01-00-3")},
        [("a", "node-a", "0000-02-00-2"), ("b", "node-a", "0000-02-00-3")],
        id="same-numa-across-requests",
    ),
    pytest.param(
        claim(
            request("a"),
            request("b"),
            constraints=[{"matchAttribute": "dra.net/numaNode", "requests": ["b"]}],
        ),
        [node_vfs("node-a", numa_by_pf=True)],
        {DeviceKey(D, "node-a", "0000-01-00-3")},
        [("a", "node-a", "0000-01-00-2"), ("b", "node-a", "0000-02-00-2")],
        id="constraint-limited-to-request",
    ),
    pytest.param(
        claim(request(selectors=[f'device.attributes["{D}"].PFName == "ens1f1"'])),
        TWO_NODES,
        frozenset(),
        [("vf", "node-a", "0000-02-00-2")],
        id="request-selector",
    ),
    pytest.param(
        claim(request(mode="All")),
        [node_vfs("node-a", pfs=1)],
        frozenset(),
        [("vf", "node-a", "0000-01-00-2"), ("vf", "node-a", "0000-01-00-3")],
        id="all-mode",
    ),
    pytest.param(
        claim(
            {
                "name": "vf",
                "firstAvailable": [
                    {"name": "big", "deviceClassName": D, "count": 3},
                    {"name": "small", "deviceClassName": D, "count": 1},
                ],
            }
        ),
        [node_vfs("node-a", pfs=1)],
        frozenset(),
        [("vf/small", "node-a", "0000-01-00-2")],
        id="first-available-falls-back",
    ),
    pytest.param(
        claim(
            {
                "name": "vf",
                "firstAvailable": [
                    {
                        "name": "pf1",
                        "deviceClassName": D,
                        "selectors": [
                            {"cel": {"expression": f'device.attributes["{D}"].PFName == "ens1f1"'}}
                        ],
                    },
                    {"name": "any", "deviceClassName": D},
                ],
            }
        ),
        TWO_NODES,
        frozenset(),
        [("vf/pf1", "node-a", "0000-02-00-2")],
        id="first-available-first",
    ),
    pytest.param(
        claim(request(adminAccess=True)),
        [node_vfs("node-a", pfs=1, per_pf=1)],
        {DeviceKey(D, "node-a", "0000-01-00-2")},
        [("vf", "node-a", "0000-01-00-2")],
        id="admin-access-uses-taken",
    ),
    pytest.param(
        claim(),
        [
            slice_("node-a", [vf(0, 0)], generation=1),
            slice_("node-a", [vf(0, 0), vf(0, 1)], generation=2, count=2),
            node_vfs("node-b", pfs=1),
        ],
        frozenset(),
        [("vf", "node-b", "0000-01-00-2")],
        id="incomplete-newest-generation-skipped-for-complete-pool",
    ),
]


@pytest.mark.parametrize(("c", "slices", "in_use", "expected"), GOOD)
def test_allocate(
    c: dict[str, Any],
    slices: list[dict[str, Any]],
    in_use: Any,
    expected: list[tuple[str, str, str]],
) -> None:
    assert picks(run(c, slices, in_use)) == expected
    assert picks(run(c, slices, DeviceUsage(in_use))) == expected


FIX_BUSY = (
    "delete a claim that holds a matching VF, publish more VFs, or relax the request's selectors"
)
FIX_NONE = (
    "no published VF matches: check the DeviceClass and request selectors, or publish matching VFs"
)
WAIT = "; or just wait: the claim is retried by itself as soon as the pools named are complete"
ALL_A = {DeviceKey(D, "node-a", f"0000-0{p}-00-{i}") for p in (1, 2) for i in (2, 3)}

BAD = [
    pytest.param(
        claim(),
        [node_vfs("node-a")],
        ALL_A,
        f'spec.devices.requests[0]: no free VF matches request "vf": 4 VFs match, 0 free; '
        f"fix: {FIX_BUSY}",
        id="all-taken",
    ),
    pytest.param(
        claim(request(selectors=['device.attributes["dra.net"].numaNode == 7'])),
        [node_vfs("node-a")],
        frozenset(),
        f'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
        f"fix: {FIX_NONE}",
        id="nothing-matches",
    ),
    pytest.param(
        claim(request(count=3)),
        [node_vfs("node-a", pfs=1), node_vfs("node-b", pfs=1)],
        frozenset(),
        'spec.devices.requests[0]: no free VF matches request "vf": 4 VFs match, 4 free; '
        f"3 are needed on one node; fix: {FIX_BUSY}",
        id="count-spread-over-nodes",
    ),
    pytest.param(
        claim(request(mode="All")),
        [node_vfs("node-a", pfs=1)],
        {DeviceKey(D, "node-a", "0000-01-00-2")},
        'spec.devices.requests[0]: no free VF matches request "vf": 2 VFs match, 1 free; '
        f"All needs every matching VF of a node free; fix: {FIX_BUSY}",
        id="all-mode-one-taken",
    ),
    pytest.param(
        claim(request(mode="All")),
        [slice_("node-a", [vf(0, 0)], count=2)],
        frozenset(),
        'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
        "All needs every matching VF of a node free; not counted until complete: pool node-a "
        f"is being republished (1 of 2 slices); fix: {FIX_NONE}{WAIT}",
        id="all-mode-incomplete-pool",
    ),
    pytest.param(
        claim(),
        [
            slice_("node-a", [vf(0, 0)], generation=1),
            slice_("node-a", [vf(0, 0), vf(0, 1)], generation=2, count=3),
        ],
        frozenset(),
        'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; not '
        "counted until complete: pool node-a is being republished (1 of 3 slices); "
        f"fix: {FIX_NONE}{WAIT}",
        id="incomplete-newest-generation-serves-nothing",
    ),
    pytest.param(
        claim(),
        [node_vfs("node-z", pfs=1)] + [slice_(f"node-{n}", [vf(0, 0)], count=2) for n in "abcde"],
        {DeviceKey(D, "node-z", "0000-01-00-2"), DeviceKey(D, "node-z", "0000-01-00-3")},
        'spec.devices.requests[0]: no free VF matches request "vf": 2 VFs match, 0 free; not '
        "counted until complete: pool node-a is being republished (1 of 2 slices), pool node-b "
        "is being republished (1 of 2 slices), pool node-c is being republished (1 of 2 "
        f"slices), 2 more pools likewise; fix: {FIX_BUSY}{WAIT}",
        id="incomplete-pools-named-up-to-three",
    ),
    pytest.param(
        claim(request("a"), request("b"), constraints=[{"matchAttribute": f"{D}/PFName"}]),
        [node_vfs("node-a"), slice_("node-b", [vf(0, 0)], count=2)],
        {DeviceKey(D, "node-a", "0000-01-00-2"), DeviceKey(D, "node-a", "0000-02-00-2")},
        f"spec.devices: no node has free VFs for all requests together with matchAttribute "
        f'{D}/PFName: request "a": 4 VFs match, 2 free; request "b": 4 VFs match, 2 free; not '
        "counted until complete: pool node-b is being republished (1 of 2 slices); fix: free "
        f"VFs on one node, or relax spec.devices.constraints and the selectors{WAIT}",
        id="combination-names-incomplete-pool",
    ),
    pytest.param(
        claim(request(count=2), constraints=[{"matchAttribute": f"{D}/PFName"}]),
        [node_vfs("node-a")],
        {DeviceKey(D, "node-a", "0000-01-00-2"), DeviceKey(D, "node-a", "0000-02-00-2")},
        f"spec.devices: no node has free VFs for all requests together with matchAttribute "
        f'{D}/PFName: request "vf": 4 VFs match, 2 free; fix: free VFs on one node, or relax '
        "spec.devices.constraints and the selectors",
        id="constraint-unsatisfiable",
    ),
    pytest.param(
        claim(request(count=1), constraints=[{"matchAttribute": "example.com/missing"}]),
        [node_vfs("node-a")],
        frozenset(),
        "spec.devices: no node has free VFs for all requests together with matchAttribute "
        'example.com/missing: request "vf": 4 VFs match, 4 free; fix: free VFs on one node, or '
        "relax spec.devices.constraints and the selectors",
        id="constraint-attribute-missing",
    ),
    pytest.param(
        claim({"name": "vf", "exactly": {"deviceClassName": "nope"}}),
        [node_vfs("node-a")],
        frozenset(),
        "spec.devices.requests[0].exactly.deviceClassName: DeviceClass 'nope' does not exist; "
        "fix: create DeviceClass 'nope' or name an existing one",
        id="class-missing",
    ),
    pytest.param(
        claim(),
        [],
        frozenset(),
        f'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
        f"fix: {FIX_NONE}",
        id="no-slices",
    ),
    pytest.param(
        claim(),
        [slice_("node-a", [vf(0, 0), vf(0, 0)])],
        frozenset(),
        f'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
        f"fix: {FIX_NONE}",
        id="invalid-pool-skipped",
    ),
]


@pytest.mark.parametrize(("c", "slices", "in_use", "message"), BAD)
def test_no_device(
    c: dict[str, Any], slices: list[dict[str, Any]], in_use: Any, message: str
) -> None:
    for usage in (in_use, DeviceUsage(in_use)):
        with pytest.raises(NoDeviceAvailable) as info:
            run(c, slices, usage)
        assert str(info.value) == message
        assert info.value.retryable


SELECTOR_ERRORS = [
    pytest.param(
        claim(request(selectors=['device.attributes["dra.net"].missing == 1'])),
        "spec.devices.requests[0].exactly.selectors[0].cel.expression: device "
        "node-a/0000-01-00-2: CEL runtime error: no such key: 'missing'; fix: guard lookups "
        'that may be missing, e.g. "name" in device.attributes["domain"] && ...',
        id="runtime-error-is-reported",
    ),
    pytest.param(
        claim(request(selectors=["device.driver =="])),
        "spec.devices.requests[0].exactly.selectors[0].cel.expression: CEL syntax error: ",
        id="syntax-error",
    ),
]


@pytest.mark.parametrize(("c", "message"), SELECTOR_ERRORS)
def test_selector_errors(c: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError) as info:
        run(c, [node_vfs("node-a")])
    assert str(info.value).startswith(message)
    if "syntax" not in message:
        assert str(info.value) == message


def test_class_selector_error_names_class() -> None:
    classes = {D: {"spec": {"selectors": [{"cel": {"expression": "device.driver"}}]}}}
    with pytest.raises(SelectorError) as info:
        allocate(
            claim(),
            device_classes=classes,
            pools=pools_from_slices([node_vfs("node-a")], driver=D),
            in_use=(),
            driver=D,
        )
    assert str(info.value) == (
        f"DeviceClass {D} spec.selectors[0].cel.expression: device node-a/0000-01-00-2: must "
        "evaluate to bool, got str 'sriovnetwork.k8snetworkplumbingwg.io'; fix: make the "
        "expression a condition, e.g. compare with =="
    )


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


def test_allocated_devices() -> None:
    claims = [
        {
            "metadata": {"namespace": "ns", "name": "a"},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {"request": "vf", "driver": D, "pool": "p", "device": "d1"},
                            {
                                "request": "vf",
                                "driver": D,
                                "pool": "p",
                                "device": "d2",
                                "adminAccess": True,
                            },
                        ]
                    }
                }
            },
        },
        {"metadata": {"namespace": "ns", "name": "b"}, "status": {}},
        {
            "metadata": {"namespace": "other", "name": "c"},
            "status": {
                "allocation": {
                    "devices": {
                        "results": [
                            {
                                "request": "x",
                                "driver": "gpu.example.com",
                                "pool": "p",
                                "device": "d1",
                            }
                        ]
                    }
                }
            },
        },
    ]
    assert allocated_devices(claims) == {
        DeviceKey(D, "p", "d1"): "ns/a",
        DeviceKey("gpu.example.com", "p", "d1"): "other/c",
    }


def test_status_allocation() -> None:
    vf_config = {"driver": D, "parameters": {**VFCONFIG, "ifName": "net1"}}
    class_config = {"driver": D, "parameters": {**VFCONFIG, "netAttachDefName": "n"}}
    classes = {D: {**CLASS, "spec": {**CLASS["spec"], "config": [{"opaque": class_config}]}}}
    c = claim(
        request("vf"),
        config=[
            {"requests": ["vf"], "opaque": vf_config},
            {"requests": ["other"], "opaque": vf_config},
            {"opaque": vf_config},
        ],
    )
    allocation = allocate(
        c,
        device_classes=classes,
        in_use=(),
        driver=D,
        pools=pools_from_slices([node_vfs("node-a")], driver=D),
    )
    assert allocation.status_allocation(c, classes) == {
        "devices": {
            "results": [{"request": "vf", "driver": D, "pool": "node-a", "device": "0000-01-00-2"}],
            "config": [
                {"source": "FromClass", "requests": ["vf"], "opaque": class_config},
                {"source": "FromClaim", "requests": ["vf"], "opaque": vf_config},
                {"source": "FromClaim", "opaque": vf_config},
            ],
        },
        "nodeSelector": {
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}
            ]
        },
    }
    assert allocation.devices == [vf(0, 0)]
    assert allocation.keys == [DeviceKey(D, "node-a", "0000-01-00-2")]


def test_status_allocation_subrequest_config() -> None:
    c = claim(
        {"name": "vf", "firstAvailable": [{"name": "one", "deviceClassName": D}]},
        config=[
            {"requests": ["vf/one"], "opaque": {"driver": D, "parameters": VFCONFIG}},
            {"requests": ["vf/two"], "opaque": {"driver": D, "parameters": VFCONFIG}},
        ],
    )
    allocation = run(c, [node_vfs("node-a")])
    assert allocation.status_allocation(c, CLASSES)["devices"]["config"] == [
        {
            "source": "FromClaim",
            "requests": ["vf/one"],
            "opaque": {"driver": D, "parameters": VFCONFIG},
        },
    ]


def test_selector_results_memoized() -> None:
    pools = pools_from_slices([node_vfs("node-a")], driver=D)
    c = claim(request(selectors=['device.attributes["dra.net"].numaNode == 0']))
    allocate(c, device_classes=CLASSES, pools=pools, in_use=(), driver=D)
    memo = pools[0].devices[0].memo
    assert memo == {
        f'device.driver == "{D}"': True,
        'device.attributes["dra.net"].numaNode == 0': True,
    }


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


@settings(max_examples=60, deadline=None)
@given(
    taken=st.sets(
        st.tuples(st.sampled_from(["node-a", "node-b"]), st.integers(0, 1), st.integers(0, 2))
    ),
    counts=st.lists(st.integers(1, 3), min_size=1, max_size=3),
    same_pf=st.booleans(),
)
def test_never_taken_never_twice(
    taken: set[tuple[str, int, int]], counts: list[int], same_pf: bool
) -> None:
    slices = [node_vfs("node-a", per_pf=3), node_vfs("node-b", per_pf=3)]
    in_use = {DeviceKey(D, n, f"0000-0{p + 1}-00-{i + 2}") for n, p, i in taken}
    c = claim(
        *(request(f"r{i}", count=n) for i, n in enumerate(counts)),
        constraints=[{"matchAttribute": f"{D}/PFName"}] if same_pf else None,
    )
    try:
        allocation = run(c, slices, in_use)
    except NoDeviceAvailable:
        # Then no node may have room for the total count (necessary condition).
        if same_pf:
            free = [
                3 - sum(1 for t in taken if t[:2] == (n, p))
                for n in ("node-a", "node-b")
                for p in (0, 1)
            ]
        else:
            free = [6 - sum(1 for t in taken if t[0] == n) for n in ("node-a", "node-b")]
        assert max(free) < sum(counts)
        return
    keys = allocation.keys
    assert len(keys) == sum(counts)
    assert len(set(keys)) == len(keys)
    assert not set(keys) & in_use
    assert {k.pool for k in keys} == {allocation.node}
    if same_pf:
        assert len({d["attributes"]["PFName"]["string"] for d in allocation.devices}) == 1
