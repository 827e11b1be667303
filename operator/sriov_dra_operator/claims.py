"""Reconcile one ResourceClaim: read it from the cache, decide, write, explain.

Life of a static claim of ours:

1. *Waiting* -- it names a DeviceClass not yet created, its VfConfig is invalid,
   its NAD is missing or invalid, no VF is free, or a pod is pending on it (the
   scheduler then allocates; we never race it). Each reason but the pending pod
   is an Event.
2. *Allocating* -- under one in-process lock the core chooses devices from the
   cache (every claim's allocation counts as taken, plus decisions whose writes
   are still in flight); outside the lock two guarded writes follow: metadata
   (our finalizer, node label, allocation annotation) first, so an allocated
   claim always carries our finalizer, then ``status.allocation`` together with
   condition ``Allocated`` on each VF's ``status.devices`` entry, which says which
   VF, PF and node (an Event would be a third write per claim; Warnings stay
   Events). A 409 means the claim changed: re-read, decide again.
3. *Allocated* -- nothing to do unless a device is also in another claim's
   allocation (:mod:`.conflicts`), or kube-scheduler allocated it (a pod came
   first): then we *adopt* it -- our marks, and the scheduler's
   ``resource.kubernetes.io/delete-protection`` finalizer removed, because with
   it the claim controller would deallocate the claim when its pod goes, and a
   static claim keeps its VF across pods.
4. *Deleting* -- the allocation stays until ``reservedFor`` is empty and the
   node agent reported every VF released in ``status.devices``
   (:mod:`sriov_dra.release_signal`: a signal only that agent can write, unlike an
   annotation); then the allocation is cleared and our finalizer removed. A wait longer
   than :data:`RELEASE_NOTICE_AFTER` is explained in an Event (``AwaitingRelease``).
   If the claim's Node no longer exists (removed from the cluster, confirmed by
   the apiserver, not only by the watch), nobody will ever release the VF, which
   went with the node: the allocation and finalizer go without the agent
   (``ReleasedWithoutAgent``).

If someone else clears an allocation we wrote (the scheduler's PostFilter does
when the claim's pod fits no node), we remove our marks and leave the claim
alone for ``--yield-seconds`` and for as long as a pod is pending on it.

What is derived from the claim before writing (VfConfig per request, the
annotation records) is in :mod:`.claim_config`, the Events' and conditions' texts
in :mod:`.claim_messages`, the writes in :mod:`.status_writer`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes_asyncio import client
from sriov_dra import allocation_record
from sriov_dra.allocation_result import Allocation
from sriov_dra.allocator import allocate
from sriov_dra.backoff import Backoff
from sriov_dra.claim_requests import request_classes
from sriov_dra.constants import FINALIZER, KUBE_DELETE_PROTECTION, NODE_LABEL
from sriov_dra.device_pools import DeviceKey, Pool, pools_from_slices
from sriov_dra.errors import InvalidNad, SriovDraError
from sriov_dra.nad import device_id_replaced, parse_nad_config, unrun_plugins_warning
from sriov_dra.node_label import node_label_change
from sriov_dra.node_selector import allocation_node
from sriov_dra.release_signal import released_by_agent, released_vfs
from sriov_dra.vfconfig import VfConfig, nad_reference
from sriov_dra_kube.events import StateEvents

from . import claim_messages
from .cache import Body, ClaimChange, ClusterCache, Ref, ref_of, uid_of
from .claim_config import allocation_records, effective_configs
from .conflicts import in_use, resolve
from .metrics import OperatorMetrics
from .ownership import Verdict, class_not_found, verdict
from .settings import OperatorSettings
from .slices import PublishedDevice, published_devices
from .status_writer import (
    ClaimWriter,
    StaleClaim,
    allocated_entry,
    has_marks,
    rejection_message,
)

log = logging.getLogger(__name__)

RELEASE_NOTICE_AFTER: Final = 5.0
"""Seconds a deleted claim waits for its node agent before an Event says so; the agent
normally releases within a second, and a quick release needs no explanation."""
REFUSED_WRITE_RETRY_FIRST: Final = 10.0
REFUSED_WRITE_RETRY_MAX: Final = 300.0
"""Seconds: a refused write is retried after 10 s, doubling up to 5 min."""


@dataclass
class Waiting:
    """Claims to kick when the world changes, by what they wait for."""

    for_devices: set[str] = field(default_factory=set)
    """Unallocated claims of ours: a freed VF, a new slice or class may help."""
    for_nad: dict[Ref, set[str]] = field(default_factory=dict)
    """Claims whose NAD is missing or invalid, by the NAD's (namespace, name)."""
    for_release: dict[str, set[str]] = field(default_factory=dict)
    """Deleted claims whose node agent has not released their VFs, by node name."""

    def discard(self, uid: str) -> None:
        """Stop waiting (allocated, deleted, or not ours)."""
        self.for_devices.discard(uid)
        for uids in self.for_nad.values():
            uids.discard(uid)
        for uids in self.for_release.values():
            uids.discard(uid)

    def wait_for_nad(self, uid: str, ref: Ref) -> None:
        """Kick ``uid`` when NAD ``ref`` changes."""
        self.for_nad.setdefault(ref, set()).add(uid)


def _meta(claim: Mapping[str, Any]) -> Mapping[str, Any]:
    return claim.get("metadata") or {}


def _log_extra(claim: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    meta = _meta(claim)
    return {"claim": f"{meta.get('namespace')}/{meta.get('name')}", "uid": meta.get("uid"), **more}


class ClaimReconciler:
    """Decides and writes for one claim at a time; many may run concurrently."""

    def __init__(
        self,
        *,
        settings: OperatorSettings,
        cache: ClusterCache,
        writer: ClaimWriter,
        events: StateEvents,
        metrics: OperatorMetrics,
        requeue: Any,
        nodes: Any,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.writer = writer
        self.events = events
        self.metrics = metrics
        self.requeue = requeue
        """The work queue (``add``/``add_after``)."""
        self.nodes = nodes
        """Asks the apiserver whether a Node exists (:class:`.nodes.NodeLookup`)."""
        self.waiting = Waiting()
        self.lock = asyncio.Lock()
        """Serializes choose-and-reserve: no two decisions see the same free VF."""
        self.clearing: set[str] = set()
        """Uids whose allocation we are clearing ourselves (not the scheduler's doing)."""
        self.yielded: dict[str, float] = {}
        """Uid -> monotonic deadline: leave alone, the scheduler took the claim over."""
        self.release_waits: dict[str, float] = {}
        """Uid -> monotonic time a deleted claim was first seen waiting for its agent."""
        self.release_notice_after = RELEASE_NOTICE_AFTER
        self.backoff = Backoff(base=REFUSED_WRITE_RETRY_FIRST, cap=REFUSED_WRITE_RETRY_MAX)
        """Growing delays for claims whose writes the apiserver refuses (not conflicts)."""
        self._pools: tuple[int, list[Pool], dict[DeviceKey, PublishedDevice]] = (-1, [], {})

    # -- entry points ---------------------------------------------------------------------------

    def pools(self) -> tuple[list[Pool], dict[DeviceKey, PublishedDevice]]:
        """Pools for the allocator and the device lookup, recomputed when slices change."""
        version = self.cache.slices_version
        if self._pools[0] != version:
            slices = list(self.cache.slices.values())
            self._pools = (
                version,
                pools_from_slices(slices, driver=self.settings.driver),
                published_devices(slices, driver=self.settings.driver),
            )
        return self._pools[1], self._pools[2]

    def note_cleared_by_other(self, claim: Mapping[str, Any]) -> None:
        """The allocation of ``claim`` vanished and we did not clear it: step back."""
        uid = str(_meta(claim).get("uid"))
        if uid in self.clearing or _meta(claim).get("deletionTimestamp"):
            return
        if FINALIZER not in (_meta(claim).get("finalizers") or []):
            return
        self.yielded[uid] = time.monotonic() + self.settings.yield_seconds
        message = claim_messages.cleared_by_scheduler(self.settings.yield_seconds)
        self.events.post_later(
            claim, warning=False, reason="AllocationClearedByScheduler", message=message
        )
        log.info(message, extra=_log_extra(claim))

    def kick_waiting(self) -> None:
        """Re-check every claim waiting for a VF, a class or a valid config."""
        for uid in list(self.waiting.for_devices):
            self.requeue.add(uid)

    def record(self, body: Mapping[str, Any]) -> ClaimChange | None:
        """Put a claim as seen (watch or our own write) into the cache; kick on freed VFs."""
        change = self.cache.upsert_claim(body)
        if change is not None and change.freed:
            self.kick_waiting()
        return change

    def record_removed(self, body: Mapping[str, Any]) -> None:
        """A claim is gone: forget it and kick claims that may use its VFs."""
        change = self.cache.remove_claim(body)
        self.forget(uid_of(body))
        if change is not None and change.freed:
            self.kick_waiting()

    def forget(self, uid: str) -> None:
        """The claim is gone."""
        self.waiting.discard(uid)
        self.yielded.pop(uid, None)
        self.release_waits.pop(uid, None)
        self.clearing.discard(uid)
        self.backoff.reset(uid)
        self.events.forget(uid)

    async def reconcile(self, uid: str) -> None:
        """Bring one claim one step closer to where it should be."""
        claim = self.cache.claims.get(uid)
        if claim is None:
            return
        started = time.perf_counter()
        try:
            if _meta(claim).get("deletionTimestamp"):
                await self._finish_deletion(claim)
            elif self.cache.devices_of(uid):
                self.waiting.discard(uid)
                if self._allocated_by_scheduler(claim):
                    claim = await self._adopt(claim)
                claim = await self._label_for_agent(claim)
                await self._check_conflicts(claim)
            else:
                claim = await self._label_for_agent(claim)
                await self._allocate(claim)
        except StaleClaim as exc:
            self.metrics.write_conflicts.inc()
            log.debug(
                "claim changed under us, re-reading", extra=_log_extra(claim, http=exc.status)
            )
            await self._refresh(claim)
            self.requeue.add(uid)
        except client.ApiException as exc:
            delay = self.backoff.next_delay(uid)
            log.error(
                "write refused",
                extra=_log_extra(claim, http=exc.status, body=str(exc.body)[:500], retry_in=delay),
            )
            if exc.status == 422:
                message = rejection_message(exc.status, exc.body, retry_cap=self.backoff.cap)
                await self.events.post(
                    claim, warning=True, reason="AllocationRejected", message=message
                )
                self.metrics.failures.labels("AllocationRejected").inc()
            self.requeue.add_after(uid, delay)
        except Exception as exc:
            await self._surprise(claim, exc)
        else:
            self.backoff.reset(uid)
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)

    async def _surprise(self, claim: Body, error: Exception) -> None:
        """An error nobody expected: say so on the claim and count it; retry with backoff.

        One claim's surprise must not stop the others, nor be retried at a fixed
        pace unseen: the Warning is posted once while the error stays the same.
        """
        uid = str(_meta(claim).get("uid"))
        delay = self.backoff.next_delay(uid)
        kind = type(error).__name__
        self.metrics.reconcile_errors.labels(kind).inc()
        log.error(
            "reconcile failed",
            exc_info=error,
            extra=_log_extra(claim, error=kind, retry_in=delay),
        )
        message = claim_messages.reconcile_failed(error, self.backoff.base, self.backoff.cap)
        await self.events.post(claim, warning=True, reason="ReconcileFailed", message=message)
        self.requeue.add_after(uid, delay)

    async def _refresh(self, claim: Mapping[str, Any]) -> None:
        fresh = await self.writer.read(claim)
        if fresh is None:
            self.record_removed(claim)
            return
        if fresh["metadata"]["uid"] != _meta(claim).get("uid"):
            self.record_removed(claim)
        self.record(fresh)

    # -- waiting and failing --------------------------------------------------------------------

    async def _fail(self, claim: Body, error: SriovDraError) -> None:
        uid = str(_meta(claim)["uid"])
        posted = await self.events.post(
            claim, warning=True, reason=error.reason, message=error.describe()
        )
        if posted:
            self.metrics.failures.labels(error.reason).inc()
            log.warning(error.describe(), extra=_log_extra(claim, reason=error.reason))
        self.waiting.for_devices.add(uid)
        if has_marks(claim) and not self.cache.devices_of(uid):
            await self._unmark(claim, drop_finalizer=True)

    async def _unmark(self, claim: Body, *, drop_finalizer: bool) -> Body:
        body = await self.writer.unmark(claim, drop_finalizer=drop_finalizer)
        self.record(body)
        return body

    # -- allocation -----------------------------------------------------------------------------

    async def _nad_refs(
        self, claim: Body, configs: Mapping[str, VfConfig]
    ) -> dict[str, Ref | None]:
        """NAD per request, each checked to exist and parse; raises the first problem.

        When all are valid, a NAD whose chained plugins will never run gets a
        Warning on the claim, once (the claim is allocated all the same).
        """
        uid = str(_meta(claim)["uid"])
        namespace = str(_meta(claim)["namespace"])
        refs: dict[str, Ref | None] = {}
        notes: dict[str, str] = {}
        for request, cfg in configs.items():
            ref = nad_reference(
                cfg, claim_namespace=namespace, allowed_namespaces=self.settings.nad_namespaces
            )
            refs[request] = ref
            if ref is None:
                continue
            nad = self.cache.nads.get(ref)
            if nad is None:
                self.waiting.wait_for_nad(uid, ref)
                raise claim_messages.nad_not_found(ref, request)
            self.waiting.wait_for_nad(uid, ref)
            conf = parse_nad_config(
                str((nad.get("spec") or {}).get("config") or ""), nad=f"{ref[0]}/{ref[1]}"
            )
            note = unrun_plugins_warning(conf)
            if note is not None:
                notes[conf.nad] = note
        for note in notes.values():
            if await self.events.post_once(
                claim, warning=True, reason="NadPluginsNotRun", message=note
            ):
                log.warning(note, extra=_log_extra(claim, reason="NadPluginsNotRun"))
        return refs

    async def _allocate(self, claim: Body) -> None:
        uid = str(_meta(claim)["uid"])
        settings = self.settings
        decision = verdict(claim, self.cache.classes, settings.driver)
        if decision is Verdict.CLASS_MISSING:
            missing = class_not_found(claim, self.cache.classes, settings.driver)
            if missing is not None:
                # _fail keeps it in waiting.for_devices: a new DeviceClass kicks it.
                await self._fail(claim, missing)
                return
            # Maybe another driver's claim: no Event, but a new class may make it ours.
            self.waiting.for_devices.add(uid)
            log.debug(
                "not allocating: a DeviceClass it names does not exist and neither that name "
                "nor an opaque config ties the claim to this driver",
                extra=_log_extra(claim),
            )
            return
        if decision is not Verdict.OURS:
            self.waiting.discard(uid)
            log.debug("not allocating: %s", decision.value, extra=_log_extra(claim))
            return
        if self.cache.has_pending_pod(ref_of(claim)):
            log.info(
                "a pod is pending on the claim; leaving it to the scheduler",
                extra=_log_extra(claim),
            )
            if has_marks(claim):
                await self._unmark(claim, drop_finalizer=True)
            return
        deadline = self.yielded.get(uid)
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                self.requeue.add_after(uid, remaining)
                if has_marks(claim):
                    await self._unmark(claim, drop_finalizer=True)
                return
            del self.yielded[uid]
        self.waiting.discard(uid)
        try:
            configs = effective_configs(claim, self.cache.classes, driver=settings.driver)
            nad_refs = await self._nad_refs(claim, configs)
        except SriovDraError as error:
            await self._fail(claim, error)
            return

        async with self.lock:
            current = self.cache.claims.get(uid)
            if (
                current is None
                or self.cache.devices_of(uid)
                or _meta(current).get("deletionTimestamp")
            ):
                self.requeue.add(uid)
                return
            claim = current
            pools, devices = self.pools()
            try:
                allocation = allocate(
                    claim,
                    device_classes=self.cache.classes,
                    pools=pools,
                    in_use=self.cache.usage,
                    driver=settings.driver,
                )
            except SriovDraError as error:
                decided: SriovDraError | None = error
            else:
                decided = None
                keys = allocation.keys
                self.cache.reserve(keys)
        if decided is not None:
            await self._fail(claim, decided)
            return
        try:
            await self._write_allocation(claim, allocation, configs, devices, nad_refs)
        finally:
            self.cache.unreserve(keys)

    async def _write_allocation(
        self,
        claim: Body,
        allocation: Allocation,
        configs: Mapping[str, VfConfig],
        devices: Mapping[DeviceKey, PublishedDevice],
        nad_refs: Mapping[str, Ref | None],
    ) -> None:
        results = [dict(r) for r in allocation.results]
        records = allocation_records(results, allocation.node, configs, devices, nad_refs)
        status = allocation.status_allocation(claim, self.cache.classes)
        # The explanation goes with the allocation, as a condition on each VF's
        # status.devices entry: one write fewer per claim than an Event.
        explained = [
            allocated_entry(
                driver=self.settings.driver,
                pool=r.pool,
                device=r.device,
                message=claim_messages.allocated([r], allocation.node),
            )
            for r in records
        ]
        marked = await self.writer.mark(
            claim, node=allocation.node, annotation=allocation_record.encode(records)
        )
        self.record(marked)
        written = await self.writer.write_allocation(marked, status, explained)
        self.record(written)
        self.metrics.allocations.labels(allocation.node).inc()
        self._tell_device_ids(written, records)
        for r in records:
            log.info(
                "allocated",
                extra=_log_extra(
                    written,
                    node=r.node,
                    pf=r.pf,
                    vf=r.pci_address,
                    device=r.device,
                    ifName=r.if_name,
                    nad=r.nad,
                ),
            )

    def _tell_device_ids(
        self, claim: Body, records: Sequence[allocation_record.AllocatedVf]
    ) -> None:
        """A Normal Event per VF whose NAD sets ``deviceID`` (written for the classic stack):
        the allocated VF is used instead, and the claim is told which."""
        for record in records:
            namespace, _, name = record.nad.partition("/")
            nad = self.cache.nads.get((namespace, name)) if name else None
            if nad is None:
                continue
            try:
                conf = parse_nad_config(
                    str((nad.get("spec") or {}).get("config") or ""), nad=record.nad
                )
            except InvalidNad:
                # Changed since it was checked; the agent reports it when it prepares.
                continue
            message = device_id_replaced(conf, record.request, record.pci_address)
            if message is not None:
                self.events.post_later(
                    claim, warning=False, reason="NadDeviceIdReplaced", message=message
                )
                log.info(
                    message,
                    extra=_log_extra(claim, reason="NadDeviceIdReplaced", vf=record.pci_address),
                )

    # -- allocated claims: adoption -------------------------------------------------------------

    def _allocated_by_scheduler(self, claim: Body) -> bool:
        finalizers = _meta(claim).get("finalizers") or []
        return (
            KUBE_DELETE_PROTECTION in finalizers
            and FINALIZER not in finalizers
            and verdict(claim, self.cache.classes, self.settings.driver) is Verdict.OURS
        )

    async def _adopt(self, claim: Body) -> Body:
        """Take over a claim kube-scheduler allocated, so it keeps its VF across pods."""
        allocation = (claim.get("status") or {}).get("allocation") or {}
        results = [
            dict(r)
            for r in (allocation.get("devices") or {}).get("results") or []
            if r.get("driver") == self.settings.driver
        ]
        node = allocation_node(allocation) or (str(results[0]["pool"]) if results else "")
        try:
            configs = effective_configs(claim, self.cache.classes, driver=self.settings.driver)
            nad_refs = await self._nad_refs(claim, configs)
        except SriovDraError as error:
            # The VF is already in use; say what is wrong, adopt it all the same.
            await self.events.post(
                claim, warning=True, reason=error.reason, message=error.describe()
            )
            configs = {request: VfConfig.model_validate({}) for request in request_classes(claim)}
            nad_refs = {}
        _, devices = self.pools()
        records = allocation_records(results, node, configs, devices, nad_refs)
        adopted = await self.writer.adopt(
            claim, node=node, annotation=allocation_record.encode(records)
        )
        self.record(adopted)
        message = claim_messages.adopted(records, node)
        self.events.post_later(adopted, warning=False, reason="Adopted", message=message)
        self._tell_device_ids(adopted, records)
        log.info(message, extra=_log_extra(adopted, node=node))
        return adopted

    async def _label_for_agent(self, claim: Body) -> Body:
        """Keep the node label the agents' watches select on (:mod:`sriov_dra.node_label`):
        set on a claim someone else allocated, removed when it loses our VFs."""
        change = node_label_change(claim, driver=self.settings.driver)
        if change is None:
            return claim
        labelled = await self.writer.set_node_label(claim, change.node)
        self.record(labelled)
        message = "node label set for its agent" if change.node else "node label removed"
        log.info(message, extra=_log_extra(labelled, node=change.node))
        return labelled

    # -- allocated claims: conflicts ------------------------------------------------------------

    async def _check_conflicts(self, claim: Body) -> None:
        uid = str(_meta(claim)["uid"])
        for key in sorted(self.cache.devices_of(uid)):
            if key.driver != self.settings.driver:
                # Other drivers may share a device between claims; not ours to police.
                continue
            holders = [
                self.cache.claims[u]
                for u in self.cache.holders.get(key, ())
                if u in self.cache.claims
            ]
            if len(holders) < 2:
                continue
            resolution = resolve(key, holders)
            self.metrics.conflicts.inc()
            for holder in [resolution.keeper, *resolution.clear, *resolution.stuck]:
                message = resolution.message_for(holder)
                await self.events.post(
                    holder, warning=True, reason="AllocationConflict", message=message
                )
                log.warning(message, extra=_log_extra(holder, device=key.device, pool=key.pool))
            for loser in resolution.clear:
                await self._clear(loser)

    async def _clear(self, claim: Mapping[str, Any]) -> None:
        uid = str(_meta(claim)["uid"])
        self.clearing.add(uid)
        try:
            cleared = await self.writer.clear_allocation(claim)
            self.record(cleared)
        finally:
            self.clearing.discard(uid)
        if has_marks(cleared):
            await self._unmark(cleared, drop_finalizer=False)
        self.requeue.add(uid)

    # -- deletion -------------------------------------------------------------------------------

    async def _finish_deletion(self, claim: Body) -> None:
        uid = str(_meta(claim)["uid"])
        self.waiting.discard(uid)
        if FINALIZER not in (_meta(claim).get("finalizers") or []):
            return
        if self.cache.devices_of(uid):
            if in_use(claim):
                log.info(
                    "deleted claim still reserved by a pod; keeping its VF", extra=_log_extra(claim)
                )
                return
            if not released_by_agent(claim):
                node = self._node_of(claim)
                if not await self._node_gone(node):
                    await self._await_release(claim, node)
                    return
                message = claim_messages.released_without_agent(
                    node, claim_messages.devices_text(self.cache.devices_of(uid))
                )
                await self.events.post(
                    claim, warning=True, reason="ReleasedWithoutAgent", message=message
                )
                log.warning(message, extra=_log_extra(claim, node=node))
            self.clearing.add(uid)
            try:
                claim = await self.writer.clear_allocation(claim)
                self.record(claim)
            finally:
                self.clearing.discard(uid)
            self.metrics.releases.inc()
            log.info("released", extra=_log_extra(claim))
        await self._unmark(claim, drop_finalizer=True)

    def _node_of(self, claim: Body) -> str:
        allocation = (claim.get("status") or {}).get("allocation") or {}
        return allocation_node(allocation) or str(
            (_meta(claim).get("labels") or {}).get(NODE_LABEL) or ""
        )

    async def _node_gone(self, node: str) -> bool:
        """The claim's Node is gone: the watch says so and the apiserver confirms it."""
        if not node or not self.cache.node_missing(node):
            return False
        return await self.nodes.exists(node) is False

    async def _await_release(self, claim: Body, node: str) -> None:
        """Wait for the node agent; past :data:`RELEASE_NOTICE_AFTER`, say so in an Event."""
        uid = str(_meta(claim)["uid"])
        self.waiting.for_release.setdefault(node, set()).add(uid)
        since = self.release_waits.setdefault(uid, time.monotonic())
        remaining = since + self.release_notice_after - time.monotonic()
        log.info(
            "deleted claim waits for the node agent to release its VF",
            extra=_log_extra(
                claim,
                node=node,
                released=sorted("/".join(vf) for vf in released_vfs(claim)),
            ),
        )
        if remaining > 0:
            self.requeue.add_after(uid, remaining)
            return
        message = claim_messages.awaiting_release(
            uid, node, claim_messages.devices_text(self.cache.devices_of(uid))
        )
        await self.events.post(claim, warning=False, reason="AwaitingRelease", message=message)
