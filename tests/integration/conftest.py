"""Fixtures shared by the integration tests that run the operator as a process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from operator_harness import OperatorProcess, operator_kubeconfig
from sriov_dra_devcluster.cluster import DevCluster


@pytest.fixture(scope="module")
def operator(
    cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator process per test module, as its ServiceAccount with the shipped RBAC
    (a missing rule fails there). A module that needs other flags defines its own."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(operator_kubeconfig(cluster), log).start()
    try:
        yield process
    finally:
        process.stop()
        print(f"\noperator log: {log}")
