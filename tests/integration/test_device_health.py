"""Device health end to end: the simulated uplink of one PF goes down and comes back.

Real API server (with the DRADeviceTaints gate the dev cluster sets), the agent
process on a simulated NIC with two PFs, this test playing the kubelet on the
agent's DRA socket (``v1alpha1.DRAResourceHealth/NodeWatchResources``). Down: the
published slice carries the NoSchedule taint on that PF's VFs only, and the stream
reports exactly those VFs unhealthy. Up: both cleared. With the operator running,
no new claim gets such a VF (its allocator honours the taint) until the link is back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from agent_harness import (
    AgentProcess,
    agent_service_account,
    built_nic,
    node_object,
    running_agent,
    wait_for,
)
from operator_harness import (
    OperatorProcess,
    allocated_devices,
    claim_manifest,
    claims,
    create,
    wait_allocated,
    wait_for_event,
)
from sriov_dra import constants
from sriov_dra.device_health import PF_LINK_DOWN_TAINT
from sriov_dra_agent.proto import dra_health_v1alpha1_pb2, dra_health_v1alpha1_pb2_grpc
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_devcluster.cluster import DevCluster

pytestmark = [pytest.mark.integration, pytest.mark.netns]

DOWN_PF, OTHER_PF = "simpf0", "simpf1"
HEALTHY = dra_health_v1alpha1_pb2.HEALTHY
UNHEALTHY = dra_health_v1alpha1_pb2.UNHEALTHY


@pytest.fixture
def node(cluster: DevCluster) -> Iterator[str]:
    with node_object(cluster, "h-node") as name:
        yield name


@pytest.fixture
def nic(node: str) -> Iterator[SimulatedNic]:
    pfs = [SimPf(DOWN_PF, total_vfs=4, num_vfs=2), SimPf(OTHER_PF, total_vfs=4, num_vfs=2)]
    with built_nic(node, "h", pfs) as nic:
        yield nic


@pytest.fixture
def agent(cluster: DevCluster, node: str, nic: SimulatedNic) -> Iterator[AgentProcess]:
    kubeconfig = agent_service_account(cluster)
    with running_agent(node, nic.prefix, kubeconfig, prefix="h-") as proc:
        yield proc


def published(cluster: DevCluster, node: str) -> dict[str, dict[str, Any]]:
    """Device name -> device, over the node's slices of our driver."""
    out = cluster.kubectl(
        "get", "resourceslices", "-o", "json", "--field-selector", f"spec.nodeName={node}"
    )
    return {
        device["name"]: device
        for item in json.loads(out.stdout)["items"]
        if item["spec"]["driver"] == constants.DRIVER_NAME
        for device in item["spec"].get("devices") or []
    }


def pf_of(device: dict[str, Any]) -> str:
    return str(device["attributes"][constants.ATTR_PF_NAME]["string"])


def tainted(devices: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {name: device["taints"] for name, device in devices.items() if device.get("taints")}


def next_matching(stream: Iterator[Any], want: Callable[[dict[str, int]], bool]) -> dict[str, int]:
    """Read the health stream until a message satisfies ``want``; that message's health."""
    for message in stream:
        health = {d.device.device_name: d.health for d in message.devices}
        if want(health):
            return health
    raise AssertionError("the health stream ended")


def test_uplink_down_taints_and_reports_unhealthy_up_clears_both(
    cluster: DevCluster, node: str, nic: SimulatedNic, agent: AgentProcess
) -> None:
    devices = wait_for(
        lambda: published(cluster, node) if len(published(cluster, node)) == 4 else None,
        what="the agent to publish the 4 VFs",
    )
    down_vfs = {name for name, device in devices.items() if pf_of(device) == DOWN_PF}
    assert len(down_vfs) == 2
    assert tainted(devices) == {}

    with grpc.insecure_channel(f"unix://{agent.dra_socket}") as channel:
        stub = dra_health_v1alpha1_pb2_grpc.DRAResourceHealthStub(channel)
        stream = stub.NodeWatchResources(
            dra_health_v1alpha1_pb2.NodeWatchResourcesRequest(), timeout=120
        )
        all_healthy = next_matching(stream, lambda h: set(h.values()) == {HEALTHY})
        assert set(all_healthy) == set(devices)

        nic.set_uplink(DOWN_PF, up=False)
        health = next_matching(stream, lambda h: UNHEALTHY in h.values())
        assert {name for name, state in health.items() if state == UNHEALTHY} == down_vfs
        assert {state for name, state in health.items() if name not in down_vfs} == {HEALTHY}
        taints = wait_for(
            lambda: tainted(published(cluster, node)) or None,
            what=f"the taints on the VFs of {DOWN_PF}",
        )
        assert set(taints) == down_vfs
        for device_taints in taints.values():
            (taint,) = device_taints
            assert taint["key"] == PF_LINK_DOWN_TAINT
            assert taint["value"] == DOWN_PF
            assert taint["effect"] == "NoSchedule"
            assert taint["timeAdded"]

        nic.set_uplink(DOWN_PF, up=True)
        next_matching(stream, lambda h: set(h.values()) == {HEALTHY})
        wait_for(
            lambda: not tainted(published(cluster, node)) or None,
            what=f"the taints on the VFs of {DOWN_PF} to go",
        )
        stream.cancel()

    changes = [
        (r["before"], r["after"])
        for r in agent.log_records()
        if r.get("message", "").startswith("PF link") and r.get("pf") == DOWN_PF
    ]
    assert changes[-2:] == [("up", "down"), ("down", "up")]
    assert "DRADeviceTaints" not in agent.log(), "the API server must keep the taints"


def test_the_operator_gives_no_new_claim_a_vf_of_a_pf_whose_link_is_down(
    cluster: DevCluster,
    operator: OperatorProcess,
    node: str,
    nic: SimulatedNic,
    agent: AgentProcess,
    namespace: str,
) -> None:
    wait_for(lambda: len(published(cluster, node)) == 4 or None, what="the 4 VFs published")
    nic.set_uplink(DOWN_PF, up=False)
    taints = wait_for(lambda: tainted(published(cluster, node)) or None, what="the taints")
    devices = published(cluster, node)
    up_vfs = {name for name, device in devices.items() if pf_of(device) == OTHER_PF}
    device_class = f"health-{node}"
    expression = (
        f"device.driver == '{constants.DRIVER_NAME}' && "
        f"device.attributes['{constants.PREFIX}'].nodeName == '{node}'"
    )
    create(
        cluster,
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": device_class},
            "spec": {"selectors": [{"cel": {"expression": expression}}]},
        },
    )
    names = ["first", "second", "third"]
    try:
        create(cluster, *(claim_manifest(n, namespace, device_class) for n in names))
        got = {
            device
            for n in names[:2]
            for _, _, device in allocated_devices(wait_allocated(cluster, namespace, n))
        }
        assert got == up_vfs, "only the VFs of the PF whose link is up are allocated"
        event = wait_for_event(cluster, namespace, "third", "NoDeviceAvailable")
        for name in taints:
            assert f"{node}/{name} ({PF_LINK_DOWN_TAINT}={DOWN_PF}:NoSchedule)" in event["message"]

        nic.set_uplink(DOWN_PF, up=True)
        (third,) = allocated_devices(wait_allocated(cluster, namespace, "third", timeout=60))
        assert third[2] in set(taints), "back up, the PF's VFs are offered again"
    finally:
        cluster.kubectl("delete", "resourceclaims", "--all", "-n", namespace, "--wait=false")
        wait_for(
            lambda: not claims(cluster, namespace) or None,
            what="the claims released by the agent and gone",
            timeout=120,
        )
        cluster.kubectl("delete", "deviceclass", device_class, check=False)
