"""``--resource-name``: the Multus resource name of each PF's VFs."""

from __future__ import annotations

import pytest
from sriov_dra_agent.vf.inventory import VfInfo
from sriov_dra_agent.vf.resource_names import ResourceNames, parse_resource_names


def vf(pf_name: str, pf_pci: str) -> VfInfo:
    return VfInfo(
        pci_address="0000:3b:02.0", vf_index=0, pf_name=pf_name, pf_pci_address=pf_pci,
        vendor="8086", device_id="154c", pf_device_id="1572", driver="iavf", netdev=None,
    )  # fmt: skip


def test_a_pf_entry_wins_over_the_default_by_name_or_pci_address() -> None:
    names = parse_resource_names("sriov_nic, ens1f0=sriov_nic_1, 0000:5e:00.0=example.com/nic2")
    assert names.for_vf(vf("ens1f0", "0000:3b:00.0")) == "sriov_nic_1"
    assert names.for_vf(vf("ens2f0", "0000:5e:00.0")) == "example.com/nic2"
    assert names.for_vf(vf("ens3f0", "0000:86:00.0")) == "sriov_nic"
    assert names.names() == {"sriov_nic", "sriov_nic_1", "example.com/nic2"}


def test_without_a_default_a_pf_not_named_has_no_resource_name() -> None:
    names = parse_resource_names("ens1f0=sriov_nic_1")
    assert names.for_vf(vf("ens2f0", "0000:5e:00.0")) is None
    assert parse_resource_names("") == ResourceNames()
    assert ResourceNames().names() == frozenset()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("bad name", "'bad name' is not a resource name"),
        ("ens1f0=-x", "'-x' is not a resource name"),
        ("x" * 65, "at most 64"),
        ("=nic", "has no PF before '='"),
        ("ens1f0=a,ens1f0=b", "names PF 'ens1f0' twice"),
        ("a,b", "two defaults"),
    ],
)
def test_a_bad_setting_is_refused_naming_the_entry_and_the_fix(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="--resource-name") as info:
        parse_resource_names(text)
    assert says in str(info.value)
    assert "fix:" in str(info.value)
