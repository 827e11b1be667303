"""Keeps this node's ResourceSlices equal to what discovery finds.

A loop: rescan, and when the inventory differs from what the API server holds,
publish the pool under a new generation -- obsolete slices deleted first, then
every slice created or replaced. Hardware changes wake it through
:meth:`SlicePublisher.rescan` (:mod:`sriov_dra_agent.vf.hardware_events`: netlink,
uevents, the simulated tree), so VFs created or removed after start show within
about a second; the periodic rescan every ``interval`` seconds is only a safety net
for an event missed, and each such round also re-reads the server (someone may
have deleted our slices). Slices are owned by the Node object, so they go with it.
Slices are left in place on shutdown: an agent restart must not empty the
pool (the kubelet wipes them itself once the plugin is gone for good).

Which VFs are published, and with which extra attributes, is the ``advertise``
hook's decision (the advertisement policies); when its inputs change,
:meth:`SlicePublisher.republish` wakes the loop instead of waiting for the rescan.
The ``taints`` hook (device health) works the same way: a PF link going down or
up calls :meth:`SlicePublisher.republish`. An API server without the
``DRADeviceTaints`` gate drops the taints it is sent; the publisher notices on
the answer, says so once, and stops sending them (else every comparison would
differ and bump the generation for nothing).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sriov_dra.advertisement import Advertisement
from sriov_dra_kube.client import ApiException, KubeApi

from sriov_dra_agent.cluster.slices import build_slices, next_generation, resource_names_of
from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_agent.vf.resource_names import ResourceNames

logger = logging.getLogger(__name__)


class SlicePublisher:
    """Publishes one node's pool; :meth:`run` rescans when woken, else every ``interval``
    seconds."""

    def __init__(
        self,
        api: KubeApi,
        *,
        node: str,
        driver: str,
        discover: Callable[[], Inventory],
        interval: float = 60.0,
        on_inventory: Callable[[Inventory], None] | None = None,
        on_publish: Callable[[int, int], None] | None = None,
        resource_names: ResourceNames | None = None,
        advertise: Callable[[Inventory], Awaitable[Advertisement]] | None = None,
        taints: Callable[[Inventory], Mapping[str, Sequence[Mapping[str, Any]]]] | None = None,
    ) -> None:
        self.api = api
        self.node = node
        self.driver = driver
        self.discover = discover
        self.interval = interval
        self.inventory: Inventory | None = None
        self.generation: int | None = None
        self._on_inventory = on_inventory
        self._on_publish = on_publish
        self.resource_names = resource_names
        """The Multus resource name of each VF (``--resource-name``)."""
        self._advertise = advertise
        """Which VFs to publish, with which extra attributes (None: all, as they are)."""
        self._taints = taints
        """Device name -> its taints (the device health); None: no taints."""
        self.taints_dropped = False
        """The API server dropped the taints we sent (no ``DRADeviceTaints`` gate)."""
        self.wake = asyncio.Event()
        """Set by :meth:`republish`: the next sync compares with the server at once."""
        self.hardware_changed = asyncio.Event()
        """Set by :meth:`rescan`: the next sync rediscovers at once."""
        self._published: Inventory | None = None
        self._resource_names_published: dict[str, str] = {}
        self.ready = asyncio.Event()
        """Set once a publication succeeded (the liveness and tests wait on it)."""

    async def _owner(self) -> dict[str, str] | None:
        node = await self.api.get_node(self.node)
        if node is None:
            logger.warning(
                "node object not found; publishing slices without an owner",
                extra={"node": self.node},
            )
            return None
        return {"name": self.node, "uid": node["metadata"]["uid"]}

    async def publish(self, inventory: Inventory) -> bool:
        """Make the API server hold ``inventory``'s slices; True when something was written."""
        owner = await self._owner()
        existing = await self.api.list_slices(node=self.node, driver=self.driver)
        advertisement = None if self._advertise is None else await self._advertise(inventory)
        taints = None
        if self._taints is not None and not self.taints_dropped:
            taints = self._taints(inventory)
        draft = build_slices(
            inventory,
            driver=self.driver,
            generation=0,
            owner=owner,
            resource_names=self.resource_names,
            advertisement=advertisement,
            taints=taints,
        )
        generation = next_generation(existing, draft)
        if generation is None:
            self._resource_names_published = resource_names_of(draft)
            return False
        desired = build_slices(
            inventory,
            driver=self.driver,
            generation=generation,
            owner=owner,
            resource_names=self.resource_names,
            advertisement=advertisement,
            taints=taints,
        )
        wanted = {s["metadata"]["name"] for s in desired}
        current: dict[str, dict[str, Any]] = {s["metadata"]["name"]: s for s in existing}
        for name in sorted(set(current) - wanted):
            await self.api.delete_slice(name)
        stored = []
        for body in desired:
            name = body["metadata"]["name"]
            old = current.get(name)
            if old is None:
                stored.append(await self.api.create_slice(body))
            else:
                body["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
                stored.append(await self.api.replace_slice(name, body))
        self._check_taints_kept(desired, stored)
        self.generation = generation
        self._resource_names_published = resource_names_of(desired)
        devices = sum(len(s["spec"]["devices"]) for s in desired)
        logger.info(
            "published resource slices",
            extra={
                "node": self.node,
                "generation": generation,
                "slices": len(desired),
                "devices": devices,
            },
        )
        if self._on_publish is not None:
            self._on_publish(generation, devices)
        return True

    def _check_taints_kept(
        self, sent: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]]
    ) -> None:
        """Notice an API server that dropped the device taints we sent, and stop sending them."""
        if _tainted(sent) and not _tainted(stored):
            self.taints_dropped = True
            logger.warning(
                "the API server dropped the device taints of the resource slices; "
                "fix: enable the DRADeviceTaints feature gate on kube-apiserver "
                "(and kube-scheduler) to keep new claims off VFs whose PF link is down",
                extra={"node": self.node, "devices": sorted(_tainted(sent))},
            )
            self.forget()

    def published_resource_name(self, device: str) -> str | None:
        """The ``k8s.cni.cncf.io/resourceName`` device ``device`` was last published with
        (from ``--resource-name`` or a DeviceAttributes); None before the first publication."""
        return self._resource_names_published.get(device)

    async def sync_once(self) -> bool:
        """Rescan and publish if needed; True when the API server was written."""
        inventory = await asyncio.to_thread(self.discover)
        self.inventory = inventory
        if self._on_inventory is not None:
            self._on_inventory(inventory)
        if inventory == self._published:
            # Someone (the kubelet wipe, an admin) may have deleted our slices:
            # publish() compares with the server, so check it only now and then.
            return False
        changed = await self.publish(inventory)
        self._published = inventory
        self.ready.set()
        return changed

    def republish(self) -> None:
        """Publish again now (what to advertise changed), not at the next rescan."""
        self.wake.set()

    def rescan(self) -> None:
        """Rediscover now (the hardware changed); publish only if the inventory differs."""
        self.hardware_changed.set()

    def forget(self) -> None:
        """Compare with the API server on the next sync even if discovery saw no change."""
        self._published = None

    async def run(self, stop: asyncio.Event, *, verify_every: int = 1) -> None:
        """Sync until ``stop`` is set; re-read the server on every ``verify_every``-th round
        that no :meth:`rescan` woke (a hardware event needs discovery, not the server)."""
        rounds = 0
        while not stop.is_set():
            timed = not self.hardware_changed.is_set() and not self.wake.is_set()
            if (timed and rounds % verify_every == 0) or self.wake.is_set():
                self.forget()
            if timed:
                rounds += 1
            self.wake.clear()
            self.hardware_changed.clear()
            try:
                await self.sync_once()
            except ApiException as exc:
                logger.warning(
                    "publishing resource slices failed: %s %s",
                    exc.status,
                    exc.reason,
                    extra={"node": self.node},
                )
                self.forget()
            except Exception:
                logger.exception("resource slice sync failed", extra={"node": self.node})
                self.forget()
            await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        """Wait ``interval`` seconds, less when stopped or woken (:meth:`republish`,
        :meth:`rescan`)."""
        waits = [
            asyncio.create_task(stop.wait()),
            asyncio.create_task(self.wake.wait()),
            asyncio.create_task(self.hardware_changed.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()


def _tainted(slices: Sequence[Mapping[str, Any]]) -> set[str]:
    """Names of the devices of ``slices`` that carry taints."""
    return {
        str(device["name"])
        for item in slices
        for device in (item.get("spec") or {}).get("devices") or []
        if device.get("taints")
    }
