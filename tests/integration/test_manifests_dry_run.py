"""Every manifest in manifests/ passes the real apiserver's validation (server-side dry run).

The Deployment and the DaemonSet never run here (no image, no kubelet), so this
is where a typo or a wrong field in them shows: kubectl's strict field
validation refuses unknown fields and the apiserver validates the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sriov_dra_devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_kustomization_applies_with_server_side_dry_run(cluster: DevCluster) -> None:
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    # The namespace for real: a dry-run namespace does not hold dry-run objects.
    cluster.kubectl("apply", "-f", str(ROOT / "manifests" / "namespace.yaml"))
    result = cluster.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-k", str(ROOT / "manifests"),
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
        "serviceaccount/sriov-dra-agent",
        "serviceaccount/sriov-dra-operator",
    ]
