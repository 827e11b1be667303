"""The slice publisher woken by hardware events: :meth:`SlicePublisher.rescan` rediscovers at
once, long before the safety-net interval, and reads the API server only when the inventory
changed (a policy change, :meth:`SlicePublisher.republish`, always compares with it)."""

from __future__ import annotations

import asyncio
from typing import Any

from sriov_dra import constants
from sriov_dra_agent.cluster.slice_publisher import SlicePublisher
from sriov_dra_agent.vf.inventory import Inventory
from test_advertised_slices import FakeApi, devices_of
from test_slices import make_inventory

DRIVER = constants.DRIVER_NAME


class CountingApi(FakeApi):
    """Counts the reads of the node's slices."""

    def __init__(self) -> None:
        super().__init__()
        self.lists = 0
        self.listed = asyncio.Event()

    async def list_slices(self, *, node: str, driver: str) -> list[dict[str, Any]]:
        self.lists += 1
        self.listed.set()
        return await super().list_slices(node=node, driver=driver)


async def test_rescan_publishes_hardware_changes_at_once_and_reads_the_server_only_then() -> None:
    current = {"inventory": make_inventory(4)}
    discoveries: list[Inventory] = []
    published = asyncio.Event()
    rediscovered = asyncio.Event()

    def discover() -> Inventory:
        discoveries.append(current["inventory"])
        return current["inventory"]

    api = CountingApi()
    publisher = SlicePublisher(
        api,  # type: ignore[arg-type]
        node="node-a",
        driver=DRIVER,
        discover=discover,
        interval=3600,  # the safety net never runs here: only wake-ups can publish
        on_publish=lambda generation, devices: published.set(),
        on_inventory=lambda inventory: rediscovered.set(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    try:
        async with asyncio.timeout(10):
            await published.wait()
        assert len(devices_of(list(api.slices.values()))) == 4
        assert (len(discoveries), api.lists) == (1, 1)

        # An event that changed nothing (a VF moved into a pod): rediscovered, server untouched.
        rediscovered.clear()
        publisher.rescan()
        async with asyncio.timeout(10):
            await rediscovered.wait()
        # Two VFs removed: the next event publishes the smaller pool.
        published.clear()
        current["inventory"] = make_inventory(2)
        publisher.rescan()
        async with asyncio.timeout(10):
            await published.wait()
        assert len(devices_of(list(api.slices.values()))) == 2
        assert len(discoveries) == 3
        assert api.lists == 2, "only the changed inventory is compared with the server"

        # What to advertise changed: the server is compared with even for the same inventory.
        api.listed.clear()
        publisher.republish()
        async with asyncio.timeout(10):
            await api.listed.wait()
        assert api.lists == 3
    finally:
        stop.set()
        await task
