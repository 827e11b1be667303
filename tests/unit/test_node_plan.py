"""The real nodes' plan: names, addresses and the config files each node reads (pure)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from sriov_dra_devcluster.node_plan import (
    HOST_IP,
    NodePlan,
    corefile,
    hosts_toml,
    local_ref,
    node_index,
    real_node_names,
)


def test_real_nodes_are_numbered_and_get_their_own_addresses() -> None:
    plans = [NodePlan(n, Path("/s/nodes")) for n in real_node_names(3)]
    assert [p.name for p in plans] == ["node-1", "node-2", "node-3"]
    assert [p.ip for p in plans] == ["10.250.0.11", "10.250.0.12", "10.250.0.13"]
    assert [p.pod_cidr for p in plans] == ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
    # The node's netns is its simulated NIC's host netns (the agent's default prefix).
    assert plans[0].netns == "sriovsim-node-1"
    assert all(len(p.host_veth) <= 15 for p in plans)


@pytest.mark.parametrize("name", ["sim-node-1", "node-0", "node-x", "node-201", "node-"])
def test_only_node_n_names_are_real_nodes(name: str) -> None:
    with pytest.raises(ValueError, match="not a real node name"):
        node_index(name)


def test_images_are_served_from_the_local_registry_under_their_path() -> None:
    assert local_ref("quay.io/schseba/toolbox:latest") == "10.250.0.1:5000/schseba/toolbox:latest"
    assert local_ref("registry.k8s.io/pause:3.10.2") == "10.250.0.1:5000/pause:3.10.2"
    assert local_ref("docker.io/library/debian:bookworm-slim") == (
        "10.250.0.1:5000/library/debian:bookworm-slim"
    )
    with pytest.raises(ValueError, match="name its registry"):
        local_ref("example.com/x:1")


def test_containerd_config_has_cri_cdi_runc_and_the_mirrors() -> None:
    plan = NodePlan("node-2", Path("/s/nodes"))
    config = tomllib.loads(plan.containerd_config())
    images = config["plugins"]["io.containerd.cri.v1.images"]
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.2"
    assert images["registry"]["config_path"] == "/s/nodes/node-2/config/certs.d"
    assert runtime["enable_cdi"] is True
    assert "/var/run/cdi" in runtime["cdi_spec_dirs"]
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"BinaryName": "/usr/sbin/runc", "SystemdCgroup": False}
    mirror = tomllib.loads(hosts_toml("quay.io"))
    assert mirror["host"][f"http://{HOST_IP}:5000"]["capabilities"] == ["pull", "resolve"]


def test_pod_network_config_gives_each_node_its_pod_cidr() -> None:
    conflist = json.loads(NodePlan("node-3", Path("/s")).cni_conflist())
    bridge = conflist["plugins"][0]
    assert bridge["type"] == "bridge"
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]


def test_kubelet_config_fits_this_machine_and_points_dns_at_coredns() -> None:
    plan = NodePlan("node-1", Path("/s/nodes"))
    config = yaml.safe_load(plan.kubelet_config(Path("/s/pki/ca.crt")))
    assert config["address"] == config["healthzBindAddress"] == "10.250.0.11"
    assert (config["cgroupDriver"], config["cgroupsPerQOS"], config["failCgroupV1"]) == (
        "cgroupfs",
        False,
        False,
    )
    assert config["clusterDNS"] == [HOST_IP]
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["authorization"] == {"mode": "Webhook"}
    proxy = yaml.safe_load(plan.kube_proxy_config(Path("/k")))
    assert (proxy["mode"], proxy["clusterCIDR"], proxy["hostnameOverride"]) == (
        "iptables",
        "10.244.0.0/16",
        "node-1",
    )


def test_coredns_serves_cluster_local_on_the_bridge_only() -> None:
    text = corefile(Path("/s/kubeconfig"), 4567)
    assert f"bind {HOST_IP}" in text
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa" in text
    assert "health 127.0.0.1:4567" in text
    assert "forward" not in text  # no upstream resolver exists here
