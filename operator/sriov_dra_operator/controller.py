"""Wiring: watch events in, cache updates, kicks to the work queue, workers out.

Nothing is decided here. Watch events update the cache and enqueue the claims
they may unblock; workers reconcile claims one at a time each (:mod:`.claims`).
Claims, slices and unscheduled pods (:mod:`.pending_pods`) come from the project's own
:class:`~sriov_dra_kube.list_watch.ListWatch`; classes, NADs and nodes from kopf's
``on.event`` handlers. Claims left kopf because it spent more on each claim event
(causes, handler arguments, a diff base) than the reconcile spent on the claim, and a
burst of claims is where the operator is busiest (issue 13). Slices left it because
kopf lists a resource in one piece: at 1,000 nodes of 64 VFs that list, decoded, sat
beside the full cache at every restart; ours is read a page at a time into the cache.
Before the first decision the whole state is listed from the API
(:meth:`Controller.prime`), so a restarted operator sees every allocation, whoever
wrote it, before it hands out a single VF; the claim and slice watches then start
from the versions that listing was served at, not from a second list.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from kubernetes_asyncio import client
from sriov_dra_kube.client import KubeApi, decode, watch_events
from sriov_dra_kube.events import (
    EventRecorder,
    StateEvents,
    every_posted,
    last_posted,
    seed_field_selector,
)
from sriov_dra_kube.list_watch import ListWatch
from sriov_dra_kube.workqueue import WorkQueue

from .cache import ClusterCache, Ref, ref_of, uid_of
from .claims import ClaimReconciler
from .metrics import OperatorMetrics
from .nodes import NodeLookup
from .pending_pods import PendingPods
from .settings import OperatorSettings
from .slices import vf_counts
from .status_writer import ClaimWriter

log = logging.getLogger(__name__)

COMPONENT = "sriov-dra-operator"
"""The operator's name as the source of its Events (and how it finds them after a restart)."""
GAUGE_INTERVAL = 2.0
LIST_PAGE = 500
SLICE_PAGE = 50
"""Slices per list page: a slice holds up to 128 devices, about 1 KB of JSON each, and the
whole page is decoded at once before the cache keeps its compacted share of it."""
CLAIMS = ("resource.k8s.io", "v1", "resourceclaims")
SLICES = ("resource.k8s.io", "v1", "resourceslices")
WATCH_SECONDS = 300
"""How long one claim or slice watch request runs before the server ends it (then it
resumes)."""

Lister = Callable[..., Awaitable[Any]]


async def _list_pages(call: Lister, *args: Any, **options: Any) -> list[dict[str, Any]]:
    """Every item of a list call, page by page, as raw JSON dicts."""
    items, _ = await _list_all(call, *args, **options)
    return items


async def _list_all(call: Lister, *args: Any, **options: Any) -> tuple[list[dict[str, Any]], str]:
    """Every item of a list call, page by page, and the resourceVersion to watch from."""
    items: list[dict[str, Any]] = []
    version = await _list_each(call, items.extend, *args, **options)
    return items, version


async def _list_each(
    call: Lister,
    on_page: Callable[[list[dict[str, Any]]], None],
    *args: Any,
    limit: int = LIST_PAGE,
    **options: Any,
) -> str:
    """Hand each page's items to ``on_page`` as it arrives; the resourceVersion to watch
    from (the first page's: the snapshot every page is served from).

    A caller that keeps only what it takes from each page never holds the whole list.
    """
    token: str | None = None
    version: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": limit, "_preload_content": False, **options}
        if token:
            kwargs["_continue"] = token
        page = await decode(await call(*args, **kwargs))
        on_page(page.get("items") or [])
        if version is None:
            version = str((page.get("metadata") or {}).get("resourceVersion") or "")
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return version


class Controller:
    """Owns the cache, the queue, the workers and the reconciler."""

    def __init__(
        self,
        settings: OperatorSettings,
        api: client.ApiClient,
        metrics: OperatorMetrics,
        *,
        watch_nodes: bool = False,
    ) -> None:
        self.settings = settings
        self.watch_nodes = watch_nodes
        """Nodes are watched (RBAC allows it): a removed node's deleted claims are released."""
        self.api = api
        self.metrics = metrics
        self.cache = ClusterCache()
        self.queue = WorkQueue()
        self.reconciler = ClaimReconciler(
            settings=settings,
            cache=self.cache,
            writer=ClaimWriter(api),
            events=StateEvents(
                EventRecorder(KubeApi(api), component=COMPONENT, instance=socket.gethostname())
            ),
            metrics=metrics,
            requeue=self.queue,
            nodes=NodeLookup(api),
        )
        self.pods = PendingPods(api, self.cache, self.pods_changed)
        """Unscheduled pods only (a server-side field selector), not every pod."""
        self.primed = False
        self._listed: dict[str, str] = {}
        """The resourceVersion prime's list of claims and of slices was served at."""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    # -- start and stop -------------------------------------------------------------------------

    async def prime(self) -> None:
        """List claims, slices, classes, NADs, unscheduled pods and nodes before deciding.

        The cyclic garbage collector is paused meanwhile: listing builds acyclic JSON
        trees only, and each full collection walked the whole growing cache again (with
        10,000 claims and 64,000 VFs about 3.5 of the 10 s to primed).
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            await self._prime()
        finally:
            if enabled:
                gc.enable()

    async def _prime(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        core = client.CoreV1Api(self.api)
        self._listed["slices"] = await self._relist_slices()
        for body in await _list_pages(
            objects.list_cluster_custom_object, "resource.k8s.io", "v1", "deviceclasses"
        ):
            self.cache.upsert_class(body)
        try:
            nads = await _list_pages(
                objects.list_cluster_custom_object,
                "k8s.cni.cncf.io",
                "v1",
                "network-attachment-definitions",
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            log.warning(
                "NetworkAttachmentDefinition CRD is not installed; claims naming a NAD wait",
                extra={"fix": "kubectl apply -f crds/network-attachment-definition.yaml"},
            )
            nads = []
        for body in nads:
            self.cache.upsert_nad(body)
        await self.pods.prime()
        await self._list_nodes(core)
        claims = 0

        def claim_page(items: list[dict[str, Any]]) -> None:
            nonlocal claims
            claims += len(items)
            for body in items:
                self.cache.upsert_claim(body)

        # Into the cache a page at a time: the cache keeps its own (interned) copy of each.
        self._listed["claims"] = await _list_each(
            objects.list_cluster_custom_object, claim_page, *CLAIMS
        )
        await self._seed_events()
        self.primed = True
        log.info(
            "state listed",
            extra={
                "claims": claims,
                "slices": len(self.cache.slices),
                "classes": len(self.cache.classes),
                "nads": len(self.cache.nads),
                "held_devices": len(self.cache.holders),
            },
        )

    async def _list_nodes(self, core: client.CoreV1Api) -> None:
        """Know the Nodes, so a deleted claim whose node is gone can be released."""
        if not self.watch_nodes:
            log.warning(
                "not allowed to get, list and watch Nodes: a deleted claim whose node was removed "
                "from the cluster keeps waiting for that node's agent",
                extra={
                    "fix": "grant the operator get, list and watch on nodes "
                    "(manifests/base/rbac-operator.yaml)"
                },
            )
            return
        self.cache.nodes = set()
        for body in await _list_pages(core.list_node):
            self.cache.upsert_node(body)

    async def _seed_events(self) -> None:
        """Remember the Events posted before a restart, so unchanged claims get none again."""
        core = client.CoreV1Api(self.api)
        try:
            events = await _list_pages(
                core.list_event_for_all_namespaces, field_selector=seed_field_selector(COMPONENT)
            )
        except client.ApiException as exc:
            if exc.status != 403:
                raise
            log.warning(
                "cannot list Events: each waiting claim gets its current Event once more",
                extra={
                    "fix": "grant the operator list on events (manifests/base/rbac-operator.yaml)"
                },
            )
            return
        last = last_posted(events, component=COMPONENT)
        every = every_posted(events, component=COMPONENT)
        known = set(self.cache.claim_uids())
        self.reconciler.events.seed(
            {u: posted for u, posted in last.items() if u in known},
            {u: posted for u, posted in every.items() if u in known},
        )

    def start(self) -> None:
        """Start the workers (after :meth:`prime`) and queue every known claim."""
        for uid in self.cache.claim_uids():
            self.queue.add(uid)
        for _ in range(self.settings.workers):
            self._tasks.append(asyncio.create_task(self.queue.run_worker(self._reconcile)))
        self._tasks.append(asyncio.create_task(self._gauges()))
        self._tasks.append(asyncio.create_task(self.pods.list_watch().run(self._stopping)))
        self._tasks.append(asyncio.create_task(self.claim_list_watch().run(self._stopping)))
        self._tasks.append(asyncio.create_task(self.slice_list_watch().run(self._stopping)))

    async def stop(self) -> None:
        """Cancel workers, timers and the claim and pod watches."""
        self._stopping.set()
        self.queue.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _reconcile(self, uid: str) -> None:
        try:
            await self.reconciler.reconcile(uid)
        except Exception:
            # One claim's surprise must not stop the others; it is retried later.
            log.exception("reconcile failed", extra={"uid": uid})
            self.queue.add_after(uid, 10.0)

    async def _gauges(self) -> None:
        while True:
            _, devices = self.reconciler.pools()
            self.metrics.set_vf_counts(vf_counts(devices, self.cache.holders.keys()))
            self.metrics.queue_depth.set(len(self.queue))
            await asyncio.sleep(GAUGE_INTERVAL)

    # -- watch events ---------------------------------------------------------------------------

    def claim_list_watch(self) -> ListWatch:
        """The claims' list -> watch loop; run it with ``.run(stop)``."""
        return self._list_watch("claims", CLAIMS, self._relist_claims, self.on_claim)

    def slice_list_watch(self) -> ListWatch:
        """The slices' list -> watch loop; run it with ``.run(stop)``."""
        return self._list_watch("slices", SLICES, self._relist_slices, self.on_slice)

    def _list_watch(
        self,
        what: str,
        resource: tuple[str, str, str],
        relist: Callable[[], Awaitable[str]],
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> ListWatch:
        """A cluster-wide custom resource's loop, watching from where prime listed it."""
        objects = client.CustomObjectsApi(self.api)
        return ListWatch(
            what=what,
            relist=relist,
            watch=lambda version, timeout: watch_events(
                objects.list_cluster_custom_object,
                *resource,
                resource_version=version,
                timeout_seconds=timeout,
            ),
            on_event=on_event,
            timeout_seconds=WATCH_SECONDS,
            resume_from=self._listed.get(what, ""),
        )

    async def _relist_slices(self) -> str:
        """Every slice, a page at a time into the cache; those not listed are forgotten."""
        listed: set[str] = set()

        def page(items: list[dict[str, Any]]) -> None:
            for body in items:
                listed.add(str(body["metadata"]["name"]))
                self.cache.upsert_slice(body)

        version = await _list_each(
            client.CustomObjectsApi(self.api).list_cluster_custom_object,
            page,
            *SLICES,
            limit=SLICE_PAGE,
        )
        for name in [n for n in self.cache.slices if n not in listed]:
            self.cache.remove_slice(self.cache.slices[name])
        self.reconciler.kick_waiting()
        return version

    async def _relist_claims(self) -> str:
        """Every claim: those gone while no watch ran are forgotten, the others recorded."""
        items, version = await _list_all(
            client.CustomObjectsApi(self.api).list_cluster_custom_object, *CLAIMS
        )
        listed = {uid_of(body) for body in items}
        for uid in [u for u in self.cache.claim_uids() if u not in listed]:
            gone = self.cache.claims.get(uid)
            if gone is not None:
                self.on_claim("DELETED", gone)
        for body in items:
            self.on_claim("ADDED", body)
        return version

    def on_claim(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ResourceClaim was listed, added, modified or deleted."""
        if event_type == "DELETED":
            self.reconciler.record_removed(body)
            return
        change = self.reconciler.record(body)
        if change is None:
            return
        if change.allocation_cleared and change.new is not None:
            self.reconciler.note_cleared_by_other(change.new)
        self.queue.add(uid_of(body))

    def on_slice(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A ResourceSlice changed: new or vanished VFs."""
        if event_type == "DELETED":
            self.cache.remove_slice(body)
        else:
            self.cache.upsert_slice(body)
        self.reconciler.kick_waiting()

    def on_class(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A DeviceClass changed: claims naming it may now be ours, or valid."""
        if event_type == "DELETED":
            self.cache.remove_class(body)
        else:
            self.cache.upsert_class(body)
        self.reconciler.kick_waiting()

    def on_nad(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A NAD appeared, changed or went: re-check the claims that wait on it."""
        if event_type == "DELETED":
            self.cache.remove_nad(body)
        else:
            self.cache.upsert_nad(body)
        for uid in list(self.reconciler.waiting.for_nad.get(ref_of(body), ())):
            self.queue.add(uid)

    def on_node(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A Node came or went: deleted claims waiting on a removed node's agent are re-checked."""
        if event_type != "DELETED":
            self.cache.upsert_node(body)
            return
        self.cache.remove_node(body)
        for uid in list(self.reconciler.waiting.for_release.get(body["metadata"]["name"], ())):
            self.queue.add(uid)

    def pods_changed(self, refs: Iterable[Ref]) -> None:
        """Unscheduled pods changed: the claims they stopped (or started) pending on are
        re-checked."""
        for ref in refs:
            claim = self.cache.claim_by_ref(ref)
            if claim is not None:
                self.queue.add(uid_of(claim))
