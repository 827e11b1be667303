"""Watches the ResourceClaims that concern this node and feeds them to the claim manager.

One watch (a :class:`~sriov_dra_kube.list_watch.ListWatch`), filtered by the API
server with the node label the operator keeps on every claim allocated here,
whoever allocated it (:mod:`sriov_dra.node_label`): an agent receives its own
node's claims, not every claim of the cluster. Events are coalesced per claim UID
in a :class:`~sriov_dra_kube.workqueue.WorkQueue` (one worker per claim at a time)
and handled by a few workers, each claim under its lock, so a burst of updates
becomes one reconcile of the newest object. A change to a NAD (seen by the NAD
cache) re-queues the claims using it.

A label-filtered watch says DELETED also when a claim merely lost the label (the
operator removes it once the claim's allocation is cleared; anyone who may patch
the claim can remove it too). So a DELETED is never taken on trust: the worker
GETs the claim, and only a claim that is gone (or re-created under another uid)
has its VFs released unconditionally; one that still exists is reconciled as it
is now (its VFs stay while it is allocated here). The kubelet's
NodePrepareResources reads its claim itself and needs no label.

A periodic resync re-lists (with the same label selector), checks the claims this
node holds VFs for that the list did not name (gone while the agent was down, or
unlabelled) in the same way, and detaches VFs whose pod netns died. A reconcile
that raises (the API failed, an unexpected error) is re-queued after a per-claim
back-off (1 s doubling up to the resync interval; a delayed add to the queue)
rather than waiting for the next resync; success, a newer object or the claim's
deletion ends the wait. Errors the reconcile reports itself (a NAD missing,
programming refused) are in the claim's status and Events and are retried at the
resync, or at once when the NAD changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from sriov_dra.backoff import Backoff
from sriov_dra.constants import NODE_LABEL
from sriov_dra_kube.client import KubeApi
from sriov_dra_kube.list_watch import ListWatch
from sriov_dra_kube.workqueue import WorkQueue

from sriov_dra_agent.cluster import claim_devices
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_manager import ClaimManager
from sriov_dra_agent.cluster.nad_cache import NadCache

logger = logging.getLogger(__name__)

Body = dict[str, Any]


class ClaimWatcher:
    """A label-filtered watch, a coalescing queue and ``workers`` reconcilers."""

    def __init__(
        self,
        api: KubeApi,
        manager: ClaimManager,
        locks: ClaimLocks,
        nads: NadCache,
        *,
        node: str,
        workers: int = 4,
        resync_seconds: float = 30.0,
        retry_first_seconds: float = 1.0,
    ) -> None:
        self.api = api
        self.manager = manager
        self.locks = locks
        self.node = node
        self.selector = f"{NODE_LABEL}={node}"
        """The label selector of the watch and the resync list: this node's claims."""
        self.workers = workers
        self.resync_seconds = resync_seconds
        self._latest: dict[str, tuple[str, Body]] = {}
        """The newest (kind, object) of each queued claim: what its next reconcile gets."""
        self.queue = WorkQueue()
        """Claim uids to reconcile; one worker per uid at a time, retries as delayed adds."""
        self._failed: dict[str, tuple[str, Body]] = {}
        """The (kind, object) whose reconcile raised, by uid, until its delayed retry."""
        self._seen: dict[str, Body] = {}
        """Newest object of every claim offered, to re-queue it when its NAD changes."""
        nads.subscribe(self.nad_changed)
        self.synced = asyncio.Event()
        """Set after the first full list has been handed to the workers."""
        self.backoff = Backoff(
            base=retry_first_seconds, cap=max(resync_seconds, retry_first_seconds)
        )
        """Per-claim delay before re-queueing a claim whose reconcile raised."""

    # -- queueing --------------------------------------------------------------------------

    def offer(self, kind: str, claim: Body) -> None:
        """Queue the newest state of a claim (``kind``: ADDED/MODIFIED/DELETED)."""
        uid = claim_devices.uid(claim)
        if not uid:
            return
        self._failed.pop(uid, None)
        self._latest[uid] = (kind, claim)
        if kind == "DELETED":
            self._seen.pop(uid, None)
        else:
            self._seen[uid] = claim
        # Supersedes a pending retry of an older object: the queue drops its delayed add.
        self.queue.add(uid)

    def nad_changed(self, namespace: str, name: str) -> None:
        """Re-queue the claims programmed from NAD ``namespace/name``."""
        uids = self.manager.claims_using_nad(namespace, name)
        for uid in uids:
            claim = self._seen.get(uid)
            if claim is not None and uid not in self._latest:
                self.offer("MODIFIED", claim)
        if uids:
            logger.info(
                "NAD changed; reconciling the claims using it",
                extra={"nad": f"{namespace}/{name}", "uids": uids},
            )

    # -- workers ---------------------------------------------------------------------------

    async def _handle(self, kind: str, claim: Body) -> None:
        uid = claim_devices.uid(claim)
        meta = claim_devices.meta(claim)
        async with self.locks.hold(uid):
            if kind != "DELETED":
                await self.manager.reconcile(claim)
                return
            # Deleted, or only out of our label's sight: ask the API server which.
            namespace, name = str(meta["namespace"]), str(meta["name"])
            current = await self.api.get_claim(namespace, name)
            if current is None or claim_devices.uid(current) != uid:
                await self.manager.claim_gone(uid, namespace, name)
                return
            logger.info(
                "claim left this node's label but exists; reconciling it as it is",
                extra=claim_devices.log_context(current, node=self.node),
            )
            await self.manager.reconcile(current)

    async def _process(self, uid: str) -> None:
        entry = self._latest.pop(uid, None) or self._failed.pop(uid, None)
        if entry is None:
            return
        kind, claim = entry
        try:
            await self._handle(kind, claim)
        except Exception:
            self._retry_later(uid, kind, claim)
        else:
            self.backoff.reset(uid)

    def _retry_later(self, uid: str, kind: str, claim: Body) -> None:
        """Re-offer the object that failed after the claim's back-off, unless a newer one came."""
        if uid in self._latest:
            # A newer object is queued already; it is the one to try.
            logger.exception(
                "claim reconcile failed; a newer version is queued",
                extra={"claim": claim_devices.ref(claim), "uid": uid},
            )
            return
        delay = self.backoff.next_delay(uid)
        logger.exception(
            "claim reconcile failed; retrying after back-off",
            extra={"claim": claim_devices.ref(claim), "uid": uid, "retry_in_seconds": delay},
        )
        self._failed[uid] = (kind, claim)
        self.queue.add_after(uid, delay)

    # -- watch and resync ------------------------------------------------------------------

    async def _list(self) -> str:
        items, version = await self.api.list_claims(label_selector=self.selector)
        for item in items:
            self.offer("MODIFIED", item)
        present = {claim_devices.uid(i) for i in items}
        held = self.manager.held_claims()
        for uid in self._seen.keys() - present - held.keys():
            del self._seen[uid]
        self._check_unlisted(present, held)
        for uid in self._failed.keys() - present - held.keys():
            # Out of sight, holding nothing here, and no DELETED reached us: nothing to retry.
            del self._failed[uid]
            self.queue.cancel_after(uid)
            self.backoff.reset(uid)
        return version

    def _check_unlisted(self, present: set[str], held: Mapping[str, tuple[str, str]]) -> None:
        """Claims this node holds VFs for that the list did not name: gone while the agent
        was away, or unlabelled. Each is queued as DELETED, which the worker verifies."""
        for uid, (namespace, name) in held.items():
            if uid not in present and uid not in self._latest:
                self.offer(
                    "DELETED", {"metadata": {"uid": uid, "namespace": namespace, "name": name}}
                )

    async def _watch(self, stop: asyncio.Event) -> None:
        async def relist() -> str:
            version = await self._list()
            self.synced.set()
            return version

        await ListWatch(
            what="claim",
            relist=relist,
            watch=lambda version, timeout: self.api.watch_claims(
                version, label_selector=self.selector, timeout_seconds=timeout
            ),
            on_event=self.offer,
            timeout_seconds=60,
        ).run(stop)

    async def _resync(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.resync_seconds)
            if stop.is_set():
                return
            try:
                await self._list()
                await self.manager.detach_dead(self.locks)
            except Exception as exc:
                logger.warning("claim resync failed: %s", exc)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and reconcile until ``stop`` is set."""
        tasks = [
            asyncio.create_task(self._watch(stop)),
            asyncio.create_task(self._resync(stop)),
            *(
                asyncio.create_task(self.queue.run_worker(self._process))
                for _ in range(self.workers)
            ),
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.queue.close()
