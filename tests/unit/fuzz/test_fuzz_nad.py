"""The NAD's ``spec.config`` fuzzed: only InvalidNad escapes, and what is accepted keeps the
sriov CNI rules and parses again to the same config."""

from __future__ import annotations

import json
import re
from typing import Any

from fuzz_strategies import JSON, OBJECTS, with_keys
from hypothesis import example, given
from hypothesis import strategies as st
from sriov_dra.errors import InvalidNad
from sriov_dra.nad import SriovNetConf, parse_nad_config, unrun_plugins, unrun_plugins_warning

MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
KEYS = [
    "cniVersion", "name", "type", "vlan", "vlanQoS", "vlanProto", "spoofchk", "trust",
    "link_state", "min_tx_rate", "max_tx_rate", "mac", "ipam", "deviceID", "plugins",
]  # fmt: skip
VALUES: st.SearchStrategy[Any] = (
    JSON
    | st.integers(min_value=-2, max_value=4100)
    | st.sampled_from(["sriov", "on", "off", "auto", "enable", "802.1Q", "802.1ad", "1.0.0"])
    | st.from_regex(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\n?", fullmatch=True)
    | st.fixed_dictionaries({"type": st.sampled_from(["host-local", ""])}, optional={"x": JSON})
)
PLUGIN = with_keys(KEYS[:-1], VALUES).map(lambda conf: {"type": "sriov", **conf}) | with_keys(
    KEYS[:-1], VALUES
)
CONFIGS = (
    OBJECTS
    | PLUGIN
    | st.fixed_dictionaries(
        {"plugins": st.lists(PLUGIN | JSON, max_size=3) | JSON},
        optional={"cniVersion": VALUES, "name": VALUES},
    )
)
"""Any object; plugin configs with the known keys, mostly of type sriov; conflists."""


def _parse(text: str) -> SriovNetConf | None:
    try:
        return parse_nad_config(text, nad="ns/net")
    except InvalidNad as error:
        assert error.field.startswith("NetworkAttachmentDefinition ns/net spec.config")
        assert error.fix
        return None


@given(st.text(max_size=60) | JSON.map(json.dumps) | CONFIGS.map(json.dumps))
@example("9" * 5000)
@example("[" * 100_000)
@example('{"type": "sriov", "vlan": ' + "1" * 5000 + "}")
def test_any_text_is_a_config_or_invalid_nad(text: str) -> None:
    _parse(text)


@given(CONFIGS)
@example({"type": "sriov", "mac": "02:00:00:00:00:01\n"})
def test_an_accepted_config_keeps_the_rules_and_parses_again_the_same(
    config: dict[str, Any],
) -> None:
    conf = _parse(json.dumps(config))
    if conf is None:
        return
    assert conf.type == "sriov" and conf.device_id == conf.raw.get("deviceID")
    assert conf.vlan is None or 0 <= conf.vlan <= 4094
    assert conf.vlan_qos is None or (conf.vlan is not None and 0 <= conf.vlan_qos <= 7)
    assert conf.vlan_proto in (None, "802.1q", "802.1ad")
    assert conf.mac is None or MAC.fullmatch(conf.mac)
    assert conf.ipam is None or (isinstance(conf.ipam.get("type"), str) and conf.ipam["type"])
    for rate in (conf.min_tx_rate, conf.max_tx_rate):
        assert rate is None or (isinstance(rate, int) and rate >= 0)
    assert len(unrun_plugins(conf)) == len(conf.chained)
    assert (unrun_plugins_warning(conf) is None) == (not conf.chained)
    if conf.ipam is not None:
        assert conf.ipam_stdin()["ipam"] == conf.ipam
    # Written back as a conflist of what was kept, it parses to the same config.
    rebuilt = {
        "cniVersion": conf.cni_version,
        "name": conf.name,
        "plugins": [conf.raw, *conf.chained],
    }
    assert _parse(json.dumps(rebuilt)) == conf
