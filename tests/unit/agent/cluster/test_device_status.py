"""status.devices entries: conditions, networkData, data limit, apply body, Released."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sriov_dra import constants, release_signal
from sriov_dra_agent.cluster.claim_devices import ClaimDevice
from sriov_dra_agent.cluster.device_status import (
    MAX_DATA_BYTES,
    DeviceState,
    NetworkData,
    apply_body,
    build_entries,
    released_entries,
    small_data,
)

DRIVER = constants.DRIVER_NAME
DEVICE = ClaimDevice("vf", "node-a", "0000-3b-02-0", "0000:3b:02.0", "net1", "", ("ns", "n"))
CLAIM: dict[str, Any] = {"metadata": {"name": "c", "namespace": "ns", "uid": "u-1"}, "status": {}}


def conditions(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


@pytest.mark.parametrize(
    ("state", "expected", "network"),
    [
        (
            DeviceState(DEVICE, True, "Configured", "ok"),
            {"Ready": ("True", "Ready"), "VfConfigured": ("True", "Configured"),
             "NetworkReady": ("False", "NotAttached")},
            None,
        ),
        (
            DeviceState(DEVICE, True, "Configured", "ok",
                        NetworkData("net1", ("10.0.0.5/24",), "02:00:00:00:00:01")),
            {"Ready": ("True", "Ready"), "VfConfigured": ("True", "Configured"),
             "NetworkReady": ("True", "Attached")},
            {"interfaceName": "net1", "ips": ["10.0.0.5/24"],
             "hardwareAddress": "02:00:00:00:00:01"},
        ),
        (
            DeviceState(DEVICE, False, "NetworkAttachmentDefinitionNotFound", "no NAD"),
            {"Ready": ("False", "NetworkAttachmentDefinitionNotFound"),
             "VfConfigured": ("False", "NetworkAttachmentDefinitionNotFound"),
             "NetworkReady": ("False", "NotAttached")},
            None,
        ),
    ],
    ids=["configured", "attached", "nad-missing"],
)  # fmt: skip
def test_conditions_and_network_data(
    state: DeviceState, expected: dict[str, tuple[str, str]], network: dict[str, Any] | None
) -> None:
    (entry,) = build_entries(CLAIM, [state], driver=DRIVER)
    assert (entry["driver"], entry["pool"], entry["device"]) == (DRIVER, "node-a", "0000-3b-02-0")
    assert conditions(entry) == expected
    assert entry.get("networkData") == network


def test_transition_time_kept_while_status_unchanged() -> None:
    state = DeviceState(DEVICE, True, "Configured", "ok")
    (first,) = build_entries(CLAIM, [state], driver=DRIVER)
    old = {
        c["type"]: dict(c, lastTransitionTime="2020-01-01T00:00:00Z") for c in first["conditions"]
    }
    claim = {**CLAIM, "status": {"devices": [{**first, "conditions": list(old.values())}]}}
    attached = DeviceState(DEVICE, True, "Configured", "ok", NetworkData("net1", (), ""))
    (second,) = build_entries(claim, [attached], driver=DRIVER)
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times["Ready"] == "2020-01-01T00:00:00Z"
    assert times["VfConfigured"] == "2020-01-01T00:00:00Z"
    assert times["NetworkReady"] != "2020-01-01T00:00:00Z"


def test_data_stays_under_10_kib() -> None:
    data = small_data({"pciAddress": "0000:3b:02.0", "huge": "x" * (MAX_DATA_BYTES + 10)})
    assert len(json.dumps(data)) <= MAX_DATA_BYTES
    assert data["pciAddress"] == "0000:3b:02.0"


def test_apply_body_carries_only_our_entries() -> None:
    body = apply_body(CLAIM, [])
    assert body == {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "c", "namespace": "ns"},
        "status": {"devices": []},
    }


def test_released_entries_are_what_the_operator_hands_the_vf_on_for() -> None:
    results = [{"driver": DRIVER, "pool": "node-a", "device": "0000-3b-02-0", "request": "vf"}]
    claim = {**CLAIM, "status": {"allocation": {"devices": {"results": results}}}}
    assert not release_signal.released_by_agent(claim)
    (entry,) = released_entries(claim, results, driver=DRIVER, node="node-a")
    assert conditions(entry) == {
        constants.RELEASED_CONDITION: ("True", "Released"),
        "Ready": ("False", "Released"),
    }
    assert "networkData" not in entry
    released = {**claim, "status": {**claim["status"], "devices": [entry]}}
    assert release_signal.released_by_agent(released)
