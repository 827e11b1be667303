"""Real nodes: kubelet + containerd + runc + kube-proxy, each node in namespaces of its own.

The shell over ``node_plan``: it makes the node bridge, each node's network
namespace and mount namespace (a ``sleep`` holder process keeps the latter
alive), writes the config files and starts the node's processes through
``nsenter``. ``teardown`` undoes all of it: pods removed through CRI (so CNI DEL
frees their addresses), processes stopped, the mount namespace gone with its last
process, the network namespace and the bridge deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final

from sriov_dra_devcluster import processes
from sriov_dra_devcluster.errors import ComponentFailed
from sriov_dra_devcluster.node_plan import (
    BRIDGE,
    CONTAINERD_SOCKET,
    HOST_IP,
    KUBE_PROXY_HEALTHZ_PORT,
    KUBELET_HEALTHZ_PORT,
    MIRRORED_REGISTRIES,
    UPLINK,
    NodePlan,
    hosts_toml,
)
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent

OWNER_FILE: Final = Path("/run/sriov-dra/real-nodes.owner")
"""Which state dir owns the node bridge: one real-node cluster per machine."""
CREATED_DIRS_FILE: Final = "created-mount-targets.json"
HOLDER: Final = "node-holder"
CONTAINERD: Final = "containerd"
KUBELET: Final = "kubelet"
KUBE_PROXY: Final = "kube-proxy"


class NodeSetupFailed(ComponentFailed):
    """A node-level step failed (netns, mounts, a config); names the node and the fix."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise NodeSetupFailed(
            "node-setup",
            f"could not run `{' '.join(argv)}` (exit {result.returncode})",
            Path("-"),
            result.stderr.strip(),
        )
    return result


def _link_exists(name: str, netns: str | None = None) -> bool:
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    return _run([*prefix, "link", "show", name], check=False).returncode == 0


def netns_exists(name: str) -> bool:
    """True when ``/var/run/netns/<name>`` exists."""
    return Path("/var/run/netns", name).exists()


# --- the node network ---------------------------------------------------------------


def claim_bridge(state_dir: Path) -> None:
    """Refuse when another live real-node cluster owns the bridge, else record us as owner."""
    owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else ""
    if owner and owner != str(state_dir) and Path(owner, "state.json").exists():
        raise NodeSetupFailed(
            "node-network",
            f"is in use by the dev cluster in {owner} (one real-node cluster per machine)",
            Path(owner) / "logs",
            "",
        )
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    OWNER_FILE.write_text(f"{state_dir}\n")


def ensure_bridge() -> None:
    """The bridge joining this machine (``.1``) and the nodes; idempotent."""
    if not _link_exists(BRIDGE):
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    _run(["ip", "addr", "replace", f"{HOST_IP}/24", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def remove_bridge(state_dir: Path) -> None:
    """Delete the bridge and the owner mark, if this cluster owns them."""
    owner = OWNER_FILE.read_text().strip() if OWNER_FILE.exists() else ""
    if owner and owner != str(state_dir):
        return
    if _link_exists(BRIDGE):
        _run(["ip", "link", "del", BRIDGE], check=False)
    OWNER_FILE.unlink(missing_ok=True)


def create_node_network(plan: NodePlan, peers: Iterable[NodePlan]) -> None:
    """The node's netns with its uplink on the bridge, routes to its peers' pod CIDRs."""
    ns = plan.netns
    if not netns_exists(ns):
        _run(["ip", "netns", "add", ns])
    if not _link_exists(UPLINK, ns):
        if _link_exists(plan.host_veth):
            _run(["ip", "link", "del", plan.host_veth])
        # Created in place: this machine may have a link of that name of its own.
        _run(["ip", "link", "add", plan.host_veth, "type", "veth", "peer", "name", UPLINK,
              "netns", ns])  # fmt: skip
    _run(["ip", "link", "set", plan.host_veth, "master", BRIDGE, "up"])
    _run(["ip", "-n", ns, "addr", "replace", f"{plan.ip}/24", "dev", UPLINK])
    _run(["ip", "-n", ns, "link", "set", "lo", "up"])
    _run(["ip", "-n", ns, "link", "set", UPLINK, "up"])
    _run(["ip", "-n", ns, "route", "replace", "default", "via", HOST_IP])
    for peer in peers:
        if peer.name != plan.name:
            _run(["ip", "-n", ns, "route", "replace", peer.pod_cidr, "via", peer.ip])
    # Pods' traffic is routed through the node's host network, as on any node.
    _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])


def remove_node_network(plan: NodePlan) -> None:
    """Delete the node's netns (its uplink and the host end go with it)."""
    if netns_exists(plan.netns):
        _run(["ip", "netns", "del", plan.netns], check=False)
    if _link_exists(plan.host_veth):
        _run(["ip", "link", "del", plan.host_veth], check=False)


# --- the node's mount namespace -------------------------------------------------------


def prepare_files(plan: NodePlan, *, ca_cert: Path, kube_proxy_kubeconfig: Path) -> None:
    """The node's directories and every config file it reads."""
    for source, _target in plan.bind_mounts(Path("/nonexistent")):
        if source != Path("/nonexistent"):
            source.mkdir(parents=True, exist_ok=True)
    config = plan.config_dir
    config.mkdir(parents=True, exist_ok=True)
    (plan.directory / "volume-plugins").mkdir(exist_ok=True)
    (config / "containerd.toml").write_text(plan.containerd_config())
    for registry in MIRRORED_REGISTRIES:
        hosts = config / "certs.d" / registry
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(hosts_toml(registry))
    (plan.directory / "cni-conf" / "10-podnet.conflist").write_text(plan.cni_conflist())
    (config / "kubelet.yaml").write_text(plan.kubelet_config(ca_cert))
    (config / "kube-proxy.yaml").write_text(plan.kube_proxy_config(kube_proxy_kubeconfig))
    (config / "resolv.conf").write_text(plan.resolv_conf())
    (config / "crictl.yaml").write_text(
        f"runtime-endpoint: unix://{CONTAINERD_SOCKET}\nimage-endpoint: unix://{CONTAINERD_SOCKET}\n"
    )


def _ensure_mount_targets(plan: NodePlan, sim_node_dir: Path) -> None:
    """Create missing mount points on this machine; remember them for ``teardown``."""
    record = plan.directory / CREATED_DIRS_FILE
    created: list[str] = json.loads(record.read_text()) if record.exists() else []
    for _source, target in plan.bind_mounts(sim_node_dir):
        missing = []
        path = target
        while not path.exists():
            missing.append(path)
            path = path.parent
        for new in reversed(missing):
            new.mkdir()
            created.append(str(new))
    record.write_text(json.dumps(created))


def remove_mount_targets(plan: NodePlan) -> None:
    """Remove the mount points ``mount_node_dirs`` created on this machine.

    Only once every node is gone: removing a directory that is a mount point in
    another mount namespace detaches that mount there (the other node's
    ``/run/containerd`` would vanish under its containerd).
    """
    record = plan.directory / CREATED_DIRS_FILE
    if not record.exists():
        return
    for path in reversed(json.loads(record.read_text())):
        with contextlib.suppress(OSError):
            Path(path).rmdir()


def holder_spec(plan: NodePlan) -> ComponentSpec:
    """A ``sleep`` in the node's netns and a new mount namespace (slave of this machine's)."""
    return ComponentSpec(
        name=f"{HOLDER}/{plan.name}",
        argv=(
            "nsenter",
            f"--net=/var/run/netns/{plan.netns}",
            "--",
            "unshare",
            "--mount",
            "--propagation",
            "slave",
            "--",
            "sleep",
            "infinity",
        ),
        port=0,
        health_url="",
    )


def wait_for_holder(holder: RunningComponent, timeout: float = 10.0) -> None:
    """Wait until the holder has become ``sleep``, i.e. its mount namespace exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep":
                return
        time.sleep(0.02)
    raise NodeSetupFailed(holder.name, "did not start", Path(holder.log_file), "")


def node_prefix(plan: NodePlan, holder_pid: int) -> tuple[str, ...]:
    """argv prefix running a command inside the node (its mount and network namespaces)."""
    return (
        "nsenter",
        f"--mount=/proc/{holder_pid}/ns/mnt",
        f"--net=/var/run/netns/{plan.netns}",
        "--",
    )


def mount_node_dirs(plan: NodePlan, holder_pid: int, sim_node_dir: Path) -> None:
    """Bind the node's private directories over the standard paths, inside the node only."""
    _ensure_mount_targets(plan, sim_node_dir)
    inside = ("nsenter", f"--mount=/proc/{holder_pid}/ns/mnt", "--")
    for source, target in plan.bind_mounts(sim_node_dir):
        _run([*inside, "mount", "--bind", str(source), str(target)])
    # kubelet and the agent's HostToContainer mounts want these shared within the node.
    for shared in ("/var/lib/kubelet", "/run/containerd"):
        _run([*inside, "mount", "--make-rshared", shared])


# --- the node's processes ---------------------------------------------------------------


def remove_runtime_cgroups() -> None:
    """Remove containerd's empty per-namespace cgroup (``k8s.io``) in every hierarchy.

    runc removes each container's cgroup; the parent containerd made stays unless
    removed, and only while no container of any node uses it (rmdir refuses then).
    """
    for controller in Path("/sys/fs/cgroup").iterdir():
        with contextlib.suppress(OSError):
            (controller / "k8s.io").rmdir()


def node_specs(
    plan: NodePlan, holder_pid: int, *, node_bin: Path, kubelet_kubeconfig: Path
) -> list[ComponentSpec]:
    """containerd, kubelet and kube-proxy of one node, in start order."""
    prefix = node_prefix(plan, holder_pid)
    path_env = (
        ("PATH", f"{node_bin}:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"),
    )
    config = plan.config_dir
    return [
        ComponentSpec(
            name=f"{CONTAINERD}/{plan.name}",
            argv=(*prefix, str(node_bin / "containerd"), f"--config={config / 'containerd.toml'}"),
            port=0,
            health_url="",
            env=path_env,
        ),
        ComponentSpec(
            name=f"{KUBELET}/{plan.name}",
            argv=(
                *prefix,
                str(node_bin / "kubelet"),
                f"--config={config / 'kubelet.yaml'}",
                f"--kubeconfig={kubelet_kubeconfig}",
                f"--hostname-override={plan.name}",
                f"--node-labels=kubernetes.io/hostname={plan.hostname}",
                f"--node-ip={plan.ip}",
                "--v=1",
            ),
            port=KUBELET_HEALTHZ_PORT,
            health_url=f"http://{plan.ip}:{KUBELET_HEALTHZ_PORT}/healthz",
            env=path_env,
        ),
        ComponentSpec(
            name=f"{KUBE_PROXY}/{plan.name}",
            argv=(*prefix, str(node_bin / "kube-proxy"), f"--config={config / 'kube-proxy.yaml'}"),
            port=KUBE_PROXY_HEALTHZ_PORT,
            health_url=f"http://{plan.ip}:{KUBE_PROXY_HEALTHZ_PORT}/livez",
            env=path_env,
        ),
    ]


def wait_for_containerd(plan: NodePlan, comp: RunningComponent, timeout: float = 60.0) -> None:
    """Wait for containerd's socket in the node (the path is the node's private one)."""
    socket = plan.directory / "containerd-run" / Path(CONTAINERD_SOCKET).name
    deadline = time.monotonic() + timeout
    while not socket.exists():
        processes.reap(comp.pid)
        if not comp.alive():
            raise ComponentFailed(
                comp.name,
                "exited before serving CRI",
                Path(comp.log_file),
                processes.log_tail(Path(comp.log_file)),
            )
        if time.monotonic() > deadline:
            raise ComponentFailed(
                comp.name,
                f"no socket {CONTAINERD_SOCKET} before the timeout",
                Path(comp.log_file),
                processes.log_tail(Path(comp.log_file)),
            )
        time.sleep(0.1)


def node_processes(holder_pid: int) -> list[int]:
    """Every process of the node but the holder: those in its mount namespace (containerd,
    shims, ...) and their descendants (containers, each in a mount namespace of its own)."""
    try:
        ns = os.readlink(f"/proc/{holder_pid}/ns/mnt")
    except OSError:
        return []
    parents: dict[int, int] = {}
    inside = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
            if os.readlink(entry / "ns" / "mnt") == ns:
                inside.add(int(entry.name))
    found = set(inside)
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    found.discard(holder_pid)
    return sorted(found)


def remove_pods(plan: NodePlan, holder_pid: int, node_bin: Path) -> str:
    """Stop and remove every pod sandbox through CRI: runc deletes, CNI DEL frees addresses.

    Returns crictl's error output ('' when it worked); the caller still kills what is left.
    """
    argv = [
        *node_prefix(plan, holder_pid),
        str(node_bin / "crictl"),
        f"--config={plan.config_dir / 'crictl.yaml'}",
        "--timeout=30s",
        "rmp",
        "--all",
        "--force",
    ]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except subprocess.TimeoutExpired:
        return "crictl rmp timed out"
    return "" if result.returncode == 0 else result.stderr.strip()


def kill_remaining(holder_pid: int, grace_seconds: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, whatever still runs in the node; returns the pids killed."""
    pids = node_processes(holder_pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline:
            for pid in pids:
                processes.reap(pid)
            if not [p for p in pids if processes.process_start_ticks(p) is not None]:
                return pids
            time.sleep(0.1)
    return pids


def teardown_node(
    plan: NodePlan,
    holder: RunningComponent | None,
    node_procs: Sequence[RunningComponent],
    node_bin: Path | None,
    log: Callable[[str], None],
) -> None:
    """Undo one node: pods, then kubelet/kube-proxy/containerd, leftovers, mounts, netns."""
    by_kind = {p.name.split("/")[0]: p for p in node_procs}
    holder_alive = holder is not None and holder.alive()
    stop_first = [by_kind[k] for k in (KUBELET, KUBE_PROXY) if k in by_kind]
    processes.stop(stop_first)
    containerd = by_kind.get(CONTAINERD)
    if holder_alive and holder and node_bin and containerd and containerd.alive():
        problem = remove_pods(plan, holder.pid, node_bin)
        if problem:
            log(f"{plan.name}: removing pods through CRI: {problem}")
    processes.stop([by_kind[CONTAINERD]] if CONTAINERD in by_kind else [])
    if holder_alive and holder is not None:
        leftovers = kill_remaining(holder.pid)
        if leftovers:
            log(f"{plan.name}: stopped {len(leftovers)} leftover process(es) in the node")
        processes.stop([holder])
    remove_node_network(plan)
