"""Two operator replicas with leader election on a Lease: one acts, the other takes over.

A module of its own: no other operator may run meanwhile (two allocators would
race), and each test uses its own Lease.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from operator_harness import (
    OperatorProcess,
    claim_manifest,
    claims,
    create,
    holders_of,
    operator_kubeconfig,
    release_all,
    simulated_vfs,
    vfconfig,
    wait_allocated,
)
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

LEASE_NAMESPACE = "sriov-dra"
TIMING = ("--lease-duration=4", "--renew-deadline=3", "--retry-period=1")


def replica(kubeconfig: Path, log: Path, lease: str) -> OperatorProcess:
    return OperatorProcess(
        kubeconfig, log, "--leader-elect", f"--lease-name={lease}",
        f"--lease-namespace={LEASE_NAMESPACE}", *TIMING,
    )  # fmt: skip


def lease_spec(cluster: DevCluster, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = cluster.kubectl_json("get", "lease", name, "-n", LEASE_NAMESPACE)["spec"]
    return spec


def identity_of(process: OperatorProcess) -> str | None:
    """The identity a replica logged when it became leader (None: it never led)."""
    for record in process.log_records():
        if record.get("message") == "became leader":
            return str(record["identity"])
    return None


def vf_claim(name: str, namespace: str, device_class: str) -> dict[str, Any]:
    return claim_manifest(name, namespace, device_class, vfconfig(ifName="net1"))


def said(process: OperatorProcess, message: str) -> bool:
    return any(r.get("message") == message for r in process.log_records())


def test_the_standby_waits_then_takes_over_after_sigkill_and_after_sigterm(
    cluster: DevCluster, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = operator_kubeconfig(cluster)
    lease = f"ha-{namespace}"
    first = replica(kubeconfig, tmp_path / "first.log", lease).start()
    second = replica(kubeconfig, tmp_path / "second.log", lease).start(until="waiting to lead")
    third: OperatorProcess | None = None
    try:
        with simulated_vfs(cluster, f"{namespace}-vfs", per_node=4) as device_class:
            create(cluster, vf_claim("before", namespace, device_class))
            wait_allocated(cluster, namespace, "before")
            # The standby answers its liveness probe, but neither listed nor decided anything.
            assert second.healthz() == 200
            assert not said(second, "state listed")
            assert lease_spec(cluster, lease)["holderIdentity"] == identity_of(first)

            # SIGKILL: no release; the standby waits out the lease on its own clock.
            first.kill()
            killed = time.monotonic()
            create(
                cluster,
                vf_claim("after-kill", namespace, device_class),
            )
            wait_until(lambda: said(second, "state listed"), timeout=30,
                       what="the standby to lead and list the state")  # fmt: skip
            failover = time.monotonic() - killed
            wait_allocated(cluster, namespace, "after-kill")
            spec = lease_spec(cluster, lease)
            assert spec["holderIdentity"] == identity_of(second)
            assert spec["leaseTransitions"] == 1
            print(f"\nfailover after SIGKILL: {failover:.1f} s (lease duration 4 s)")

            # SIGTERM: the leader hands the Lease back; the next standby need not wait it out.
            third = replica(kubeconfig, tmp_path / "third.log", lease).start(
                until="waiting to lead"
            )
            stopped = time.monotonic()
            second.stop()
            assert said(second, "released the lease")
            wait_until(lambda: said(third, "state listed"), timeout=30,
                       what="the next standby to lead after a clean stop")  # fmt: skip
            handover = time.monotonic() - stopped
            create(
                cluster,
                vf_claim("after-term", namespace, device_class),
            )
            wait_allocated(cluster, namespace, "after-term")
            assert lease_spec(cluster, lease)["leaseTransitions"] == 2
            print(f"hand-over after SIGTERM: {handover:.1f} s")

            holders = holders_of(claims(cluster, namespace))
            assert len(holders) == 3
            assert all(len(names) == 1 for names in holders.values()), holders
            release_all(cluster, namespace)
    finally:
        for process in (first, second, third):
            if process is not None:
                process.stop()
