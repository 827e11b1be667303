"""A VF vanishing under its claim: which held VFs count as gone, and what the claim is told
(once per VF): Warning ``VfGone`` naming node, PF, VF and the fix, and ``Ready``,
``VfConfigured`` and ``NetworkReady`` False with reason ``VfGone`` on its ``status.devices``
entry through the real status writer."""

from __future__ import annotations

import asyncio
from typing import Any

from sriov_dra import constants
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.naming import device_name
from sriov_dra_agent.cluster.claim_devices import NodeScope
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_status import ClaimStatus
from sriov_dra_agent.cluster.device_status import DeviceStatusWriter
from sriov_dra_agent.cluster.vanished_vfs import VanishedVfs
from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_agent.vf.records import VfRecord
from sriov_dra_agent.vf.vf_gone import vanished
from sriov_dra_agent.vf.vf_settings import VfSettings
from sriov_dra_kube.client import ApiException
from test_claim_devices import claim, result
from test_slices import make_inventory

DRIVER = constants.DRIVER_NAME
OWNER = ClaimRef(namespace="ns", name="c", uid="u-1")


def held(inventory: Inventory, index: int, owner: ClaimRef = OWNER) -> VfRecord:
    vf = inventory.vfs()[index]
    return VfRecord(
        pci_address=vf.pci_address,
        pf_name=vf.pf_name,
        vf_index=vf.vf_index,
        claim=owner,
        request="vf",
        host_ifname=vf.netdev,
        original=VfSettings(),
    )


def without(inventory: Inventory, *indexes: int) -> Inventory:
    """``inventory`` after its PF lost the VFs at ``indexes``."""
    (pf,) = inventory.pfs
    vfs = tuple(vf for i, vf in enumerate(pf.vfs) if i not in indexes)
    return inventory.model_copy(update={"pfs": (pf.model_copy(update={"vfs": vfs}),)})


def test_vanished_are_the_held_vfs_discovery_no_longer_finds() -> None:
    full = make_inventory(4)
    records = [held(full, 1), held(full, 3)]
    assert vanished(records, full) == []
    assert vanished(records, without(full, 2, 3)) == [records[1]]
    assert vanished(records, Inventory(node="node-a")) == records  # the PF is gone


class FakeVfs:
    def __init__(self, records: list[VfRecord]) -> None:
        self.records = records

    def records_all(self) -> list[VfRecord]:
        return list(self.records)

    def record(self, pci: str) -> VfRecord | None:
        return next((r for r in self.records if r.pci_address == pci), None)


class FakeApi:
    def __init__(self, claims: dict[str, dict[str, Any]]) -> None:
        self.claims = claims
        self.applied: list[dict[str, Any]] = []
        self.failures = 0
        """GETs to answer with a 500 first."""

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.failures:
            self.failures -= 1
            raise ApiException(status=500, reason="etcd timeout")
        return self.claims.get(f"{namespace}/{name}")

    async def apply_claim_status(
        self, namespace: str, name: str, body: dict[str, Any], *, field_manager: str
    ) -> dict[str, Any]:
        self.applied.append(body)
        return body


class FakeEvents:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, str, str]] = []
        self.posted = asyncio.Event()

    async def warning(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.warnings.append((obj["metadata"]["uid"], reason, message))
        self.posted.set()


def make_reporter(
    records: list[VfRecord], claims: dict[str, dict[str, Any]]
) -> tuple[VanishedVfs, FakeApi, FakeEvents]:
    """The reporter over the real ClaimStatus and status writer, with fake API and Events."""
    api = FakeApi(claims)
    vfs = FakeVfs(records)
    events = FakeEvents()
    status = ClaimStatus(
        NodeScope("node-a", DRIVER),
        DeviceStatusWriter(api, driver=DRIVER, field_manager="agent"),  # type: ignore[arg-type]
        vfs,  # type: ignore[arg-type]
    )
    reporter = VanishedVfs(
        node="node-a",
        api=api,  # type: ignore[arg-type]
        vfs=vfs,  # type: ignore[arg-type]
        status=status,
        events=events,  # type: ignore[arg-type]
        locks=ClaimLocks(),
    )
    return reporter, api, events


async def reported(reporter: VanishedVfs, events: FakeEvents, *inventories: Inventory) -> None:
    """Observe ``inventories`` in turn, then let the reporter post (bounded)."""
    stop = asyncio.Event()
    task = asyncio.create_task(reporter.run(stop))
    try:
        for inventory in inventories:
            reporter.observe(inventory)
        async with asyncio.timeout(10):
            await events.posted.wait()
    finally:
        stop.set()
        await task


async def test_a_vanished_vf_is_reported_once_on_its_claim_with_a_condition() -> None:
    full = make_inventory(4)
    record = held(full, 3)
    body = claim([result(device_name(record.pci_address))], node_selector=["node-a"])
    other = held(full, 1, ClaimRef(namespace="ns", name="gone", uid="u-2"))
    # Reported in this order: the gone claim first, so its silence is seen.
    reporter, api, events = make_reporter([other, record], {"ns/c": body})
    gone = without(full, 1, 3)
    # The next rescan sees the same: no second Warning.
    await reported(reporter, events, full, gone, gone)

    # The claim of VF 1 is gone from the API server: its release follows, nobody to tell.
    ((uid, reason, message),) = events.warnings
    assert (uid, reason) == ("u-1", "VfGone")
    for part in ("node node-a", record.pci_address, f"PF {record.pf_name}", "fix: delete the pod"):
        assert part in message
    ((entry,),) = [body["status"]["devices"] for body in api.applied]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}
    assert conditions["Ready"] == ("False", "VfGone")
    assert conditions["VfConfigured"] == ("False", "VfGone")
    assert conditions["NetworkReady"] == ("False", "VfGone")
    assert "networkData" not in entry
    assert entry["device"] == device_name(record.pci_address)


async def test_a_vf_that_comes_back_and_goes_again_is_reported_again() -> None:
    full = make_inventory(4)
    record = held(full, 0)
    body = claim([result(device_name(record.pci_address))], node_selector=["node-a"])
    reporter, _, events = make_reporter([record], {"ns/c": body})
    gone = without(full, 0)
    await reported(reporter, events, gone)
    events.posted.clear()
    await reported(reporter, events, full, gone)
    assert [reason for _, reason, _ in events.warnings] == ["VfGone", "VfGone"]


async def test_a_report_the_api_server_failed_is_made_after_a_later_discovery() -> None:
    full = make_inventory(4)
    record = held(full, 0)
    body = claim([result(device_name(record.pci_address))], node_selector=["node-a"])
    reporter, api, events = make_reporter([record], {"ns/c": body})
    api.failures = 1
    gone = without(full, 0)
    stop = asyncio.Event()
    task = asyncio.create_task(reporter.run(stop))
    try:
        for _ in range(100):  # the rescans that follow, each with the VF still gone
            reporter.observe(gone)
            try:
                async with asyncio.timeout(0.1):
                    await events.posted.wait()
                break
            except TimeoutError:
                continue
    finally:
        stop.set()
        await task
    assert api.failures == 0
    assert [reason for _, reason, _ in events.warnings] == ["VfGone"]
