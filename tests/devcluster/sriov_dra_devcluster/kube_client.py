"""The product's dict-speaking Kubernetes client, with the pod calls a kubelet makes.

The node emulator wants objects as the API server sends them (camelCase JSON),
not generated models, and a watch stream it controls: the product's
:class:`~sriov_dra_kube.client.KubeApi` gives both (nodes, claims, Events);
this adds pods.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from kubernetes_asyncio import client
from sriov_dra.watch_events import WatchEvent
from sriov_dra_kube.client import ApiException, KubeApi, decode, watch_events

__all__ = ["ApiException", "KubeClient"]


class KubeClient(KubeApi):
    """:class:`KubeApi` plus pods; every method returns decoded JSON."""

    async def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        """All pods and the list's resourceVersion."""
        data = await decode(await self.core.list_pod_for_all_namespaces(_preload_content=False))
        return data["items"], data["metadata"]["resourceVersion"]

    def watch_pods(
        self, resource_version: str, timeout_seconds: int = 300
    ) -> AsyncIterator[WatchEvent]:
        """(type, object) events from ``resource_version`` until the server ends the watch.

        Raises ApiException(410) when the resourceVersion is too old (relist then).
        """
        return watch_events(
            self.core.list_pod_for_all_namespaces,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await decode(
                await self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    async def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic-merge patch of the status subresource."""
        await decode(
            await self.core.patch_namespaced_pod_status(
                name, namespace, dict(patch), _preload_content=False
            )
        )

    async def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """Finish a pod's deletion (grace 0), only if it is still the pod with ``uid``."""
        body = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            await decode(
                await self.core.delete_namespaced_pod(
                    name, namespace, body=body, _preload_content=False
                )
            )
        except ApiException as exc:
            # Gone already, or replaced by a new pod of the same name: nothing to finish.
            if exc.status not in (404, 409):
                raise
