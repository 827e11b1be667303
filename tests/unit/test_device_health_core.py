"""PF link states to device health and taints (sriov_dra.device_health)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sriov_dra.device_health import (
    PF_LINK_DOWN_TAINT,
    DeviceHealth,
    Health,
    PfLink,
    device_health,
    device_taints,
    link_up,
)

T0 = datetime(2026, 12, 3, 14, 0, 5, 123456, tzinfo=UTC)
DEVICES = {"vf-a": "ens1f0", "vf-b": "ens1f0", "vf-c": "ens2f0", "vf-d": "ens3f0"}


@pytest.mark.parametrize(
    ("flags", "up"),
    [
        pytest.param(0x11043, True, id="up-with-carrier"),
        pytest.param(0x1003, False, id="up-no-carrier"),
        pytest.param(0x1002, False, id="set-down"),
        pytest.param(0x10000, False, id="carrier-but-set-down"),
    ],
)
def test_link_is_up_only_when_set_up_and_with_carrier(flags: int, up: bool) -> None:
    assert link_up(flags) is up


def test_each_vf_takes_its_pf_link_state() -> None:
    links = {"ens1f0": PfLink(up=False, since=T0), "ens2f0": PfLink(up=True, since=T0)}
    health = device_health(DEVICES, links)
    assert {name: entry.health for name, entry in health.items()} == {
        "vf-a": Health.UNHEALTHY,
        "vf-b": Health.UNHEALTHY,
        "vf-c": Health.HEALTHY,
        "vf-d": Health.UNKNOWN,
    }
    assert health["vf-d"].since is None
    assert health["vf-a"] == DeviceHealth(pf="ens1f0", health=Health.UNHEALTHY, since=T0)


def test_only_unhealthy_devices_get_a_no_schedule_taint_naming_their_pf() -> None:
    links = {"ens1f0": PfLink(up=False, since=T0), "ens2f0": PfLink(up=True, since=T0)}
    taints = device_taints(device_health(DEVICES, links))
    expected = {
        "key": PF_LINK_DOWN_TAINT,
        "value": "ens1f0",
        "effect": "NoSchedule",
        "timeAdded": "2026-12-03T14:00:05Z",
    }
    assert taints == {"vf-a": [expected], "vf-b": [expected]}


def test_recovery_clears_the_taints() -> None:
    links = {"ens1f0": PfLink(up=True, since=T0 + timedelta(seconds=9))}
    assert device_taints(device_health(DEVICES, links)) == {}


def test_time_added_is_utc_whole_seconds() -> None:
    since = datetime(2026, 12, 3, 16, 0, 5, 999999, tzinfo=timezone(timedelta(hours=2)))
    taints = device_taints(device_health({"vf": "p"}, {"p": PfLink(up=False, since=since)}))
    assert taints["vf"][0]["timeAdded"] == "2026-12-03T14:00:05Z"


def test_a_pf_name_that_is_no_label_value_leaves_the_value_out() -> None:
    name = "pf@weird"
    taints = device_taints(device_health({"vf": name}, {name: PfLink(up=False, since=T0)}))
    assert "value" not in taints["vf"][0]
    assert taints["vf"][0]["key"] == PF_LINK_DOWN_TAINT
