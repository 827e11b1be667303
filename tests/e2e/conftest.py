"""The e2e tests' dev cluster: two real nodes, one cluster per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from real_node_cluster import RealNodes, real_nodes_cluster


@pytest.fixture(scope="module")
def real_nodes() -> Iterator[RealNodes]:
    """A dev cluster with two real nodes for the module; torn down after its last test."""
    with real_nodes_cluster() as started:
        yield started
