"""The Multus attributes of a VF in the ResourceSlice: resourceName (when set) and deviceID."""

from __future__ import annotations

from sriov_dra import constants
from sriov_dra_agent.cluster.slices import (
    build_slices,
    pool_devices,
    resource_names_of,
    with_resource_names,
)
from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo
from sriov_dra_agent.vf.resource_names import parse_resource_names


def make_pf(name: str, bus: int, vfs: int) -> PfInfo:
    return PfInfo(
        name=name, pci_address=f"0000:{bus:02x}:00.0", vendor="8086", device_id="1572",
        total_vfs=8, num_vfs=vfs,
        vfs=tuple(
            VfInfo(
                pci_address=f"0000:{bus + 1:02x}:00.{i}", vf_index=i, pf_name=name,
                pf_pci_address=f"0000:{bus:02x}:00.0", vendor="8086", device_id="154c",
                pf_device_id="1572", driver="iavf", netdev=None,
            )
            for i in range(vfs)
        ),
    )  # fmt: skip


INVENTORY = Inventory(node="node-a", pfs=(make_pf("ens1f0", 0x10, 2), make_pf("ens2f0", 0x20, 1)))


def attributes(resource_name: str) -> dict[str, dict[str, object]]:
    (slice_,) = build_slices(
        INVENTORY,
        driver=constants.DRIVER_NAME,
        generation=0,
        resource_names=parse_resource_names(resource_name),
    )
    return {d["name"]: d["attributes"] for d in slice_["spec"]["devices"]}


def test_each_vf_carries_its_pfs_resource_name_and_its_pci_address_as_device_id() -> None:
    devices = attributes("ens1f0=sriov_nic_1,ens2f0=sriov/nic2")
    assert devices["0000-11-00-0"][constants.ATTR_CNI_RESOURCE_NAME] == {"string": "sriov_nic_1"}
    assert devices["0000-11-00-1"][constants.ATTR_CNI_RESOURCE_NAME] == {"string": "sriov_nic_1"}
    assert devices["0000-21-00-0"][constants.ATTR_CNI_RESOURCE_NAME] == {"string": "sriov/nic2"}
    for name, attrs in devices.items():
        assert attrs[constants.ATTR_CNI_DEVICE_ID] == attrs[constants.ATTR_PCI_ADDRESS], name
    assert constants.ATTR_CNI_RESOURCE_NAME == "k8s.cni.cncf.io/resourceName"


def test_a_vf_without_a_resource_name_has_no_such_attribute() -> None:
    devices = attributes("ens2f0=sriov_nic_2")
    assert constants.ATTR_CNI_RESOURCE_NAME not in devices["0000-11-00-0"]
    assert devices["0000-21-00-0"][constants.ATTR_CNI_RESOURCE_NAME] == {"string": "sriov_nic_2"}
    assert all(constants.ATTR_CNI_RESOURCE_NAME not in a for a in attributes("").values())


def test_a_name_the_device_has_already_wins_and_the_input_is_left_alone() -> None:
    devices = pool_devices(INVENTORY)
    given = {**devices[0], "attributes": {constants.ATTR_CNI_RESOURCE_NAME: {"string": "from-da"}}}
    named = with_resource_names([given, devices[1]], INVENTORY, parse_resource_names("nic"))
    assert named[0]["attributes"] == {constants.ATTR_CNI_RESOURCE_NAME: {"string": "from-da"}}
    assert named[1]["attributes"][constants.ATTR_CNI_RESOURCE_NAME] == {"string": "nic"}
    assert constants.ATTR_CNI_RESOURCE_NAME not in devices[1]["attributes"]
    assert with_resource_names(devices, INVENTORY, None) == devices


def test_the_published_names_are_read_back_by_device() -> None:
    slices = build_slices(
        INVENTORY,
        driver=constants.DRIVER_NAME,
        generation=0,
        resource_names=parse_resource_names("ens2f0=sriov_nic_2"),
    )
    assert resource_names_of(slices) == {"0000-21-00-0": "sriov_nic_2"}
