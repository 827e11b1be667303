"""The dev cluster itself: what `sriov-dra devcluster` and the fixtures promise."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client as k8s_client
from sriov_dra_devcluster.binaries import BIN_ENV, REQUIRED
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.components import START_ORDER
from sriov_dra_devcluster.errors import ComponentFailed, KubectlFailed
from sriov_dra_devcluster.kwok_nodes import node_is_ready
from sriov_dra_devcluster.processes import port_in_use, process_start_ticks
from sriov_dra_devcluster.waiting import wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sriov_dra.cli", "devcluster", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
    )


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A state dir for a second, short-lived cluster; always brought down afterwards."""
    path = Path("/var/tmp/sriov-dra") / f"scratch-{os.getpid()}-{time.monotonic_ns()}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        DevCluster(path).down(log=lambda _msg: None)
        shutil.rmtree(path, ignore_errors=True)


def test_session_cluster_has_ready_untainted_simulated_nodes(cluster: DevCluster) -> None:
    assert cluster.node_names == ["sim-node-1", "sim-node-2"]
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    for name in cluster.node_names:
        assert node_is_ready(by_name[name]), by_name[name]["status"]["conditions"]
        assert by_name[name]["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert by_name[name]["status"]["allocatable"] == {
            "cpu": "32",
            "memory": "256Gi",
            "pods": "110",
        }
    leases = cluster.kubectl_json("get", "leases", "-n", "kube-node-lease")["items"]
    assert {lease["metadata"]["name"] for lease in leases} >= set(cluster.node_names)


def test_fixture_exports_kubeconfig_and_kubectl(cluster: DevCluster, kubeconfig: Path) -> None:
    assert os.environ["KUBECONFIG"] == str(kubeconfig)
    assert shutil.which("kubectl") == str(cluster.bin_dir / "kubectl")
    # Plain `kubectl` (no --kubeconfig) reaches the session's cluster as admin.
    out = subprocess.run(
        ["kubectl", "auth", "whoami", "-o", "json"], capture_output=True, text=True, check=True
    )
    user = json.loads(out.stdout)["status"]["userInfo"]
    assert user["username"] == "sriov-dra-admin"
    assert "system:masters" in user["groups"]
    assert cluster.api_server_url.startswith("https://127.0.0.1:")


def test_status_reports_every_component_healthy(cluster: DevCluster) -> None:
    status = cluster.status()
    if not status.components:
        pytest.fail(f"no component recorded in {cluster.state_dir} (attached cluster?)")
    assert [c.name for c in status.components] == list(START_ORDER)
    for comp in status.components:
        assert comp.alive and comp.healthy, comp
        assert port_in_use(comp.port), comp
        assert Path(comp.log_file).stat().st_size > 0, comp
    assert status.running


def test_kwok_leaves_pods_alone(cluster: DevCluster, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "idle", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
    node = wait_until(
        lambda: cluster.kubectl_json("get", "pod", "idle", "-n", namespace)["spec"].get("nodeName"),
        timeout=60,
        what="pod idle to be scheduled",
    )
    assert node in cluster.node_names
    # kwok's default pod-ready stage would act within milliseconds of the binding.
    time.sleep(3)
    status = cluster.kubectl_json("get", "pod", "idle", "-n", namespace)["status"]
    assert status["phase"] == "Pending"
    assert "podIP" not in status
    assert "containerStatuses" not in status


def test_service_account_kubeconfig_is_subject_to_rbac(cluster: DevCluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", namespace
    )
    cluster.kubectl(
        "create", "rolebinding", "reader", "--role=pod-reader",
        f"--serviceaccount={namespace}:reader", "-n", namespace,
    )  # fmt: skip
    sa_kubeconfig = cluster.kubeconfig_for_service_account(namespace, "reader")

    def as_reader(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={sa_kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    whoami = as_reader("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == f"system:serviceaccount:{namespace}:reader"
    assert as_reader("get", "pods", "-n", namespace).returncode == 0
    denied = as_reader("get", "secrets", "-n", namespace)
    assert denied.returncode == 1
    assert (
        f'User "system:serviceaccount:{namespace}:reader" cannot list resource "secrets"'
        in denied.stderr
    )


def test_kubectl_failure_carries_stderr(cluster: DevCluster) -> None:
    with pytest.raises(KubectlFailed) as info:
        cluster.kubectl("get", "node", "no-such-node")
    assert info.value.returncode == 1
    assert str(info.value) == (
        f"kubectl --kubeconfig={cluster.kubeconfig} get node no-such-node exited 1: "
        'Error from server (NotFound): nodes "no-such-node" not found'
    )


def test_cli_up_reuse_status_down_leaves_nothing_behind(
    cluster: DevCluster, scratch_dir: Path
) -> None:
    # A second control plane next to the session's: ports are picked free.
    up = _cli("up", "--nodes", "0", "--kwok-nodes", "1", "--state-dir", str(scratch_dir))
    assert up.returncode == 0, up.stderr
    assert up.stdout == f"export KUBECONFIG={scratch_dir / 'kubeconfig'}\n"
    assert "nodes: sim-node-1\n" in up.stderr

    again = _cli("up", "--nodes", "0", "--kwok-nodes", "1", "--state-dir", str(scratch_dir))
    assert again.returncode == 0, again.stderr
    assert f"dev cluster already up in {scratch_dir}; reusing it" in again.stderr

    status = _cli("status", "--state-dir", str(scratch_dir))
    assert status.returncode == 0, status.stdout
    for name in START_ORDER:
        assert re.search(rf"^  {name} +\d+ +\d+  healthy$", status.stdout, re.M), status.stdout

    state = json.loads((scratch_dir / "state.json").read_text())
    procs = [(c["pid"], c["start_ticks"], c["port"]) for c in state["components"]]
    down = _cli("down", "--state-dir", str(scratch_dir))
    assert down.returncode == 0, down.stderr
    for pid, ticks, port in procs:
        assert process_start_ticks(pid) != ticks, f"pid {pid} still runs"
        assert not port_in_use(port), f"port {port} still open"
    mounts = Path("/proc/mounts").read_text()
    assert str(scratch_dir) not in mounts
    assert sorted(p.name for p in scratch_dir.iterdir()) == [".lock", "logs"]
    after = _cli("status", "--state-dir", str(scratch_dir))
    assert after.returncode == 3
    assert after.stdout == f"dev cluster in {scratch_dir}: not running\n"


def test_startup_failure_names_component_and_shows_its_log(
    cluster: DevCluster, scratch_dir: Path, tmp_path: Path
) -> None:
    # A real failure: "kube-apiserver" is the etcd binary, which rejects its flags.
    broken = tmp_path / "bin"
    broken.mkdir()
    for name in REQUIRED:
        target = "etcd" if name == "kube-apiserver" else name
        (broken / name).symlink_to(cluster.bin_dir / target)

    with pytest.raises(ComponentFailed) as info:
        DevCluster(scratch_dir, bin_dir=broken).up(nodes=1, log=lambda _msg: None)
    assert info.value.component == "kube-apiserver"
    assert info.value.message == "kube-apiserver exited before becoming healthy"
    assert "flag provided but not defined: -etcd-servers" in info.value.log_tail
    assert str(scratch_dir / "logs" / "kube-apiserver.log") in str(info.value)
    etcd = json.loads((scratch_dir / "state.json").read_text())["components"][0]
    assert etcd["name"] == "etcd"
    assert process_start_ticks(etcd["pid"]) != etcd["start_ticks"], "etcd left running"

    env = dict(os.environ, **{BIN_ENV: str(broken)})
    out = _cli("up", "--nodes", "0", "--kwok-nodes", "1", "--state-dir", str(scratch_dir), env=env)
    assert out.returncode == 1
    first_line = out.stderr.splitlines()[0]
    assert first_line.startswith(
        "sriov-dra devcluster up: kube-apiserver exited before becoming healthy; fix: read "
    )
    assert "flag provided but not defined: -etcd-servers" in out.stderr


async def test_k8s_api_fixture_talks_to_the_session_cluster(
    cluster: DevCluster, k8s_api: k8s_client.ApiClient
) -> None:
    nodes = await k8s_client.CoreV1Api(k8s_api).list_node()
    assert {n.metadata.name for n in nodes.items} >= set(cluster.node_names)
    groups = await k8s_client.ApisApi(k8s_api).get_api_versions()
    resource = next(g for g in groups.groups if g.name == "resource.k8s.io")
    assert resource.preferred_version.version == "v1"
