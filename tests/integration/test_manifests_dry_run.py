"""Every manifest in manifests/ passes the real apiserver's validation (server-side dry run).

The Deployment and the DaemonSet run for real in the e2e tests (manifests/simulated on
real nodes); here both kustomizations pass kubectl's strict field validation and the
apiserver's, and the simulated overlay changes only the agent's NIC backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sriov_dra_devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kustomization", ["manifests", "manifests/simulated"])
def test_kustomization_applies_with_server_side_dry_run(
    cluster: DevCluster, kustomization: str
) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    # The namespace for real: a dry-run namespace does not hold dry-run objects.
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "base" / "namespace.yaml"))
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-k", str(ROOT / kustomization),
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    applied = sorted(line.split()[0] for line in result.stdout.splitlines())
    assert applied == [
        "clusterrole.rbac.authorization.k8s.io/sriov-dra-agent",
        "clusterrole.rbac.authorization.k8s.io/sriov-dra-operator",
        "clusterrolebinding.rbac.authorization.k8s.io/sriov-dra-agent",
        "clusterrolebinding.rbac.authorization.k8s.io/sriov-dra-operator",
        "daemonset.apps/sriov-dra-agent",
        "deployment.apps/sriov-dra-operator",
        "deviceclass.resource.k8s.io/sriovnetwork.k8snetworkplumbingwg.io",
        "namespace/sriov-dra",
        "role.rbac.authorization.k8s.io/sriov-dra-operator-leader-election",
        "rolebinding.rbac.authorization.k8s.io/sriov-dra-operator-leader-election",
        "serviceaccount/sriov-dra-agent",
        "serviceaccount/sriov-dra-operator",
        "validatingadmissionpolicy.admissionregistration.k8s.io/sriov-dra-agent-own-node-claims",
        "validatingadmissionpolicy.admissionregistration.k8s.io/sriov-dra-agent-own-node-slices",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/"
        "sriov-dra-agent-own-node-claims",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/"
        "sriov-dra-agent-own-node-slices",
    ]


def test_the_simulated_overlay_only_switches_the_agent_to_the_simulated_nic(
    cluster: DevCluster,
) -> None:
    base = yaml.safe_load_all(cluster.kubectl("kustomize", str(ROOT / "manifests")).stdout)
    sim = yaml.safe_load_all(
        cluster.kubectl("kustomize", str(ROOT / "manifests" / "simulated")).stdout
    )
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in base}
    changed = [(d["kind"], d["metadata"]["name"]) for d in sim if by_name.get(
        (d["kind"], d["metadata"]["name"])) != d]  # fmt: skip
    assert changed == [("DaemonSet", "sriov-dra-agent")]
    (agent,) = [d for d in yaml.safe_load_all(
        cluster.kubectl("kustomize", str(ROOT / "manifests" / "simulated")).stdout
    ) if d["kind"] == "DaemonSet"]  # fmt: skip
    spec = agent["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SRIOV_DRA_BACKEND"] == "simulated"
    assert {"name": "sim-nic", "mountPath": "/run/sriov-dra-sim"} in container["volumeMounts"]
    assert {"name": "sim-nic", "hostPath": {"path": "/run/sriov-dra-sim", "type": "Directory"}} in (
        spec["volumes"]
    )
