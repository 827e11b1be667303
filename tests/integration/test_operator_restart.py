"""The operator killed with SIGKILL in the middle of a burst, then restarted.

A module of its own: no other operator may run meanwhile (test_operator.py's
module-scoped operator is gone by then), or two allocators would race.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from operator_harness import (
    OperatorProcess,
    allocated_devices,
    burst_claims,
    claims,
    conflict_events,
    create,
    holders_of,
    operator_kubeconfig,
    release_all,
    settled,
    simulated_vfs,
)
from sriov_dra import allocation_record
from sriov_dra.constants import ALLOCATION_ANNOTATION
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration


def test_sigkill_in_the_middle_of_a_burst_doubles_nothing(
    cluster: DevCluster, namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    process = OperatorProcess(operator_kubeconfig(cluster), log, "--workers=2").start()
    try:
        with simulated_vfs(cluster, f"{namespace}-vfs", per_node=20) as device_class:
            create(cluster, *burst_claims(namespace, device_class, 50))
            wait_until(
                lambda: any(allocated_devices(b) for b in claims(cluster, namespace)),
                timeout=60, interval=0.05, what="the first allocation",
            )  # fmt: skip
            process.kill()
            at_kill = sum(1 for b in claims(cluster, namespace) if allocated_devices(b))
            print(f"\nallocated when SIGKILLed: {at_kill}/40")
            process.start()
            items = settled(cluster, namespace, allocated=40, waiting=10)
            holders = holders_of(items)
            assert len(holders) == 40
            assert all(len(names) == 1 for names in holders.values()), holders
            for body in items:
                if allocated_devices(body):
                    record = allocation_record.decode(
                        body["metadata"]["annotations"][ALLOCATION_ANNOTATION]
                    )
                    assert [(r.pool, r.device) for r in record] == [
                        (p, d) for _, p, d in allocated_devices(body)
                    ]
            assert conflict_events(cluster, namespace) == []
            release_all(cluster, namespace)
    finally:
        process.stop()
