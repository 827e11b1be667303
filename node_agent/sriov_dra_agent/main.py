"""``sriov-dra agent``: the per-node process.

Start-up order matters: the host hook is written (``--install-hook``) and the
sweep repairs what a crash left *before* anyone can ask for new work; then the
attach socket and the kubelet plugin serve (the DRA socket before the
registration socket, see :mod:`sriov_dra_agent.kubelet.plugin`); then the slice publisher and the
claim watcher run until SIGTERM/SIGINT. Shutdown stops accepting, lets running
claim operations finish and leaves the ResourceSlices
in place (a restart must not empty the pool).
"""

from __future__ import annotations

import os

# pyroute2 forks a child to open each netns socket; grpc's fork handlers crash such
# children (SIGSEGV) while its threads run. Must be set before grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Final

from sriov_dra import jsonlog
from sriov_dra.errors import SriovDraError
from sriov_dra_kube.client import KubeApi
from sriov_dra_kube.events import EventRecorder

from sriov_dra_agent.attach.attach_socket import AttachServer
from sriov_dra_agent.attach.attacher import ClaimAttacher
from sriov_dra_agent.attach.host_hook import install_host_hook
from sriov_dra_agent.attach.pod_network import PodNetwork
from sriov_dra_agent.cluster.advertisement_policies import AdvertisementPolicies
from sriov_dra_agent.cluster.claim_devices import NodeScope
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_manager import ClaimManager
from sriov_dra_agent.cluster.claim_status import ClaimStatus
from sriov_dra_agent.cluster.claim_watcher import ClaimWatcher
from sriov_dra_agent.cluster.device_status import DeviceStatusWriter
from sriov_dra_agent.cluster.nad_cache import NadCache
from sriov_dra_agent.cluster.slice_publisher import SlicePublisher
from sriov_dra_agent.cluster.vanished_vfs import VanishedVfs
from sriov_dra_agent.health.health_service import health_servicer
from sriov_dra_agent.health.pf_links import PfLinkMonitor
from sriov_dra_agent.kubelet.cdi import CdiHook
from sriov_dra_agent.kubelet.plugin import KubeletPlugin, KubeletPluginConfig
from sriov_dra_agent.kubelet.prepared_claims import PreparedClaims
from sriov_dra_agent.kubelet.preparer import Preparer
from sriov_dra_agent.metrics import AgentMetrics, HttpEndpoints, vf_state_counts
from sriov_dra_agent.settings import AgentSettings
from sriov_dra_agent.settings import configure_parser as _configure_parser
from sriov_dra_agent.vf.backends import make_backend
from sriov_dra_agent.vf.hardware_events import HardwareEvents
from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_agent.vf.lifecycle import VfLifecycle

logger = logging.getLogger("sriov_dra_agent")

COMPONENT: Final = "sriov-dra-agent"
"""The agent's name as the source of its Events."""
LOOP_SECONDS_CAP: Final = 5.0
"""The claim watcher's resync (3 of these) and the gauges' refresh follow the rescan
interval up to this: the rescan is a slow safety net now, they are not."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Flags of ``sriov-dra agent`` (see :mod:`sriov_dra_agent.settings`)."""
    _configure_parser(parser)


class Agent:
    """All parts of one node's agent, wired together."""

    def __init__(self, settings: AgentSettings, api: KubeApi) -> None:
        self.settings = settings
        self.api = api
        self.metrics = AgentMetrics(settings.node_name)
        self.locks = ClaimLocks()
        self.backend = make_backend(
            settings.backend,
            node=settings.node_name,
            sysfs_root=settings.sysfs_root,
            sim_prefix=settings.sim_prefix,
        )
        self.pods = PodNetwork(self.backend, cni_path=settings.cni_path)
        self.vfs = VfLifecycle(self.backend, self.pods, state_dir=settings.state_dir / "vfs")
        self.policies = AdvertisementPolicies(
            api,
            node=settings.node_name,
            namespaces=settings.policy_namespaces,
            driver=settings.driver_name,
            no_policy=settings.no_policy,
            component=COMPONENT,
            on_change=lambda: self.publisher.republish(),
        )
        hotplug_dir = self.backend.hotplug_dir()
        self.hardware = HardwareEvents(
            node=settings.node_name,
            on_change=lambda: self.publisher.rescan(),
            tree=hotplug_dir,
            uevents=hotplug_dir is None,
            # A real node's virtual netdevs are its pods' (no PF or VF): not a reason to rescan.
            virtual_links=self.backend.kind == "simulated",
        )
        self.links = PfLinkMonitor(
            node=settings.node_name,
            netns=self.backend.host_netns(),
            on_change=lambda: self.publisher.republish(),
            on_link=self.hardware.link_message,
        )
        self.publisher = SlicePublisher(
            api,
            node=settings.node_name,
            driver=settings.driver_name,
            discover=self.backend.discover,
            interval=settings.rescan_interval,
            on_publish=self.metrics.on_publish,
            resource_names=settings.resource_names,
            advertise=self.policies.decide,
            on_inventory=self._on_inventory,
            taints=self.links.taints,
        )
        scope = NodeScope(settings.node_name, settings.driver_name, settings.nad_namespaces)
        self.nads = NadCache(api, on_fetch=self.metrics.nad_fetches.inc)
        self.prepared = PreparedClaims(
            checkpoint_path=settings.checkpoint_path,
            cdi_dir=settings.cdi_dir,
            device_info_dir=settings.device_info_dir,
            resource_names=settings.resource_names.names(),
        )
        status = ClaimStatus(
            scope,
            DeviceStatusWriter(
                api, driver=settings.driver_name, field_manager=settings.field_manager
            ),
            self.vfs,
        )
        events = EventRecorder(
            api, component=COMPONENT, instance=settings.node_name, host=settings.node_name
        )
        self.vanished = VanishedVfs(
            node=settings.node_name,
            api=api,
            vfs=self.vfs,
            status=status,
            events=events,
            locks=self.locks,
        )
        self.manager = ClaimManager(
            scope,
            api=api,
            vfs=self.vfs,
            nads=self.nads,
            prepared=self.prepared,
            status=status,
            events=events,
            metrics=self.metrics,
            dev_root=settings.dev_root,
        )
        preparer = Preparer(
            scope,
            api=api,
            manager=self.manager,
            vfs=self.vfs,
            prepared=self.prepared,
            status=status,
            metrics=self.metrics,
            hook=CdiHook(path=settings.hook_path, attach_socket=str(settings.attach_socket)),
            sysfs_root=settings.sysfs_root,
            resource_names=settings.resource_names,
            published_resource_name=self.publisher.published_resource_name,
            agent_attaches=settings.agent_attaches,
        )
        self.plugin = KubeletPlugin(
            preparer,
            KubeletPluginConfig(
                driver_name=settings.driver_name,
                registrar_dir=settings.kubelet_registrar_dir,
                plugins_dir=settings.kubelet_plugins_dir,
            ),
            locks=self.locks,
            extra_services=[health_servicer(self.links)],
        )
        attacher = ClaimAttacher(
            scope,
            api=api,
            vfs=self.vfs,
            nads=self.nads,
            prepared=self.prepared,
            status=status,
            events=events,
            metrics=self.metrics,
            cni_data_dir=settings.cni_data_dir,
        )
        self.attach_server = AttachServer(attacher, settings.attach_socket, locks=self.locks)
        self.watcher = ClaimWatcher(
            api,
            self.manager,
            self.locks,
            self.nads,
            node=settings.node_name,
            resync_seconds=max(min(settings.rescan_interval, LOOP_SECONDS_CAP) * 3, 5.0),
        )
        self.http = HttpEndpoints(
            self.metrics,
            self.healthy,
            address=settings.bind_address,
            metrics_port=settings.metrics_port,
            health_port=settings.health_port,
        )
        self.tasks: list[asyncio.Task[Any]] = []

    def _on_inventory(self, inventory: Inventory) -> None:
        """Each discovery: device health follows it, vanished VFs are reported."""
        self.links.set_inventory(inventory)
        self.vanished.observe(inventory)

    def healthy(self) -> tuple[bool, str]:
        """Alive while every loop runs."""
        dead = [t.get_name() for t in self.tasks if t.done()]
        if dead:
            return False, f"stopped: {', '.join(dead)}"
        return True, "running"

    async def _gauges(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                checkpoint = await self.prepared.load()
                counts = vf_state_counts(
                    self.vfs.records_all(), self.publisher.inventory, set(checkpoint.claims)
                )
                self.metrics.set_vf_states(counts)
            except Exception as exc:
                logger.warning("metrics refresh failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=min(self.settings.rescan_interval, LOOP_SECONDS_CAP)
                )

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep, serve, watch, until ``stop``; then shut down cleanly."""
        if self.settings.install_hook:
            # Before the kubelet can prepare: the CDI specs name this path.
            install_host_hook(
                Path(self.settings.hook_path), executable=self.settings.hook_executable
            )
            logger.info(
                "host hook installed",
                extra={
                    "node": self.settings.node_name,
                    "hook_path": self.settings.hook_path,
                    "executable": self.settings.hook_executable,
                },
            )
        await self.manager.startup_sweep()
        await self.attach_server.start()
        try:
            await self.plugin.start()
            try:
                await self.http.start()
                self.tasks = [
                    asyncio.create_task(self.nads.run(stop), name="nad-cache"),
                    asyncio.create_task(self.policies.run(stop), name="advertisement-policies"),
                    asyncio.create_task(self.links.run(stop), name="pf-links"),
                    asyncio.create_task(self.hardware.run(stop), name="hardware-events"),
                    asyncio.create_task(self.vanished.run(stop), name="vanished-vfs"),
                    asyncio.create_task(self.publisher.run(stop), name="slice-publisher"),
                    asyncio.create_task(self.watcher.run(stop), name="claim-watcher"),
                    asyncio.create_task(self._gauges(stop), name="gauges"),
                ]
                logger.info(
                    "agent running",
                    extra={
                        "node": self.settings.node_name,
                        "backend": self.settings.backend,
                        "attach_mode": self.settings.attach_mode,
                        "dra_socket": str(self.plugin.config.dra_socket),
                        "attach_socket": str(self.settings.attach_socket),
                    },
                )
                await stop.wait()
                await asyncio.gather(*self.tasks, return_exceptions=True)
            finally:
                await self.http.stop()
                await self.plugin.stop()
        finally:
            await self.attach_server.stop()
            self.pods.close()
        logger.info("agent stopped", extra={"node": self.settings.node_name})


async def _main(settings: AgentSettings) -> int:
    api = await KubeApi.from_kubeconfig(settings.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    pid = os.getpid()

    def on_signal(signum: int, _frame: Any) -> None:
        # Not loop.add_signal_handler: its wakeup fd is inherited by the children
        # pyroute2 forks to open netns sockets, and a signal to such a child
        # would read as one to us. Children also run this handler: ignore there.
        if os.getpid() == pid:
            logger.info("signal received, stopping", extra={"signal": signum})
            loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        agent = Agent(settings, api)
        await agent.run(stop)
    finally:
        await api.close()
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of ``sriov-dra agent``."""
    try:
        settings = AgentSettings.from_args(args)
    except ValueError as exc:
        print(f"sriov-dra agent: {exc}", file=sys.stderr, flush=True)
        return 2
    jsonlog.configure(settings.log_level)
    try:
        return asyncio.run(_main(settings))
    except SriovDraError as exc:
        logger.error("agent failed: %s", exc.describe(), extra={"node": settings.node_name})
        return 1
