"""Device health in the agent: link messages -> health, the kubelet's stream over real gRPC
on a unix socket, and the slice publisher's taints."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sriov_dra import constants
from sriov_dra.device_health import PF_LINK_DOWN_TAINT, Health
from sriov_dra_agent.cluster.slice_publisher import SlicePublisher
from sriov_dra_agent.health.health_service import health_servicer
from sriov_dra_agent.health.pf_links import PfLinkMonitor
from sriov_dra_agent.kubelet.plugin import KubeletPlugin, KubeletPluginConfig, PreparedDevice
from sriov_dra_agent.proto import dra_health_v1alpha1_pb2, dra_health_v1alpha1_pb2_grpc
from test_advertised_slices import FakeApi
from test_slices import make_inventory

INVENTORY = make_inventory(3)
PF = INVENTORY.pfs[0].name
PF_INDEX = 7
UP = 0x11043
NO_CARRIER = 0x1003


def link(flags: int, *, name: str = PF, index: int = PF_INDEX, event: str = "RTM_NEWLINK") -> Any:
    return {"index": index, "IFLA_IFNAME": name, "flags": flags, "event": event}


class NoClaims:
    async def prepare(self, claim: Any) -> list[PreparedDevice]:
        raise AssertionError("not called")

    async def unprepare(self, claim: Any) -> None:
        raise AssertionError("not called")


@pytest.fixture
def changes() -> list[int]:
    return []


@pytest.fixture
async def monitor(changes: list[int]) -> PfLinkMonitor:
    monitor = PfLinkMonitor(node="node-a", netns=None, on_change=lambda: changes.append(1))
    monitor.set_inventory(INVENTORY)
    return monitor


def health_of(monitor: PfLinkMonitor) -> set[Health]:
    return {entry.health for entry in monitor.health().values()}


async def test_pf_link_down_and_up_changes_every_vf_of_the_pf(
    monitor: PfLinkMonitor, changes: list[int]
) -> None:
    assert health_of(monitor) == {Health.UNKNOWN}
    assert monitor.taints(INVENTORY) == {}
    monitor.observe(link(UP))
    assert health_of(monitor) == {Health.HEALTHY}
    before = len(changes)
    monitor.observe(link(NO_CARRIER))
    assert len(changes) == before + 1
    assert health_of(monitor) == {Health.UNHEALTHY}
    taints = monitor.taints(INVENTORY)
    assert set(taints) == set(monitor.health())
    assert {t[0]["key"] for t in taints.values()} == {PF_LINK_DOWN_TAINT}
    monitor.observe(link(NO_CARRIER))
    assert len(changes) == before + 1, "the same state again is no change"
    monitor.observe(link(UP))
    assert health_of(monitor) == {Health.HEALTHY}
    assert monitor.taints(INVENTORY) == {}


async def test_other_links_do_not_count_and_a_deleted_pf_is_unknown(
    monitor: PfLinkMonitor, changes: list[int]
) -> None:
    monitor.observe(link(UP))
    before = len(changes)
    monitor.observe(link(NO_CARRIER, name="veth1234", index=99))
    assert len(changes) == before
    assert health_of(monitor) == {Health.HEALTHY}
    monitor.observe(link(UP, event="RTM_DELLINK"))
    assert health_of(monitor) == {Health.UNKNOWN}
    assert len(changes) == before + 1


async def test_a_renamed_pf_is_unknown_under_its_inventory_name(monitor: PfLinkMonitor) -> None:
    monitor.observe(link(NO_CARRIER))
    monitor.observe(link(NO_CARRIER, name="renamed0"))
    assert health_of(monitor) == {Health.UNKNOWN}
    assert monitor.taints(INVENTORY) == {}


@pytest.fixture
def socket_root() -> Iterator[Path]:
    # pytest's tmp_path is too long for a unix socket address under the driver's directory.
    root = Path(tempfile.mkdtemp(prefix="sh-", dir="/tmp"))
    yield root
    shutil.rmtree(root)


@pytest.fixture
async def plugin(socket_root: Path, monitor: PfLinkMonitor) -> AsyncIterator[KubeletPlugin]:
    config = KubeletPluginConfig(
        registrar_dir=socket_root / "plugins_registry", plugins_dir=socket_root / "plugins"
    )
    plugin = KubeletPlugin(
        NoClaims(), config, extra_services=[health_servicer(monitor, resend=3600)]
    )
    await plugin.start()
    yield plugin
    await plugin.stop(grace=1)


def stream_health(message: Any) -> dict[str, int]:
    assert {d.device.pool_name for d in message.devices} == {"node-a"}
    assert all(d.last_updated_time > 0 for d in message.devices)
    return {d.device.device_name: d.health for d in message.devices}


async def test_the_kubelet_stream_reports_down_and_recovery(
    plugin: KubeletPlugin, monitor: PfLinkMonitor
) -> None:
    devices = set(monitor.health())
    pb2 = dra_health_v1alpha1_pb2
    async with grpc.aio.insecure_channel(f"unix://{plugin.config.dra_socket}") as channel:
        stub = dra_health_v1alpha1_pb2_grpc.DRAResourceHealthStub(channel)
        call = stub.NodeWatchResources(pb2.NodeWatchResourcesRequest(), timeout=30)
        stream = call.__aiter__()
        first = stream_health(await stream.__anext__())
        assert first == dict.fromkeys(devices, pb2.UNKNOWN)
        monitor.observe(link(UP))
        assert stream_health(await stream.__anext__()) == dict.fromkeys(devices, pb2.HEALTHY)
        monitor.observe(link(NO_CARRIER))
        assert stream_health(await stream.__anext__()) == dict.fromkeys(devices, pb2.UNHEALTHY)
        monitor.observe(link(UP))
        assert stream_health(await stream.__anext__()) == dict.fromkeys(devices, pb2.HEALTHY)
        call.cancel()


class SliceStore(FakeApi):
    """FakeApi answering writes with what it stored; ``drops_taints`` plays a server without
    the DRADeviceTaints gate."""

    def __init__(self, *, drops_taints: bool = False) -> None:
        super().__init__()
        self.drops_taints = drops_taints

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        if self.drops_taints:
            devices = [
                {k: v for k, v in d.items() if k != "taints"} for d in body["spec"]["devices"]
            ]
            body = dict(body, spec=dict(body["spec"], devices=devices))
        self.slices[body["metadata"]["name"]] = body
        return body

    async def create_slice(self, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        return self._store(body)

    async def replace_slice(self, name: str, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[override]
        return self._store(body)

    def taints(self) -> dict[str, list[dict[str, Any]]]:
        return {
            d["name"]: d["taints"]
            for s in self.slices.values()
            for d in s["spec"]["devices"]
            if d.get("taints")
        }


def publisher_for(api: SliceStore, monitor: PfLinkMonitor) -> SlicePublisher:
    return SlicePublisher(
        api,  # type: ignore[arg-type]
        node=INVENTORY.node,
        driver=constants.DRIVER_NAME,
        discover=lambda: INVENTORY,
        on_inventory=monitor.set_inventory,
        taints=monitor.taints,
    )


async def test_published_slices_carry_the_taints_until_recovery(monitor: PfLinkMonitor) -> None:
    api = SliceStore()
    publisher = publisher_for(api, monitor)
    monitor.observe(link(UP))
    await publisher.sync_once()
    assert api.taints() == {}
    monitor.observe(link(NO_CARRIER))
    assert await publisher.publish(INVENTORY)
    taints = api.taints()
    assert set(taints) == set(monitor.health())
    assert {t[0]["effect"] for t in taints.values()} == {"NoSchedule"}
    assert not await publisher.publish(INVENTORY), "unchanged taints are no new generation"
    monitor.observe(link(UP))
    assert await publisher.publish(INVENTORY)
    assert api.taints() == {}


async def test_a_server_dropping_taints_is_noticed_and_not_fought(
    monitor: PfLinkMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    api = SliceStore(drops_taints=True)
    publisher = publisher_for(api, monitor)
    monitor.observe(link(NO_CARRIER))
    await publisher.sync_once()
    assert publisher.taints_dropped
    assert "DRADeviceTaints" in caplog.text
    writes = api.writes
    for _ in range(3):
        assert not await publisher.publish(INVENTORY)
    assert api.writes == writes
    await asyncio.sleep(0)
