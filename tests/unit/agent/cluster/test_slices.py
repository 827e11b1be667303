"""Pure slicing: Inventory -> ResourceSlice objects."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sriov_dra import constants
from sriov_dra.allocator import allocate
from sriov_dra.device_pools import pools_from_slices
from sriov_dra_agent.cluster.slices import (
    build_slices,
    chunk_devices,
    next_generation,
    pool_devices,
    slice_name,
    vf_device,
)
from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo

DRIVER = constants.DRIVER_NAME
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def make_vf(pf_bus: int, index: int, *, simulated: bool = False, **extra: object) -> VfInfo:
    bus = pf_bus + 1 + index // 8
    fields: dict[str, object] = {
        "pci_address": f"0000:{bus:02x}:00.{index % 8}",
        "vf_index": index,
        "pf_name": f"ens{pf_bus}f0",
        "pf_pci_address": f"0000:{pf_bus:02x}:00.0",
        "vendor": "8086",
        "device_id": "154c",
        "pf_device_id": "1572",
        "driver": "iavf",
        "netdev": f"ens{pf_bus}f0v{index}",
        "numa_node": 0,
        "simulated": simulated,
    }
    fields.update(extra)
    return VfInfo.model_validate(fields)


def make_inventory(vf_count: int, *, node: str = "node-a", simulated: bool = False) -> Inventory:
    # Spread VFs over PFs of at most 64 VFs each, with distinct PCI buses.
    pfs = []
    for pf_number, start in enumerate(range(0, vf_count, 64)):
        pf_bus = 0x10 * (pf_number + 1)
        vfs = tuple(
            make_vf(pf_bus, i, simulated=simulated) for i in range(min(64, vf_count - start))
        )
        pfs.append(
            PfInfo(
                name=f"ens{pf_bus}f0",
                pci_address=f"0000:{pf_bus:02x}:00.0",
                vendor="8086",
                device_id="1572",
                total_vfs=64,
                num_vfs=len(vfs),
                vfs=vfs,
            )
        )
    return Inventory(node=node, pfs=tuple(pfs))


def test_device_attributes_match_the_go_driver() -> None:
    vf = make_vf(0x08, 2, pcie_root="pci0000:00", rdma_capable=True)
    device = vf_device(vf, "node-a")
    assert device["name"] == "0000-09-00-2"
    assert device["attributes"] == {
        constants.ATTR_VENDOR: {"string": "8086"},
        constants.ATTR_DEVICE_ID: {"string": "154c"},
        constants.ATTR_PF_DEVICE_ID: {"string": "1572"},
        constants.ATTR_PCI_ADDRESS: {"string": "0000:09:00.2"},
        constants.ATTR_PF_NAME: {"string": "ens8f0"},
        constants.ATTR_PF_PCI_ADDRESS: {"string": "0000:08:00.0"},
        constants.ATTR_ESWITCH_MODE: {"string": "legacy"},
        constants.ATTR_VF_ID: {"int": 2},
        constants.ATTR_LINK_TYPE: {"string": "ethernet"},
        constants.ATTR_RDMA_CAPABLE: {"bool": True},
        constants.ATTR_CNI_DEVICE_ID: {"string": "0000:09:00.2"},
        constants.ATTR_PCI_BUS_ID: {"string": "0000:09:00.2"},
        constants.ATTR_NUMA_NODE: {"int": 0},
        constants.ATTR_PCIE_ROOT: {"string": "pci0000:00"},
        constants.ATTR_NODE_NAME: {"string": "node-a"},
    }
    assert "resource.kubernetes.io/pciBusID" in device["attributes"]
    assert "k8s.cni.cncf.io/deviceID" in device["attributes"]


@pytest.mark.parametrize(
    ("simulated", "expected"), [(True, {"bool": True}), (False, None)], ids=["simulated", "real"]
)
def test_simulated_attribute_only_on_simulated_vfs(simulated: bool, expected: object) -> None:
    device = vf_device(make_vf(0x08, 0, simulated=simulated), "node-a")
    assert device["attributes"].get(constants.ATTR_SIMULATED) == expected


def test_attribute_count_within_api_limit() -> None:
    device = vf_device(make_vf(0x08, 0, simulated=True, pcie_root="pci0000:00"), "node-a")
    assert len(device["attributes"]) <= 32
    for key, value in device["attributes"].items():
        assert len(value) == 1 and next(iter(value)) in {"string", "int", "bool"}, key
        if "string" in value:
            assert len(value["string"]) <= 64


def test_state_that_changes_in_use_is_not_published() -> None:
    idle = make_vf(0x08, 1)
    in_pod = idle.model_copy(update={"netdev": None, "driver": "vfio-pci"})
    assert vf_device(idle, "node-a") == vf_device(in_pod, "node-a")


def test_device_names_are_dns_labels_and_sorted() -> None:
    devices = pool_devices(make_inventory(70))
    names = [d["name"] for d in devices]
    assert names == sorted(names)
    assert len(set(names)) == 70
    assert all(DNS_LABEL.match(n) and len(n) <= 63 for n in names)


def test_duplicate_pci_address_is_refused() -> None:
    vf = make_vf(0x08, 0)
    pf = PfInfo(
        name="ens8f0", pci_address="0000:08:00.0", vendor="8086", device_id="1572",
        total_vfs=2, num_vfs=2, vfs=(vf, vf),
    )  # fmt: skip
    with pytest.raises(ValueError) as info:
        pool_devices(Inventory(node="node-a", pfs=(pf,)))
    assert str(info.value) == (
        "two VFs of node node-a have PCI address 0000:09:00.0; "
        "fix: discovery must report each VF once"
    )


@pytest.mark.parametrize(
    ("vf_count", "sizes"),
    [
        (0, [0]),
        (1, [1]),
        (128, [128]),
        (129, [128, 1]),
        (300, [128, 128, 44]),
    ],
    ids=["empty-pool-one-slice", "one", "exactly-128", "129-splits", "300-three-slices"],
)
def test_slices_split_beyond_128_devices(vf_count: int, sizes: list[int]) -> None:
    slices = build_slices(make_inventory(vf_count), driver=DRIVER, generation=3)
    assert [len(s["spec"]["devices"]) for s in slices] == sizes
    for index, item in enumerate(slices):
        spec = item["spec"]
        assert item["metadata"]["name"] == f"node-a-{DRIVER}-{index}"
        assert spec["driver"] == DRIVER
        assert spec["nodeName"] == "node-a"
        assert spec["pool"] == {
            "name": "node-a",
            "generation": 3,
            "resourceSliceCount": len(sizes),
        }
    all_names = [d["name"] for s in slices for d in s["spec"]["devices"]]
    assert len(all_names) == len(set(all_names)) == vf_count


def test_owner_is_the_node() -> None:
    (item,) = build_slices(
        make_inventory(1), driver=DRIVER, generation=0, owner={"name": "node-a", "uid": "u-1"}
    )
    assert item["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "u-1", "controller": True}
    ]


def test_chunk_refuses_non_positive_limit() -> None:
    with pytest.raises(ValueError, match=r"^limit must be positive, got 0$"):
        chunk_devices([], 0)


def test_long_node_names_give_valid_slice_names() -> None:
    node = "n" * 250
    names = {slice_name(node, DRIVER, i) for i in range(3)}
    assert len(names) == 3
    assert all(len(n) <= 253 for n in names)
    assert slice_name("node-a", DRIVER, 0) == f"node-a-{DRIVER}-0"


def _published(vf_count: int, generation: int) -> list[dict[str, object]]:
    return build_slices(make_inventory(vf_count), driver=DRIVER, generation=generation)


@pytest.mark.parametrize(
    ("existing", "desired_count", "expected"),
    [
        ([], 4, 0),
        (_published(4, 0), 4, None),
        (_published(4, 7), 4, None),
        (_published(4, 7), 5, 8),
        (_published(4, 7), 3, 8),
        (_published(200, 2), 100, 3),
        ([_published(200, 1)[0], _published(200, 2)[1]], 200, 3),
    ],
    ids=[
        "first-publication-starts-at-0",
        "unchanged-keeps-generation",
        "unchanged-keeps-high-generation",
        "vf-added-bumps",
        "vf-removed-bumps",
        "slices-merge-bumps",
        "mixed-generations-bump-past-max",
    ],
)
def test_generation_bumped_on_every_change(
    existing: list[dict[str, object]], desired_count: int, expected: int | None
) -> None:
    desired = _published(desired_count, 0)
    assert next_generation(existing, desired) == expected


def test_attribute_change_bumps_generation() -> None:
    inventory = make_inventory(2)
    existing = build_slices(inventory, driver=DRIVER, generation=5)
    pf = inventory.pfs[0]
    moved = pf.model_copy(
        update={"vfs": (pf.vfs[0].model_copy(update={"numa_node": 1}), pf.vfs[1])}
    )
    desired = build_slices(Inventory(node="node-a", pfs=(moved,)), driver=DRIVER, generation=0)
    assert next_generation(existing, desired) == 6


def test_a_claim_can_ask_for_a_node_through_the_node_name_attribute() -> None:
    # The agent's real slices of two nodes, the operator's pure allocator, a CEL selector.
    slices = [
        *build_slices(make_inventory(2, node="node-a"), driver=constants.DRIVER_NAME, generation=1),
        *build_slices(make_inventory(2, node="node-b"), driver=constants.DRIVER_NAME, generation=1),
    ]
    pools = pools_from_slices(slices, driver=constants.DRIVER_NAME)
    device_class = {
        "metadata": {"name": constants.DEVICE_CLASS_NAME},
        "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{DRIVER}"'}}]},
    }

    def node_of(selectors: list[dict[str, Any]]) -> str:
        request = {"deviceClassName": constants.DEVICE_CLASS_NAME, "selectors": selectors}
        claim = {"spec": {"devices": {"requests": [{"name": "vf", "exactly": request}]}}}
        return allocate(
            claim,
            device_classes={constants.DEVICE_CLASS_NAME: device_class},
            pools=pools,
            in_use=set(),
            driver=constants.DRIVER_NAME,
        ).node

    assert node_of([]) == "node-a"  # the documented default: first node by name
    on_b = f'device.attributes["{DRIVER}"].nodeName == "node-b"'
    assert node_of([{"cel": {"expression": on_b}}]) == "node-b"
