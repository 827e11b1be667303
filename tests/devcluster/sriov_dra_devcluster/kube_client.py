"""A small async Kubernetes client over kubernetes-asyncio that speaks plain dicts.

The dev-cluster tools (node emulator) want objects as the API server sends
them (camelCase JSON), not generated models, and a watch stream they control.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from sriov_dra.watch_events import WatchEvent
from sriov_dra_kube.client import watch_events

__all__ = ["ApiException", "KubeClient"]


async def _body(response: Any) -> Any:
    """Decode a raw response; ApiException for a non-2xx status (the raw mode does not check)."""
    raw = await response.read()
    response.release()
    if not 200 <= response.status <= 299:
        exc = ApiException(status=response.status, reason=response.reason)
        exc.body = raw.decode(errors="replace")
        raise exc
    return json.loads(raw) if raw else None


class KubeClient:
    """Pods, nodes, claims and events; every method returns decoded JSON."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.resource = client.ResourceV1Api(api_client)

    @classmethod
    async def from_kubeconfig(cls, kubeconfig: Path) -> KubeClient:
        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration
        )
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self.api_client.close()

    async def list_pods(self) -> tuple[list[dict[str, Any]], str]:
        """All pods and the list's resourceVersion."""
        data = await _body(await self.core.list_pod_for_all_namespaces(_preload_content=False))
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
            body: dict[str, Any] = await _body(
                await self.core.read_namespaced_pod(name, namespace, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await _body(
                await self.resource.read_namespaced_resource_claim(
                    name, namespace, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    async def get_node(self, name: str) -> dict[str, Any] | None:
        try:
            body: dict[str, Any] = await _body(
                await self.core.read_node(name, _preload_content=False)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return body

    async def patch_pod_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """Strategic-merge patch of the status subresource."""
        await _body(
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
            await _body(
                await self.core.delete_namespaced_pod(
                    name, namespace, body=body, _preload_content=False
                )
            )
        except ApiException as exc:
            # Gone already, or replaced by a new pod of the same name: nothing to finish.
            if exc.status not in (404, 409):
                raise

    async def create_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        await _body(
            await self.core.create_namespaced_event(
                namespace,
                dict(event),  # type: ignore[arg-type]
                _preload_content=False,
            )
        )

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> bool:
        """Patch an event; False when it no longer exists."""
        try:
            await _body(
                await self.core.patch_namespaced_event(
                    name, namespace, dict(patch), _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True
