"""NAD spec.config parsed as the sriov CNI config."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sriov_dra.errors import InvalidNad
from sriov_dra.nad import (
    device_id_replaced,
    parse_nad_config,
    unrun_plugins,
    unrun_plugins_warning,
)

NAD = "vf-test7/vf-test1"
F = f"NetworkAttachmentDefinition {NAD} spec.config"
SEED = {
    "cniVersion": "1.0.0",
    "name": "vf-test1",
    "type": "sriov",
    "vlan": 0,
    "spoofchk": "on",
    "trust": "on",
    "vlanQoS": 0,
    "logLevel": "info",
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.0.3.0/24"}]]},
}


def conf(**changes: Any) -> str:
    data = {"type": "sriov", **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


def test_seed_nad() -> None:
    parsed = parse_nad_config(json.dumps(SEED), nad=NAD)
    assert (parsed.vlan, parsed.vlan_qos, parsed.spoofchk, parsed.trust) == (0, 0, "on", "on")
    assert parsed.raw == SEED
    assert parsed.ipam_stdin() == {
        "cniVersion": "1.0.0",
        "name": "vf-test1",
        "type": "sriov",
        "ipam": SEED["ipam"],
    }


GOOD = [
    pytest.param(
        conf(), {"vlan": None, "name": "vf-test1", "cni_version": "1.0.0"}, id="minimal-defaults"
    ),
    pytest.param(
        conf(vlan=4094, vlanQoS=7, vlanProto="802.1AD"),
        {"vlan": 4094, "vlan_qos": 7, "vlan_proto": "802.1ad"},
        id="vlan-max",
    ),
    pytest.param(conf(vlan=0, vlanProto="802.1q"), {"vlan_proto": "802.1q"}, id="proto-untagged"),
    pytest.param(conf(link_state="disable"), {"link_state": "disable"}, id="link-state"),
    pytest.param(
        conf(min_tx_rate=100, max_tx_rate=0),
        {"min_tx_rate": 100, "max_tx_rate": 0},
        id="max-zero-is-no-limit",
    ),
    pytest.param(conf(min_tx_rate=10, max_tx_rate=10), {"min_tx_rate": 10}, id="rate-equal"),
    pytest.param(conf(mac="02:AA:bb:00:00:01"), {"mac": "02:aa:bb:00:00:01"}, id="mac-lowered"),
    pytest.param(conf(ipam={}), {"ipam": None}, id="empty-ipam-means-none"),
    pytest.param(
        conf(deviceID="0000:08:00.2"), {"device_id": "0000:08:00.2"}, id="classic-device-id"
    ),
    pytest.param(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "list",
                "plugins": [{"type": "sriov", "vlan": 5}, {"type": "tuning"}],
            }
        ),
        {"vlan": 5, "name": "list", "cni_version": "0.4.0", "chained": [{"type": "tuning"}]},
        id="conflist",
    ),
]


@pytest.mark.parametrize(("config", "expected"), GOOD)
def test_parse_good(config: str, expected: dict[str, Any]) -> None:
    parsed = parse_nad_config(config, nad=NAD)
    for key, value in expected.items():
        assert getattr(parsed, key) == value, key


BAD = [
    pytest.param(
        "{not json",
        f"{F}: is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
        "column 2; fix: write spec.config as a JSON object string",
        id="bad-json",
    ),
    pytest.param(
        "[1]",
        f'{F}: must be a JSON object, got list; fix: write spec.config as {{"cniVersion": '
        '"1.0.0", "type": "sriov", ...}',
        id="not-object",
    ),
    pytest.param(
        conf(type="macvlan"),
        f'{F}.type: must be "sriov", got "macvlan"; fix: make the first plugin {{"type": '
        '"sriov", ...}, or point netAttachDefName at a NAD of type sriov',
        id="type-macvlan",
    ),
    pytest.param(
        json.dumps({"name": "x"}),
        f'{F}.type: must be "sriov", it is missing; fix: make the first plugin {{"type": '
        '"sriov", ...}, or point netAttachDefName at a NAD of type sriov',
        id="type-missing",
    ),
    pytest.param(
        json.dumps({"plugins": [{"type": "tuning"}, {"type": "sriov"}]}),
        f'{F}.plugins[0].type: must be "sriov", got "tuning"; fix: make the first plugin '
        '{"type": "sriov", ...}, or point netAttachDefName at a NAD of type sriov',
        id="conflist-sriov-not-first",
    ),
    pytest.param(
        json.dumps({"plugins": []}),
        f"{F}.plugins: must be a non-empty list of plugin objects; fix: list the sriov plugin "
        'first: "plugins": [{"type": "sriov", ...}]',
        id="conflist-empty",
    ),
    pytest.param(
        conf(vlan=4095),
        f"{F}.vlan: must be an integer 0-4094, got 4095; fix: set vlan to an integer 0-4094",
        id="vlan-4095",
    ),
    pytest.param(
        conf(vlan=-1),
        f"{F}.vlan: must be an integer 0-4094, got -1; fix: set vlan to an integer 0-4094",
        id="vlan-negative",
    ),
    pytest.param(
        conf(vlan="100"),
        f'{F}.vlan: must be an integer 0-4094, got "100"; fix: set vlan to an integer 0-4094',
        id="vlan-string",
    ),
    pytest.param(
        conf(vlan=True),
        f"{F}.vlan: must be an integer 0-4094, got true; fix: set vlan to an integer 0-4094",
        id="vlan-bool",
    ),
    pytest.param(
        conf(vlan=10, vlanQoS=8),
        f"{F}.vlanQoS: must be an integer 0-7, got 8; fix: set vlanQoS to an integer 0-7",
        id="qos-8",
    ),
    pytest.param(
        conf(vlanQoS=1),
        f"{F}.vlanQoS: is set but vlan is not; fix: set vlan (1-4094) or remove vlanQoS",
        id="qos-without-vlan",
    ),
    pytest.param(
        conf(vlan=0, vlanQoS=3),
        f"{F}.vlanQoS: is 3 but vlan is 0 (untagged traffic has no priority); fix: set vlan "
        "to 1-4094 or vlanQoS to 0",
        id="qos-vlan-0",
    ),
    pytest.param(
        conf(vlan=5, vlanProto="802.1x"),
        f'{F}.vlanProto: must be 802.1q or 802.1ad, got "802.1x"; fix: set "vlanProto": '
        '"802.1q" (or "802.1ad" for QinQ)',
        id="proto-bad",
    ),
    pytest.param(
        conf(vlanProto="802.1q"),
        f"{F}.vlanProto: is set but vlan is not; fix: set vlan (1-4094) or remove vlanProto",
        id="proto-without-vlan",
    ),
    pytest.param(
        conf(vlan=0, vlanProto="802.1ad"),
        f"{F}.vlanProto: is 802.1ad but vlan is 0; fix: set vlan to 1-4094 or use vlanProto 802.1q",
        id="proto-ad-vlan-0",
    ),
    pytest.param(
        conf(spoofchk="yes"),
        f'{F}.spoofchk: must be one of on|off, got "yes"; fix: set "spoofchk": "on" '
        "(one of on|off)",
        id="spoofchk",
    ),
    pytest.param(
        conf(trust=True),
        f'{F}.trust: must be one of on|off, got true; fix: set "trust": "on" (one of on|off)',
        id="trust-bool",
    ),
    pytest.param(
        conf(link_state="up"),
        f'{F}.link_state: must be one of auto|enable|disable, got "up"; fix: set '
        '"link_state": "auto" (one of auto|enable|disable)',
        id="link-state",
    ),
    pytest.param(
        conf(max_tx_rate=-5),
        f"{F}.max_tx_rate: must be an integer >= 0, got -5; fix: set max_tx_rate to an "
        "integer >= 0",
        id="rate-negative",
    ),
    pytest.param(
        conf(min_tx_rate=1.5),
        f"{F}.min_tx_rate: must be an integer >= 0, got 1.5; fix: set min_tx_rate to an "
        "integer >= 0",
        id="rate-float",
    ),
    pytest.param(
        conf(min_tx_rate=200, max_tx_rate=100),
        f"{F}.min_tx_rate: is 200 Mbps, above max_tx_rate 100 Mbps; fix: lower min_tx_rate "
        "or raise max_tx_rate (0 = no limit)",
        id="rate-min-above-max",
    ),
    pytest.param(
        conf(mac="02:00:00:00:00"),
        f'{F}.mac: must be a MAC address like 02:00:00:00:00:01, got "02:00:00:00:00"; fix: '
        'set "mac": "02:00:00:00:00:01" or remove it',
        id="mac-short",
    ),
    pytest.param(
        conf(mac="01:00:5e:00:00:01"),
        f"{F}.mac: 01:00:5e:00:00:01 is not a unicast address; fix: use a unicast MAC (first "
        "octet even, e.g. 02:...), or remove it",
        id="mac-multicast",
    ),
    pytest.param(
        conf(mac="00:00:00:00:00:00"),
        f"{F}.mac: 00:00:00:00:00:00 is not a unicast address; fix: use a unicast MAC (first "
        "octet even, e.g. 02:...), or remove it",
        id="mac-zero",
    ),
    pytest.param(
        conf(ipam="host-local"),
        f'{F}.ipam: must be an object, got "host-local"; fix: write "ipam": {{"type": '
        '"host-local", ...} or remove it',
        id="ipam-string",
    ),
    pytest.param(
        conf(ipam={"subnet": "10.0.0.0/24"}),
        f'{F}.ipam.type: is required when ipam is set; fix: set "type": "host-local" (or '
        "another IPAM plugin) in ipam",
        id="ipam-no-type",
    ),
    pytest.param(
        conf(deviceID=8),
        f'{F}.deviceID: must be a string, got 8; fix: quote it, e.g. "deviceID": "..."',
        id="device-id-int",
    ),
    pytest.param(
        conf(name=5),
        f'{F}.name: must be a string, got 5; fix: quote it, e.g. "name": "..."',
        id="name-int",
    ),
    pytest.param(
        json.dumps({"plugins": [{"type": "sriov"}, "tuning"]}),
        f'{F}.plugins[1]: must be a plugin object, got "tuning"; fix: write each plugin as an '
        'object: {"type": "...", ...}',
        id="conflist-plugin-not-object",
    ),
    pytest.param(
        json.dumps({"plugins": [{"type": "sriov", "vlan": 5000}]}),
        f"{F}.plugins[0].vlan: must be an integer 0-4094, got 5000; fix: set vlan to an "
        "integer 0-4094",
        id="conflist-key-path",
    ),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_parse_bad(config: str, message: str) -> None:
    with pytest.raises(InvalidNad) as info:
        parse_nad_config(config, nad=NAD)
    assert str(info.value) == message
    assert info.value.reason == "InvalidNetworkAttachmentDefinition"


def test_ipam_stdin_without_ipam() -> None:
    with pytest.raises(ValueError, match="has no ipam"):
        parse_nad_config(conf(), nad=NAD).ipam_stdin()


UNRUN_FIX = (
    "only the sriov plugin's VF settings and its ipam are applied; fix: move what they set into "
    "the sriov plugin's config (e.g. mac, vlan, spoofchk, trust, link_state, min_tx_rate, "
    "max_tx_rate) or drop them from spec.config.plugins"
)


@pytest.mark.parametrize(
    ("config", "types", "warning"),
    [
        pytest.param(conf(), [], None, id="single-plugin"),
        pytest.param(json.dumps({"plugins": [{"type": "sriov"}]}), [], None, id="sriov-only"),
        pytest.param(
            json.dumps(
                {
                    "plugins": [
                        {"type": "sriov", "vlan": 5},
                        {"type": "tuning", "mtu": 9000},
                        {"type": "sbr"},
                        {"capabilities": {"mac": True}},
                    ]
                }
            ),
            ["tuning", "sbr", "(no type)"],
            f"NetworkAttachmentDefinition {NAD} chains plugins after sriov that are never run: "
            f"tuning, sbr, (no type) (spec.config.plugins[1:]); {UNRUN_FIX}",
            id="tuning-sbr-untyped",
        ),
    ],
)
def test_plugins_after_sriov_are_named_as_not_run(
    config: str, types: list[str], warning: str | None
) -> None:
    parsed = parse_nad_config(config, nad=NAD)
    assert unrun_plugins(parsed) == types
    assert unrun_plugins_warning(parsed) == warning


def test_a_classic_device_id_is_replaced_by_the_allocated_vf_and_said_so() -> None:
    classic = parse_nad_config(conf(deviceID="0000:08:00.2", vlan=10), nad=NAD)
    assert classic.vlan == 10
    assert device_id_replaced(classic, "vf", "0000:3b:02.0") == (
        f"NetworkAttachmentDefinition {NAD} sets deviceID '0000:08:00.2' (spec.config), as "
        "written for the classic SR-IOV device plugin; request 'vf' uses its allocated VF "
        "0000:3b:02.0 instead; fix: nothing is needed, or remove deviceID from the NAD, since "
        "with DRA the allocation chooses the VF"
    )
    assert device_id_replaced(parse_nad_config(conf(), nad=NAD), "vf", "0000:3b:02.0") is None
