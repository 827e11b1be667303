"""Hardware changes under the agent DaemonSet on real nodes, as users run it.

- Live rediscovery: VFs added and removed on node-1's simulated NIC are published and
  unpublished within a bound shorter than the agent's periodic rescan (60 s, the
  manifests' default), and the agent's log says which hardware events woke it: the
  inotify watch on the simulated tree mounted into its container, and the rtnetlink
  watch of the node's netns.
- Device health: a pod0 runs with a VF of a template claim, and the real kubelet (gate
  ResourceHealthStatus) has opened the agent's health stream on the DRA socket. Then
  that VF's PF loses its uplink: the node's slice carries the NoSchedule taint (gate
  DRADeviceTaints) on exactly that PF's VFs, and pod0 keeps running. Uplink back: no
  taint.

A cluster of its own (two real nodes), the driver installed as users install it
(``kubectl apply -k manifests/simulated``, the image built here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from real_node_cluster import RealNodes
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.device_health import PF_LINK_DOWN_TAINT
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE, DriverDeployment
from sriov_dra_devcluster.waiting import wait_until
from sriov_dra_devcluster.walkthrough import Walkthrough

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

NODE, PF = "node-1", "eth0"
BOUND_SECONDS = 30.0
"""Half the periodic rescan: only a hardware event can make a change show within it."""


@pytest.fixture(scope="module")
def driver(real_nodes: RealNodes) -> Iterator[DriverDeployment]:
    deployment = DriverDeployment(real_nodes.cluster)
    Walkthrough(real_nodes.cluster, deployment, echo=lambda _line: None).step0_install()
    yield deployment


HEALTH_WAIT = 120.0
"""The kubelet relays health as the agent streams it; the bound covers a loaded machine."""
HEALTH_NS = "vf-health"
HEALTH_MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata: {name: vf-health}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: vf-health, namespace: vf-health}
spec:
  config: '{"cniVersion": "1.0.0", "name": "vf-health", "type": "sriov",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.9.0/24"}]]}}'
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: one-vf, namespace: vf-health}
spec:
  spec:
    devices:
      requests:
      - name: vf
        exactly: {deviceClassName: sriovnetwork.k8snetworkplumbingwg.io}
      config:
      - requests: [vf]
        opaque:
          driver: sriovnetwork.k8snetworkplumbingwg.io
          parameters:
            apiVersion: sriovnetwork.k8snetworkplumbingwg.io/v1alpha1
            kind: VfConfig
            ifName: net1
            netAttachDefName: vf-health
---
apiVersion: v1
kind: Pod
metadata: {name: pod0, namespace: vf-health}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: ctr0
    image: quay.io/schseba/toolbox:latest
    command: ["/bin/bash", "-c", "sleep INF"]
    resources: {claims: [{name: vf}]}
  resourceClaims:
  - {name: vf, resourceClaimTemplateName: one-vf}
"""
"""A pod with a VF of a template claim (the kind of claim the kubelet's health report
covers), alone in its namespace so the test can delete everything it made."""


def taints_of(cluster: DevCluster, node: str) -> dict[str, list[dict[str, Any]]]:
    """The node's tainted devices of our driver, by device name."""
    items = cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.nodeName={node}"
    )["items"]
    return {
        device["name"]: device["taints"]
        for item in items
        if item["spec"]["driver"] == DRIVER_NAME
        for device in item["spec"].get("devices") or []
        if device.get("taints")
    }


def running_pod0(cluster: DevCluster) -> tuple[str, str, str]:
    """Node, device and PF of pod0's VF once pod0 runs and the agent reported the VF."""
    pod = wait_until(
        lambda: (
            (p := cluster.kubectl_json("get", "pod", "pod0", "-n", HEALTH_NS))["status"].get(
                "phase"
            )
            == "Running"
            and p
        ),
        timeout=HEALTH_WAIT,
        what="pod0 running with its VF",
    )
    (claim_status,) = pod["status"]["resourceClaimStatuses"]
    claim = cluster.kubectl_json(
        "get", "resourceclaim", claim_status["resourceClaimName"], "-n", HEALTH_NS
    )
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    (entry,) = [d for d in claim["status"]["devices"] if d["device"] == result["device"]]
    return result["pool"], result["device"], entry["data"]["pf"]


def devices(cluster: DevCluster, node: str) -> int:
    items = cluster.kubectl_json(
        "get", "resourceslices", "--field-selector", f"spec.nodeName={node}"
    )["items"]
    return sum(
        len(item["spec"].get("devices") or [])
        for item in items
        if item["spec"]["driver"] == DRIVER_NAME
    )


def agent_log(cluster: DevCluster, node: str) -> list[dict[str, Any]]:
    pods = cluster.kubectl_json(
        "get", "pods", "-n", SYSTEM_NAMESPACE, "-l", "app.kubernetes.io/name=sriov-dra-agent",
        "--field-selector", f"spec.nodeName={node}",
    )["items"]  # fmt: skip
    (pod,) = pods
    out = cluster.kubectl("logs", "-n", SYSTEM_NAMESPACE, pod["metadata"]["name"]).stdout
    records = []
    for line in out.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def test_vfs_added_and_removed_on_the_node_are_published_at_once(
    real_nodes: RealNodes, driver: DriverDeployment
) -> None:
    cluster = real_nodes.cluster
    nic = driver.nic(NODE)
    assert devices(cluster, NODE) == 4  # eth0 and eth1, 2 VFs each

    nic.set_num_vfs(PF, 8)
    wait_until(
        lambda: devices(cluster, NODE) == 10,
        timeout=BOUND_SECONDS,
        what=f"the 6 new VFs of {PF} published",
    )
    nic.set_num_vfs(PF, 1)
    wait_until(
        lambda: devices(cluster, NODE) == 3,
        timeout=BOUND_SECONDS,
        what=f"the 7 removed VFs of {PF} unpublished",
    )
    nic.set_num_vfs(PF, 2)
    wait_until(lambda: devices(cluster, NODE) == 4, timeout=BOUND_SECONDS, what="back to 4 VFs")
    woken = [
        r for r in agent_log(cluster, NODE) if r.get("message") == "hardware changed; rescanning"
    ]
    sources = {str(first).split()[0] for r in woken for first in list(r.get("first") or [])}
    assert {"sysfs-tree", "netlink"} <= sources, woken
    print(f"{len(woken)} wake-ups on {NODE}; sources {sorted(sources)}")


def test_the_kubelet_and_the_slices_follow_the_pf_link(
    real_nodes: RealNodes, driver: DriverDeployment
) -> None:
    cluster = real_nodes.cluster
    cluster.kubectl("apply", "-f", "-", input=HEALTH_MANIFEST)
    try:
        node, device, pf = running_pod0(cluster)
        # The real kubelet found the agent's health service on the DRA socket and streams it.
        wait_until(
            lambda: any(
                r.get("message") == "kubelet watches device health"
                for r in agent_log(cluster, node)
            ),
            timeout=HEALTH_WAIT,
            what="the kubelet to open the agent's health stream",
        )
        assert taints_of(cluster, node) == {}

        nic = driver.nic(node)
        nic.set_uplink(pf, up=False)
        try:
            taints = wait_until(
                lambda: taints_of(cluster, node) or None, timeout=HEALTH_WAIT, what="the taints"
            )
            assert device in taints
            assert len(taints) == 2  # the PF's two VFs, not the other PF's
            assert {(t["key"], t["value"], t["effect"]) for ts in taints.values() for t in ts} == {
                (PF_LINK_DOWN_TAINT, pf, "NoSchedule")
            }
            assert any(
                r.get("message") == "PF link down" and r.get("pf") == pf
                for r in agent_log(cluster, node)
            )
        finally:
            nic.set_uplink(pf, up=True)
        wait_until(lambda: taints_of(cluster, node) == {}, timeout=HEALTH_WAIT, what="no taint")
        # A taint keeps new claims off; it evicts nothing: pod0 kept running through it.
        pod = cluster.kubectl_json("get", "pod", "pod0", "-n", HEALTH_NS)
        assert pod["status"]["phase"] == "Running"
        print(f"pod0's PF {pf} down and up on {node}: {len(taints)} VFs tainted, then cleared")
    finally:
        cluster.kubectl("delete", "namespace", HEALTH_NS, "--wait=true", timeout=180)
