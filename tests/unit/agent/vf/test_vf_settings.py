"""NAD settings -> VF settings to apply, state to save, restore plan."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.errors import InvalidNad
from sriov_dra_agent.vf.inventory import VfInfo
from sriov_dra_agent.vf.vf_settings import (
    ApplyResult,
    VfSettings,
    apply,
    plan,
    restore_plan,
    settings_from_netconf,
)

GOOD = [
    ({}, VfSettings()),
    ({"vlan": 100}, VfSettings(vlan=100, qos=0, proto="802.1q")),
    (
        {"vlan": 100, "vlanQoS": 5, "vlanProto": "802.1AD"},
        VfSettings(vlan=100, qos=5, proto="802.1ad"),
    ),
    (
        {"spoofchk": "off", "trust": "on", "link_state": "disable"},
        VfSettings(spoofchk=False, trust=True, link_state="disable"),
    ),
    ({"mac": "02:AA:BB:CC:DD:EE"}, VfSettings(mac="02:aa:bb:cc:dd:ee")),
    ({"min_tx_rate": 10, "max_tx_rate": 100}, VfSettings(min_tx_rate=10, max_tx_rate=100)),
    ({"max_tx_rate": 100, "ipam": {"type": "host-local"}}, VfSettings(max_tx_rate=100)),
]


@pytest.mark.parametrize(
    ("config", "want"), GOOD, ids=["empty", "vlan", "qinq", "flags", "mac", "rates", "ipam-ignored"]
)
def test_settings_from_netconf(config: dict[str, Any], want: VfSettings) -> None:
    assert settings_from_netconf(config) == want


BAD = [
    (
        {"vlan": 4095},
        "spec.config.vlan: vlan is 4095; fix: set vlan to an integer from 0 to 4094",
    ),
    (
        {"vlan": "100"},
        "spec.config.vlan: vlan is '100'; fix: set vlan to an integer from 0 to 4094",
    ),
    (
        {"vlanQoS": 1},
        "spec.config.vlan: vlanQoS and vlanProto need vlan; fix: set vlan, or remove "
        "vlanQoS/vlanProto",
    ),
    (
        {"vlan": 0, "vlanProto": "802.1ad"},
        "spec.config.vlan: a non-zero vlanQoS or 802.1ad needs a non-zero vlan; fix: set vlan "
        "to 1..4094",
    ),
    (
        {"vlan": 1, "vlanProto": "qinq"},
        'spec.config.vlanProto: vlanProto is \'qinq\'; fix: set vlanProto to "802.1q" or "802.1ad"',
    ),
    (
        {"spoofchk": True},
        'spec.config.spoofchk: spoofchk is True; fix: set spoofchk to "on" or "off"',
    ),
    (
        {"link_state": "up"},
        "spec.config.link_state: link_state is 'up'; fix: set link_state to \"auto\", "
        '"enable" or "disable"',
    ),
    (
        {"min_tx_rate": 200, "max_tx_rate": 100},
        "spec.config.min_tx_rate: min_tx_rate 200 exceeds max_tx_rate 100; fix: make "
        "min_tx_rate <= max_tx_rate (0 means no limit)",
    ),
]


@pytest.mark.parametrize(
    ("config", "message"),
    BAD,
    ids=["vlan-range", "vlan-type", "qos-no-vlan", "qinq-vlan0", "proto", "bool", "link", "rates"],
)
def test_bad_netconf_names_key_and_fix(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidNad) as info:
        settings_from_netconf(config)
    assert info.value.describe() == message


CURRENT = VfSettings(
    mac="02:00:00:00:00:01",
    vlan=0,
    qos=0,
    proto="802.1q",
    spoofchk=True,
    trust=False,
    link_state="auto",
    min_tx_rate=0,
    max_tx_rate=0,
)

PLANS = [
    (VfSettings(), VfSettings()),
    (VfSettings(spoofchk=True, trust=False), VfSettings()),
    (VfSettings(vlan=10, qos=0, proto="802.1q"), VfSettings(vlan=10, qos=0, proto="802.1q")),
    # A QoS change re-sends the whole VLAN attribute.
    (VfSettings(vlan=0, qos=3, proto="802.1q"), VfSettings(vlan=0, qos=3, proto="802.1q")),
    # Only max rate asked: min comes from the current state.
    (VfSettings(max_tx_rate=100), VfSettings(min_tx_rate=0, max_tx_rate=100)),
    (VfSettings(spoofchk=False, mac="02:00:00:00:00:01"), VfSettings(spoofchk=False)),
]


@pytest.mark.parametrize(
    ("desired", "want"), PLANS, ids=["nothing", "same", "vlan", "qos", "rate", "one-of-two"]
)
def test_plan_sends_only_what_differs(desired: VfSettings, want: VfSettings) -> None:
    assert plan(desired, CURRENT) == want


def test_plan_sends_settings_the_backend_cannot_read() -> None:
    assert plan(VfSettings(trust=True), VfSettings()) == VfSettings(trust=True)


def test_restore_plan_puts_back_what_was_touched() -> None:
    applied = VfSettings(vlan=10, qos=0, proto="802.1q", trust=True, max_tx_rate=100)
    assert restore_plan(CURRENT, applied) == VfSettings(
        vlan=0, qos=0, proto="802.1q", trust=False, min_tx_rate=0, max_tx_rate=0
    )


def test_restore_plan_does_not_guess_unreadable_settings() -> None:
    original = VfSettings(mac="02:00:00:00:00:01", vlan=0, qos=0, proto="802.1q")
    applied = VfSettings(vlan=10, qos=0, proto="802.1q", spoofchk=True, trust=True)
    assert restore_plan(original, applied) == VfSettings(vlan=0, qos=0, proto="802.1q")


class RecordingBackend:
    """A backend that keeps VF state in memory and says trust is unsupported."""

    kind = "memory"
    node = "n1"

    def __init__(self, state: VfSettings) -> None:
        self.state = state
        self.sent: list[VfSettings] = []

    def read_vf_state(self, vf: VfInfo) -> VfSettings:
        return self.state

    def apply_vf_settings(self, vf: VfInfo, changes: VfSettings) -> ApplyResult:
        self.sent.append(changes)
        names = changes.fields_set()
        done = tuple(n for n in names if n != "trust")
        self.state = self.state.model_copy(update={n: getattr(changes, n) for n in done})
        unsupported = {"trust": "no"} if "trust" in names else {}
        return ApplyResult(applied=done, unsupported=unsupported)


VF = VfInfo(
    pci_address="0000:3b:02.0",
    vf_index=0,
    pf_name="ens1f0",
    pf_pci_address="0000:3b:00.0",
    vendor="8086",
    device_id="1889",
    pf_device_id="1592",
    driver="iavf",
    netdev="ens1f0v0",
)


def test_apply_reports_applied_unchanged_and_unsupported_and_is_rerunnable() -> None:
    backend = RecordingBackend(CURRENT)
    desired = VfSettings(vlan=10, qos=0, proto="802.1q", spoofchk=True, trust=True)
    result = apply(backend, VF, desired)  # type: ignore[arg-type]
    assert result == ApplyResult(
        applied=("vlan", "qos", "proto"),
        unchanged=("spoofchk",),
        unsupported={"trust": "no"},
    )
    again = apply(backend, VF, desired)  # type: ignore[arg-type]
    assert again.applied == ()
    assert backend.sent[-1] == VfSettings(trust=True)
