"""The seed scenario end to end on real nodes: the demo's walkthrough, every step asserted.

Runs on a dev cluster of its own with two real nodes (kubelet + containerd + runc
+ kube-proxy, each with a simulated SR-IOV NIC of 4 VFs), registry and CoreDNS,
and the driver installed as users install it: ``kubectl apply -k
manifests/simulated``, the operator Deployment and the agent DaemonSet from the
image built here. The steps are the demo's own
(``sriov_dra_devcluster.walkthrough.Walkthrough``); the tests run in file order and
each one needs the previous steps to have passed. The last test tears the
cluster down and counts what it leaves behind.
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_resources import HostResources
from real_node_cluster import RealNodes
from sriov_dra.constants import ALLOCATION_ANNOTATION
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.demo_scenario import (
    NAMESPACE,
    PEER_RANGE,
    SUBNET,
    ClaimView,
)
from sriov_dra_devcluster.deployment import DriverDeployment
from sriov_dra_devcluster.waiting import wait_until
from sriov_dra_devcluster.walkthrough import Walkthrough

pytestmark = [pytest.mark.e2e, pytest.mark.netns]

IMAGE = "ghcr.io/sriov-dra/sriov-dra:0.1.0"


class Scenario:
    """The walkthrough, its transcript and what each step returned."""

    def __init__(self, cluster: DevCluster, driver: DriverDeployment, before: HostResources):
        self.cluster = cluster
        self.driver = driver
        self.before = before
        self.transcript: list[str] = []
        self.walk = Walkthrough(cluster, driver, echo=self.transcript.append)
        self.results: dict[str, Any] = {}

    def run(self, step: str) -> Any:
        """Run one step; the steps before it must have passed."""
        order = [s.__name__ for s in self.walk.steps()]
        missing = [s for s in order[: order.index(step)] if s not in self.results]
        if missing:
            pytest.fail(f"{step} needs {', '.join(missing)} to have passed first", pytrace=False)
        self.results[step] = getattr(self.walk, step)() or True
        return self.results[step]


@pytest.fixture(scope="module")
def scenario(real_nodes: RealNodes) -> Iterator[Scenario]:
    """The walkthrough on this module's cluster; prints its transcript at the end."""
    cluster = real_nodes.cluster
    result = Scenario(cluster, DriverDeployment(cluster), real_nodes.before)
    try:
        yield result
    finally:
        print("\n".join(["", "--- walkthrough transcript ---", *result.transcript]))


def test_0_the_driver_runs_from_its_image_as_the_manifests_say(scenario: Scenario) -> None:
    scenario.run("step0_install")
    pods = scenario.driver.pods()
    agents = [p for p in pods if p["metadata"]["name"].startswith("sriov-dra-agent-")]
    operators = [p for p in pods if p["metadata"]["name"].startswith("sriov-dra-operator-")]
    assert sorted(p["spec"]["nodeName"] for p in agents) == ["node-1", "node-2"]
    # Two replicas, one leading: the Lease names one of them.
    assert len(operators) == 2
    assert scenario.walk.operator_leader() in {p["metadata"]["name"] for p in operators}
    for pod in agents + operators:
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"], pod["metadata"]["name"]
        assert status["containerID"].startswith("containerd://")
        assert status["image"] == IMAGE
        # Projected ServiceAccount token, as every pod gets it from the kubelet.
        volumes = [v for v in pod["spec"]["volumes"] if v.get("projected")]
        assert any("serviceAccountToken" in str(v) for v in volumes)
    # The kubelet's plugin watcher registered the agent's DRA plugin on each node.
    pattern = r"RegisterPlugin started.*plugins_registry/sriovnetwork\.k8snetworkplumbingwg\.io"
    for node in ("node-1", "node-2"):
        log = scenario.cluster.log_dir / f"kubelet-{node}.log"
        wait_until(
            lambda log=log: re.search(pattern, log.read_text()),
            timeout=60,
            what=f"the kubelet of {node} to register the DRA plugin",
        )
    slices = scenario.cluster.kubectl_json("get", "resourceslices")["items"]
    assert sorted(s["spec"]["nodeName"] for s in slices) == ["node-1", "node-2"]
    assert sum(len(s["spec"].get("devices") or []) for s in slices) == 8


def test_1_the_claim_is_allocated_before_the_pod_and_the_pod_starts(scenario: Scenario) -> None:
    scenario.run("step1_apply")
    text = "\n".join(scenario.transcript)
    assert "resourceclaim.resource.k8s.io/static-vf-claim created" in text
    assert "pod/pod0 created" in text


def test_2_describe_resourceclaim_shows_allocation_reservation_net1_and_events(
    scenario: Scenario,
) -> None:
    view: ClaimView = scenario.run("step2_claim")

    assert view.allocated_by_operator
    assert view.node in scenario.driver.nodes
    assert view.reserved_for == ["pod0"]
    [ip] = view.net1_ips
    assert ipaddress.IPv4Interface(ip).network == SUBNET
    text = view.describe
    # The allocation: our driver, the node's pool, the device and the node selector.
    assert "Driver:   sriovnetwork.k8snetworkplumbingwg.io" in text
    assert f"Pool:     {view.node}" in text
    assert f"Device:   {view.device}" in text
    assert re.search(rf"Values:\s+{view.node}\n", text)
    # The pod in reservedFor.
    assert re.search(r"Reserved For:\s+Name:\s+pod0\s+Resource:\s+pods", text)
    # net1 with its IP and MAC, and the device conditions.
    assert "Interface Name:    net1" in text
    assert re.search(rf"Ips:\s+{re.escape(ip)}\n", text)
    assert f"Hardware Address:  {view.net1_mac}" in text
    assert "Reason:                Attached" in text
    # The operator's explanation, written with the allocation: condition Allocated.
    assert re.search(r"Type:\s+Allocated\n", text)
    assert re.search(rf"Message:\s+allocated VF {re.escape(view.pci_address)} ", text)
    # The agent's Events.
    events = text[text.index("Events:") :]
    assert "VfConfigured" in events and "sriov-dra-agent" in events


def test_3_pod0_runs_on_the_claims_node(scenario: Scenario) -> None:
    claim: ClaimView = scenario.results["step2_claim"]
    pod = scenario.run("step3_pod")
    assert (pod.phase, pod.ready, pod.node) == ("Running", True, claim.node)
    assert ipaddress.IPv4Address(pod.pod_ip) in ipaddress.IPv4Network("10.244.0.0/16")
    assert pod.container_id.startswith("containerd://")
    assert re.search(r"kubelet\s+Started container ctr0", pod.describe)


def test_4_net1_in_pod0_has_the_claims_ip_and_mac(scenario: Scenario) -> None:
    claim: ClaimView = scenario.results["step2_claim"]
    interfaces = scenario.run("step4_interfaces")
    net1 = interfaces["net1"]
    assert list(net1.addresses) == claim.net1_ips
    assert net1.mac == claim.net1_mac
    pod: Any = scenario.results["step3_pod"]
    assert [a.split("/")[0] for a in interfaces["eth0"].addresses] == [pod.pod_ip]
    assert set(interfaces) == {"lo", "eth0", "net1"}


def test_5_pod0_pings_a_pod_on_the_other_node_over_net1(scenario: Scenario) -> None:
    claim: ClaimView = scenario.results["step2_claim"]
    ping = scenario.run("step5_ping")
    assert ping.peer_node != claim.node
    low, high = (ipaddress.IPv4Address(a) for a in PEER_RANGE)
    assert low <= ipaddress.IPv4Address(ping.peer_ip) <= high
    assert (ping.transmitted, ping.received) == (3, 3)
    # eth0: the kubernetes Service's name resolved through CoreDNS to its ClusterIP.
    assert ping.service_ip == "10.96.0.1"


def test_6_a_new_pod_reuses_the_claim_and_its_vf(scenario: Scenario) -> None:
    claim: ClaimView = scenario.results["step2_claim"]
    reuse = scenario.run("step6_reuse")
    assert reuse.reserved_after_delete == []
    assert (reuse.device_after, reuse.node_after) == (claim.device, claim.node)
    assert reuse.pod1_node == claim.node
    # Same VF, same MAC; the IP comes from a fresh IPAM ADD.
    assert reuse.pod1_net1.mac == claim.net1_mac
    assert ipaddress.IPv4Interface(reuse.pod1_net1.addresses[0]).network == SUBNET


def test_7_deleting_the_claim_frees_the_vf_and_its_ip(scenario: Scenario) -> None:
    cleanup = scenario.run("step7_cleanup")
    assert cleanup.claim_gone
    assert cleanup.vf_in_host
    assert cleanup.leases_left == []
    slices = scenario.cluster.kubectl_json("get", "resourceslices")["items"]
    assert sum(len(s["spec"].get("devices") or []) for s in slices) == 8


GO_DRIVER_DEMO = Path(__file__).resolve().parents[1] / "data" / "go-driver-resourceclaim-vf.yaml"


def test_8_the_go_drivers_own_demo_manifest_applies_and_runs_unchanged(
    scenario: Scenario,
) -> None:
    cluster = scenario.cluster
    cluster.kubectl("apply", "-f", str(GO_DRIVER_DEMO))

    def running() -> dict[str, Any] | None:
        pod = cluster.kubectl_json("get", "pod", "pod0", "-n", "vf-test7")
        return pod if pod.get("status", {}).get("phase") == "Running" else None

    pod = wait_until(running, timeout=90, what="pod0 of the Go driver's demo to run")
    claim = cluster.kubectl_json("get", "resourceclaim", "static-vf-claim", "-n", "vf-test7")
    (result,) = claim["status"]["allocation"]["devices"]["results"]
    assert result["driver"] == "sriovnetwork.k8snetworkplumbingwg.io"
    assert result["pool"] == pod["spec"]["nodeName"]
    assert [r["name"] for r in claim["status"]["reservedFor"]] == ["pod0"]
    (device,) = claim["status"]["devices"]
    network = device["networkData"]
    assert network["interfaceName"] == "net1"
    (ip,) = network["ips"]
    assert ipaddress.IPv4Interface(ip).network == ipaddress.IPv4Network("10.0.3.0/24")
    (record,) = json.loads(claim["metadata"]["annotations"][ALLOCATION_ANNOTATION])
    # Deleting its namespace releases everything: the claim goes (our finalizer waits for
    # the agent), the VF is back on the node's host side under its own name.
    cluster.kubectl("delete", "namespace", "vf-test7", "--timeout=120s")
    assert cluster.kubectl_json("get", "resourceclaims", "-A")["items"] == []
    host_ns = scenario.driver.nic(record["node"]).host_ns
    vf_netdev = f"{record['pf']}v{record['vfIndex']}"
    shown = subprocess.run(
        ["ip", "netns", "exec", host_ns, "ip", "link", "show", vf_netdev],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr


def test_9_the_operator_logs_json_lines_about_the_claim(scenario: Scenario) -> None:
    lines = scenario.run("step8_logs")
    assert {line["claim"] for line in lines} == {f"{NAMESPACE}/static-vf-claim"}
    allocated = [line for line in lines if line["message"] == "allocated"]
    assert allocated
    assert {"uid", "node", "pf", "vf"} <= set(allocated[-1])


def test_10_every_pod_ran_in_containerd(scenario: Scenario) -> None:
    pods = scenario.cluster.kubectl_json("get", "pods", "-A")["items"]
    assert pods, "no pods left to look at"
    ids = {p["metadata"]["name"]: s["containerID"] for p in pods
           for s in p["status"].get("containerStatuses") or []}  # fmt: skip
    assert ids and all(i.startswith("containerd://") for i in ids.values()), ids


def test_11_down_leaves_nothing_behind(scenario: Scenario) -> None:
    cluster = scenario.cluster
    during = HostResources.snapshot(cluster.state_dir)
    # The nodes really were there: processes, netns, containers' cgroups, the operator
    # pod's eth0 lease (the count works).
    grown = during.leaks_since(scenario.before)
    assert {"processes", "node_netns", "cgroups", "leases"} <= set(grown), grown
    said: list[str] = []
    cluster.down(log=said.append)
    after = HostResources.snapshot(cluster.state_dir)
    assert after.leaks_since(scenario.before) == {}
    # Pods left through CRI (runc delete, CNI DEL), none had to be killed.
    assert not [line for line in said if "leftover" in line or "through CRI" in line], said
