"""Who keeps a device two claims hold: the one in use, else the older one."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.device_pools import DeviceKey
from sriov_dra_operator.conflicts import resolve

DEVICE = DeviceKey("sriovnetwork.k8snetworkplumbingwg.io", "sim-node-1", "0000-08-00-2")


def claim(name: str, created: str, *, used: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"allocation": {}}
    if used:
        status["reservedFor"] = [{"resource": "pods", "name": "p", "uid": "pod-uid"}]
    return {
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
        "status": status,
    }


OLD = claim("old", "2026-01-01T00:00:00Z")
NEW = claim("new", "2026-01-02T00:00:00Z")
NEW_USED = claim("new-used", "2026-01-02T00:00:00Z", used=True)
OLD_USED = claim("old-used", "2026-01-01T00:00:00Z", used=True)


@pytest.mark.parametrize(
    ("holders", "keeper", "cleared", "stuck"),
    [
        ([NEW, OLD], "old", ["new"], []),
        ([OLD, NEW_USED], "new-used", ["old"], []),
        ([NEW_USED, OLD_USED], "old-used", [], ["new-used"]),
        ([NEW, OLD, NEW_USED], "new-used", ["old", "new"], []),
    ],
    ids=["older-wins", "in-use-wins", "both-in-use-reported-only", "three-holders"],
)
def test_keeper_and_losers(
    holders: list[dict[str, Any]], keeper: str, cleared: list[str], stuck: list[str]
) -> None:
    resolution = resolve(DEVICE, holders)
    assert resolution.keeper["metadata"]["name"] == keeper
    assert [c["metadata"]["name"] for c in resolution.clear] == cleared
    assert [c["metadata"]["name"] for c in resolution.stuck] == stuck


def test_messages_name_device_other_claim_and_outcome() -> None:
    resolution = resolve(DEVICE, [NEW, OLD])
    assert resolution.message_for(OLD) == (
        "device sim-node-1/0000-08-00-2 (driver sriovnetwork.k8snetworkplumbingwg.io) is also "
        "allocated to ns/new; this claim keeps it because it is older"
    )
    assert resolution.message_for(NEW) == (
        "device sim-node-1/0000-08-00-2 (driver sriovnetwork.k8snetworkplumbingwg.io) is also "
        "allocated to ns/old, which keeps it; this claim's allocation is cleared and a "
        "different VF will be allocated"
    )
    stuck = resolve(DEVICE, [NEW_USED, OLD_USED])
    assert stuck.message_for(NEW_USED) == (
        "device sim-node-1/0000-08-00-2 (driver sriovnetwork.k8snetworkplumbingwg.io) is also "
        "allocated to ns/old-used and pods use both claims; fix: delete the pods of one claim "
        "so it can be re-allocated"
    )
