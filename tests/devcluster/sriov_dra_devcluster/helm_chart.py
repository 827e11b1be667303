"""The Helm chart (``manifests/helm/sriov-dra``) through the real ``helm``, beside kustomize.

The chart installs the objects of ``manifests/``: ``rendered`` (``helm template``) and
``kustomized`` (``kubectl kustomize``) parse both into objects keyed by kind,
namespace and name, so a test compares them. ``install`` and ``uninstall`` run
helm against a dev cluster as a user does. helm comes from ``.ci/build-helm``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import yaml

from sriov_dra_devcluster.binaries import find_bin_dir, find_helm
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE
from sriov_dra_devcluster.paths import HELM_CHART

RELEASE: Final = "sriov-dra"
SIMULATED: Final = ("kubeletPlugin.backend=simulated",)
"""The ``--set`` that makes the chart what ``manifests/simulated`` is."""

ObjectKey = tuple[str, str, str]
"""(kind, namespace, name); namespace is empty for cluster-scoped objects."""


class HelmFailed(subprocess.CalledProcessError):
    """helm exited non-zero; str() shows the command and helm's own stderr."""

    def __str__(self) -> str:
        args = " ".join(str(c) for c in self.cmd[1:])
        return f"helm {args} exited {self.returncode}: {str(self.stderr).strip()}"


def helm(
    *args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run the built helm (BinariesMissing names the build command if there is none)."""
    cmd = [str(find_helm()), *args]
    if kubeconfig is not None:
        cmd.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise HelmFailed(result.returncode, cmd, result.stdout, result.stderr)
    return result


def set_flags(values: Iterable[str]) -> list[str]:
    """``--set key=value`` for each of ``values``."""
    return [flag for value in values for flag in ("--set", value)]


def template(
    values: Iterable[str] = (), *, namespace: str = SYSTEM_NAMESPACE, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart, CRDs included, as installed into ``namespace``."""
    return helm(
        "template", RELEASE, str(HELM_CHART), "--namespace", namespace, "--include-crds",
        *set_flags(values), check=check,
    )  # fmt: skip


def rendered(values: Iterable[str] = (), *, namespace: str = SYSTEM_NAMESPACE) -> list[Any]:
    """The chart's objects (CRDs included) for ``values``, parsed."""
    return parse(template(values, namespace=namespace).stdout)


def kustomized(directory: Path) -> list[Any]:
    """The objects of ``kubectl kustomize directory``, parsed (kubectl from the k8s build)."""
    out = subprocess.run(
        [str(find_bin_dir() / "kubectl"), "kustomize", str(directory)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return parse(out.stdout)


def parse(text: str) -> list[Any]:
    """The YAML documents of ``text``, empty ones dropped."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def normalised(value: Any) -> Any:
    """``value`` with the white space in its strings folded to single spaces.

    kustomize's YAML round trip adds a line break to the more-indented lines of
    folded scalars (the policies' multi-line CEL, where white space is white space).
    """
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalised(v) for v in value]
    return value


def by_key(objects: Sequence[Any]) -> dict[ObjectKey, Any]:
    """``objects`` keyed by (kind, namespace, name); a key seen twice is a ValueError."""
    keyed: dict[ObjectKey, Any] = {}
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        if key in keyed:
            raise ValueError(f"{key} is rendered twice")
        keyed[key] = obj
    return keyed


def install(cluster: DevCluster, values: Iterable[str] = (), *, timeout: float = 300) -> str:
    """``helm install`` into the driver's namespace (created), waiting for its workloads."""
    return helm(
        "install", RELEASE, str(HELM_CHART), "--namespace", SYSTEM_NAMESPACE,
        "--create-namespace", "--wait", f"--timeout={int(timeout)}s", *set_flags(values),
        kubeconfig=cluster.kubeconfig, timeout=timeout + 30,
    ).stdout  # fmt: skip


def uninstall(cluster: DevCluster, *, timeout: float = 300) -> str:
    """``helm uninstall``, returning once the release's objects and their pods are deleted."""
    return helm(
        "uninstall", RELEASE, "--namespace", SYSTEM_NAMESPACE, "--cascade=foreground", "--wait",
        f"--timeout={int(timeout)}s", kubeconfig=cluster.kubeconfig, timeout=timeout + 30,
    ).stdout  # fmt: skip
