"""`devcluster up` with real nodes stops at the first broken part, names it, shows why.

Each test breaks one thing for real (a kubelet config the kubelet refuses, an image
that was never built, the registry's port taken), and checks that ``up`` raises an
error naming the component, its log's last lines and the fix, and that what was
started is gone again: no process, netns, mount, cgroup, lease or rule left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_resources import HostResources
from sriov_dra_devcluster import cluster as cluster_module
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.errors import ComponentFailed
from sriov_dra_devcluster.node_plan import REGISTRY_PORT, NodePlan

pytestmark = [pytest.mark.integration, pytest.mark.netns]


@pytest.fixture
def real_state_dir() -> Iterator[Path]:
    """A state dir for a one-node real cluster that must fail; checked for leftovers."""
    if os.geteuid() != 0:
        pytest.fail("real nodes need root (namespaces, mounts)", pytrace=False)
    path = Path("/var/tmp/sriov-dra") / f"fault-{secrets.token_hex(3)}"
    before = HostResources.snapshot(path)
    try:
        yield path
        assert HostResources.snapshot(path).leaks_since(before) == {}
    finally:
        DevCluster(path).down(log=lambda _msg: None)
        shutil.rmtree(path, ignore_errors=True)


def test_a_kubelet_that_cannot_start_is_named_with_its_log(
    real_state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        NodePlan, "kubelet_config", lambda self, ca: "kind: KubeletConfiguration\nport: many\n"
    )
    with pytest.raises(ComponentFailed) as info:
        DevCluster(real_state_dir).up(nodes=0, real_nodes=1, log=lambda _msg: None)
    error = info.value
    assert error.component == "kubelet/node-1"
    assert error.message == "kubelet/node-1 exited before becoming healthy"
    assert "failed to load kubelet config file" in error.log_tail
    assert str(real_state_dir / "logs" / "kubelet-node-1.log") in error.describe()


def test_an_image_that_was_never_built_is_named_with_the_fix(
    real_state_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_images = cluster_module.images_dir()
    entries = json.loads((real_images / "images.json").read_text())
    for entry in entries:
        if entry["ref"] != "quay.io/schseba/toolbox:latest":
            (tmp_path / entry["file"]).symlink_to(real_images / entry["file"])
    (tmp_path / "images.json").write_text(json.dumps(entries))
    monkeypatch.setattr(cluster_module, "images_dir", lambda: tmp_path)

    with pytest.raises(ComponentFailed) as info:
        DevCluster(real_state_dir).up(nodes=0, real_nodes=1, log=lambda _msg: None)
    error = info.value
    assert error.component == "images"
    assert error.message.startswith("images lack quay.io/schseba/toolbox:latest: ")
    assert "bash .ci/build-images" in error.fix


def test_a_registry_that_cannot_listen_is_named_with_its_log(real_state_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", REGISTRY_PORT))
        squatter.listen()
        with pytest.raises(ComponentFailed) as info:
            DevCluster(real_state_dir).up(nodes=0, real_nodes=1, log=lambda _msg: None)
    error = info.value
    assert error.component == "registry"
    assert error.message == "registry exited before becoming healthy"
    assert "address already in use" in error.log_tail
