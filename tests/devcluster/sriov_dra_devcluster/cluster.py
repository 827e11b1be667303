"""DevCluster: a real Kubernetes 1.34 control plane on 127.0.0.1 with kwok-kept nodes.

One state directory holds everything of one cluster: PKI, etcd data, configs,
kubeconfigs, a log file per component and ``state.json`` (pids, ports, nodes).
``up`` is idempotent (a healthy cluster is reused), ``down`` leaves no process
or port behind, and other code (demo, e2e, operator tests) drives the cluster
through this class: ``kubeconfig``, ``kubectl()``, ``node_names``, and
ServiceAccount-token kubeconfigs for components that must run with their own RBAC.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic

from sriov_dra_devcluster import (
    certs,
    components,
    kubeconfigs,
    node_services,
    processes,
    real_nodes,
)
from sriov_dra_devcluster.admin_api import AdminApi
from sriov_dra_devcluster.binaries import find_bin_dir, find_node_bin_dir, images_dir
from sriov_dra_devcluster.components import (
    APISERVER,
    CONTROLLER_MANAGER,
    ETCD,
    KWOK,
    SCHEDULER,
    SIMULATED_NODE_ANNOTATION,
    SIMULATED_NODE_VALUE,
    Files,
    Ports,
)
from sriov_dra_devcluster.errors import ComponentFailed, KubectlFailed
from sriov_dra_devcluster.node_layout import runtime_root
from sriov_dra_devcluster.node_plan import (
    HOST_IP,
    SIM_PREFIX,
    NodePlan,
    real_node_names,
)
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent

STATE_DIR_ENV: Final = "SRIOV_DRA_STATE_DIR"
NODE_PREFIX: Final = "sim-node-"
STATE_FILE: Final = "state.json"
LOG_DIR: Final = "logs"
# Kept across `down` so a failed run can still be read afterwards.
LOCK_FILE: Final = ".lock"
SIM_PF: Final = SimPf(name="simpf0", total_vfs=8, num_vfs=4)
"""Each real node's simulated SR-IOV NIC: one PF, 4 of 8 VFs enabled."""
_KEEP_ON_DOWN: Final = frozenset({LOG_DIR, LOCK_FILE})


def default_state_dir() -> Path:
    """``$SRIOV_DRA_STATE_DIR``, else ``$XDG_STATE_HOME/sriov-dra/devcluster``, else /var/tmp."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    if xdg:
        return Path(xdg) / "sriov-dra" / "devcluster"
    return Path("/var/tmp/sriov-dra/devcluster")


def node_names_for(count: int) -> list[str]:
    """The simulated nodes' names: sim-node-1 .. sim-node-<count>."""
    return [f"{NODE_PREFIX}{i}" for i in range(1, count + 1)]


def node_manifest(name: str) -> dict[str, Any]:
    """A Node as a kubelet would register it; kwok adds conditions, heartbeats and the Lease."""
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                SIMULATED_NODE_ANNOTATION: SIMULATED_NODE_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "spec": {"providerID": f"kwok://{name}"},
        "status": {"allocatable": resources, "capacity": dict(resources)},
    }


def node_is_ready(node: dict[str, Any]) -> bool:
    """Ready=True and no taint that would keep pods off it."""
    conditions = node.get("status", {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = node.get("spec", {}).get("taints") or []
    blocking = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")]
    return ready and not blocking


@dataclass(frozen=True)
class ComponentStatus:
    """What ``status`` reports for one component."""

    name: str
    pid: int
    port: int
    alive: bool
    healthy: bool
    log_file: str


@dataclass(frozen=True)
class ClusterStatus:
    """Every component's status plus the nodes and the kubeconfig."""

    state_dir: Path
    components: list[ComponentStatus]
    nodes: list[str]
    kubeconfig: Path | None

    @property
    def running(self) -> bool:
        """True when every component is alive and healthy."""
        return bool(self.components) and all(c.alive and c.healthy for c in self.components)

    @property
    def anything_alive(self) -> bool:
        return any(c.alive for c in self.components)

    def render(self) -> str:
        """A table for humans."""
        if not self.components:
            return f"dev cluster in {self.state_dir}: not running"
        word = "running" if self.running else "DEGRADED"
        lines = [f"dev cluster in {self.state_dir}: {word}"]
        lines.append(f"  {'COMPONENT':<24} {'PID':>8} {'PORT':>6}  STATE")
        for c in self.components:
            state = "healthy" if c.alive and c.healthy else "unhealthy" if c.alive else "exited"
            lines.append(f"  {c.name:<24} {c.pid:>8} {c.port:>6}  {state}")
        if self.nodes:
            lines.append(f"  nodes: {', '.join(self.nodes)}")
        if self.kubeconfig:
            lines.append(f"  export KUBECONFIG={self.kubeconfig}")
        return "\n".join(lines)


class DevCluster:
    """A local control plane living in ``state_dir``.

    Construct with a state dir, then ``up()``; or ``DevCluster.attach(kubeconfig)``
    to drive a cluster somebody else started.
    """

    def __init__(self, state_dir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        self.state_dir = (state_dir or default_state_dir()).absolute()
        self._bin_dir = bin_dir
        self._attached_kubeconfig: Path | None = None
        self._attached_nodes: list[str] | None = None

    @classmethod
    def attach(cls, kubeconfig: Path, *, bin_dir: Path | None = None) -> DevCluster:
        """Drive an already running cluster through ``kubeconfig`` (no up/down).

        The kubeconfig's directory takes the ServiceAccount kubeconfigs we mint.
        """
        cluster = cls(kubeconfig.absolute().parent, bin_dir=bin_dir)
        cluster._attached_kubeconfig = kubeconfig.absolute()
        return cluster

    # --- paths -------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """The directory with kubectl and the control-plane binaries (BinariesMissing if none)."""
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    @property
    def kubeconfig(self) -> Path:
        """Admin (system:masters) kubeconfig."""
        return self._attached_kubeconfig or self.state_dir / "kubeconfig"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / LOG_DIR

    @property
    def pki(self) -> certs.Pki:
        return certs.Pki(self.state_dir / "pki")

    @property
    def _state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    @property
    def api_server_url(self) -> str:
        """``https://127.0.0.1:<port>`` of the API server."""
        return kubeconfigs.server_of(self.kubeconfig)

    @property
    def node_names(self) -> list[str]:
        """Names of the simulated nodes."""
        if self._attached_kubeconfig is not None:
            if self._attached_nodes is None:
                out = self.kubectl("get", "nodes", "-o", "json")
                items = json.loads(out.stdout)["items"]
                annotation = SIMULATED_NODE_ANNOTATION
                self._attached_nodes = sorted(
                    n["metadata"]["name"]
                    for n in items
                    if n["metadata"].get("annotations", {}).get(annotation) == SIMULATED_NODE_VALUE
                )
            return list(self._attached_nodes)
        nodes: list[str] = self._load_state().get("nodes", [])
        return nodes

    @property
    def real_node_names(self) -> list[str]:
        """Names of the nodes where kubelet, containerd and runc run pods."""
        if self._attached_kubeconfig is not None:
            out = self.kubectl("get", "nodes", "-o", "json")
            items = json.loads(out.stdout)["items"]
            annotation = SIMULATED_NODE_ANNOTATION
            return sorted(
                n["metadata"]["name"]
                for n in items
                if n["metadata"].get("annotations", {}).get(annotation) != SIMULATED_NODE_VALUE
            )
        names: list[str] = self._load_state().get("real_nodes", [])
        return names

    @property
    def node_root(self) -> Path:
        """Where real nodes keep their files: ``<state dir>/nodes/<node>``."""
        return self.state_dir / "nodes"

    def node_plan(self, name: str) -> NodePlan:
        """Addresses, namespaces and directories of real node ``name``."""
        return NodePlan(name, self.node_root)

    def _files(self) -> Files:
        pki = self.pki
        kc_dir = self.state_dir / "kubeconfigs"
        return Files(
            state_dir=self.state_dir,
            ca_cert=pki.ca_cert,
            ca_key=pki.ca_key,
            serving_cert=pki.serving_cert,
            serving_key=pki.serving_key,
            sa_key=pki.service_account_key,
            sa_pub=pki.service_account_pub,
            controller_manager_kubeconfig=kc_dir / "kube-controller-manager.kubeconfig",
            scheduler_kubeconfig=kc_dir / "kube-scheduler.kubeconfig",
            kwok_kubeconfig=kc_dir / "kwok.kubeconfig",
            kubelet_client_cert=pki.client_cert(certs.APISERVER_KUBELET_CLIENT),
            kubelet_client_key=pki.client_key(certs.APISERVER_KUBELET_CLIENT),
        )

    # --- state file ----------------------------------------------------------------------

    def _load_state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self._state_file)

    def _components(self) -> list[RunningComponent]:
        return [RunningComponent.from_json(c) for c in self._load_state().get("components", [])]

    # --- status ----------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Each recorded component: pid, port, whether it runs and answers its health check."""
        state = self._load_state()
        result = []
        for comp in self._components():
            alive = comp.alive()
            healthy = alive and (
                not comp.health_url
                or processes.probe(comp.health_url, self._probe_context(comp.name))
            )
            result.append(
                ComponentStatus(comp.name, comp.pid, comp.port, alive, healthy, comp.log_file)
            )
        kubeconfig = self.kubeconfig if self.kubeconfig.exists() and result else None
        return ClusterStatus(self.state_dir, result, state.get("nodes", []), kubeconfig)

    def _probe_context(self, component: str) -> ssl.SSLContext | None:
        if (
            component in (ETCD, KWOK)
            or "/" in component
            or component
            in (
                node_services.REGISTRY,
                node_services.COREDNS,
            )
        ):
            return None
        if component == APISERVER:
            ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
            admin = certs.ADMIN
            ctx.load_cert_chain(str(self.pki.client_cert(admin)), str(self.pki.client_key(admin)))
            return ctx
        # kcm and the scheduler serve /healthz with a self-signed cert of their own.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # --- up ------------------------------------------------------------------------------

    def up(
        self,
        nodes: int = 2,
        timeout: float = 180.0,
        log: Callable[[str], None] = print,
        *,
        real_nodes: int = 0,
    ) -> bool:
        """Start the control plane, ``real_nodes`` real and ``nodes`` kwok nodes; wait for all.

        Real nodes (``node-1..``) run kubelet, containerd, runc and kube-proxy, each with
        a simulated SR-IOV NIC; kwok nodes (``sim-node-1..``) only look Ready. Returns
        False when a healthy cluster was already running here (it is reused, and
        missing kwok nodes are added), True when it was started. On failure
        everything started is stopped again and ComponentFailed names the culprit.
        """
        if nodes < 0 or real_nodes < 0 or nodes + real_nodes < 1:
            raise ValueError("want at least one node")
        with self._exclusive():
            return self._up(nodes, timeout, log, real_nodes)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Serialise up/down on one state dir across processes (two shells, two sessions)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / LOCK_FILE).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _up(self, nodes: int, timeout: float, log: Callable[[str], None], real: int) -> bool:
        current = self.status()
        if current.running and len(self.real_node_names) >= real:
            log(f"dev cluster already up in {self.state_dir}; reusing it")
            self._ensure_nodes(nodes, time.monotonic() + timeout)
            return False
        if current.anything_alive:
            log("found a half-running dev cluster (or one with fewer real nodes); stopping it")
        self._down(log=lambda _msg: None)
        bin_dir = self.bin_dir
        node_bin = find_node_bin_dir() if real else None
        images: Path | None = None
        if real:
            log("container images: building what the cache lacks (.ci/build-images)")
            images = images_dir()
        deadline = time.monotonic() + timeout
        if real:
            real_nodes.claim_bridge(self.state_dir)
            real_nodes.ensure_bridge()
        self._prepare(bin_dir)
        ports = Ports.pick()
        specs = components.component_specs(
            bin_dir, self._files(), ports, node_host_ip=HOST_IP if real else None
        )
        self._write_kubeconfigs(ports)
        started: list[RunningComponent] = []
        state: dict[str, Any] = {"version": 1, "components": [], "nodes": []}
        if node_bin is not None:
            state["node_bin"] = str(node_bin)

        def launch_spec(spec: ComponentSpec) -> RunningComponent:
            log_name = spec.name.replace("/", "-")
            comp = processes.start(spec, self.log_dir / f"{log_name}.log")
            started.append(comp)
            state["components"] = [c.to_json() for c in started]
            self._save_state(state)
            return comp

        def launch(name: str) -> RunningComponent:
            return launch_spec(specs[name])

        try:
            t0 = time.monotonic()
            self._wait_healthy(launch(ETCD), specs[ETCD], deadline)
            self._wait_healthy(launch(APISERVER), specs[APISERVER], deadline)
            log(f"etcd + kube-apiserver ready in {time.monotonic() - t0:.1f}s")
            rest = [launch(name) for name in (CONTROLLER_MANAGER, SCHEDULER, KWOK)]
            for comp in rest:
                self._wait_healthy(comp, specs[comp.name], deadline)
            self._wait_for_default_service_account(deadline)
            if node_bin is not None and images is not None:
                state["real_nodes"] = real_node_names(real)
                self._save_state(state)
                self._up_real_nodes(
                    real_node_names(real), ports, node_bin, images, launch_spec, deadline, log
                )
            self._ensure_nodes(nodes, deadline)
            log(
                f"control plane, {real} real and {nodes} kwok node(s) ready "
                f"in {time.monotonic() - t0:.1f}s"
            )
        except BaseException:
            rest = self._teardown_real_nodes(state, started, log)
            processes.stop(list(reversed(rest)))
            raise
        return True

    def _up_real_nodes(
        self,
        names: list[str],
        ports: Ports,
        node_bin: Path,
        images: Path,
        launch: Callable[[ComponentSpec], RunningComponent],
        deadline: float,
        log: Callable[[str], None],
    ) -> None:
        """Registry, CoreDNS, then each node: network, NIC, mounts, containerd, kubelet."""
        t0 = time.monotonic()
        registry = node_services.registry_spec(node_bin, self.state_dir / "registry")
        self._wait_healthy(launch(registry), registry, deadline)
        node_services.push_images(node_bin, images, log)
        (dns_port,) = processes.free_ports(1)
        dns = node_services.coredns_spec(
            node_bin, self.state_dir / "config", self.kubeconfig, dns_port
        )
        self._wait_healthy(launch(dns), dns, deadline)
        log(f"registry and CoreDNS ready in {time.monotonic() - t0:.1f}s")
        plans = [self.node_plan(name) for name in names]
        server = f"https://{HOST_IP}:{ports.apiserver}"
        pki = self.pki
        proxy_kc = self.state_dir / "kubeconfigs" / "kube-proxy.kubeconfig"
        kubeconfigs.write_cert_kubeconfig(
            proxy_kc,
            server=server,
            ca_cert=pki.ca_cert,
            user=certs.KUBE_PROXY.user,
            client_cert=pki.client_cert(certs.KUBE_PROXY),
            client_key=pki.client_key(certs.KUBE_PROXY),
        )
        for plan in plans:
            real_nodes.create_node_network(plan, plans)
            nic_root = runtime_root(self.state_dir)
            SimulatedNic(plan.name, prefix=SIM_PREFIX, root=nic_root).build([SIM_PF])
            who = certs.kubelet_identity(plan.name)
            certs.issue_client_cert(pki, who)
            kubelet_kc = kubeconfigs.write_cert_kubeconfig(
                plan.config_dir / "kubelet.kubeconfig",
                server=server,
                ca_cert=pki.ca_cert,
                user=who.user,
                client_cert=pki.client_cert(who),
                client_key=pki.client_key(who),
            )
            real_nodes.prepare_files(plan, ca_cert=pki.ca_cert, kube_proxy_kubeconfig=proxy_kc)
            holder = launch(real_nodes.holder_spec(plan))
            real_nodes.wait_for_holder(holder)
            real_nodes.mount_node_dirs(plan, holder.pid, nic_root / plan.name)
            for spec in real_nodes.node_specs(
                plan, holder.pid, node_bin=node_bin, kubelet_kubeconfig=kubelet_kc
            ):
                comp = launch(spec)
                if spec.name.startswith(real_nodes.CONTAINERD):
                    real_nodes.wait_for_containerd(plan, comp)
                else:
                    self._wait_healthy(comp, spec, deadline)
        self._wait_nodes_ready(names, deadline, culprit="kubelet/")
        log(f"{len(names)} real node(s) Ready in {time.monotonic() - t0:.1f}s")

    def _prepare(self, bin_dir: Path) -> None:
        """A clean state dir (old logs rotated away), PKI and component configs."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.log_dir.exists():
            previous = self.state_dir / f"{LOG_DIR}.previous"
            shutil.rmtree(previous, ignore_errors=True)
            self.log_dir.rename(previous)
        self.log_dir.mkdir()
        certs.create_pki(self.pki.directory)
        files = self._files()
        files.scheduler_config.parent.mkdir(parents=True, exist_ok=True)
        files.scheduler_config.write_text(components.scheduler_config(files.scheduler_kubeconfig))
        files.kwok_config.write_text(components.KWOK_STAGES)
        files.kwok_workdir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "bin-dir").write_text(f"{bin_dir}\n")

    def _write_kubeconfigs(self, ports: Ports) -> None:
        server = f"https://127.0.0.1:{ports.apiserver}"
        pki = self.pki
        files = self._files()
        targets = {
            certs.CONTROLLER_MANAGER: files.controller_manager_kubeconfig,
            certs.SCHEDULER: files.scheduler_kubeconfig,
            certs.KWOK: files.kwok_kubeconfig,
            certs.ADMIN: self.state_dir / "kubeconfig",
        }
        for who, path in targets.items():
            kubeconfigs.write_cert_kubeconfig(
                path,
                server=server,
                ca_cert=pki.ca_cert,
                user=who.user,
                client_cert=pki.client_cert(who),
                client_key=pki.client_key(who),
            )

    def _fail(self, comp: RunningComponent, problem: str) -> ComponentFailed:
        log_file = Path(comp.log_file)
        return ComponentFailed(comp.name, problem, log_file, processes.log_tail(log_file))

    def _wait_healthy(self, comp: RunningComponent, spec: ComponentSpec, deadline: float) -> None:
        context = self._probe_context(comp.name)
        while True:
            processes.reap(comp.pid)
            if not comp.alive():
                raise self._fail(comp, "exited before becoming healthy")
            if processes.probe(spec.health_url, context):
                return
            if time.monotonic() > deadline:
                raise self._fail(comp, f"not healthy at {spec.health_url} before the timeout")
            time.sleep(0.2)

    def _admin_api(self) -> AdminApi:
        pki = self.pki
        return AdminApi(
            self.api_server_url,
            pki.ca_cert,
            pki.client_cert(certs.ADMIN),
            pki.client_key(certs.ADMIN),
        )

    def _culprit(self, name: str) -> RunningComponent:
        return next(c for c in self._components() if c.name == name)

    def _wait_for_default_service_account(self, deadline: float) -> None:
        api = self._admin_api()
        while api.get("/api/v1/namespaces/default/serviceaccounts/default").status != 200:
            if time.monotonic() > deadline:
                raise self._fail(
                    self._culprit(CONTROLLER_MANAGER),
                    "did not create serviceaccount default/default before the timeout",
                )
            time.sleep(0.2)

    def _ensure_nodes(self, count: int, deadline: float) -> None:
        api = self._admin_api()
        names = node_names_for(count)
        for name in names:
            resp = api.post("/api/v1/nodes", node_manifest(name))
            if resp.status not in (201, 409):
                raise self._fail(
                    self._culprit(APISERVER), f"refused to register node {name}: {resp.body}"
                )
        self._wait_nodes_ready(names, deadline, culprit=KWOK)
        state = self._load_state()
        state["nodes"] = sorted(set(state.get("nodes", [])) | set(names), key=_node_order)
        self._save_state(state)

    @staticmethod
    def _node_ready(api: AdminApi, name: str) -> bool:
        resp = api.get(f"/api/v1/nodes/{name}")
        return resp.status == 200 and isinstance(resp.body, dict) and node_is_ready(resp.body)

    def _wait_nodes_ready(self, names: list[str], deadline: float, *, culprit: str) -> None:
        """Wait until every node is Ready and untainted; blame ``culprit`` (a name or prefix)."""
        api = self._admin_api()
        pending = list(names)
        while pending:
            pending = [n for n in pending if not self._node_ready(api, n)]
            if not pending:
                return
            if time.monotonic() > deadline:
                blamed = culprit if not culprit.endswith("/") else f"{culprit}{pending[0]}"
                raise self._fail(
                    self._culprit(blamed),
                    f"nodes {', '.join(pending)} not Ready and untainted before the timeout",
                )
            time.sleep(0.3)

    # --- down ----------------------------------------------------------------------------

    def down(self, log: Callable[[str], None] = print) -> list[str]:
        """Stop every component (SIGTERM, then SIGKILL) and delete all state but the logs.

        Returns the names of components that were running.
        """
        if not self.state_dir.exists():
            log(f"no dev cluster running in {self.state_dir}")
            return []
        with self._exclusive():
            return self._down(log)

    def _teardown_real_nodes(
        self,
        state: dict[str, Any],
        comps: Sequence[RunningComponent],
        log: Callable[[str], None],
    ) -> list[RunningComponent]:
        """Undo every real node (pods, processes, NIC, netns, mount points, bridge).

        Returns the other components (control plane, registry, CoreDNS), still running.
        """
        names: list[str] = state.get("real_nodes", [])
        node_bin = Path(state["node_bin"]) if state.get("node_bin") else None
        for name in names:
            own = [c for c in comps if c.name.endswith(f"/{name}")]
            holder = next((c for c in own if c.name.startswith(real_nodes.HOLDER)), None)
            real_nodes.teardown_node(
                self.node_plan(name), holder, [c for c in own if c is not holder], node_bin, log
            )
            SimulatedNic(name, prefix=SIM_PREFIX, root=runtime_root(self.state_dir)).destroy()
        # Only now: each node's mount points are mount points in every other node too.
        for name in names:
            real_nodes.remove_mount_targets(self.node_plan(name))
        if names or node_bin:
            real_nodes.remove_runtime_cgroups()
            real_nodes.remove_bridge(self.state_dir)
        return [c for c in comps if "/" not in c.name]

    def _down(self, log: Callable[[str], None]) -> list[str]:
        comps = self._components()
        was_running = [c.name for c in comps if c.alive()]
        comps = self._teardown_real_nodes(self._load_state(), comps, log)
        killed = processes.stop(list(reversed(comps)))
        if killed:
            log(f"needed SIGKILL: {', '.join(killed)}")
        for comp in comps:
            deadline = time.monotonic() + 5
            while processes.port_in_use(comp.port) and time.monotonic() < deadline:
                time.sleep(0.1)
        if self.state_dir.exists():
            for entry in self.state_dir.iterdir():
                if entry.name in _KEEP_ON_DOWN or entry.name.startswith(f"{LOG_DIR}."):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
        if was_running:
            log(f"stopped {', '.join(was_running)}; logs kept in {self.log_dir}")
        else:
            log(f"no dev cluster running in {self.state_dir}")
        return was_running

    # --- clients ---------------------------------------------------------------------------

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; KubectlFailed (with stderr) if it fails.

        As admin unless ``kubeconfig`` names another identity (e.g. one from
        ``kubeconfig_for_service_account``).
        """
        kubectl = str(self.bin_dir / "kubectl")
        cmd: Sequence[str] = [kubectl, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, check=False, timeout=timeout
        )
        if check and result.returncode != 0:
            raise KubectlFailed(cmd, result.returncode, result.stdout, result.stderr)
        return result

    def kubectl_json(self, *args: str) -> Any:
        """``kubectl <args> -o json``, decoded."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def kubeconfig_for_service_account(
        self, namespace: str, name: str, *, duration: str = "24h"
    ) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (TokenRequest token).

        The token is valid for ``duration``; the ServiceAccount must exist.
        """
        token = self.kubectl(
            "create", "token", name, "--namespace", namespace, f"--duration={duration}"
        ).stdout.strip()
        server = self.api_server_url
        ca_cert = self.state_dir / "kubeconfigs" / "ca.crt"
        ca_cert.parent.mkdir(parents=True, exist_ok=True)
        ca_cert.write_bytes(kubeconfigs.ca_of(self.kubeconfig))
        return kubeconfigs.write_token_kubeconfig(
            self.state_dir / "kubeconfigs" / f"sa-{namespace}-{name}.kubeconfig",
            server=server,
            ca_cert=ca_cert,
            user=f"system:serviceaccount:{namespace}:{name}",
            token=token,
        )


def _node_order(name: str) -> tuple[int, str]:
    suffix = name.removeprefix(NODE_PREFIX)
    return (int(suffix), name) if suffix.isdigit() else (1 << 30, name)
