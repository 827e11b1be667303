"""A VF rebound outside the agent (someone binds it to vfio-pci), over the fake sysfs tree of
a real NIC: the kernel's ``bind`` uevent is a hardware change, discovery reports the new
driver, and the next publication follows it (a ``drivers`` policy stops selecting the VF,
the other VFs' devices stay as they were)."""

from __future__ import annotations

import shutil
from pathlib import Path

from sriov_dra import constants
from sriov_dra.advertisement import NoPolicyMode, decide
from sriov_dra_agent.cluster.advertisement_policies import built_in_names, candidates
from sriov_dra_agent.cluster.slices import build_slices
from sriov_dra_agent.vf.discovery import discover
from sriov_dra_agent.vf.hardware_events import HardwareChange, uevent_change
from sriov_dra_agent.vf.inventory import Inventory
from test_sysfs_netlink import _fake_sysfs, _rebind_in_tree

PCI = "0000:3b:02.1"
IAVF_ONLY = {
    "metadata": {"name": "iavf-only", "namespace": "sriov-dra"},
    "spec": {"configs": [{"resourceFilters": [{"drivers": ["iavf"]}]}]},
}


def published(inventory: Inventory) -> dict[str, dict[str, object]]:
    """Device name -> attributes the agent publishes under the ``drivers: [iavf]`` policy."""
    advertisement = decide(
        node=inventory.node,
        node_labels={},
        vfs=candidates(inventory),
        policies=[IAVF_ONLY],
        device_attributes=[],
        no_policy=NoPolicyMode.ALL,
        driver=constants.DRIVER_NAME,
        reserved=built_in_names(inventory),
    )
    slices = build_slices(
        inventory, driver=constants.DRIVER_NAME, generation=0, advertisement=advertisement
    )
    return {d["name"]: d["attributes"] for s in slices for d in s["spec"]["devices"]}


def test_a_vf_bound_to_vfio_by_someone_else_is_republished_with_its_new_driver(
    tmp_path: Path,
) -> None:
    _fake_sysfs(tmp_path, num_vfs=4)
    before = discover("node-a", tmp_path)
    assert {vf.pci_address: vf.driver for vf in before.vfs()}[PCI] == "iavf"
    devices_before = published(before)
    assert len(devices_before) == 4

    # What `echo 0000:3b:02.1 > /sys/bus/pci/drivers/vfio-pci/bind` leaves, and announces.
    _rebind_in_tree(tmp_path, PCI, "vfio-pci")
    shutil.rmtree(tmp_path / "bus/pci/devices" / PCI / "net")
    uevent = {"ACTION": "bind", "SUBSYSTEM": "pci", "PCI_SLOT_NAME": PCI, "DRIVER": "vfio-pci"}
    assert uevent_change(uevent) == HardwareChange("uevent", "bind", PCI, "vfio-pci")

    after = discover("node-a", tmp_path)
    (vf,) = [vf for vf in after.vfs() if vf.pci_address == PCI]
    assert (vf.driver, vf.netdev) == ("vfio-pci", None)
    assert after != before, "the publisher compares inventories: this one is published"
    devices_after = published(after)
    gone = set(devices_before) - set(devices_after)
    assert gone == {"0000-3b-02-1"}
    # The other VFs' devices are unchanged (the driver is not an attribute): no churn.
    assert {name: devices_before[name] for name in devices_after} == devices_after

    # Unbound altogether: no driver, still not selected by a drivers filter.
    _rebind_in_tree(tmp_path, PCI, None)
    unbound = discover("node-a", tmp_path)
    assert [vf.driver for vf in unbound.vfs() if vf.pci_address == PCI] == [None]
    assert "0000-3b-02-1" not in published(unbound)
