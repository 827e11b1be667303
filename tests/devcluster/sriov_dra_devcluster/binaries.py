"""Where the Kubernetes binaries are: an explicit directory or the build cache.

The binaries are built by ``.ci/build-k8s-binaries`` into a cache keyed by the
tools modules' go.sum and the Go version; that script is the only place that
knows the key, so we ask it (``--check`` never builds).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Final

from sriov_dra_devcluster.errors import BinariesMissing
from sriov_dra_devcluster.paths import CI

REQUIRED: Final = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
BIN_ENV: Final = "SRIOV_DRA_K8S_BIN"
BUILD_SCRIPT: Final = CI / "build-k8s-binaries"
NODE_REQUIRED: Final = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "crictl",
    "coredns",
    "crane",
)
NODE_BUILD_SCRIPT: Final = CI / "build-node-binaries"
HELM_BUILD_SCRIPT: Final = CI / "build-helm"
IMAGES_SCRIPT: Final = CI / "build-images"


def missing_binaries(bin_dir: Path) -> list[str]:
    """Names from REQUIRED that are not executable files in ``bin_dir``."""
    return [name for name in REQUIRED if not os.access(bin_dir / name, os.X_OK)]


def find_bin_dir() -> Path:
    """Return the directory holding every required binary, or raise BinariesMissing.

    ``$SRIOV_DRA_K8S_BIN`` wins; otherwise the build cache is asked. Never builds.
    """
    explicit = os.environ.get(BIN_ENV)
    if explicit:
        bin_dir = Path(explicit)
        missing = missing_binaries(bin_dir)
        if missing:
            raise BinariesMissing(
                f"{', '.join(missing)} not found in {bin_dir}",
                field=BIN_ENV,
                fix=f"point {BIN_ENV} at a directory holding {', '.join(REQUIRED)}",
            )
        return bin_dir
    if not BUILD_SCRIPT.exists():
        raise BinariesMissing(
            f"no {BIN_ENV} set and no build script at {BUILD_SCRIPT}",
            field=BIN_ENV,
            fix=f"set {BIN_ENV} to a directory holding {', '.join(REQUIRED)}",
        )
    try:
        out = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--check"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BinariesMissing(
            f"cannot run {BUILD_SCRIPT} --check: {exc}",
            fix="install bash and Go (see .ci/setup)",
        ) from exc
    if out.returncode != 0:
        raise BinariesMissing(
            f"the Kubernetes binaries are not built: {out.stderr.strip()}",
            fix=f"run `make setup` or `bash {BUILD_SCRIPT}` (a cold build takes 7-15 minutes)",
        )
    bin_dir = Path(out.stdout.strip().splitlines()[-1])
    missing = missing_binaries(bin_dir)
    if missing:
        raise BinariesMissing(
            f"{', '.join(missing)} missing from {bin_dir}",
            fix=f"delete {bin_dir} and run `bash {BUILD_SCRIPT}`",
        )
    return bin_dir


def _cached_dir(script: Path, what: str, *, build: bool, timeout: float) -> Path:
    """Ask a ``.ci`` build script for its cache directory (building first if ``build``)."""
    argv = ["bash", str(script)] if build else ["bash", str(script), "--check"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BinariesMissing(
            f"cannot run {script}: {exc}", fix="install bash and Go (see .ci/setup)"
        ) from exc
    if out.returncode != 0 or not out.stdout.strip():
        tail = "\n".join(out.stderr.strip().splitlines()[-15:])
        raise BinariesMissing(
            f"the {what} are not built: {tail}",
            fix=f"run `make setup` or `bash {script}`",
        )
    return Path(out.stdout.strip().splitlines()[-1])


def find_node_bin_dir() -> Path:
    """kubelet, kube-proxy, containerd (+ shim), crictl, coredns and crane; never builds."""
    bin_dir = _cached_dir(NODE_BUILD_SCRIPT, "node binaries", build=False, timeout=60)
    missing = [name for name in NODE_REQUIRED if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"{', '.join(missing)} missing from {bin_dir}",
            fix=f"delete {bin_dir} and run `bash {NODE_BUILD_SCRIPT}`",
        )
    return bin_dir


def find_helm() -> Path:
    """The helm binary ``.ci/build-helm`` built (for the chart's tests); never builds."""
    helm = _cached_dir(HELM_BUILD_SCRIPT, "helm binaries", build=False, timeout=60) / "helm"
    if not os.access(helm, os.X_OK):
        raise BinariesMissing(
            f"no helm in {helm.parent}",
            fix=f"delete {helm.parent} and run `bash {HELM_BUILD_SCRIPT}`",
        )
    return helm


def images_dir() -> Path:
    """The image tarballs and their ``images.json``; builds what the cache lacks.

    The project's image follows the sources: a source change rebuilds it (minutes
    cold, seconds with the layer cache).
    """
    return _cached_dir(IMAGES_SCRIPT, "container images", build=True, timeout=1800)
