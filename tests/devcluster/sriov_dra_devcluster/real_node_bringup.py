"""Bringing a cluster's real nodes up after its control plane, and tearing them down before it.

Up: the registry and CoreDNS they pull from and resolve with, then per node its
network, its simulated SR-IOV NIC, kubeconfigs, mounts, containerd, kubelet and
kube-proxy, until every node is Ready. Down undoes each node (pods, processes,
NIC, netns, mount points) and then what they shared (cgroups, the bridge). The
pieces themselves are :mod:`sriov_dra_devcluster.real_nodes`'.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic

from sriov_dra_devcluster import certs, kubeconfigs, node_services, processes, real_nodes
from sriov_dra_devcluster.cluster_waits import ClusterWaits
from sriov_dra_devcluster.components import Ports
from sriov_dra_devcluster.node_layout import runtime_root
from sriov_dra_devcluster.node_plan import HOST_IP, SIM_PREFIX, NodePlan
from sriov_dra_devcluster.processes import ComponentSpec, RunningComponent
from sriov_dra_devcluster.state_dir import StateDir

SIM_PFS: Final = (
    SimPf(name="eth0", total_vfs=8, num_vfs=2),
    SimPf(name="eth1", total_vfs=8, num_vfs=2),
)
"""Each real node's simulated SR-IOV NIC: two PFs (vendor 8086, PCIe roots pci0000:3a and
pci0000:3c), 2 of 8 VFs enabled on each. Named as the Go driver's demo/resource-policies
expects a node's PFs to be, so that demo applies unchanged."""


class RealNodeBringup:
    """The real nodes of the cluster in ``state`` (admin ``kubeconfig``, ``pki``)."""

    def __init__(
        self, state: StateDir, pki: certs.Pki, kubeconfig: Path, waits: ClusterWaits
    ) -> None:
        self._state = state
        self._pki = pki
        self._kubeconfig = kubeconfig
        self._waits = waits

    def plan(self, name: str) -> NodePlan:
        """Addresses, namespaces and directories of real node ``name``."""
        return NodePlan(name, self._state.node_root)

    def start(
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
        state_dir = self._state.path
        wait_healthy = self._waits.wait_healthy
        registry = node_services.registry_spec(node_bin, state_dir / "registry")
        wait_healthy(launch(registry), registry, deadline)
        node_services.push_images(node_bin, images, log)
        (dns_port,) = processes.free_ports(1)
        dns = node_services.coredns_spec(node_bin, state_dir / "config", self._kubeconfig, dns_port)
        wait_healthy(launch(dns), dns, deadline)
        log(f"registry and CoreDNS ready in {time.monotonic() - t0:.1f}s")
        plans = [self.plan(name) for name in names]
        server = f"https://{HOST_IP}:{ports.apiserver}"
        pki = self._pki
        proxy_kc = state_dir / "kubeconfigs" / "kube-proxy.kubeconfig"
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
            nic_root = runtime_root(state_dir)
            SimulatedNic(plan.name, prefix=SIM_PREFIX, root=nic_root).build(SIM_PFS)
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
                    wait_healthy(comp, spec, deadline)
        self._waits.wait_nodes_ready(names, deadline, culprit="kubelet/")
        log(f"{len(names)} real node(s) Ready in {time.monotonic() - t0:.1f}s")

    def teardown(
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
        nic_root = runtime_root(self._state.path)
        for name in names:
            own = [c for c in comps if c.name.endswith(f"/{name}")]
            holder = next((c for c in own if c.name.startswith(real_nodes.HOLDER)), None)
            real_nodes.teardown_node(
                self.plan(name), holder, [c for c in own if c is not holder], node_bin, log
            )
            SimulatedNic(name, prefix=SIM_PREFIX, root=nic_root).destroy()
        # Only now: each node's mount points are mount points in every other node too.
        for name in names:
            real_nodes.remove_mount_targets(self.plan(name))
        if names or node_bin:
            real_nodes.remove_runtime_cgroups()
            real_nodes.remove_bridge(self._state.path)
        return [c for c in comps if "/" not in c.name]
