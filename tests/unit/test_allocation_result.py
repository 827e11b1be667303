"""The status.allocation written for a claim's chosen devices: results, config, nodeSelector."""

from __future__ import annotations

from allocator_inputs import CLASS, CLASSES, VFCONFIG, D, claim, node_vfs, request, run, vf
from sriov_dra.allocator import allocate
from sriov_dra.device_pools import DeviceKey, pools_from_slices


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
            {"requests": ["vf"], "opaque": {"driver": D, "parameters": VFCONFIG}},
        ],
    )
    allocation = run(c, [node_vfs("node-a")])
    assert allocation.status_allocation(c, CLASSES)["devices"]["config"] == [
        {
            "source": "FromClaim",
            "requests": ["vf/one"],
            "opaque": {"driver": D, "parameters": VFCONFIG},
        },
        {
            "source": "FromClaim",
            "requests": ["vf"],
            "opaque": {"driver": D, "parameters": VFCONFIG},
        },
    ]
