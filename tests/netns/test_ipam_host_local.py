"""IPAM through the real host-local binary, over the CNI protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from netns_helpers import held_ips, netconf
from sriov_dra.errors import IpamError
from sriov_dra_agent.attach import ipam

pytestmark = pytest.mark.netns


def test_add_check_del_round_trip(tmp_path: Path) -> None:
    conf = netconf(tmp_path / "ipam", start="10.9.0.5", end="10.9.0.6")
    result = ipam.ipam_add(conf, container="uid-1-vf", ifname="net1", netns="/dev/null")
    assert [ip.address for ip in result.ips] == ["10.9.0.5/24"]
    assert [ip.gateway for ip in result.ips] == ["10.9.0.1"]
    assert [(r.dst, r.gw) for r in result.routes] == [("10.10.0.0/16", None)]
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "uid-1-vf/net1"}
    ipam.ipam_check(conf, result, container="uid-1-vf", ifname="net1", netns="/dev/null")
    ipam.ipam_del(conf, container="uid-1-vf", ifname="net1")
    ipam.ipam_del(conf, container="uid-1-vf", ifname="net1")  # idempotent
    assert held_ips(tmp_path / "ipam") == {}


def test_check_fails_for_an_address_not_held(tmp_path: Path) -> None:
    conf = netconf(tmp_path / "ipam")
    result = ipam.ipam_add(conf, container="uid-1-vf", ifname="net1", netns="/dev/null")
    ipam.ipam_del(conf, container="uid-1-vf", ifname="net1")
    with pytest.raises(IpamError, match="host-local: "):
        ipam.ipam_check(conf, result, container="uid-1-vf", ifname="net1", netns="/dev/null")


def test_exhausted_range_is_a_typed_error_with_the_fix(tmp_path: Path) -> None:
    conf = netconf(tmp_path / "ipam", start="10.9.0.5", end="10.9.0.5")
    ipam.ipam_add(conf, container="a", ifname="net1", netns="/dev/null")
    with pytest.raises(IpamError) as info:
        ipam.ipam_add(conf, container="b", ifname="net1", netns="/dev/null")
    assert info.value.code == 999
    assert info.value.describe() == (
        "spec.config.ipam (host-local): host-local: failed to allocate for range 0: "
        "no IP addresses available in range set: 10.9.0.5-10.9.0.5; "
        "fix: widen the NAD's ipam range or release claims holding addresses"
    )


def test_bad_subnet_is_reported_from_the_plugin(tmp_path: Path) -> None:
    conf = netconf(tmp_path / "ipam")
    conf["ipam"]["ranges"][0][0]["subnet"] = "10.9.0.0/33"
    with pytest.raises(IpamError, match=r"invalid CIDR address: 10.9.0.0/33; fix: fix the NAD"):
        ipam.ipam_add(conf, container="a", ifname="net1", netns="/dev/null")


def test_missing_plugin_names_the_cni_path(tmp_path: Path) -> None:
    conf = netconf(tmp_path / "ipam")
    with pytest.raises(IpamError) as info:
        ipam.ipam_add(conf, container="a", ifname="net1", netns="", cni_path=str(tmp_path))
    assert info.value.describe() == (
        f"spec.config.ipam.type: IPAM plugin 'host-local' not found in CNI_PATH {tmp_path}; "
        "fix: install containernetworking-plugins or point --cni-path at the plugin directory"
    )
