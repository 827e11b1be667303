"""What the operator derives from a claim: VfConfig per request, the annotation records."""

from __future__ import annotations

from typing import Any

import pytest
from sriov_dra.constants import ATTR_PCI_ADDRESS, ATTR_PF_NAME, VFCONFIG_API_VERSION
from sriov_dra.device_pools import DeviceKey
from sriov_dra.errors import InvalidVfConfig
from sriov_dra_operator.claim_config import allocation_records, effective_configs
from sriov_dra_operator.slices import PublishedDevice

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"


def params(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": VFCONFIG_API_VERSION, "kind": "VfConfig", **fields}


def opaque(**fields: Any) -> dict[str, Any]:
    return {"driver": DRIVER, "parameters": params(**fields)}


CLASSES: dict[str, dict[str, Any]] = {
    "vf": {"metadata": {"name": "vf"}, "spec": {"config": [{"opaque": opaque(ifName="cls0")}]}},
    "plain": {"metadata": {"name": "plain"}},
}


def claim(config: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
        "spec": {
            "devices": {
                "requests": [
                    {"name": "a", "exactly": {"deviceClassName": "vf"}},
                    {
                        "name": "b",
                        "firstAvailable": [
                            {"name": "x", "deviceClassName": "plain"},
                            {"name": "y", "deviceClassName": "vf"},
                        ],
                    },
                ],
                "config": config,
            }
        },
    }


def test_class_config_applies_only_to_its_requests_and_claim_config_wins() -> None:
    body = claim(
        [
            {"requests": ["b"], "opaque": opaque(netAttachDefName="net")},
            {"requests": ["a"], "opaque": opaque(ifName="mine")},
            {"opaque": {"driver": "other.example", "parameters": {"anything": 1}}},
        ]
    )
    configs = effective_configs(body, CLASSES, driver=DRIVER)
    assert (configs["a"].if_name, configs["a"].net_attach_def_name) == ("mine", "")
    assert (configs["b/x"].if_name, configs["b/x"].net_attach_def_name) == ("", "net")
    assert (configs["b/y"].if_name, configs["b/y"].net_attach_def_name) == ("cls0", "net")


def test_empty_requests_apply_to_all_and_a_subrequest_entry_to_itself_only() -> None:
    body = claim(
        [
            {"requests": [], "opaque": opaque(netAttachDefName="everyone")},
            {"requests": ["b/y"], "opaque": opaque(ifName="why")},
        ]
    )
    configs = effective_configs(body, CLASSES, driver=DRIVER)
    assert {r: (c.if_name, c.net_attach_def_name) for r, c in configs.items()} == {
        "a": ("cls0", "everyone"),
        "b/x": ("", "everyone"),
        "b/y": ("why", "everyone"),
    }


@pytest.mark.parametrize(
    ("classes", "config", "field"),
    [
        (CLASSES, [{"opaque": opaque(bogus=1)}], "spec.devices.config[0].opaque.parameters"),
        (
            {**CLASSES, "vf": {"spec": {"config": [{"opaque": opaque(ifName="a/b")}]}}},
            [],
            "DeviceClass vf spec.config[0].opaque.parameters",
        ),
    ],
    ids=["claim-entry", "class-entry"],
)
def test_invalid_entries_name_their_path(
    classes: dict[str, dict[str, Any]], config: list[dict[str, Any]], field: str
) -> None:
    with pytest.raises(InvalidVfConfig) as info:
        effective_configs(claim(config), classes, driver=DRIVER)
    assert info.value.field.startswith(field)


def test_records_carry_pf_vf_ifname_and_nad() -> None:
    published = DeviceKey(DRIVER, "n1", "0000-08-00-2")
    bare = DeviceKey(DRIVER, "n1", "0000-08-00-3")
    devices = {
        published: PublishedDevice(
            published,
            "n1",
            {
                ATTR_PCI_ADDRESS: {"string": "0000:08:00.2"},
                ATTR_PF_NAME: {"string": "ens1"},
                "vfID": {"int": 2},
            },
        ),
        bare: PublishedDevice(bare, "n1", {}),
    }
    configs = effective_configs(
        claim([{"opaque": opaque(ifName="net1", netAttachDefName="net")}]), CLASSES, driver=DRIVER
    )
    results = [
        {"request": "a", "driver": DRIVER, "pool": "n1", "device": "0000-08-00-2"},
        {"request": "b/y", "driver": DRIVER, "pool": "n1", "device": "0000-08-00-3"},
    ]
    nads = {"a": ("ns", "net"), "b/y": ("ns", "net")}
    records = allocation_records(results, "n1", configs, devices, nads)
    assert [(r.pf, r.pci_address, r.vf_index, r.if_name, r.nad) for r in records] == [
        ("ens1", "0000:08:00.2", 2, "net1", "ns/net"),
        ("", "0000:08:00.3", 0, "net2", "ns/net"),
    ]


def test_records_of_a_device_from_someone_elses_slice_never_fail() -> None:
    """The scheduler may allocate such a device; adopting the claim must still write records."""
    odd = DeviceKey(DRIVER, "n1", "eth-vf-a")
    devices = {odd: PublishedDevice(odd, "n1", {"vfID": {"string": "seven"}})}
    configs = effective_configs(claim([]), CLASSES, driver=DRIVER)
    results = [{"request": "a", "driver": DRIVER, "pool": "n1", "device": "eth-vf-a"}]
    (record,) = allocation_records(results, "n1", configs, devices, {"a": None})
    assert (record.device, record.pci_address, record.vf_index) == ("eth-vf-a", "", 0)


def test_vfio_pci_from_the_class_and_rdma_from_the_claim_are_refused_together() -> None:
    classes = {**CLASSES, "vf": {"spec": {"config": [{"opaque": opaque(driver="vfio-pci")}]}}}
    with pytest.raises(InvalidVfConfig) as info:
        effective_configs(claim([{"requests": ["a"], "opaque": opaque(rdma=True)}]), classes,
                          driver=DRIVER)  # fmt: skip
    assert info.value.field == "DeviceClass and claim config (request 'a', merged).rdma"
    assert "vfio-pci" in info.value.fix
