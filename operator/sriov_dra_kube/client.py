"""The API server in plain dicts: the client, the answers' decoding, the calls we make.

A thin layer over kubernetes_asyncio that returns objects exactly as the API
server sends them (camelCase JSON), so that the pure modules can work on them
without generated models. The agent makes its calls through :class:`KubeApi`,
the operator posts its Events through it, and the test world's node emulator
extends it with the pod calls a kubelet makes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final, Self

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from sriov_dra.errors import WatchFailed
from sriov_dra.watch_events import WatchEvent, decode_watch_stream

__all__ = [
    "ApiException",
    "KubeApi",
    "WatchEvent",
    "decode",
    "is_status",
    "load_api_client",
    "watch_events",
]

Body = dict[str, Any]

NAD_GROUP: Final = "k8s.cni.cncf.io"
NAD_VERSION: Final = "v1"
NAD_PLURAL: Final = "network-attachment-definitions"


async def load_api_client(
    kubeconfig: str | None, *, connections: int | None = None
) -> client.ApiClient:
    """An ApiClient from ``kubeconfig``, else in-cluster config, else ``$KUBECONFIG``/default.

    ``connections`` caps the connections it keeps open (the library's default is 100);
    each TLS connection holds a 256 KB read buffer for as long as it is pooled.
    """
    configuration = client.Configuration()
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            await config.load_kube_config(client_configuration=configuration)
    return client.ApiClient(configuration)


async def decode(response: Any) -> Any:
    """The JSON body of a raw (``_preload_content=False``) answer; ApiException for a non-2xx.

    With ``_preload_content=False`` kubernetes_asyncio hands back error answers
    (404, 409, 422...) as plain responses instead of raising: check here.
    """
    try:
        raw = await response.read()
    finally:
        response.release()
    _raise_for_status(response, raw)
    return json.loads(raw) if raw else None


def _raise_for_status(response: Any, raw: bytes = b"") -> None:
    if 200 <= response.status <= 299:
        return
    reason = response.reason
    with contextlib.suppress(ValueError, AttributeError):
        reason = json.loads(raw).get("message") or reason
    exc = ApiException(status=response.status, reason=reason)
    exc.body = raw
    raise exc


async def watch_events(
    list_call: Callable[..., Awaitable[Any]],
    *args: Any,
    resource_version: str,
    timeout_seconds: int,
    **selectors: Any,
) -> AsyncIterator[WatchEvent]:
    """Watch with ``list_call`` (a generated ``list_*`` method) from ``resource_version``.

    Yields (type, object) events, bookmarks included, until the server ends the
    watch after ``timeout_seconds``. ApiException for a refused watch and for an
    ERROR event (410: the resourceVersion is too old, relist).
    """
    response = await list_call(
        *args,
        watch=True,
        resource_version=resource_version,
        timeout_seconds=timeout_seconds,
        allow_watch_bookmarks=True,
        _preload_content=False,
        _request_timeout=timeout_seconds + 30,
        **selectors,
    )
    try:
        if not 200 <= response.status <= 299:
            _raise_for_status(response, await response.read())
        async for event in decode_watch_stream(response.content):
            yield event
    except WatchFailed as exc:
        raise ApiException(status=exc.status, reason=exc.message) from exc
    finally:
        response.release()


def is_status(exc: BaseException, *codes: int) -> bool:
    """True for an ApiException with one of ``codes``."""
    return isinstance(exc, ApiException) and exc.status in codes


class KubeApi:
    """ResourceSlices, ResourceClaims, Nodes, NADs and Events as dicts."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        # The generated stubs want models; we send and receive plain dicts.
        self.core: Any = client.CoreV1Api(api_client)
        self.resource: Any = client.ResourceV1Api(api_client)
        self.custom: Any = client.CustomObjectsApi(api_client)

    @classmethod
    async def from_kubeconfig(cls, kubeconfig: str | Path | None) -> Self:
        """A client from ``kubeconfig`` (see :func:`load_api_client` for the fallbacks)."""
        return cls(await load_api_client(str(kubeconfig) if kubeconfig else None))

    async def close(self) -> None:
        await self.api_client.close()

    # -- nodes ------------------------------------------------------------------------------

    async def get_node(self, name: str) -> Body | None:
        try:
            data: Body = await decode(await self.core.read_node(name, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return data

    async def list_node(self, name: str) -> tuple[list[Body], str]:
        """Node ``name`` as a list of at most one (to watch it) and the list's resourceVersion."""
        data = await decode(
            await self.core.list_node(
                field_selector=f"metadata.name={name}", _preload_content=False
            )
        )
        return data["items"], data["metadata"]["resourceVersion"]

    def watch_node(
        self, name: str, resource_version: str, *, timeout_seconds: int = 120
    ) -> AsyncIterator[WatchEvent]:
        """(type, object) events of Node ``name``; ApiException(410) = relist."""
        return watch_events(
            self.core.list_node,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            field_selector=f"metadata.name={name}",
        )

    # -- custom objects of one namespace ----------------------------------------------------

    async def list_custom(
        self, group: str, version: str, namespace: str, plural: str
    ) -> tuple[list[Body], str]:
        """Every ``plural`` object of ``namespace`` and the list's resourceVersion."""
        data = await decode(
            await self.custom.list_namespaced_custom_object(
                group, version, namespace, plural, _preload_content=False
            )
        )
        return data["items"], data["metadata"]["resourceVersion"]

    def watch_custom(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        resource_version: str,
        *,
        timeout_seconds: int = 120,
    ) -> AsyncIterator[WatchEvent]:
        """(type, object) events of ``plural`` in ``namespace``; ApiException(410) = relist."""
        return watch_events(
            self.custom.list_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )

    # -- resource slices --------------------------------------------------------------------

    async def list_slices(self, *, node: str, driver: str) -> list[Body]:
        data = await decode(
            await self.resource.list_resource_slice(
                field_selector=f"spec.nodeName={node},spec.driver={driver}",
                _preload_content=False,
            )
        )
        items: list[Body] = data["items"]
        return items

    async def create_slice(self, body: Mapping[str, Any]) -> Body:
        data: Body = await decode(
            await self.resource.create_resource_slice(dict(body), _preload_content=False)
        )
        return data

    async def replace_slice(self, name: str, body: Mapping[str, Any]) -> Body:
        data: Body = await decode(
            await self.resource.replace_resource_slice(name, dict(body), _preload_content=False)
        )
        return data

    async def delete_slice(self, name: str) -> None:
        try:
            await decode(await self.resource.delete_resource_slice(name, _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise

    # -- resource claims --------------------------------------------------------------------

    async def get_claim(self, namespace: str, name: str) -> Body | None:
        try:
            data: Body = await decode(
                await self.resource.read_namespaced_resource_claim(
                    name, namespace, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return data

    async def list_claims(self, *, label_selector: str = "") -> tuple[list[Body], str]:
        """All claims (optionally by label) and the list's resourceVersion."""
        data = await decode(
            await self.resource.list_resource_claim_for_all_namespaces(
                label_selector=label_selector or None, _preload_content=False
            )
        )
        return data["items"], data["metadata"]["resourceVersion"]

    def watch_claims(
        self, resource_version: str, *, label_selector: str = "", timeout_seconds: int = 120
    ) -> AsyncIterator[WatchEvent]:
        """(type, object) events until the server ends the watch; ApiException(410) = relist."""
        return watch_events(
            self.resource.list_resource_claim_for_all_namespaces,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            label_selector=label_selector or None,
        )

    async def apply_claim_status(
        self, namespace: str, name: str, body: Mapping[str, Any], *, field_manager: str
    ) -> Body:
        """Server-side apply on ``resourceclaims/status`` under ``field_manager``."""
        data: Body = await decode(
            await self.resource.patch_namespaced_resource_claim_status(
                name,
                namespace,
                dict(body),
                field_manager=field_manager,
                force=True,
                _content_type="application/apply-patch+yaml",
                _preload_content=False,
            )
        )
        return data

    # -- network attachment definitions -----------------------------------------------------

    async def get_nad(self, namespace: str, name: str) -> Body | None:
        try:
            data: Body = await decode(
                await self.custom.get_namespaced_custom_object(
                    NAD_GROUP, NAD_VERSION, namespace, NAD_PLURAL, name, _preload_content=False
                )
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return data

    async def list_nads(self) -> tuple[list[Body], str]:
        """Every NAD of the cluster and the list's resourceVersion."""
        data = await decode(
            await self.custom.list_cluster_custom_object(
                NAD_GROUP, NAD_VERSION, NAD_PLURAL, _preload_content=False
            )
        )
        return data["items"], data["metadata"]["resourceVersion"]

    def watch_nads(
        self, resource_version: str, *, timeout_seconds: int = 120
    ) -> AsyncIterator[WatchEvent]:
        """(type, object) NAD events until the server ends the watch; ApiException(410) = relist."""
        return watch_events(
            self.custom.list_cluster_custom_object,
            NAD_GROUP,
            NAD_VERSION,
            NAD_PLURAL,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
        )

    # -- events -----------------------------------------------------------------------------

    async def create_event(self, namespace: str, body: Mapping[str, Any]) -> Body:
        data: Body = await decode(
            await self.core.create_namespaced_event(namespace, dict(body), _preload_content=False)
        )
        return data

    async def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> Body:
        """Merge-patch an Event (``count``/``lastTimestamp`` of a repeat)."""
        data: Body = await decode(
            await self.core.patch_namespaced_event(
                name,
                namespace,
                dict(patch),
                _content_type="application/merge-patch+json",
                _preload_content=False,
            )
        )
        return data
