"""The agent's command line: every flag has an environment twin (DaemonSet-friendly).

``sriov-dra agent --node-name NAME`` is enough on a real node; everything else
defaults to where the kubelet, the container runtime and Debian's CNI plugins
expect things. The dev cluster runs one agent per simulated node and moves every
directory and port (see ``--help``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sriov_dra.advertisement import NoPolicyMode
from sriov_dra.constants import DRIVER_NAME
from sriov_dra.vfconfig import parse_nad_namespaces

from sriov_dra_agent.kubelet.device_info import DEFAULT_DEVICE_INFO_DIR
from sriov_dra_agent.vf.resource_names import ResourceNames, parse_resource_names

BACKENDS: Final = ("sysfs", "simulated")
ATTACH_MODES: Final = ("agent", "multus")
"""agent: our CDI hook moves the VF into the pod as net1; multus: a meta-plugin attaches it."""
DEFAULT_REGISTRAR_DIR: Final = "/var/lib/kubelet/plugins_registry"
DEFAULT_PLUGINS_DIR: Final = "/var/lib/kubelet/plugins"
DEFAULT_CDI_DIR: Final = "/var/run/cdi"
DEFAULT_CNI_PATH: Final = "/usr/lib/cni:/opt/cni/bin"
DEFAULT_CNI_DATA_DIR: Final = "/var/lib/cni/networks"
DEFAULT_METRICS_PORT: Final = 9464
DEFAULT_HEALTH_PORT: Final = 9465
HOST_HOOK_NAME: Final = "sriov-dra-hook"
DEFAULT_NAMESPACE: Final = "sriov-dra"
SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _own_namespace() -> str:
    """The namespace the agent's pod runs in (its ServiceAccount says), else sriov-dra."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def _namespaces(value: str | None) -> tuple[str, ...]:
    """``a, b,a`` -> ``("a", "b")``: listed order, blanks and repeats dropped."""
    names = (name.strip() for name in (value or "").split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def _default_hook_path() -> str:
    found = shutil.which("sriov-dra")
    if found:
        return os.path.abspath(found)
    return os.path.join(os.path.dirname(os.path.abspath(sys.executable)), "sriov-dra")


@dataclass(frozen=True)
class AgentSettings:
    """Everything ``run`` needs, resolved (directories absolute, defaults filled in)."""

    node_name: str
    driver_name: str
    backend: str
    sysfs_root: Path | None
    sim_prefix: str
    kubelet_registrar_dir: Path
    kubelet_plugins_dir: Path
    cdi_dir: Path
    cni_path: str
    cni_data_dir: Path
    state_dir: Path
    attach_socket: Path
    hook_path: str
    """Absolute host path the CDI specs name as the createRuntime hook."""
    install_hook: bool
    """Write a host-side wrapper to ``hook_path`` at start-up (see ``host_hook``)."""
    hook_executable: str
    """The ``sriov-dra`` the hook runs: ``hook_path`` itself, or what the wrapper enters."""
    dev_root: Path
    """Where the host's ``/dev`` is seen (checked for ``addVhostMount``'s device nodes)."""
    nad_namespaces: frozenset[str]
    """Namespaces other than the claim's own whose NADs a VfConfig may name ("*": any)."""
    metrics_port: int
    health_port: int
    bind_address: str
    kubeconfig: str | None
    rescan_interval: float
    log_level: str
    policy_namespaces: tuple[str, ...] = (DEFAULT_NAMESPACE,)
    """Where SriovResourcePolicies and DeviceAttributes are read, in precedence order."""
    no_policy: NoPolicyMode = NoPolicyMode.ALL
    """What to advertise while no SriovResourcePolicy exists (``--no-policy-advertise``)."""
    attach_mode: str = "agent"
    """``agent`` (the CDI hook attaches) or ``multus`` (a meta-plugin does; no hook)."""
    resource_names: ResourceNames = field(default_factory=ResourceNames)
    """The Multus resource name of each PF's VFs (``--resource-name``)."""
    device_info_dir: Path = Path(DEFAULT_DEVICE_INFO_DIR)
    """Where prepared VFs' device-info files go (the device-info spec's ``dp`` directory)."""

    @property
    def agent_attaches(self) -> bool:
        """True unless a meta-plugin attaches the VFs (``--attach-mode multus``)."""
        return self.attach_mode == "agent"

    @property
    def plugin_dir(self) -> Path:
        """``<plugins-dir>/<driver>``: where the kubelet expects our DRA socket."""
        return self.kubelet_plugins_dir / self.driver_name

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / "checkpoint.json"

    @property
    def field_manager(self) -> str:
        """Server-side-apply manager of this node's ``status.devices`` entries."""
        return f"{self.driver_name}/{self.node_name}"

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> AgentSettings:
        """Resolve parsed flags; raises ``ValueError`` naming the flag and the fix."""
        if not args.node_name:
            raise ValueError(
                "--node-name is required; fix: pass --node-name or set NODE_NAME "
                "(in a DaemonSet: valueFrom.fieldRef.fieldPath: spec.nodeName)"
            )
        if args.backend not in BACKENDS:
            raise ValueError(
                f"--backend {args.backend!r} is unknown; fix: use one of {', '.join(BACKENDS)}"
            )
        if args.no_policy_advertise not in {mode.value for mode in NoPolicyMode}:
            raise ValueError(
                f"--no-policy-advertise {args.no_policy_advertise!r} is unknown; fix: use "
                "all or none"
            )
        if args.attach_mode not in ATTACH_MODES:
            raise ValueError(
                f"--attach-mode {args.attach_mode!r} is unknown; fix: use one of "
                f"{', '.join(ATTACH_MODES)}"
            )
        resource_names = parse_resource_names(args.resource_name or "")
        plugins_dir = Path(args.kubelet_plugins_dir).absolute()
        plugin_dir = plugins_dir / args.driver_name
        state_dir = Path(args.state_dir).absolute() if args.state_dir else plugin_dir
        attach_socket = (
            Path(args.attach_socket).absolute()
            if args.attach_socket
            else plugin_dir / "attach.sock"
        )
        executable = _default_hook_path()
        install_hook = bool(args.install_hook)
        default_hook = str(plugin_dir / HOST_HOOK_NAME) if install_hook else executable
        hook_path = args.hook_path or default_hook
        if not os.path.isabs(hook_path):
            raise ValueError(
                f"--hook-path {hook_path!r} is not absolute; fix: the container runtime "
                "runs it from its own working directory, pass the absolute host path"
            )
        if install_hook and os.path.realpath(hook_path) == os.path.realpath(executable):
            raise ValueError(
                f"--install-hook would overwrite {executable} with the host wrapper; "
                "fix: point --hook-path at a file of its own in a hostPath mount"
            )
        return cls(
            node_name=args.node_name,
            driver_name=args.driver_name,
            backend=args.backend,
            sysfs_root=Path(args.sysfs_root).absolute() if args.sysfs_root else None,
            sim_prefix=args.sim_prefix,
            kubelet_registrar_dir=Path(args.kubelet_registrar_dir).absolute(),
            kubelet_plugins_dir=plugins_dir,
            cdi_dir=Path(args.cdi_dir).absolute(),
            cni_path=args.cni_path,
            cni_data_dir=Path(args.cni_data_dir).absolute(),
            state_dir=state_dir,
            attach_socket=attach_socket,
            hook_path=hook_path,
            install_hook=install_hook,
            hook_executable=executable,
            dev_root=Path(args.dev_root).absolute(),
            nad_namespaces=parse_nad_namespaces(args.nad_namespaces or ""),
            metrics_port=int(args.metrics_port),
            health_port=int(args.health_port),
            bind_address=args.bind_address,
            kubeconfig=args.kubeconfig or None,
            rescan_interval=float(args.rescan_interval),
            log_level=args.log_level,
            policy_namespaces=_namespaces(args.policy_namespaces) or (_own_namespace(),),
            no_policy=NoPolicyMode(args.no_policy_advertise),
            attach_mode=args.attach_mode,
            resource_names=resource_names,
            device_info_dir=Path(args.device_info_dir).absolute(),
        )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Define every flag of ``sriov-dra agent``."""
    add = parser.add_argument
    add(
        "--node-name",
        default=_env("NODE_NAME"),
        help="name of this node's Node object (env NODE_NAME; required)",
    )
    add(
        "--driver-name",
        default=_env("DRIVER_NAME", DRIVER_NAME),
        help=f"DRA driver name (env DRIVER_NAME; default {DRIVER_NAME})",
    )
    add(
        "--backend",
        default=_env("SRIOV_DRA_BACKEND", "sysfs"),
        choices=BACKENDS,
        help="sysfs: real SR-IOV NICs; simulated: the software NIC of sriov_dra_agent.vf."
        "backends.simulated_nic (env SRIOV_DRA_BACKEND; default sysfs)",
    )
    add(
        "--sysfs-root",
        default=_env("SYSFS_ROOT"),
        help="sysfs tree to discover PFs/VFs in (env SYSFS_ROOT; default /sys, or the "
        "simulated NIC's own tree with --backend simulated)",
    )
    add(
        "--sim-prefix",
        default=_env("SRIOV_DRA_SIM_PREFIX", "sriovsim"),
        help="netns prefix of the simulated NIC; its host netns is <prefix>-<node> "
        "(env SRIOV_DRA_SIM_PREFIX; default sriovsim)",
    )
    add(
        "--kubelet-registrar-dir",
        "--kubelet-registrar-directory-path",
        dest="kubelet_registrar_dir",
        default=_env("KUBELET_REGISTRAR_DIRECTORY_PATH", DEFAULT_REGISTRAR_DIR),
        help="directory the kubelet watches for registration sockets "
        f"(env KUBELET_REGISTRAR_DIRECTORY_PATH; default {DEFAULT_REGISTRAR_DIR})",
    )
    add(
        "--kubelet-plugins-dir",
        "--kubelet-plugins-directory-path",
        dest="kubelet_plugins_dir",
        default=_env("KUBELET_PLUGINS_DIRECTORY_PATH", DEFAULT_PLUGINS_DIR),
        help="directory holding <driver>/dra.sock "
        f"(env KUBELET_PLUGINS_DIRECTORY_PATH; default {DEFAULT_PLUGINS_DIR})",
    )
    add(
        "--cdi-dir",
        default=_env("CDI_DIR", DEFAULT_CDI_DIR),
        help=f"where per-claim CDI specs are written (env CDI_DIR; default {DEFAULT_CDI_DIR})",
    )
    add(
        "--cni-path",
        default=_env("CNI_PATH", DEFAULT_CNI_PATH),
        help=f"colon-separated IPAM plugin directories (env CNI_PATH; default {DEFAULT_CNI_PATH})",
    )
    add(
        "--cni-data-dir",
        default=_env("CNI_DATA_DIR", DEFAULT_CNI_DATA_DIR),
        help="host-local IPAM state directory used when the NAD sets no ipam.dataDir "
        f"(env CNI_DATA_DIR; default {DEFAULT_CNI_DATA_DIR})",
    )
    add(
        "--state-dir",
        default=_env("STATE_DIR"),
        help="where the checkpoint lives (env STATE_DIR; default <plugins-dir>/<driver>)",
    )
    add(
        "--attach-socket",
        default=_env("ATTACH_SOCKET"),
        help="unix socket the OCI hook talks to "
        "(env ATTACH_SOCKET; default <plugins-dir>/<driver>/attach.sock)",
    )
    add(
        "--hook-path",
        default=_env("HOOK_PATH"),
        help="absolute host path written into CDI specs as the createRuntime hook "
        "(env HOOK_PATH; default the sriov-dra on PATH, or with --install-hook "
        f"<plugins-dir>/<driver>/{HOST_HOOK_NAME})",
    )
    add(
        "--dev-root",
        default=_env("DEV_ROOT", "/dev"),
        help="where the host's /dev is mounted; a container's own /dev is a copy taken at "
        "its start, blind to modules loaded later (env DEV_ROOT; default /dev)",
    )
    add(
        "--nad-namespaces",
        default=_env("NAD_NAMESPACES", ""),
        help="comma-separated namespaces, besides the claim's own, whose "
        "NetworkAttachmentDefinitions a VfConfig may name; '*' for any; keep it equal to "
        "the operator's --nad-namespaces (env NAD_NAMESPACES; default: none)",
    )
    add(
        "--install-hook",
        action="store_true",
        default=_env("INSTALL_HOOK", "") in ("1", "true", "yes"),
        help="write a host-side wrapper to --hook-path at start-up that runs the hook "
        "inside this agent's mount namespace (for an agent in a container; the host "
        "needs /bin/sh and nsenter) (env INSTALL_HOOK=true)",
    )
    add(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", str(DEFAULT_METRICS_PORT)) or 0),
        help="Prometheus /metrics port, 0 = off "
        f"(env METRICS_PORT; default {DEFAULT_METRICS_PORT})",
    )
    add(
        "--health-port",
        type=int,
        default=int(_env("HEALTH_PORT", str(DEFAULT_HEALTH_PORT)) or 0),
        help=f"liveness /healthz port, 0 = off (env HEALTH_PORT; default {DEFAULT_HEALTH_PORT})",
    )
    add(
        "--bind-address",
        default=_env("BIND_ADDRESS", "0.0.0.0"),
        help="address of the metrics and health servers (env BIND_ADDRESS; default 0.0.0.0)",
    )
    add(
        "--kubeconfig",
        default=_env("KUBECONFIG"),
        help="kubeconfig file (env KUBECONFIG; default in-cluster config)",
    )
    add(
        "--policy-namespaces",
        default=_env("POLICY_NAMESPACES"),
        help="comma-separated namespaces of the SriovResourcePolicies and DeviceAttributes "
        "that decide which VFs are advertised; a policy selects DeviceAttributes of its own "
        "namespace, and for a VF several namespaces select, the first listed decides "
        "(env POLICY_NAMESPACES; default the agent's own namespace, "
        f"else {DEFAULT_NAMESPACE})",
    )
    add(
        "--no-policy-advertise",
        default=_env("NO_POLICY_ADVERTISE", NoPolicyMode.ALL.value),
        choices=[mode.value for mode in NoPolicyMode],
        help="what a node advertises while no SriovResourcePolicy exists: all (every VF) "
        "or none (the Go driver's opt-in) (env NO_POLICY_ADVERTISE; default all)",
    )
    add(
        "--rescan-interval",
        type=float,
        default=float(_env("RESCAN_INTERVAL", "60") or 60),
        help="seconds between periodic hardware rescans, a safety net only: VFs created or "
        "removed, a driver rebound or a PF gone are seen at once through netlink and kernel "
        "uevents; each periodic round also re-reads the node's ResourceSlices from the API "
        "server (env RESCAN_INTERVAL; default 60)",
    )
    add(
        "--attach-mode",
        default=_env("ATTACH_MODE", "agent"),
        choices=ATTACH_MODES,
        help="who attaches a prepared VF to its pod: agent (the claim's CDI createRuntime "
        "hook moves it in as its ifName) or multus (no hook; a meta-plugin such as Multus "
        "attaches it through a NAD annotated k8s.v1.cni.cncf.io/resourceName) "
        "(env ATTACH_MODE; default agent)",
    )
    add(
        "--resource-name",
        default=_env("RESOURCE_NAME", ""),
        help="Multus resource name of the VFs, published as attribute "
        "k8s.cni.cncf.io/resourceName and naming their device-info files: comma-separated "
        "NAME (every PF) and PF=NAME (PF by netdev name or PCI address) entries "
        "(env RESOURCE_NAME; default: none)",
    )
    add(
        "--device-info-dir",
        default=_env("DEVICE_INFO_DIR", DEFAULT_DEVICE_INFO_DIR),
        help="where prepared VFs with a resource name get their device-info files "
        f"(env DEVICE_INFO_DIR; default {DEFAULT_DEVICE_INFO_DIR})",
    )
    add(
        "--log-level",
        default=_env("LOG_LEVEL", "INFO"),
        help="log level (env LOG_LEVEL; default INFO)",
    )
