"""A deleted claim's VF goes to the next claim only on its node agent's word.

The operator runs as its ServiceAccount with the shipped RBAC. A tenant (a user
with the ``edit`` ClusterRole in the namespace, by impersonation) writes the
``released`` annotation that once handed a VF on, and deletes the claim: the VF
stays with the deleted claim and the next claim waits. The tenant cannot write
the claim's status, where the agent reports the release. Once the agent reports
it (condition Released on its ``status.devices`` entry), the VF is handed on.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from operator_harness import (
    OperatorProcess,
    allocated_devices,
    apply,
    claim,
    claim_manifest,
    release,
    release_all,
    simulated_vfs,
    vfconfig,
    wait_allocated,
    wait_for_event,
)
from sriov_dra.constants import PREFIX
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

TENANT = "tenant-1"
FORGED = f"{PREFIX}/released"
"""The annotation that handed a VF on before the hand-over moved into status."""


@pytest.fixture
def tenant_namespace(cluster: DevCluster, namespace: str) -> Iterator[str]:
    """The namespace, where user ``tenant-1`` has the ``edit`` ClusterRole."""
    cluster.kubectl(
        "create", "rolebinding", "tenant-edit", "--clusterrole=edit", f"--user={TENANT}",
        "-n", namespace,
    )  # fmt: skip
    yield namespace
    release_all(cluster, namespace)


def as_tenant(cluster: DevCluster, *args: str) -> tuple[bool, str]:
    result = cluster.kubectl(*args, f"--as={TENANT}", check=False)
    return result.returncode == 0, result.stderr


def test_a_tenants_released_annotation_hands_nothing_on(
    cluster: DevCluster, operator: OperatorProcess, tenant_namespace: str
) -> None:
    namespace = tenant_namespace
    node = cluster.node_names[0]
    with simulated_vfs(cluster, f"{namespace}-vfs", per_node=1, nodes=[node]) as device_class:
        apply(cluster, claim_manifest("first", namespace, device_class, vfconfig()))
        first = wait_allocated(cluster, namespace, "first")
        [vf] = allocated_devices(first)
        uid = first["metadata"]["uid"]

        # The tenant may patch the claim: it writes the annotation, then deletes the claim.
        ok, err = as_tenant(
            cluster, "annotate", "resourceclaim", "first", "-n", namespace, f"{FORGED}={uid}"
        )
        assert ok, err
        # ... but not its status, where the agent says the VF is released.
        ok, err = as_tenant(
            cluster, "patch", "resourceclaim", "first", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", '{"status": {"devices": []}}',
        )  # fmt: skip
        assert not ok
        assert f'User "{TENANT}" cannot patch resource "resourceclaims/status"' in err
        ok, err = as_tenant(cluster, "delete", "resourceclaim", "first", "-n", namespace,
                            "--wait=false")  # fmt: skip
        assert ok, err
        apply(cluster, claim_manifest("next", namespace, device_class, vfconfig()))

        # The operator has looked at the deleted claim (annotation and all) and waits on.
        event = wait_for_event(cluster, namespace, "first", "AwaitingRelease")
        assert f"of claim {uid}" in event["message"]
        wait_for_event(cluster, namespace, "next", "NoDeviceAvailable")
        held = claim(cluster, namespace, "first")
        assert held is not None and held["metadata"]["annotations"][FORGED] == uid
        assert allocated_devices(held) == [vf]
        waiting = claim(cluster, namespace, "next")
        assert waiting is not None and allocated_devices(waiting) == []

        # The agent's word (condition Released in status.devices) hands the VF on.
        release(cluster, namespace, held)
        wait_until(
            lambda: claim(cluster, namespace, "first") is None,
            timeout=30,
            what="the released claim to be gone",
        )
        assert allocated_devices(wait_allocated(cluster, namespace, "next")) == [vf]
