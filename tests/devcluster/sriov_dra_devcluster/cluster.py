"""DevCluster: a real Kubernetes 1.34 control plane on 127.0.0.1 with kwok-kept nodes.

One state directory holds everything of one cluster: PKI, etcd data, configs,
kubeconfigs, a log file per component and ``state.json`` (pids, ports, nodes).
``up`` is idempotent (a healthy cluster is reused), ``down`` leaves no process
or port behind, and other code (demo, e2e, operator tests) drives the cluster
through this class: ``kubeconfig``, ``kubectl()``, ``node_names``, and
ServiceAccount-token kubeconfigs for components that must run with their own RBAC.

This module orders the steps; the parts are their own modules: the state
directory and its lock (:mod:`.state_dir`), health and readiness waits that
name the culprit (:mod:`.cluster_waits`), ``status`` (:mod:`.cluster_status`),
kwok nodes (:mod:`.kwok_nodes`) and real nodes' bring-up and tear-down
(:mod:`.real_node_bringup`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sriov_dra_devcluster import certs, components, kubeconfigs, processes, real_nodes
from sriov_dra_devcluster.binaries import find_bin_dir, find_node_bin_dir, images_dir
from sriov_dra_devcluster.cluster_status import ClusterStatus, ComponentStatus, probe_context
from sriov_dra_devcluster.cluster_waits import ClusterWaits
from sriov_dra_devcluster.components import (
    APISERVER,
    CONTROLLER_MANAGER,
    ETCD,
    KWOK,
    SCHEDULER,
    Files,
    Ports,
)
from sriov_dra_devcluster.errors import KubectlFailed
from sriov_dra_devcluster.kwok_nodes import is_simulated, node_names_for, node_order
from sriov_dra_devcluster.node_plan import HOST_IP, NodePlan, real_node_names
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent
from sriov_dra_devcluster.real_node_bringup import RealNodeBringup
from sriov_dra_devcluster.state_dir import StateDir, default_state_dir


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
        self._state = StateDir(self.state_dir)

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
        return self._state.log_dir

    @property
    def pki(self) -> certs.Pki:
        return certs.Pki(self.state_dir / "pki")

    @property
    def api_server_url(self) -> str:
        """``https://127.0.0.1:<port>`` of the API server."""
        return kubeconfigs.server_of(self.kubeconfig)

    @property
    def node_names(self) -> list[str]:
        """Names of the simulated nodes."""
        if self._attached_kubeconfig is not None:
            if self._attached_nodes is None:
                self._attached_nodes = self._listed_nodes(simulated=True)
            return list(self._attached_nodes)
        nodes: list[str] = self._state.load().get("nodes", [])
        return nodes

    @property
    def real_node_names(self) -> list[str]:
        """Names of the nodes where kubelet, containerd and runc run pods."""
        if self._attached_kubeconfig is not None:
            return self._listed_nodes(simulated=False)
        names: list[str] = self._state.load().get("real_nodes", [])
        return names

    def _listed_nodes(self, *, simulated: bool) -> list[str]:
        items = self.kubectl_json("get", "nodes")["items"]
        return sorted(n["metadata"]["name"] for n in items if is_simulated(n) == simulated)

    @property
    def node_root(self) -> Path:
        """Where real nodes keep their files: ``<state dir>/nodes/<node>``."""
        return self._state.node_root

    def node_plan(self, name: str) -> NodePlan:
        """Addresses, namespaces and directories of real node ``name``."""
        return self._real_nodes().plan(name)

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

    def _waits(self) -> ClusterWaits:
        return ClusterWaits(self._state, self.pki, self.kubeconfig)

    def _real_nodes(self) -> RealNodeBringup:
        return RealNodeBringup(self._state, self.pki, self.kubeconfig, self._waits())

    # --- status ----------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Each recorded component: pid, port, whether it runs and answers its health check."""
        state = self._state.load()
        result = []
        for comp in self._state.components():
            alive = comp.alive()
            healthy = alive and (
                not comp.health_url
                or processes.probe(comp.health_url, probe_context(comp.name, self.pki))
            )
            result.append(
                ComponentStatus(comp.name, comp.pid, comp.port, alive, healthy, comp.log_file)
            )
        kubeconfig = self.kubeconfig if self.kubeconfig.exists() and result else None
        return ClusterStatus(self.state_dir, result, state.get("nodes", []), kubeconfig)

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
        with self._state.exclusive():
            return self._up(nodes, timeout, log, real_nodes)

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
        waits = self._waits()
        started: list[RunningComponent] = []
        state: dict[str, Any] = {"version": 1, "components": [], "nodes": []}
        if node_bin is not None:
            state["node_bin"] = str(node_bin)

        def launch_spec(spec: ComponentSpec) -> RunningComponent:
            log_name = spec.name.replace("/", "-")
            comp = processes.start(spec, self.log_dir / f"{log_name}.log")
            started.append(comp)
            state["components"] = [c.to_json() for c in started]
            self._state.save(state)
            return comp

        def launch(name: str) -> RunningComponent:
            return launch_spec(specs[name])

        try:
            t0 = time.monotonic()
            waits.wait_healthy(launch(ETCD), specs[ETCD], deadline)
            waits.wait_healthy(launch(APISERVER), specs[APISERVER], deadline)
            log(f"etcd + kube-apiserver ready in {time.monotonic() - t0:.1f}s")
            rest = [launch(name) for name in (CONTROLLER_MANAGER, SCHEDULER, KWOK)]
            for comp in rest:
                waits.wait_healthy(comp, specs[comp.name], deadline)
            waits.wait_for_default_service_account(deadline)
            if node_bin is not None and images is not None:
                state["real_nodes"] = real_node_names(real)
                self._state.save(state)
                self._real_nodes().start(
                    real_node_names(real), ports, node_bin, images, launch_spec, deadline, log
                )
            self._ensure_nodes(nodes, deadline)
            log(
                f"control plane, {real} real and {nodes} kwok node(s) ready "
                f"in {time.monotonic() - t0:.1f}s"
            )
        except BaseException:
            rest = self._real_nodes().teardown(state, started, log)
            processes.stop(list(reversed(rest)))
            raise
        return True

    def _prepare(self, bin_dir: Path) -> None:
        """A clean state dir (old logs rotated away), PKI and component configs."""
        self._state.fresh_logs()
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

    def _ensure_nodes(self, count: int, deadline: float) -> None:
        """Register ``count`` kwok nodes (existing ones kept), wait until Ready, record them."""
        waits = self._waits()
        names = node_names_for(count)
        waits.register_kwok_nodes(names)
        waits.wait_nodes_ready(names, deadline, culprit=KWOK)
        state = self._state.load()
        state["nodes"] = sorted(set(state.get("nodes", [])) | set(names), key=node_order)
        self._state.save(state)

    # --- down ----------------------------------------------------------------------------

    def down(self, log: Callable[[str], None] = print) -> list[str]:
        """Stop every component (SIGTERM, then SIGKILL) and delete all state but the logs.

        Returns the names of components that were running.
        """
        if not self.state_dir.exists():
            log(f"no dev cluster running in {self.state_dir}")
            return []
        with self._state.exclusive():
            return self._down(log)

    def _down(self, log: Callable[[str], None]) -> list[str]:
        comps = self._state.components()
        was_running = [c.name for c in comps if c.alive()]
        comps = self._real_nodes().teardown(self._state.load(), comps, log)
        killed = processes.stop(list(reversed(comps)))
        if killed:
            log(f"needed SIGKILL: {', '.join(killed)}")
        for comp in comps:
            deadline = time.monotonic() + 5
            while processes.port_in_use(comp.port) and time.monotonic() < deadline:
                time.sleep(0.1)
        self._state.clear()
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
