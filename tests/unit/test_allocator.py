"""The pure allocator: requests, constraints, selectors, node choice, and never a device twice."""

from __future__ import annotations

from typing import Any

import pytest
from allocator_inputs import CLASSES, D, claim, node_vfs, picks, request, run, slice_, vf
from hypothesis import given, settings
from hypothesis import strategies as st
from sriov_dra.allocator import allocate
from sriov_dra.cel_selectors import compile_selector
from sriov_dra.device_pools import DeviceKey, DeviceUsage, pools_from_slices
from sriov_dra.errors import NoDeviceAvailable, SelectorError

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


def test_selector_results_memoized() -> None:
    """A selector reading the whole attribute map is memoized per device."""
    pools = pools_from_slices([node_vfs("node-a")], driver=D)
    c = claim(request(selectors=['"numaNode" in device.attributes["dra.net"]']))
    allocate(c, device_classes=CLASSES, pools=pools, in_use=(), driver=D)
    assert pools[0].devices[0].memo == {'"numaNode" in device.attributes["dra.net"]': True}


def test_selector_results_shared_by_the_attributes_read() -> None:
    """A selector reading named attributes is evaluated once per their values, not per
    device (a node name on 64 VFs: once), and each device still gets its own answer."""
    expression = f'device.attributes["{D}"].nodeName == "node-b"'
    slices = [
        slice_(node, [vf(0, i, nodeName={"string": node}) for i in range(3)])
        for node in ("node-a", "node-b")
    ]
    pools = pools_from_slices(slices, driver=D)
    c = claim(request(selectors=[expression]))
    assert picks(allocate(c, device_classes=CLASSES, pools=pools, in_use=(), driver=D)) == [
        ("vf", "node-b", "0000-01-00-2")
    ]
    assert all(not d.memo for p in pools for d in p.devices)
    shared = compile_selector(expression).shared
    assert shared[(D, (("string", "node-a"),))] is False
    assert shared[(D, (("string", "node-b"),))] is True


def test_shared_result_not_given_to_a_device_whose_context_fails() -> None:
    """A device with an attribute that cannot be converted (a bad version) gets its own
    evaluation and error, though another device with the same PF name got True."""
    expression = f'device.attributes["{D}"].PFName == "ens1f0"'
    good = vf(0, 0)
    bad = vf(0, 1, driverVersion={"version": "not-a-version"})
    pools = pools_from_slices([slice_("node-a", [good, bad])], driver=D)
    taken = {DeviceKey(D, "node-a", good["name"])}
    c = claim(request(selectors=[expression]))
    with pytest.raises(SelectorError, match="not a semantic version"):
        allocate(c, device_classes=CLASSES, pools=pools, in_use=taken, driver=D)


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


def test_full_nodes_skipped_until_a_release() -> None:
    """After node-a is full, decisions start at node-b; a release on node-a makes it first
    again, and a claim that needs no free device (adminAccess) still gets the full node."""
    pools = pools_from_slices([node_vfs("node-a", pfs=1, per_pf=1), node_vfs("node-b")], driver=D)
    usage = DeviceUsage()

    def one(name: str, **extra: Any) -> Any:
        result = allocate(
            claim(request(**extra), name=name),
            device_classes=CLASSES,
            pools=pools,
            in_use=usage,
            driver=D,
        )
        for key in result.keys:
            if not extra:
                usage.add(key, name)
        return result

    assert one("c1").node == "node-a"
    assert one("c2").node == "node-b"
    assert one("c3").node == "node-b"
    assert one("admin", adminAccess=True).node == "node-a"
    usage.discard(DeviceKey(D, "node-a", "0000-01-00-2"))
    assert one("c4").node == "node-a"
