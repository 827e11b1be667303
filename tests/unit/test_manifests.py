"""The agent DaemonSet and the image agree with what the agent needs on a real node.

No kubelet runs here, so these are checked statically: the issue's mounts and
privileges, and that every path the agent writes or reads (the defaults of
``sriov-dra agent`` and the flags the DaemonSet passes) lies inside a hostPath
mount, so the kubelet, the container runtime and the CNI state see them.
"""

from __future__ import annotations

import argparse
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sriov_dra_agent.settings import AgentSettings, configure_parser

ROOT = Path(__file__).resolve().parents[2]


def daemonset() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(
        (ROOT / "manifests" / "base" / "agent-daemonset.yaml").read_text()
    )
    return doc


def agent_container() -> dict[str, Any]:
    (container,) = daemonset()["spec"]["template"]["spec"]["containers"]
    return dict(container)


def host_mounts() -> dict[str, str]:
    """Container mount path -> host path."""
    pod = daemonset()["spec"]["template"]["spec"]
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in agent_container()["volumeMounts"]}


def settings_as_deployed() -> AgentSettings:
    args = [a.replace("$(NODE_NAME)", "node-a") for a in agent_container()["args"]]
    assert args[0] == "agent"
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return AgentSettings.from_args(parser.parse_args(args[1:]))


def host_path_of(path: str | Path) -> str | None:
    """Where ``path`` (in the container) lives on the host, or None if not in a hostPath."""
    p = PurePosixPath(path)
    for mount, host in host_mounts().items():
        if p == PurePosixPath(mount) or PurePosixPath(mount) in p.parents:
            return str(PurePosixPath(host) / p.relative_to(mount))
    return None


def test_privileged_in_the_host_network_and_pid_namespaces_on_every_node() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["hostPID"]) == (True, True)
    assert agent_container()["securityContext"]["privileged"] is True
    assert {"operator": "Exists"} in pod["tolerations"]


def test_the_issues_host_mounts_are_there() -> None:
    assert set(host_mounts()) >= {
        "/sys",
        "/var/lib/kubelet/plugins_registry",
        "/var/lib/kubelet/plugins",
        "/var/run/cdi",
        "/opt/cni/bin",
        "/var/lib/cni",
        "/var/run/netns",
        "/var/run/k8s.cni.cncf.io/devinfo/dp",
    }


@pytest.mark.parametrize(
    "what",
    [
        "kubelet_registrar_dir",
        "plugin_dir",
        "cdi_dir",
        "cni_data_dir",
        "state_dir",
        "attach_socket",
        "hook_path",
        "device_info_dir",
    ],
)
def test_what_the_agent_shares_with_the_host_is_in_a_host_path(what: str) -> None:
    path = getattr(settings_as_deployed(), what)
    assert host_path_of(path) == str(path), f"{what} {path} is not in a hostPath mount"


def test_device_nodes_are_checked_in_the_hosts_live_dev() -> None:
    assert host_path_of(settings_as_deployed().dev_root) == "/dev"


def test_the_cdi_hook_is_the_installed_host_wrapper() -> None:
    settings = settings_as_deployed()
    assert settings.install_hook
    assert settings.hook_path != settings.hook_executable


def test_the_image_has_host_local_where_the_agent_looks() -> None:
    dockerfile = (ROOT / "manifests" / "Dockerfile").read_text()
    assert "containernetworking-plugins" in dockerfile  # Debian installs into /usr/lib/cni
    assert "/usr/lib/cni" in settings_as_deployed().cni_path.split(":")


def test_operator_and_agents_allow_the_same_nad_namespaces() -> None:
    deployment = yaml.safe_load(
        (ROOT / "manifests" / "base" / "operator-deployment.yaml").read_text()
    )
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    operator_env = {e["name"]: e.get("value") for e in operator.get("env", [])}
    agent_env = {e["name"]: e.get("value") for e in agent_container().get("env", [])}
    assert operator_env["SRIOV_DRA_OPERATOR_NAD_NAMESPACES"] == agent_env["NAD_NAMESPACES"]


def test_the_confinement_policies_match_the_agents_service_account() -> None:
    # A renamed ServiceAccount or namespace would silently unconfine the agents.
    base = ROOT / "manifests" / "base"
    (account,) = [
        d
        for d in yaml.safe_load_all((base / "serviceaccounts.yaml").read_text())
        if d["metadata"]["name"] == daemonset()["spec"]["template"]["spec"]["serviceAccountName"]
    ]
    username = (
        f"system:serviceaccount:{account['metadata']['namespace']}:{account['metadata']['name']}"
    )
    docs = list(yaml.safe_load_all((base / "policy-agent-confinement.yaml").read_text()))
    policies = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]
    bound = {
        d["spec"]["policyName"] for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"
    }
    assert bound == {p["metadata"]["name"] for p in policies} and len(policies) == 2
    for policy in policies:
        (condition,) = policy["spec"]["matchConditions"]
        assert condition["expression"] == f"request.userInfo.username == '{username}'"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    assert "policy-agent-confinement.yaml" in kustomization["resources"]


def test_the_agent_attaches_itself_and_names_no_resource_unless_told() -> None:
    settings = settings_as_deployed()
    assert settings.attach_mode == "agent"
    assert settings.resource_names.names() == frozenset()
