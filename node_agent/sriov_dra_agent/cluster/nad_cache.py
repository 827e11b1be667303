"""The cluster's NetworkAttachmentDefinitions, kept in memory by one list + watch.

Reconciles run every resync for every claim; reading the NAD from here instead of
a GET each time keeps the API server's load independent of the resync rate. A
change to a NAD (or its creation, or deletion) is announced to the subscribers
(the claim watcher re-reconciles the claims using it), so a NAD edit reaches the
VFs within the watch's latency instead of the next resync.

:meth:`NadCache.sriov_conf` reads a claim's NAD as the sriov CNI config it must be.

Until the first list has arrived -- or for good, when RBAC forbids list/watch on
NADs (an older ClusterRole) -- :meth:`NadCache.get` falls back to a GET.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sriov_dra.errors import NadNotFound
from sriov_dra.nad import SriovNetConf, parse_nad_config
from sriov_dra_kube.client import ApiException, KubeApi
from sriov_dra_kube.list_watch import ListWatch

logger = logging.getLogger(__name__)

Body = dict[str, Any]
NadKey = tuple[str, str]
"""(namespace, name)."""


@dataclass(frozen=True)
class Nad:
    """A NAD's sriov config, with the resourceVersion it was read at."""

    conf: SriovNetConf
    resource_version: str


def _key(obj: Body) -> NadKey:
    meta = obj["metadata"]
    return str(meta.get("namespace", "")), str(meta["name"])


class NadCache:
    """Every NAD by (namespace, name); ``run`` keeps it current, ``get`` reads it."""

    def __init__(
        self,
        api: KubeApi,
        *,
        on_fetch: Callable[[], None] = lambda: None,
        watch_timeout_seconds: int = 300,
    ) -> None:
        self.api = api
        self.on_fetch = on_fetch
        """Called for every read of NADs from the API server (list or GET)."""
        self.watch_timeout_seconds = watch_timeout_seconds
        self._nads: dict[NadKey, Body] = {}
        self._listeners: list[Callable[[str, str], None]] = []
        self.synced = asyncio.Event()
        """Set once the first list is in; from then on ``get`` reads memory only."""
        self.direct = False
        """True when list/watch is forbidden: every ``get`` is a GET."""

    def subscribe(self, listener: Callable[[str, str], None]) -> None:
        """Call ``listener(namespace, name)`` whenever that NAD appears, changes or goes."""
        self._listeners.append(listener)

    async def get(self, namespace: str, name: str) -> Body | None:
        """The NAD ``namespace/name`` as last seen (``None``: it does not exist)."""
        if self.synced.is_set() and not self.direct:
            return self._nads.get((namespace, name))
        self.on_fetch()
        return await self.api.get_nad(namespace, name)

    async def sriov_conf(self, key: NadKey) -> Nad:
        """NAD ``key``'s config, parsed: raises :class:`~sriov_dra.errors.NadNotFound` when
        it does not exist, :class:`~sriov_dra.errors.InvalidNad` when it is no sriov config."""
        namespace, name = key
        obj = await self.get(namespace, name)
        if obj is None:
            raise NadNotFound(
                f"NetworkAttachmentDefinition {namespace}/{name} does not exist",
                field="VfConfig.netAttachDefName",
                fix=f"create NetworkAttachmentDefinition {namespace}/{name}",
            )
        config = (obj.get("spec") or {}).get("config") or ""
        conf = parse_nad_config(config, nad=f"{namespace}/{name}")
        return Nad(conf, str(obj["metadata"].get("resourceVersion", "")))

    def _notify(self, key: NadKey) -> None:
        for listener in self._listeners:
            try:
                listener(*key)
            except Exception:
                logger.exception("NAD change listener failed", extra={"nad": "/".join(key)})

    def _apply(self, kind: str, obj: Body) -> None:
        key = _key(obj)
        if kind == "DELETED":
            if self._nads.pop(key, None) is None:
                return
        else:
            old = self._nads.get(key)
            self._nads[key] = obj
            if old is not None and old.get("spec") == obj.get("spec"):
                return
        logger.info("NAD changed", extra={"nad": "/".join(key), "event": kind})
        self._notify(key)

    async def _relist(self) -> str:
        self.on_fetch()
        items, version = await self.api.list_nads()
        fresh = {_key(item): item for item in items}
        changed = [
            k
            for k in fresh.keys() | self._nads.keys()
            if (fresh.get(k) or {}).get("spec") != (self._nads.get(k) or {}).get("spec")
            or (k in fresh) != (k in self._nads)
        ]
        self._nads = fresh
        first = not self.synced.is_set()
        self.synced.set()
        if not first:
            # Changes missed while the watch was down (after the first list every
            # reader already sees the new state).
            for key in changed:
                self._notify(key)
        return version

    async def run(self, stop: asyncio.Event) -> None:
        """List, then watch, until ``stop``; relist on 410 or a broken watch."""
        watch = ListWatch(
            what="NAD",
            relist=self._relist,
            watch=lambda version, timeout: self.api.watch_nads(version, timeout_seconds=timeout),
            on_event=self._apply,
            timeout_seconds=self.watch_timeout_seconds,
            give_up=self._forbidden,
        )
        # The watch blocks until the server ends it: cancel it on ``stop``.
        task = asyncio.create_task(watch.run(stop))
        try:
            await stop.wait()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _forbidden(self, exc: ApiException) -> bool:
        """On a 403, read each NAD by GET from now on (and stop listing and watching)."""
        if exc.status != 403:
            return False
        logger.warning(
            "may not list/watch NetworkAttachmentDefinitions: reading each by GET; "
            "grant list and watch on network-attachment-definitions to the agent",
        )
        self.direct = True
        return True
