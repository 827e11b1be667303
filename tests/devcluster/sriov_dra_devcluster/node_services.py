"""What this machine serves the real nodes: the image registry (with our images) and CoreDNS."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from sriov_dra_devcluster.errors import ComponentFailed
from sriov_dra_devcluster.node_plan import (
    corefile,
    local_ref,
    registry_address,
)
from sriov_dra_devcluster.processes import ComponentSpec

REGISTRY: Final = "registry"
COREDNS: Final = "coredns"


def registry_spec(node_bin: Path, storage: Path) -> ComponentSpec:
    """An OCI registry on the bridge's host address (nodes cannot reach this loopback)."""
    storage.mkdir(parents=True, exist_ok=True)
    return ComponentSpec(
        name=REGISTRY,
        argv=(
            str(node_bin / "crane"),
            "registry",
            "serve",
            f"--address={registry_address()}",
            f"--disk={storage}",
        ),
        port=int(registry_address().rsplit(":", 1)[1]),
        health_url=f"http://{registry_address()}/v2/",
    )


def coredns_spec(
    node_bin: Path, config_dir: Path, kubeconfig: Path, health_port: int
) -> ComponentSpec:
    """CoreDNS serving cluster.local to the nodes' pods (kubelet clusterDNS points here)."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "Corefile"
    path.write_text(corefile(kubeconfig, health_port))
    return ComponentSpec(
        name=COREDNS,
        argv=(str(node_bin / "coredns"), "-conf", str(path)),
        port=health_port,
        health_url=f"http://127.0.0.1:{health_port}/health",
    )


def push_images(node_bin: Path, images: Path, log: Callable[[str], None]) -> list[str]:
    """Push every image of ``images/images.json`` to the local registry; returns the refs.

    Raises ImagePushFailed naming the image, crane's message and the fix.
    """
    try:
        entries = json.loads((images / "images.json").read_text())
    except (OSError, ValueError) as exc:
        raise ImageMissing("(all)", f"no image list {images / 'images.json'}: {exc}") from exc
    pushed = []
    for entry in entries:
        target = local_ref(entry["ref"])
        if not (images / entry["file"]).is_file():
            raise ImageMissing(entry["ref"], f"{images / entry['file']} does not exist")
        t0 = time.monotonic()
        result = subprocess.run(
            [str(node_bin / "crane"), "push", "--insecure", str(images / entry["file"]), target],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if result.returncode != 0:
            raise ImagePushFailed(entry["ref"], target, result.stderr.strip())
        log(f"image {entry['ref']} served as {target} ({time.monotonic() - t0:.1f}s)")
        pushed.append(str(entry["ref"]))
    return pushed


class ImagePushFailed(ComponentFailed):
    """The local registry refused an image."""

    def __init__(self, ref: str, target: str, message: str) -> None:
        super().__init__(REGISTRY, f"refused image {ref} (pushed as {target})", Path("-"), message)
        self.fix = "read the registry's log in the cluster's log directory; then retry `up`"


class ImageMissing(ComponentFailed):
    """An image the nodes need was not built."""

    def __init__(self, ref: str, problem: str) -> None:
        super().__init__("images", f"lack {ref}: {problem}", Path("-"), problem)
        self.fix = "run `bash .ci/build-images` (it prints what fails), then retry `up`"
