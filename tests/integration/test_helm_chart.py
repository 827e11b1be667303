"""The Helm chart, with the real helm: lint, and the same objects as manifests/.

One source of truth: with default values the chart renders the objects of
``kubectl kustomize manifests``, with ``kubeletPlugin.backend=simulated`` those of
``manifests/simulated``, except the Namespace (Helm's release namespace, made by
``--create-namespace``) and plus the CRDs of ``crds/`` (the chart's ``crds/``). No
cluster is needed, but helm (``.ci/build-helm``) and kubectl (``.ci/build-k8s-binaries``)
are: without them these tests fail with the command that builds them.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from unittest import mock

import pytest
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import SriovDraError
from sriov_dra_agent.settings import AgentSettings, configure_parser
from sriov_dra_devcluster import helm_chart
from sriov_dra_devcluster.binaries import find_bin_dir, find_helm
from sriov_dra_devcluster.deployment import SYSTEM_NAMESPACE
from sriov_dra_devcluster.paths import (
    CRDS,
    HELM_CHART,
    MANIFESTS,
    REPO,
    SIMULATED_KUSTOMIZATION,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True, scope="module")
def helm_and_kubectl_built() -> None:
    """Fail (never skip) without the binaries, saying how to build them."""
    missing = ""
    try:
        find_helm()
        find_bin_dir()
    except SriovDraError as exc:
        missing = str(exc)
    if missing:
        pytest.fail(f"the chart's tests need helm and kubectl: {missing}", pytrace=False)


def workload(objects: list[Any], kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod spec and the only container of the one ``kind`` (Deployment, DaemonSet)."""
    (obj,) = [o for o in objects if o["kind"] == kind]
    spec = obj["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def agent_settings(container: dict[str, Any]) -> AgentSettings:
    """What the agent makes of the DaemonSet's args and env values (node "node-a")."""
    env = {name: value for name, value in env_of(container).items() if value is not None}
    args = [a.replace("$(NODE_NAME)", "node-a") for a in container["args"]]
    assert args[0] == "agent"
    with mock.patch.dict(os.environ, env, clear=True):
        parser = argparse.ArgumentParser()
        configure_parser(parser)
        return AgentSettings.from_args(parser.parse_args(args[1:]))


@pytest.mark.parametrize("values", [(), helm_chart.SIMULATED], ids=["default", "simulated"])
def test_helm_lint_passes(values: tuple[str, ...]) -> None:
    result = helm_chart.helm(
        "lint", "--strict", str(HELM_CHART), "--namespace", SYSTEM_NAMESPACE,
        *helm_chart.set_flags(values), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "kustomization"),
    [((), MANIFESTS), (helm_chart.SIMULATED, SIMULATED_KUSTOMIZATION)],
    ids=["manifests", "manifests/simulated"],
)
def test_the_chart_renders_the_objects_of_the_kustomization(
    values: tuple[str, ...], kustomization: Path
) -> None:
    expected = helm_chart.by_key(helm_chart.kustomized(kustomization))
    del expected[("Namespace", "", SYSTEM_NAMESPACE)]
    for path in sorted(CRDS.glob("*.yaml")):
        expected |= helm_chart.by_key(helm_chart.parse(path.read_text()))
    chart = helm_chart.by_key(helm_chart.rendered(values))
    assert sorted(chart) == sorted(expected)
    for key, obj in expected.items():
        assert helm_chart.normalised(chart[key]) == helm_chart.normalised(obj), (
            f"{key} differs from {kustomization.relative_to(REPO)}"
        )


def test_the_charts_crds_are_the_files_of_crds() -> None:
    chart_crds = {p.name: p.read_bytes() for p in (HELM_CHART / "crds").iterdir()}
    assert chart_crds == {p.name: p.read_bytes() for p in CRDS.iterdir()}


def test_the_chart_and_its_image_follow_the_package_version() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    chart = helm_chart.parse((HELM_CHART / "Chart.yaml").read_text())[0]
    assert (chart["version"], chart["appVersion"]) == (version, version)
    _, container = workload(helm_chart.rendered(), "Deployment")
    assert container["image"] == f"ghcr.io/sriov-dra/sriov-dra:{version}"


def test_nad_namespaces_reach_the_operator_and_every_agent_alike() -> None:
    objects = helm_chart.rendered(["nadNamespaces={net-admin,shared}"])
    _, operator = workload(objects, "Deployment")
    _, agent = workload(objects, "DaemonSet")
    assert env_of(operator)["SRIOV_DRA_OPERATOR_NAD_NAMESPACES"] == "net-admin,shared"
    assert env_of(agent)["NAD_NAMESPACES"] == "net-admin,shared"
    assert agent_settings(agent).nad_namespaces == frozenset({"net-admin", "shared"})


def test_the_no_policy_setting_reaches_every_agent() -> None:
    _, default = workload(helm_chart.rendered([]), "DaemonSet")
    assert agent_settings(default).no_policy.value == "all"
    _, agent = workload(helm_chart.rendered(["kubeletPlugin.noPolicyAdvertise=none"]), "DaemonSet")
    assert agent_settings(agent).no_policy.value == "none"


def test_policy_namespaces_reach_every_agent_in_order() -> None:
    _, default = workload(helm_chart.rendered([]), "DaemonSet")
    assert env_of(default)["POLICY_NAMESPACES"] == ""
    objects = helm_chart.rendered(["kubeletPlugin.policyNamespaces={sriov-dra,dra-driver-sriov}"])
    _, agent = workload(objects, "DaemonSet")
    assert agent_settings(agent).policy_namespaces == ("sriov-dra", "dra-driver-sriov")


def test_kubelet_paths_move_the_agents_sockets_hook_and_mounts_together() -> None:
    registrar, plugins = "/var/lib/k0s/kubelet/plugins_registry", "/var/lib/k0s/kubelet/plugins"
    objects = helm_chart.rendered(
        [
            f"kubeletPlugin.kubeletRegistrarDirectoryPath={registrar}",
            f"kubeletPlugin.kubeletPluginsDirectoryPath={plugins}",
        ]
    )
    pod, agent = workload(objects, "DaemonSet")
    settings = agent_settings(agent)
    assert settings.kubelet_registrar_dir == Path(registrar)
    assert settings.plugin_dir == Path(plugins) / DRIVER_NAME
    assert settings.hook_path == f"{plugins}/{DRIVER_NAME}/sriov-dra-hook"
    # The kubelet and the runtime use these paths on the host: each is mounted at itself.
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["mountPath"]: host_paths[m["name"]] for m in agent["volumeMounts"]}
    for path in map(PurePosixPath, (registrar, settings.plugin_dir, settings.hook_path)):
        (mount,) = [m for m in mounts if PurePosixPath(m) in (path, *path.parents)]
        assert mounts[mount] == mount, path


def test_multus_mode_and_resource_names_are_values() -> None:
    objects = helm_chart.rendered(
        ["kubeletPlugin.attachMode=multus", "kubeletPlugin.resourceName=ens1f0=sriov_nic_1"]
    )
    _, agent = workload(objects, "DaemonSet")
    settings = agent_settings(agent)
    assert (settings.attach_mode, settings.agent_attaches) == ("multus", False)
    assert settings.resource_names.by_pf == {"ens1f0": "sriov_nic_1"}


def test_log_level_replicas_and_ports_are_values() -> None:
    objects = helm_chart.rendered(
        [
            "logging.level=DEBUG",
            "controller.replicas=3",
            "controller.metricsPort=19090",
            "kubeletPlugin.metricsPort=19091",
        ]
    )
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 3
    _, operator = workload(objects, "Deployment")
    _, agent = workload(objects, "DaemonSet")
    assert env_of(operator)["SRIOV_DRA_OPERATOR_LOG_LEVEL"] == "DEBUG"
    assert env_of(agent)["LOG_LEVEL"] == "DEBUG"
    assert "--metrics-port=19090" in operator["args"]
    assert {"name": "metrics", "containerPort": 19090} in operator["ports"]
    assert agent_settings(agent).metrics_port == 19091
    assert {"name": "metrics", "containerPort": 19091} in agent["ports"]


@pytest.mark.parametrize(
    ("values", "namespace", "said"),
    [
        (["kubeletPlugin.backend=sriov"], SYSTEM_NAMESPACE, "at '/kubeletPlugin/backend'"),
        (["logging.level=verbose"], SYSTEM_NAMESPACE, "at '/logging/level'"),
        (["nadNamespaces={Not_A_Namespace}"], SYSTEM_NAMESPACE, "at '/nadNamespaces/0'"),
        (["controller.metricsPort=0"], SYSTEM_NAMESPACE, "at '/controller/metricsPort'"),
        (
            ["kubeletPlugin.attachMode=sriov-cni"],
            SYSTEM_NAMESPACE,
            "at '/kubeletPlugin/attachMode'",
        ),
        (
            ["kubeletPlugin.noPolicyAdvertise=some"],
            SYSTEM_NAMESPACE,
            "at '/kubeletPlugin/noPolicyAdvertise'",
        ),
        ([], "default", "install into a namespace of its own"),
    ],
    ids=[
        "backend",
        "log-level",
        "nad-namespace",
        "port",
        "attach-mode",
        "no-policy-advertise",
        "default-namespace",
    ],
)
def test_bad_values_are_refused_naming_the_value(
    values: list[str], namespace: str, said: str
) -> None:
    result = helm_chart.template(values, namespace=namespace, check=False)
    assert result.returncode != 0
    assert said in result.stderr
