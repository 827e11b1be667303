"""Fixtures for every test that needs the real control plane.

- ``cluster`` (session): one DevCluster per test session, started on first use in
  a per-session state dir, or attached to a running one when
  ``$SRIOV_DRA_KUBECONFIG`` names its kubeconfig. Sets ``KUBECONFIG`` and puts
  the Kubernetes binaries (kubectl) first on ``PATH``.
- ``kubeconfig`` (session): the admin kubeconfig path.
- ``namespace`` (function): a fresh namespace whose ``default`` ServiceAccount exists.
- ``k8s_api`` (function, async): a kubernetes_asyncio ApiClient for that kubeconfig.

Missing binaries or a control plane that does not come up FAIL the tests that
asked for it, with the reason; they are never skipped. Tests that need no
cluster never start one.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from sriov_dra.errors import SriovDraError
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.waiting import wait_until

KUBECONFIG_ENV = "SRIOV_DRA_KUBECONFIG"
KEEP_STATE_ENV = "SRIOV_DRA_KEEP_STATE"
SESSION_STATE_ROOT = Path("/var/tmp/sriov-dra")


def _start_session_cluster() -> tuple[DevCluster, bool]:
    """The session's cluster and whether this session owns (and must stop) it."""
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        cluster = DevCluster.attach(Path(external))
        probe = cluster.kubectl("get", "--raw", "/readyz", check=False)
        if probe.returncode != 0:
            pytest.fail(
                f"{KUBECONFIG_ENV}={external} names no healthy cluster: {probe.stderr.strip()}; "
                f"start one with `sriov-dra devcluster up` or unset {KUBECONFIG_ENV}",
                pytrace=False,
            )
        return cluster, False
    SESSION_STATE_ROOT.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix="pytest-", dir=SESSION_STATE_ROOT))
    cluster = DevCluster(state_dir)
    cluster.up(nodes=2, log=lambda _msg: None)
    return cluster, True


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[DevCluster]:
    """One real Kubernetes 1.34 control plane with two kwok nodes for the whole session."""
    try:
        dev, owned = _start_session_cluster()
    except SriovDraError as exc:
        reason = f"the dev cluster for integration tests is not available:\n{exc}"
        pytest.fail(reason, pytrace=False)
    saved = {key: os.environ.get(key) for key in ("KUBECONFIG", "PATH")}
    os.environ["KUBECONFIG"] = str(dev.kubeconfig)
    os.environ["PATH"] = f"{dev.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        yield dev
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if owned:
            dev.down(log=lambda _msg: None)
            failed = request.session.testsfailed > 0
            if failed or os.environ.get(KEEP_STATE_ENV):
                print(f"\ndev cluster logs kept in {dev.log_dir}")
            else:
                shutil.rmtree(dev.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def kubeconfig(cluster: DevCluster) -> Path:
    """The admin kubeconfig of the session's cluster."""
    return cluster.kubeconfig


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: DevCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (name derived from the test plus a random suffix).

    Ready for pods: its ``default`` ServiceAccount exists. Deleted afterwards
    without waiting; pods in it are force-deleted first, since no kubelet would
    ever confirm their graceful termination.
    """
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: (
            cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode
            == 0
        ),
        timeout=60,
        what=f"serviceaccount {name}/default",
    )
    try:
        yield name
    finally:
        cluster.kubectl(
            "delete", "pods", "--all", "-n", name,
            "--grace-period=0", "--force", "--wait=false", check=False,
        )  # fmt: skip
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest_asyncio.fixture
async def k8s_api(kubeconfig: Path) -> AsyncIterator[k8s_client.ApiClient]:
    """A kubernetes_asyncio ApiClient authenticated as the cluster admin."""
    configuration = k8s_client.Configuration()
    await k8s_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration
    )
    async with k8s_client.ApiClient(configuration) as api:
        yield api
