"""``sriov-dra operator``: kopf embedded, cluster-wide, standalone.

Only ``on.event`` handlers watch resources through kopf, and they only feed the
controller; claims, slices and the unscheduled pods are watched by the controller
itself (:mod:`.controller`; the pods with a server-side field selector kopf cannot
send, :mod:`.pending_pods`).
That choice keeps kopf's state out of our objects: ``on.event`` handlers write
no progress or diff-base annotations and add no finalizer (kopf adds its
finalizer only for ``on.delete``, daemons and timers, none of which we use), and
they return nothing, so nothing lands in ``status``. Should a changing handler
ever be added, the storages below keep its annotations under our prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from collections.abc import Iterable
from typing import Any

import kopf
from kopf._core.engines.peering import Identity
from kubernetes_asyncio import client
from sriov_dra import jsonlog
from sriov_dra.constants import PREFIX
from sriov_dra.errors import InvalidSetting
from sriov_dra_kube.client import load_api_client

from . import settings as settings_module
from .controller import Controller
from .http_server import OperatorHttp
from .leader_election import LeaderElector, candidate_identity, standby_health
from .metrics import OperatorMetrics
from .nodes import may_watch_nodes
from .settings import OperatorSettings

log = logging.getLogger("sriov_dra_operator")

CLASSES = ("resource.k8s.io", "v1", "deviceclasses")
NADS = ("k8s.cni.cncf.io", "v1", "network-attachment-definitions")
NODES = ("", "v1", "nodes")
API_CONNECTIONS = 16
"""Connections to the API server at most (the claim, slice and pod watches hold three):
the library's 100, each with a 256 KB TLS buffer, were up to 25 MB of the operator's peak
under a burst of claims (bench_scale), and 16 writes in flight keep up with the workers."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """The subcommand's flags (see :mod:`.settings`)."""
    settings_module.configure_parser(parser)


async def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the kubernetes_asyncio configuration we loaded ourselves.

    kopf's own ``login_via_async_client`` reloads the default kubeconfig, whose
    path kubernetes_asyncio fixes at import time; ``--kubeconfig`` must win.
    """
    header = await configuration.get_api_key_with_prefix("BearerToken")
    scheme, _, token = str(header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def build_registry(
    configuration: client.Configuration, *, watch_nodes: bool = False
) -> kopf.OperatorRegistry:
    """A fresh registry with our handlers (fresh so tests can run several operators).

    Nodes are watched only when ``watch_nodes``: kopf stops the whole operator when a
    watch stays forbidden.
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        return await connection_info(configuration)

    @kopf.on.startup(registry=registry)
    async def startup(memo: kopf.Memo, **_: Any) -> None:
        controller: Controller = memo.controller
        await controller.prime()
        controller.start()
        elector: LeaderElector | None = memo.elector
        if elector is not None:
            _hand_over_on_sigterm(controller, elector, memo.stop_flag)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: kopf.Memo, **_: Any) -> None:
        await memo.controller.stop()
        # No worker runs any more, so nothing else will be decided or written: hand the
        # Lease over now rather than after kopf's watchers wind down (seconds).
        elector: LeaderElector | None = memo.elector
        if elector is not None:
            await elector.release()

    @kopf.on.probe(id="reconcile", registry=registry)
    def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        controller: Controller = memo.controller
        return {"primed": controller.primed, "queued": len(controller.queue)}

    # Async on purpose: kopf runs sync handlers in a thread pool, and the cache is
    # only ever touched from the event loop. Claims and slices are watched by the
    # controller itself (paged lists; see :mod:`.controller`).
    @kopf.on.event(*CLASSES, registry=registry)
    async def class_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.controller.on_class(event.get("type"), event["object"])

    @kopf.on.event(*NADS, registry=registry)
    async def nad_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.controller.on_nad(event.get("type"), event["object"])

    if watch_nodes:

        @kopf.on.event(*NODES, registry=registry)
        async def node_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
            memo.controller.on_node(event.get("type"), event["object"])

    return registry


def _hand_over_on_sigterm(
    controller: Controller, elector: LeaderElector, stop_flag: asyncio.Event
) -> None:
    """On SIGTERM stop deciding and hand the Lease over first, then let kopf wind down.

    kopf runs cleanup handlers only after its watchers have stopped, seconds later;
    the standby need not wait for that. Replaces the SIGTERM handler kopf installed.
    """
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    async def hand_over() -> None:
        await controller.stop()
        await elector.release()
        stop_flag.set()

    def on_sigterm() -> None:
        log.info("SIGTERM: stopping decisions and handing the lease over")
        task = loop.create_task(hand_over())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built empty.

    Only change handlers (``on.create``/``update``/``field``) use it, and the operator
    registers none: every handler is ``on.event``. kopf still builds it for each watch
    event, as a deep copy of the whole object (managedFields and status included),
    which under a burst of claims was the operator's largest single cost (issue 13).
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """Nothing: no handler compares essences."""
        return kopf.BodyEssence()


def kopf_settings() -> kopf.OperatorSettings:
    """kopf's settings: our prefix for any state, no kopf-generated Events."""
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX, v1=False)
    settings.persistence.diffbase_storage = NoDiffBase(
        prefix=PREFIX, key="last-handled-configuration", v1=False
    )
    # Our Events are posted explicitly (events.py), once per state change.
    settings.posting.enabled = False
    # Handlers only update an in-memory cache: no need to wait for bursts to settle.
    settings.batching.batch_window = 0.01
    return settings


def operator_identity() -> Identity:
    """This operator's name towards kopf: the pod's hostname and our pid.

    kopf would derive it from ``getpass.getuser()``, which raises for a uid without a
    passwd entry, as the Deployment's ``runAsUser: 65532`` is in our image (and any
    arbitrary uid a platform assigns).
    """
    return Identity(f"{socket.gethostname()}/{os.getpid()}")


async def operate(settings: OperatorSettings, *, stop_flag: asyncio.Event | None = None) -> int:
    """Run until signalled (or ``stop_flag`` is set); 1 when leadership was lost."""
    metrics = OperatorMetrics()
    http = OperatorHttp(metrics, address=settings.bind_address, port=settings.metrics_port)
    if settings.metrics_port:
        await http.start()
    api = await load_api_client(settings.kubeconfig or None, connections=API_CONNECTIONS)
    try:
        if not settings.leader_elect:
            await _run_kopf(settings, api, http, stop_flag or asyncio.Event())
            return 0
        return await _lead(settings, api, http, stop_flag or asyncio.Event())
    finally:
        await http.stop()
        await api.close()


async def _lead(
    settings: OperatorSettings,
    api: client.ApiClient,
    http: OperatorHttp,
    stop_flag: asyncio.Event,
) -> int:
    """Wait for the Lease, then operate while renewing it; hand it back on a clean stop.

    Nothing is watched or written before the Lease is ours, so the new leader lists
    the whole state (prime) before its first decision, as after any restart.
    """
    elector = LeaderElector(
        api,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
        identity=candidate_identity(),
        timing=settings.election,
    )
    metrics = http.metrics
    async with standby_health(settings.bind_address, settings.health_port):
        await elector.acquire()
    metrics.leader.set(1)
    holding = asyncio.create_task(elector.hold())
    holding.add_done_callback(lambda _: stop_flag.set())
    try:
        await _run_kopf(settings, api, http, stop_flag, elector=elector)
    finally:
        metrics.leader.set(0)
        lost = holding.done() and not holding.cancelled()
        holding.cancel()
        if not lost:
            await elector.release()
    return 1 if lost else 0


async def _run_kopf(
    settings: OperatorSettings,
    api: client.ApiClient,
    http: OperatorHttp,
    stop_flag: asyncio.Event,
    *,
    elector: LeaderElector | None = None,
) -> None:
    watch_nodes = await may_watch_nodes(api)
    controller = Controller(settings, api, http.metrics, watch_nodes=watch_nodes)
    # The inventory page reads this controller's cache (503 until it is listed).
    http.owner = controller
    await kopf.operator(
        registry=build_registry(api.configuration, watch_nodes=watch_nodes),
        settings=kopf_settings(),
        standalone=True,
        clusterwide=True,
        liveness_endpoint=settings.liveness_endpoint,
        memo=kopf.Memo(controller=controller, elector=elector, stop_flag=stop_flag),
        stop_flag=stop_flag,
        identity=operator_identity(),
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``sriov-dra operator``."""
    try:
        settings = settings_module.from_args(args)
    except (ValueError, InvalidSetting) as exc:
        print(f"sriov-dra operator: {exc}")
        return 2
    jsonlog.configure(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf logs every handled event at INFO; our own lines say what matters.
        logging.getLogger("kopf").setLevel(logging.WARNING)
    log.info(
        "starting",
        extra={
            "driver": settings.driver,
            "nad_namespaces": sorted(settings.nad_namespaces),
            "metrics_port": settings.metrics_port,
            "health_port": settings.health_port,
        },
    )
    return asyncio.run(operate(settings))
