"""The only pods the operator needs: those not scheduled yet, selected by the API server.

The operator looks at pods for one thing: while an unscheduled pod references a
claim by name, the claim is the scheduler's to allocate
(:func:`.cache.pending_claim_refs`). A scheduled pod pends on nothing, so the API
server is asked only for pods whose ``spec.nodeName`` is empty (field selector
:data:`UNSCHEDULED`), not for every pod of the cluster. A pod that gets a node
leaves that selection: the watch says DELETED, and forgetting the pod is what its
update would have done. Each (re)list replaces the whole set, so a pod scheduled
or deleted while the watch was broken is forgotten too.

The loop is the project's :class:`~sriov_dra_kube.list_watch.ListWatch`; what
changes in the pending set is handed to ``on_change`` (the claims to re-check).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Final

from kubernetes_asyncio import client
from sriov_dra.watch_events import WatchEvent
from sriov_dra_kube.client import decode, watch_events
from sriov_dra_kube.list_watch import ListWatch

from .cache import Body, ClusterCache, Ref

UNSCHEDULED: Final = "spec.nodeName="
"""Field selector: pods no node has been chosen for yet."""
WATCH_SECONDS: Final = 300
"""How long one watch request runs before the server ends it (then it resumes)."""


async def list_unscheduled(api: client.ApiClient) -> tuple[list[Body], str]:
    """Every unscheduled pod of the cluster and the list's resourceVersion."""
    data = await decode(
        await client.CoreV1Api(api).list_pod_for_all_namespaces(
            field_selector=UNSCHEDULED, _preload_content=False
        )
    )
    return list(data.get("items") or []), str(data["metadata"]["resourceVersion"])


def watch_unscheduled(
    api: client.ApiClient, resource_version: str, timeout_seconds: int
) -> AsyncIterator[WatchEvent]:
    """(type, object) events of unscheduled pods; ApiException(410) = relist."""
    return watch_events(
        client.CoreV1Api(api).list_pod_for_all_namespaces,
        resource_version=resource_version,
        timeout_seconds=timeout_seconds,
        field_selector=UNSCHEDULED,
    )


class PendingPods:
    """Keeps the cache's pending pods current from the unscheduled pods' list and watch."""

    def __init__(
        self,
        api: client.ApiClient,
        cache: ClusterCache,
        on_change: Callable[[Iterable[Ref]], None],
    ) -> None:
        self.api = api
        self.cache = cache
        self.on_change = on_change
        """Takes the claims (namespace, name) whose pending pods changed."""

    async def prime(self) -> None:
        """List the unscheduled pods into the cache (before the first decision)."""
        items, _ = await list_unscheduled(self.api)
        self.cache.replace_pods(items)

    async def _relist(self) -> str:
        items, version = await list_unscheduled(self.api)
        self.on_change(self.cache.replace_pods(items))
        return version

    def _on_event(self, kind: str, pod: Body) -> None:
        if kind == "DELETED":
            self.on_change(self.cache.remove_pod(pod))
        else:
            self.on_change(self.cache.upsert_pod(pod))

    def list_watch(self) -> ListWatch:
        """The list -> watch loop; run it with ``.run(stop)``."""
        return ListWatch(
            what="pod",
            relist=self._relist,
            watch=lambda version, timeout: watch_unscheduled(self.api, version, timeout),
            on_event=self._on_event,
            timeout_seconds=WATCH_SECONDS,
        )
