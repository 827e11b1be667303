"""The slice publisher against the real API server: split beyond 128 devices, generations."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client as k8s_client
from sriov_dra import constants
from sriov_dra_agent.cluster.slice_publisher import SlicePublisher
from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo
from sriov_dra_kube.client import KubeApi

pytestmark = pytest.mark.integration

DRIVER = constants.DRIVER_NAME


def inventory(node: str, vf_count: int, *, numa: int = 0) -> Inventory:
    pfs = []
    for pf_number, start in enumerate(range(0, vf_count, 64)):
        bus = 0x10 * (pf_number + 1)
        vfs = tuple(
            VfInfo(
                pci_address=f"0000:{bus + 1 + i // 8:02x}:00.{i % 8}",
                vf_index=i,
                pf_name=f"sim{pf_number}",
                pf_pci_address=f"0000:{bus:02x}:00.0",
                vendor="8086",
                device_id="154c",
                pf_device_id="1572",
                driver="iavf",
                netdev=None,
                numa_node=numa,
                simulated=True,
            )
            for i in range(min(64, vf_count - start))
        )
        pfs.append(
            PfInfo(
                name=f"sim{pf_number}",
                pci_address=f"0000:{bus:02x}:00.0",
                vendor="8086",
                device_id="1572",
                total_vfs=64,
                num_vfs=len(vfs),
                vfs=vfs,
            )
        )
    return Inventory(node=node, pfs=tuple(pfs))


@pytest_asyncio.fixture
async def node(k8s_api: k8s_client.ApiClient) -> AsyncIterator[dict[str, Any]]:
    """A Node object of its own, so slices owned by it do not mix with other tests'."""
    name = f"t-slices-{secrets.token_hex(3)}"
    core = k8s_client.CoreV1Api(k8s_api)
    created = await core.create_node({"metadata": {"name": name}})  # type: ignore[arg-type]
    try:
        yield {"name": name, "uid": created.metadata.uid}
    finally:
        await core.delete_node(name)
        api = KubeApi(k8s_api)
        for item in await api.list_slices(node=name, driver=DRIVER):
            await api.delete_slice(item["metadata"]["name"])


async def _server_pool(api: KubeApi, node: str) -> list[dict[str, Any]]:
    items = await api.list_slices(node=node, driver=DRIVER)
    return sorted(items, key=lambda s: s["metadata"]["name"])


async def test_publish_splits_bumps_and_merges(
    k8s_api: k8s_client.ApiClient, node: dict[str, Any]
) -> None:
    api = KubeApi(k8s_api)
    current = {"inventory": inventory(node["name"], 300)}
    publisher = SlicePublisher(
        api, node=node["name"], driver=DRIVER, discover=lambda: current["inventory"]
    )

    assert await publisher.sync_once() is True
    pool = await _server_pool(api, node["name"])
    assert [len(s["spec"]["devices"]) for s in pool] == [128, 128, 44]
    for item in pool:
        assert item["spec"]["nodeName"] == node["name"]
        assert item["spec"]["pool"] == {
            "name": node["name"],
            "generation": 0,
            "resourceSliceCount": 3,
        }
        assert item["metadata"]["ownerReferences"][0]["uid"] == node["uid"]
    device = pool[0]["spec"]["devices"][0]
    assert device["attributes"]["resource.kubernetes.io/pciBusID"] == {"string": "0000:11:00.0"}
    assert device["attributes"]["k8s.cni.cncf.io/deviceID"] == {"string": "0000:11:00.0"}
    assert device["attributes"][constants.ATTR_SIMULATED] == {"bool": True}

    # Nothing changed: the server copy equals ours, nothing is written.
    publisher.forget()
    assert await publisher.sync_once() is False
    assert [s["metadata"]["resourceVersion"] for s in await _server_pool(api, node["name"])] == [
        s["metadata"]["resourceVersion"] for s in pool
    ]

    # A VF appears (rescan, no restart): one more device, new generation everywhere.
    current["inventory"] = inventory(node["name"], 301)
    assert await publisher.sync_once() is True
    pool = await _server_pool(api, node["name"])
    assert [len(s["spec"]["devices"]) for s in pool] == [128, 128, 45]
    assert {s["spec"]["pool"]["generation"] for s in pool} == {1}

    # Shrinks to one slice: the obsolete slices are deleted, the count follows.
    current["inventory"] = inventory(node["name"], 10)
    assert await publisher.sync_once() is True
    pool = await _server_pool(api, node["name"])
    assert [len(s["spec"]["devices"]) for s in pool] == [10]
    assert pool[0]["spec"]["pool"] == {
        "name": node["name"],
        "generation": 2,
        "resourceSliceCount": 1,
    }


async def test_deleted_slices_come_back_and_run_loop_rescans(
    k8s_api: k8s_client.ApiClient, node: dict[str, Any]
) -> None:
    api = KubeApi(k8s_api)
    current = {"inventory": inventory(node["name"], 4)}
    publisher = SlicePublisher(
        api,
        node=node["name"],
        driver=DRIVER,
        discover=lambda: current["inventory"],
        interval=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop, verify_every=2))
    try:
        await asyncio.wait_for(publisher.ready.wait(), 30)
        (item,) = await _server_pool(api, node["name"])
        # Someone (the kubelet's wipe, an admin) deletes our slice: it is republished.
        await api.delete_slice(item["metadata"]["name"])

        async def republished() -> list[dict[str, Any]]:
            while True:
                pool = await _server_pool(api, node["name"])
                if pool:
                    return pool
                await asyncio.sleep(0.2)

        (item,) = await asyncio.wait_for(republished(), 30)
        assert len(item["spec"]["devices"]) == 4

        current["inventory"] = inventory(node["name"], 4, numa=1)

        async def renumbered() -> dict[str, Any]:
            while True:
                (item,) = await _server_pool(api, node["name"])
                numa = item["spec"]["devices"][0]["attributes"][constants.ATTR_NUMA_NODE]
                if numa == {"int": 1}:
                    return item
                await asyncio.sleep(0.2)

        item = await asyncio.wait_for(renumbered(), 30)
        assert item["spec"]["pool"]["generation"] == 1
    finally:
        stop.set()
        await task
