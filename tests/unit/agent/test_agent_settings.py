"""``sriov-dra agent`` flags: env twins, defaults, refusals with the fix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import sriov_dra_agent.settings as settings_module
from sriov_dra.advertisement import NoPolicyMode
from sriov_dra_agent.settings import AgentSettings, configure_parser

SRIOV_DRA = str(Path(sys.executable).parent / "sriov-dra")


def parse(argv: list[str]) -> AgentSettings:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return AgentSettings.from_args(parser.parse_args(argv))


def test_defaults_are_where_the_kubelet_and_runtime_look(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NODE_NAME", "KUBECONFIG", "CNI_PATH", "STATE_DIR", "HOOK_PATH"):
        monkeypatch.delenv(name, raising=False)
    settings = parse(["--node-name", "n1", "--hook-path", "/usr/bin/sriov-dra"])
    plugin_dir = Path("/var/lib/kubelet/plugins/sriovnetwork.k8snetworkplumbingwg.io")
    assert settings.kubelet_registrar_dir == Path("/var/lib/kubelet/plugins_registry")
    assert settings.plugin_dir == plugin_dir
    assert settings.attach_socket == plugin_dir / "attach.sock"
    assert settings.checkpoint_path == plugin_dir / "checkpoint.json"
    assert settings.cdi_dir == Path("/var/run/cdi")
    assert settings.cni_path == "/usr/lib/cni:/opt/cni/bin"
    assert settings.backend == "sysfs"
    assert settings.field_manager == "sriovnetwork.k8snetworkplumbingwg.io/n1"


def test_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-env")
    monkeypatch.setenv("SRIOV_DRA_BACKEND", "simulated")
    monkeypatch.setenv("KUBELET_PLUGINS_DIRECTORY_PATH", "/tmp/p")
    monkeypatch.setenv("HEALTH_PORT", "0")
    settings = parse(["--hook-path", "/x/sriov-dra"])
    assert (settings.node_name, settings.backend, settings.health_port) == (
        "from-env",
        "simulated",
        0,
    )
    assert settings.attach_socket == Path("/tmp/p/sriovnetwork.k8snetworkplumbingwg.io/attach.sock")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--hook-path", "/x"],
            "--node-name is required; fix: pass --node-name or set NODE_NAME "
            "(in a DaemonSet: valueFrom.fieldRef.fieldPath: spec.nodeName)",
        ),
        (
            ["--node-name", "n", "--hook-path", "bin/sriov-dra"],
            "--hook-path 'bin/sriov-dra' is not absolute; fix: the container runtime runs it "
            "from its own working directory, pass the absolute host path",
        ),
        (
            ["--node-name", "n", "--install-hook", "--hook-path", SRIOV_DRA],
            f"--install-hook would overwrite {SRIOV_DRA} with the host wrapper; "
            "fix: point --hook-path at a file of its own in a hostPath mount",
        ),
    ],
    ids=["no-node-name", "relative-hook", "wrapper-over-executable"],
)
def test_refusals_name_the_fix(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    with pytest.raises(ValueError) as info:
        parse(argv)
    assert str(info.value) == message


def test_without_install_hook_the_cdi_hook_is_the_executable_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HOOK_PATH", raising=False)
    monkeypatch.delenv("INSTALL_HOOK", raising=False)
    settings = parse(["--node-name", "n1"])
    assert not settings.install_hook
    assert settings.hook_path == settings.hook_executable == SRIOV_DRA


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--install-hook"], None), ([], "true")],
    ids=["flag", "env"],
)
def test_install_hook_writes_the_wrapper_into_the_plugin_dir(
    argv: list[str], env: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_PATH", raising=False)
    if env is None:
        monkeypatch.delenv("INSTALL_HOOK", raising=False)
    else:
        monkeypatch.setenv("INSTALL_HOOK", env)
    settings = parse(["--node-name", "n1", "--kubelet-plugins-dir", "/srv/p", *argv])
    assert settings.install_hook
    assert settings.hook_path == "/srv/p/sriovnetwork.k8snetworkplumbingwg.io/sriov-dra-hook"
    assert settings.hook_executable == SRIOV_DRA


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], None, frozenset()),
        (["--nad-namespaces", "net-a, net-b,"], None, frozenset({"net-a", "net-b"})),
        ([], "*", frozenset({"*"})),
    ],
    ids=["default-none", "flag-list", "env-any"],
)
def test_nad_namespaces_mirror_the_operators_option(
    argv: list[str], env: str | None, expected: frozenset[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if env is None:
        monkeypatch.delenv("NAD_NAMESPACES", raising=False)
    else:
        monkeypatch.setenv("NAD_NAMESPACES", env)
    assert parse(["--node-name", "n1", *argv]).nad_namespaces == expected


def test_by_default_the_agent_attaches_and_names_no_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("ATTACH_MODE", "RESOURCE_NAME", "DEVICE_INFO_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = parse(["--node-name", "n1"])
    assert (settings.attach_mode, settings.agent_attaches) == ("agent", True)
    assert settings.resource_names.names() == frozenset()
    assert settings.device_info_dir == Path("/var/run/k8s.cni.cncf.io/devinfo/dp")


@pytest.mark.parametrize("from_env", [False, True], ids=["flags", "env"])
def test_multus_mode_with_resource_names_and_device_info_dir(
    from_env: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "ATTACH_MODE": "multus",
        "RESOURCE_NAME": "sriov_nic,ens1f0=sriov_nic_1",
        "DEVICE_INFO_DIR": "/tmp/devinfo",
    }
    argv = ["--node-name", "n1"]
    for name, value in values.items():
        if from_env:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)
            argv += [f"--{name.lower().replace('_', '-')}", value]
    settings = parse(argv)
    assert (settings.attach_mode, settings.agent_attaches) == ("multus", False)
    assert settings.resource_names.default == "sriov_nic"
    assert settings.resource_names.by_pf == {"ens1f0": "sriov_nic_1"}
    assert settings.device_info_dir == Path("/tmp/devinfo")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ATTACH_MODE": "sriov-cni"}, "--attach-mode 'sriov-cni' is unknown; fix: use one of"),
        ({"RESOURCE_NAME": "a b"}, "--resource-name entry 'a b': 'a b' is not a resource name"),
    ],
    ids=["unknown-mode", "bad-resource-name"],
)
def test_a_bad_attach_mode_or_resource_name_is_refused(
    env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        parse(["--node-name", "n1"])
    assert str(info.value).startswith(message)


def test_advertisement_policy_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "missing")
    defaults = parse(["--node-name", "n1"])
    assert (defaults.policy_namespaces, defaults.no_policy) == (("sriov-dra",), NoPolicyMode.ALL)
    (tmp_path / "namespace").write_text("drivers\n")
    monkeypatch.setattr(settings_module, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "namespace")
    assert parse(["--node-name", "n1"]).policy_namespaces == ("drivers",)
    monkeypatch.setenv("POLICY_NAMESPACES", " sriov-dra, dra-driver-sriov,,sriov-dra ")
    monkeypatch.setenv("NO_POLICY_ADVERTISE", "none")
    chosen = parse(["--node-name", "n1"])
    assert (chosen.policy_namespaces, chosen.no_policy) == (
        ("sriov-dra", "dra-driver-sriov"),
        NoPolicyMode.NONE,
    )
    monkeypatch.setenv("NO_POLICY_ADVERTISE", "some")
    with pytest.raises(ValueError) as info:
        parse(["--node-name", "n1"])
    assert str(info.value).startswith("--no-policy-advertise 'some' is unknown; fix:")
