"""A dev cluster with two real nodes for an e2e test module (tests/e2e/conftest.py).

Only one real-node cluster can exist per machine (fixed bridge and subnet): run
the tests that start one under ``flock /tmp/sriov-dra-realnodes.lock``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from host_resources import HostResources
from sriov_dra.errors import SriovDraError
from sriov_dra_devcluster.cluster import DevCluster

STATE_ROOT = Path("/var/tmp/sriov-dra")


@dataclass(frozen=True)
class RealNodes:
    """A running dev cluster with real nodes, and what this machine held before it."""

    cluster: DevCluster
    before: HostResources


@contextlib.contextmanager
def real_nodes_cluster() -> Iterator[RealNodes]:
    """Start the cluster (fail the test, never skip, if it cannot); stop it afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the e2e test creates network namespaces: run it as root", pytrace=False)
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    state_dir = STATE_ROOT / f"e2e-{secrets.token_hex(3)}"
    before = HostResources.snapshot(state_dir)
    cluster = DevCluster(state_dir)
    try:
        cluster.up(nodes=0, real_nodes=2, log=lambda _msg: None, timeout=300)
    except SriovDraError as exc:
        cluster.down(log=lambda _msg: None)
        pytest.fail(f"the e2e cluster did not start:\n{exc.describe()}", pytrace=False)
    try:
        yield RealNodes(cluster, before)
    finally:
        cluster.down(log=lambda _msg: None)
        shutil.rmtree(state_dir, ignore_errors=True)
