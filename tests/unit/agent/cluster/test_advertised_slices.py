"""The agent's side of advertisement: slices follow the core's decision, wake-ups republish."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sriov_dra import constants
from sriov_dra.advertisement import Advertisement, NoPolicyMode, decide
from sriov_dra_agent.cluster.advertisement_policies import (
    AdvertisementPolicies,
    built_in_names,
    candidates,
)
from sriov_dra_agent.cluster.slice_publisher import SlicePublisher
from sriov_dra_agent.cluster.slices import build_slices, pool_devices, vf_device
from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_kube.client import ApiException
from test_slices import make_inventory

DRIVER = constants.DRIVER_NAME


def devices_of(slices: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d["attributes"] for s in slices for d in s["spec"]["devices"]}


def test_only_advertised_devices_are_published_with_their_extras() -> None:
    inventory = make_inventory(3)
    names = [d["name"] for d in pool_devices(inventory)]
    extra = {"example.com/pool": {"string": "fast"}, constants.ATTR_VENDOR: {"string": "evil"}}
    advertisement = Advertisement({names[1]: extra})
    published = devices_of(
        build_slices(inventory, driver=DRIVER, generation=0, advertisement=advertisement)
    )
    assert list(published) == [names[1]]
    assert published[names[1]]["example.com/pool"] == {"string": "fast"}
    # A built-in attribute keeps its discovered value whatever the decision says.
    assert published[names[1]][constants.ATTR_VENDOR] == {"string": "8086"}


def test_no_advertisement_publishes_every_device_as_it_is() -> None:
    inventory = make_inventory(3)
    assert devices_of(build_slices(inventory, driver=DRIVER, generation=0)) == {
        d["name"]: d["attributes"] for d in pool_devices(inventory)
    }


def test_an_empty_advertisement_still_publishes_one_empty_slice() -> None:
    slices = build_slices(
        make_inventory(3), driver=DRIVER, generation=0, advertisement=Advertisement({})
    )
    assert [s["spec"]["devices"] for s in slices] == [[]]


def test_extras_stop_at_the_attribute_limit() -> None:
    inventory = make_inventory(1)
    name = pool_devices(inventory)[0]["name"]
    many = {f"example.com/a{i:02d}": {"int": i} for i in range(40)}
    published = devices_of(
        build_slices(
            inventory, driver=DRIVER, generation=0, advertisement=Advertisement({name: many})
        )
    )
    assert len(published[name]) == 32


def test_candidates_and_built_in_names_come_from_the_inventory() -> None:
    inventory = make_inventory(2)
    vf = inventory.vfs()[0]
    (first, _) = candidates(inventory)
    assert first.device == vf_device(vf, inventory.node)["name"]
    assert (first.pf_name, first.driver, first.link_type) == (vf.pf_name, "iavf", "ethernet")
    assert constants.ATTR_PCI_ADDRESS in built_in_names(inventory)
    result = decide(
        node=inventory.node,
        node_labels={},
        vfs=candidates(inventory),
        policies=[
            {"metadata": {"name": "p"}, "spec": {"configs": [{"deviceAttributesSelector": {}}]}}
        ],
        device_attributes=[
            {"metadata": {"name": "a"}, "spec": {"attributes": {"pciAddress": {"string": "x"}}}}
        ],
        no_policy=NoPolicyMode.NONE,
        driver=DRIVER,
        reserved=built_in_names(inventory),
    )
    assert result.devices[first.device] == {}
    assert result.problems[0].error.field == "spec.attributes[pciAddress]"


class FakeApi:
    """Just enough of KubeApi for the publisher: slices in memory."""

    def __init__(self) -> None:
        self.slices: dict[str, dict[str, Any]] = {}
        self.writes = 0

    async def get_node(self, name: str) -> None:
        return None

    async def list_slices(self, *, node: str, driver: str) -> list[dict[str, Any]]:
        return [
            dict(s, metadata=dict(s["metadata"], resourceVersion="1")) for s in self.slices.values()
        ]

    async def create_slice(self, body: dict[str, Any]) -> None:
        self.writes += 1
        self.slices[body["metadata"]["name"]] = body

    async def replace_slice(self, name: str, body: dict[str, Any]) -> None:
        self.writes += 1
        self.slices[name] = body

    async def delete_slice(self, name: str) -> None:
        self.slices.pop(name, None)


async def test_republish_wakes_the_loop_before_the_next_rescan() -> None:
    inventory = make_inventory(2)
    names = [d["name"] for d in pool_devices(inventory)]
    decision = {"now": Advertisement({n: {} for n in names})}
    published = asyncio.Event()

    async def advertise(_: Inventory) -> Advertisement:
        return decision["now"]

    api = FakeApi()
    publisher = SlicePublisher(
        api,  # type: ignore[arg-type]
        node=inventory.node,
        driver=DRIVER,
        discover=lambda: inventory,
        interval=3600,
        advertise=advertise,
        on_publish=lambda generation, devices: published.set(),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(publisher.run(stop))
    await published.wait()
    assert set(devices_of(list(api.slices.values()))) == set(names)
    published.clear()
    decision["now"] = Advertisement({names[0]: {}})
    publisher.republish()
    await published.wait()
    assert set(devices_of(list(api.slices.values()))) == {names[0]}
    stop.set()
    await task


class NoPolicyKindsApi:
    """The policy kinds refused with ``status``; the Node served with one label."""

    def __init__(self, status: int) -> None:
        self.status = status

    async def list_custom(self, *args: Any) -> tuple[list[dict[str, Any]], str]:
        raise ApiException(status=self.status, reason="refused")

    async def list_node(self, name: str) -> tuple[list[dict[str, Any]], str]:
        return [{"metadata": {"name": name, "labels": {"zone": "a"}}}], "1"

    async def _idle(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        await asyncio.Event().wait()
        yield ("ADDED", {})

    def watch_node(self, *args: Any, **kwargs: Any) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._idle()


async def decided(
    api: Any, namespaces: list[str], mode: NoPolicyMode, inventory: Inventory
) -> tuple[AdvertisementPolicies, Advertisement]:
    """The agent's policies over ``api``, run until they have decided on ``inventory``."""
    policies = AdvertisementPolicies(
        api, node=inventory.node, namespaces=namespaces, driver=DRIVER, no_policy=mode,
        component="test",
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(policies.run(stop))
    result = await policies.decide(inventory)
    stop.set()
    await task
    return policies, result


@pytest.mark.parametrize("status", [403, 404])
@pytest.mark.parametrize("mode", list(NoPolicyMode))
async def test_missing_or_forbidden_kinds_mean_no_policy(status: int, mode: NoPolicyMode) -> None:
    inventory = make_inventory(2)
    policies, result = await decided(NoPolicyKindsApi(status), ["sriov-dra"], mode, inventory)
    expected = {d["name"] for d in pool_devices(inventory)} if mode is NoPolicyMode.ALL else set()
    assert set(result.devices) == expected
    assert policies.labels == {"zone": "a"}


class NamespacedPoliciesApi(NoPolicyKindsApi):
    """Serves ``objects[(namespace, plural)]``; every watch stays quiet."""

    def __init__(self, objects: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
        super().__init__(200)
        self.objects = objects

    async def list_custom(
        self, group: str, version: str, namespace: str, plural: str
    ) -> tuple[list[dict[str, Any]], str]:
        return self.objects.get((namespace, plural), []), "1"

    def watch_custom(self, *args: Any, **kwargs: Any) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        return self._idle()


async def test_namespaces_in_order_each_with_its_own_device_attributes() -> None:
    inventory = make_inventory(2)
    first_vf, second_vf = (vf.pci_address for vf in inventory.vfs())
    selector = {"matchLabels": {"pool": "p"}}

    def policy(namespace: str, config: dict[str, Any]) -> dict[str, Any]:
        meta = {"name": "policy", "namespace": namespace, "uid": namespace}
        return {"metadata": meta, "spec": {"configs": [config]}}

    attrs = {
        "metadata": {"name": "a", "namespace": "first", "uid": "a", "labels": {"pool": "p"}},
        "spec": {"attributes": {"example.com/from": {"string": "first"}}},
    }
    api = NamespacedPoliciesApi(
        {
            ("first", "sriovresourcepolicies"): [
                policy(
                    "first",
                    {
                        "deviceAttributesSelector": selector,
                        "resourceFilters": [{"pciAddresses": [first_vf]}],
                    },
                )
            ],
            ("first", "deviceattributes"): [attrs],
            # Selects every VF, but finds no DeviceAttributes in its own namespace.
            ("second", "sriovresourcepolicies"): [
                policy("second", {"deviceAttributesSelector": selector})
            ],
        }
    )
    _, result = await decided(api, ["first", "second"], NoPolicyMode.NONE, inventory)
    device = {vf.pci_address: vf.device for vf in candidates(inventory)}
    published = {pci: dict(result.devices[name]) for pci, name in device.items()}
    assert published == {first_vf: {"example.com/from": {"string": "first"}}, second_vf: {}}
