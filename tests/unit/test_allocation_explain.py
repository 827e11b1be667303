"""Why nothing fits: which request, how many VFs match and are free, and the fix."""

from __future__ import annotations

from typing import Any

import pytest
from allocator_inputs import D, claim, node_vfs, request, run, slice_, vf
from sriov_dra.device_pools import REFUSAL_FIX, DeviceKey, DeviceUsage
from sriov_dra.errors import NoDeviceAvailable

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
    pytest.param(
        claim(),
        [slice_("node-a", [{"name": "eth-vf-a", "attributes": {}}])],
        frozenset(),
        'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
        f"not offered: device node-a/eth-vf-a (it has no {D}/pciAddress attribute and its "
        f"name is not made from a PCI address); fix: {FIX_NONE}; for the devices not offered: "
        f"{REFUSAL_FIX}",
        id="device-named-not-after-a-pci-address-is-not-offered",
    ),
    pytest.param(
        claim(request(selectors=['device.attributes["dra.net"].numaNode == 1'])),
        [
            slice_(
                "node-a",
                [
                    vf(0, 0),
                    {"name": "x-1", "attributes": {"dra.net/numaNode": {"int": 0}}},
                    {"name": "x-2", "attributes": {"pciAddress": {"string": "0000:09:00.2"}}},
                    *(
                        {"name": f"y-{n}", "attributes": {"dra.net/numaNode": {"int": 1}}}
                        for n in range(4)
                    ),
                ],
            )
        ],
        frozenset(),
        'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
        f"not offered: device node-a/y-0 (it has no {D}/pciAddress attribute and its name is "
        f"not made from a PCI address), device node-a/y-1 (it has no {D}/pciAddress attribute "
        f"and its name is not made from a PCI address), device node-a/y-2 (it has no "
        f"{D}/pciAddress attribute and its name is not made from a PCI address), 1 more device "
        f"likewise; fix: {FIX_NONE}; for the devices not offered: {REFUSAL_FIX}",
        id="only-refused-devices-the-request-selects-are-named",
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
