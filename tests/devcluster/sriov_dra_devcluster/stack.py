"""The sriov-dra stack on a dev cluster: simulated NICs, agents, operator and node emulation.

On a real cluster the operator runs as the Deployment and the agents as the
DaemonSet of ``manifests/``. Here there is no kubelet to run them, so they run
as processes on this machine, but with the identities the manifests give
them: ``up`` applies the manifests' Namespace, ServiceAccounts, ClusterRoles,
bindings and DeviceClass (not the Deployment/DaemonSet), mints a token for each
ServiceAccount through the TokenRequest API and hands each process a kubeconfig
with that token. The RBAC rules in ``manifests/`` are therefore what allows or
refuses every call they make.

Per simulated node: a simulated SR-IOV NIC (``sriov_dra_agent.vf.backends.simulated_nic``,
one PF with ``vfs_per_node`` VFs), an agent with that node's directories
(``node_layout``), and one node emulator for all nodes. Logs go to the dev
cluster's log directory (``operator.log``, ``agent-<node>.log``,
``node-emulator.log``); pids to ``<state-dir>/stack.json``.

``python -m sriov_dra_devcluster.stack up|down|status [--state-dir DIR]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import SriovDraError
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic

from sriov_dra_devcluster import emulator_state, processes
from sriov_dra_devcluster.cluster import DevCluster
from sriov_dra_devcluster.node_layout import NodeLayout, runtime_root
from sriov_dra_devcluster.paths import BASE_MANIFESTS, CRDS
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent
from sriov_dra_devcluster.state_dir import default_state_dir

MANIFESTS: Final = BASE_MANIFESTS
SYSTEM_NAMESPACE: Final = "sriov-dra"
OPERATOR_SA: Final = "sriov-dra-operator"
AGENT_SA: Final = "sriov-dra-agent"
IDENTITY_MANIFESTS: Final = (
    "namespace.yaml",
    "serviceaccounts.yaml",
    "rbac-operator.yaml",
    "rbac-agent.yaml",
    "deviceclass.yaml",
)
"""What of ``manifests/`` applies here: everything but the workloads (no kubelet runs them)."""
AGENT_ENV: Final = (("GRPC_ENABLE_FORK_SUPPORT", "0"),)
"""The agent serves gRPC (aio) and pyroute2 forks a child per netns socket; with
gRPC's fork handlers on, those children segfault ("child process is dead,
status: -11"). The children never touch gRPC, so the handlers are not needed."""
STACK_FILE: Final = "stack.json"
OPERATOR: Final = "operator"
EMULATOR: Final = "node-emulator"
PF_NAME: Final = "simpf0"


class StackFailed(SriovDraError):
    """A stack process did not start or did not become ready; carries its log tail."""

    reason = "StackFailed"

    def __init__(self, component: str, problem: str, log_file: Path | None = None) -> None:
        self.component = component
        self.log_file = log_file
        tail = processes.log_tail(log_file) if log_file else ""
        self.tail = tail
        super().__init__(
            f"{component} {problem}",
            field=component,
            fix=(f"read {log_file}; " if log_file else "")
            + "`python -m sriov_dra_devcluster.stack down` cleans up before a retry",
        )

    def describe(self) -> str:
        text = f"{self.message}; fix: {self.fix}"
        if self.log_file:
            text += f"\n--- last lines of {self.log_file} ---\n{self.tail}"
        return text


def sim_prefix(state_dir: Path) -> str:
    """Netns prefix of this cluster's simulated NICs (``sim<4 hex>``), distinct per state dir."""
    return "sim" + hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()[:4]


def sriov_dra_executable() -> str:
    """The ``sriov-dra`` console script next to this Python."""
    return str(Path(sys.executable).parent / "sriov-dra")


@dataclass(frozen=True)
class Identities:
    """Token kubeconfigs of the manifests' ServiceAccounts."""

    operator: Path
    agent: Path


class Stack:
    """The stack of one dev cluster (which must be up)."""

    def __init__(self, cluster: DevCluster, *, vfs_per_node: int = 4) -> None:
        self.cluster = cluster
        self.vfs_per_node = vfs_per_node
        self.root = runtime_root(cluster.state_dir)
        self.prefix = sim_prefix(cluster.state_dir)

    # --- layout ----------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        return self.cluster.node_names

    def layout(self, node: str) -> NodeLayout:
        return NodeLayout(self.root, node)

    def nic(self, node: str) -> SimulatedNic:
        return SimulatedNic(node, prefix=self.prefix, root=self.root)

    @property
    def _stack_file(self) -> Path:
        return self.cluster.state_dir / STACK_FILE

    def _log(self, name: str) -> Path:
        return self.cluster.log_dir / f"{name}.log"

    def processes(self) -> list[RunningComponent]:
        """The processes ``up`` started (from ``stack.json``)."""
        try:
            data = json.loads(self._stack_file.read_text())
        except (OSError, ValueError):
            return []
        return [RunningComponent.from_json(c) for c in data.get("processes", [])]

    def _save(self, processes: Sequence[RunningComponent]) -> None:
        tmp = self._stack_file.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "root": str(self.root),
                    "simPrefix": self.prefix,
                    "nodes": self.nodes,
                    "processes": [p.to_json() for p in processes],
                },
                indent=2,
            )
        )
        tmp.replace(self._stack_file)

    # --- up --------------------------------------------------------------------------

    def apply_identities(self) -> Identities:
        """Apply CRDs and the non-workload manifests; mint ServiceAccount token kubeconfigs."""
        self.cluster.kubectl("apply", "-f", str(CRDS))
        self.cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/network-attachment-definitions.k8s.cni.cncf.io",
            "--timeout=60s",
        )
        for name in IDENTITY_MANIFESTS:
            self.cluster.kubectl("apply", "-f", str(MANIFESTS / name))
        return Identities(
            operator=self.cluster.kubeconfig_for_service_account(SYSTEM_NAMESPACE, OPERATOR_SA),
            agent=self.cluster.kubeconfig_for_service_account(SYSTEM_NAMESPACE, AGENT_SA),
        )

    def build_nics(self) -> None:
        """One simulated PF with ``vfs_per_node`` VFs per node (real netns, bridges, veths)."""
        for node in self.nodes:
            self.layout(node).create()
            self.nic(node).build(
                [
                    SimPf(
                        name=PF_NAME, total_vfs=max(8, self.vfs_per_node), num_vfs=self.vfs_per_node
                    )
                ]
            )

    def operator_spec(self, kubeconfig: Path, *, extra_args: Sequence[str] = ()) -> ComponentSpec:
        metrics, health = processes.free_ports(2)
        return ComponentSpec(
            name=OPERATOR,
            argv=(
                sriov_dra_executable(),
                "operator",
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--metrics-port={metrics}",
                f"--health-port={health}",
                *extra_args,
            ),
            port=health,
            health_url=f"http://127.0.0.1:{health}/healthz",
            # Also in the environment: kopf's login handler reads KUBECONFIG through
            # kubernetes_asyncio, which looks at it once, at import time.
            env=(("KUBECONFIG", str(kubeconfig)),),
        )

    def agent_spec(self, node: str, kubeconfig: Path) -> ComponentSpec:
        layout = self.layout(node)
        metrics, health = processes.free_ports(2)
        return ComponentSpec(
            name=f"agent-{node}",
            argv=(
                sriov_dra_executable(),
                "agent",
                f"--node-name={node}",
                "--backend=simulated",
                f"--sim-prefix={self.prefix}",
                f"--sysfs-root={layout.sysfs_root}",
                f"--kubelet-registrar-dir={layout.registrar_dir}",
                f"--kubelet-plugins-dir={layout.plugins_dir}",
                f"--cdi-dir={layout.cdi_dir}",
                f"--cni-data-dir={layout.cni_data_dir}",
                f"--state-dir={layout.agent_state_dir}",
                "--install-hook",
                f"--kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--metrics-port={metrics}",
                f"--health-port={health}",
                "--rescan-interval=2",
            ),
            port=health,
            health_url=f"http://127.0.0.1:{health}/healthz",
            env=AGENT_ENV,
        )

    def emulator_spec(self) -> ComponentSpec:
        return ComponentSpec(
            name=EMULATOR,
            argv=(
                sriov_dra_executable(),
                "node-emulator",
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--root={self.root}",
                *(f"--node={node}" for node in self.nodes),
            ),
            port=0,
            health_url="",
        )

    def up(
        self,
        log: Callable[[str], None] = print,
        *,
        timeout: float = 120.0,
        operator_args: Sequence[str] = (),
    ) -> None:
        """Start everything and wait until the agents published their VFs and all is healthy.

        A healthy stack is reused. On failure, what was started is stopped and
        StackFailed names the process and shows its log tail.
        """
        if self.running():
            log("sriov-dra stack already running; reusing it")
            return
        self.down(log=lambda _msg: None)
        identities = self.apply_identities()
        log(
            f"applied manifests/ RBAC; tokens minted for {SYSTEM_NAMESPACE}/{OPERATOR_SA} "
            f"and {SYSTEM_NAMESPACE}/{AGENT_SA}"
        )
        self.build_nics()
        log(
            f"simulated SR-IOV NICs built: {len(self.nodes)} node(s) x {PF_NAME} with "
            f"{self.vfs_per_node} VFs (netns {self.prefix}-<node>)"
        )
        specs = [self.agent_spec(node, identities.agent) for node in self.nodes]
        specs += [self.operator_spec(identities.operator, extra_args=operator_args)]
        specs += [self.emulator_spec()]
        started: list[RunningComponent] = []
        try:
            for spec in specs:
                started.append(processes.start(spec, self._log(spec.name)))
                self._save(started)
            self._wait_ready(started, time.monotonic() + timeout)
        except BaseException:
            self.down(log=lambda _msg: None)
            raise
        log(
            "started as processes: "
            + ", ".join(f"{p.name} (pid {p.pid})" for p in started)
            + f"; logs in {self.cluster.log_dir}"
        )

    def _wait_ready(self, started: Sequence[RunningComponent], deadline: float) -> None:
        pending = {p.name for p in started}
        while pending:
            for proc in started:
                processes.reap(proc.pid)
                if not proc.alive():
                    raise StackFailed(proc.name, "exited during start-up", Path(proc.log_file))
            for proc in started:
                if proc.name in pending and self._ready(proc):
                    pending.discard(proc.name)
            if not pending:
                return
            if time.monotonic() > deadline:
                name = sorted(pending)[0]
                proc = next(p for p in started if p.name == name)
                raise StackFailed(name, _what_ready_means(name), Path(proc.log_file))
            time.sleep(0.3)

    def _ready(self, proc: RunningComponent) -> bool:
        if proc.name == EMULATOR:
            return "node emulation started" in Path(proc.log_file).read_text(errors="replace")
        if proc.health_url and not processes.probe(proc.health_url, None):
            return False
        if proc.name.startswith("agent-"):
            node = proc.name.removeprefix("agent-")
            socket_path = self.layout(node).registrar_dir / f"{DRIVER_NAME}-reg.sock"
            return socket_path.exists() and self.published_devices(node) == self.vfs_per_node
        return True

    def published_devices(self, node: str) -> int:
        """How many devices the node's ResourceSlices of our driver list."""
        out = self.cluster.kubectl(
            "get", "resourceslices", "-o", "json",
            f"--field-selector=spec.nodeName={node},spec.driver={DRIVER_NAME}",
            check=False,
        )  # fmt: skip
        if out.returncode != 0:
            return -1
        return sum(len(s["spec"].get("devices") or []) for s in json.loads(out.stdout)["items"])

    # --- status / down -----------------------------------------------------------------

    def running(self) -> bool:
        procs = self.processes()
        return bool(procs) and all(p.alive() for p in procs)

    def status(self) -> str:
        procs = self.processes()
        if not procs:
            return "sriov-dra stack: not running"
        lines = [f"sriov-dra stack (node dirs in {self.root}, NIC netns prefix {self.prefix}):"]
        for p in procs:
            lines.append(f"  {p.name:<24} {p.pid:>8}  {'running' if p.alive() else 'exited'}")
        return "\n".join(lines)

    def delete_pods_on_sim_nodes(self, timeout: float = 60.0) -> list[str]:
        """Delete every pod bound to a simulated node and wait until the emulation finished them.

        Returns the pods that were still there at the timeout.
        """
        nodes = set(self.nodes)

        def remaining() -> list[dict[str, Any]]:
            out = self.cluster.kubectl("get", "pods", "-A", "-o", "json", check=False)
            if out.returncode != 0:
                return []
            items: list[dict[str, Any]] = json.loads(out.stdout)["items"]
            return [p for p in items if p["spec"].get("nodeName") in nodes]

        pods = remaining()
        for pod in pods:
            meta = pod["metadata"]
            self.cluster.kubectl(
                "delete", "pod", meta["name"], "-n", meta["namespace"], "--wait=false",
                check=False,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while pods and time.monotonic() < deadline:
            time.sleep(0.5)
            pods = remaining()
        return [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in pods]

    def _force_delete_pods_on_sim_nodes(self) -> None:
        """With the emulation gone nobody would ever finish their deletion: force it."""
        try:
            nodes = set(self.nodes)
            out = self.cluster.kubectl("get", "pods", "-A", "-o", "json", check=False)
        except (SriovDraError, OSError):
            return
        if out.returncode != 0:
            return
        for pod in json.loads(out.stdout)["items"]:
            if pod["spec"].get("nodeName") in nodes:
                meta = pod["metadata"]
                self.cluster.kubectl(
                    "delete", "pod", meta["name"], "-n", meta["namespace"],
                    "--grace-period=0", "--force", "--wait=false", check=False,
                )  # fmt: skip

    def down(self, log: Callable[[str], None] = print) -> None:
        """Stop everything and remove what it made: processes, pod netns, NICs, node dirs.

        Pods on simulated nodes are deleted first while the emulator and agents
        still run, so their VFs are detached and their IPs released the normal way.
        """
        procs = self.processes()
        if procs and self.running():
            left = self.delete_pods_on_sim_nodes()
            if left:
                log(f"pods not finished by the emulation in time: {', '.join(left)}")
        killed = processes.stop(list(reversed(procs)))
        self._force_delete_pods_on_sim_nodes()
        if killed:
            log(f"needed SIGKILL: {', '.join(killed)}")
        nodes = [p.name.removeprefix("agent-") for p in procs if p.name.startswith("agent-")]
        nodes = sorted(set(nodes) | set(self._recorded_nodes()) | set(self._cluster_nodes()))
        layouts = [self.layout(node) for node in nodes]
        removed = emulator_state.sweep(layouts)
        if removed:
            log(f"removed emulation leftovers: {', '.join(removed)}")
        for node in nodes:
            self.nic(node).destroy()
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self._stack_file.unlink()
        if procs:
            log(f"stopped {', '.join(p.name for p in procs)}; simulated NICs removed")

    def _cluster_nodes(self) -> list[str]:
        try:
            return self.nodes
        except (SriovDraError, OSError, ValueError, KeyError):
            return []

    def _recorded_nodes(self) -> list[str]:
        try:
            nodes: list[str] = json.loads(self._stack_file.read_text()).get("nodes", [])
        except (OSError, ValueError):
            return []
        return nodes


def _what_ready_means(name: str) -> str:
    if name.startswith("agent-"):
        return (
            "not ready before the timeout (healthy, registration socket present, "
            "ResourceSlices listing every VF)"
        )
    if name == EMULATOR:
        return "did not log its start before the timeout"
    return "not healthy before the timeout"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sriov_dra_devcluster.stack up|down|status``."""
    parser = argparse.ArgumentParser(prog="python -m sriov_dra_devcluster.stack")
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--vfs-per-node", type=int, default=4)
    args = parser.parse_args(argv)
    cluster = DevCluster(args.state_dir or default_state_dir())
    stack = Stack(cluster, vfs_per_node=args.vfs_per_node)
    try:
        if args.action == "up":
            stack.up()
        elif args.action == "down":
            stack.down()
        else:
            print(stack.status())
    except SriovDraError as exc:
        print(f"sriov-dra stack {args.action}: {exc.describe()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
