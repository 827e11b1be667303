"""The operator against ResourceSlices our node agent did not publish.

A device of our driver whose name is not made from a PCI address (and that has no
``pciAddress``) could be allocated but never prepared: no node agent finds its VF.
Before, every reconcile of a claim given one raised ValueError, retried every 10 s
with no Event. Now it is not offered: the claim that could only use it is told why
and the fix, and the operator keeps allocating other claims.
"""

from __future__ import annotations

import pytest
from operator_harness import (
    OperatorProcess,
    allocated_devices,
    apply,
    claim,
    claim_manifest,
    device_class_manifest,
    events_for,
    expect_event,
    release_all,
    slice_manifest,
    vfconfig,
    wait_allocated,
)
from sriov_dra.constants import ATTR_PCI_ADDRESS, ATTR_PF_NAME, DRIVER_NAME, PREFIX
from sriov_dra.device_pools import REFUSAL_FIX
from sriov_dra.naming import device_name
from sriov_dra_devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration


def test_a_device_no_agent_could_find_is_explained_and_the_others_are_served(
    cluster: DevCluster, operator: OperatorProcess, namespace: str
) -> None:
    group = f"{namespace}-vfs"
    node = cluster.node_names[0]
    ours = slice_manifest(f"{group}-ours", node, f"{node}.{group}", group, 1)
    foreign = slice_manifest(f"{group}-foreign", node, f"{node}.{group}-foreign", group, 1)
    [device] = foreign["spec"]["devices"]
    device["name"] = "eth-vf-a"
    del device["attributes"][ATTR_PCI_ADDRESS]
    device["attributes"][ATTR_PF_NAME] = {"string": "foreignpf"}
    stranger = claim_manifest("stranger", namespace, group, vfconfig())
    stranger["spec"]["devices"]["requests"][0]["exactly"]["selectors"] = [
        {"cel": {"expression": f"device.attributes['{PREFIX}'].PFName == 'foreignpf'"}}
    ]
    apply(cluster, device_class_manifest(group, group), ours, foreign)
    try:
        apply(cluster, stranger)
        expect_event(cluster, namespace, "stranger", "NoDeviceAvailable", warning=True, message=(
            'spec.devices.requests[0]: no free VF matches request "vf": 0 VFs match, 0 free; '
            f"not offered: device {node}.{group}-foreign/eth-vf-a (it has no {ATTR_PCI_ADDRESS} "
            "attribute and its name is not made from a PCI address); fix: no published VF "
            "matches: check the DeviceClass and request selectors, or publish matching VFs; "
            f"for the devices not offered: {REFUSAL_FIX}"
        ))  # fmt: skip
        # The operator keeps serving: a claim any VF of the class fits gets ours, not the
        # foreign one, and nothing failed unexpectedly.
        apply(cluster, claim_manifest("other", namespace, group, vfconfig()))
        allocated = wait_allocated(cluster, namespace, "other")
        expected = device_name(ours["spec"]["devices"][0]["attributes"][ATTR_PCI_ADDRESS]["string"])
        assert allocated_devices(allocated) == [(DRIVER_NAME, f"{node}.{group}", expected)]
        body = claim(cluster, namespace, "stranger")
        assert body is not None and allocated_devices(body) == []
        reasons = {
            e["reason"]
            for name in ("stranger", "other")
            for e in events_for(cluster, namespace, name)
        }
        assert "ReconcileFailed" not in reasons, reasons
    finally:
        release_all(cluster, namespace)
        cluster.kubectl(
            "delete", "resourceslices,deviceclasses", "-l", f"sriov-dra-test-group={group}",
            "--wait=false", check=False,
        )  # fmt: skip
