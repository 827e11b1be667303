"""RDMA character devices of a VF, found under its sysfs directory, in its CDI device."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sriov_dra_agent.cluster.claim_devices import ClaimDevice, NodeScope
from sriov_dra_agent.kubelet import cdi
from sriov_dra_agent.kubelet.cdi import CdiVf, CharDevice, DeviceNodeMissing, build_claim_spec
from sriov_dra_agent.kubelet.preparer import Preparer
from sriov_dra_agent.kubelet.rdma_devices import rdma_char_devices

VF = "0000:3b:02.0"
NUMBERS = {"uverbs2": "231:194", "umad2": "231:2", "issm2": "231:66"}
EXPECTED = (
    CharDevice("/dev/infiniband/uverbs2", 231, 194, "UVERB"),
    CharDevice("/dev/infiniband/umad2", 231, 2, "UMAD"),
    CharDevice("/dev/infiniband/issm2", 231, 66, "ISSM"),
    CharDevice("/dev/infiniband/rdma_cm", 10, 58, "CM"),
)


def rdma_tree(root: Path, pci: str = VF) -> tuple[Path, Path]:
    """A fake /sys with one mlx5 VF's RDMA class devices, and a fake /dev with their nodes."""
    sysfs, dev = root / "sys", root / "dev"
    function = sysfs / "devices/pci0000:3a/0000:3a:00.0" / pci
    (function / "infiniband/mlx5_2").mkdir(parents=True)
    for class_dir, name in (
        ("infiniband_verbs", "uverbs2"),
        ("infiniband_mad", "umad2"),
        ("infiniband_mad", "issm2"),
    ):
        (function / class_dir / name).mkdir(parents=True)
        (function / class_dir / name / "dev").write_text(NUMBERS[name] + "\n")
    (sysfs / "bus/pci/devices").mkdir(parents=True)
    os.symlink(
        os.path.relpath(function, sysfs / "bus/pci/devices"), sysfs / "bus/pci/devices" / pci
    )
    (sysfs / "class/misc/rdma_cm").mkdir(parents=True)
    (sysfs / "class/misc/rdma_cm/dev").write_text("10:58\n")
    (dev / "infiniband").mkdir(parents=True)
    for name in (*NUMBERS, "rdma_cm"):
        (dev / "infiniband" / name).write_text("")
    return sysfs, dev


def test_a_vfs_uverbs_umad_issm_and_rdma_cm_are_found_with_their_numbers(tmp_path: Path) -> None:
    sysfs, dev = rdma_tree(tmp_path)
    assert rdma_char_devices(sysfs, dev, VF, node="node-a") == EXPECTED


def test_a_vf_without_rdma_devices_has_none(tmp_path: Path) -> None:
    sysfs, dev = rdma_tree(tmp_path)
    (sysfs / "bus/pci/devices/0000:3b:02.1").mkdir()
    assert rdma_char_devices(sysfs, dev, "0000:3b:02.1", node="node-a") == ()
    assert rdma_char_devices(sysfs, dev, "0000:3b:02.7", node="node-a") == ()


@pytest.mark.parametrize("missing", ["umad2", "rdma_cm"])
def test_a_missing_dev_node_names_the_node_the_vf_and_the_module(
    tmp_path: Path, missing: str
) -> None:
    sysfs, dev = rdma_tree(tmp_path)
    (dev / "infiniband" / missing).unlink()
    with pytest.raises(DeviceNodeMissing) as info:
        rdma_char_devices(sysfs, dev, VF, node="node-a")
    assert info.value.describe() == (
        f"VfConfig.rdma: /dev/infiniband/{missing} (RDMA device of VF {VF}) is missing on node "
        "node-a; fix: load the RDMA modules on node-a (modprobe ib_uverbs ib_umad rdma_ucm, and "
        "the NIC's RDMA driver such as mlx5_ib), or set rdma: false in the VfConfig"
    )


def test_without_a_dev_file_the_numbers_come_from_the_char_device_node(tmp_path: Path) -> None:
    sysfs, dev = rdma_tree(tmp_path)
    uverbs = sysfs / "bus/pci/devices" / VF / "infiniband_verbs/uverbs2"
    (uverbs / "dev").unlink()
    (dev / "infiniband/uverbs2").unlink()
    os.mknod(dev / "infiniband/uverbs2", stat.S_IFCHR | 0o600, os.makedev(231, 194))
    assert rdma_char_devices(sysfs, dev, VF, node="node-a")[0] == EXPECTED[0]
    # A node that is not a character device, with no dev file, gives no numbers.
    (dev / "infiniband/uverbs2").unlink()
    (dev / "infiniband/uverbs2").write_text("")
    with pytest.raises(DeviceNodeMissing):
        rdma_char_devices(sysfs, dev, VF, node="node-a")


def test_the_cdi_device_carries_the_nodes_with_type_numbers_and_env() -> None:
    spec = build_claim_spec(
        "uid-1", [CdiVf(device_name="0000-3b-02-0", pci_address=VF, rdma=EXPECTED)], None
    )
    (device,) = spec["devices"]
    edits = device["containerEdits"]
    assert edits["deviceNodes"] == [
        {"path": d.path, "type": "c", "major": d.major, "minor": d.minor} for d in EXPECTED
    ]
    assert edits["env"] == [
        f"SRIOVNETWORK_VF_DEVICE_0000_3B_02_0={VF}",
        "SRIOVNETWORK_VF_RDMA_UVERB_0000_3B_02_0=/dev/infiniband/uverbs2",
        "SRIOVNETWORK_VF_RDMA_UMAD_0000_3B_02_0=/dev/infiniband/umad2",
        "SRIOVNETWORK_VF_RDMA_ISSM_0000_3B_02_0=/dev/infiniband/issm2",
        "SRIOVNETWORK_VF_RDMA_CM_0000_3B_02_0=/dev/infiniband/rdma_cm",
    ]
    assert spec["cdiVersion"] == "0.3.0"  # type, major and minor are in every CDI version


def preparer(sysfs: Path, dev: Path) -> Preparer:
    """A Preparer with only what choosing RDMA devices reads: scope, sysfs and /dev roots."""
    stand_in = cast(Any, SimpleNamespace(dev_root=dev))
    return Preparer(
        NodeScope(node="node-a", driver="d"),
        api=stand_in, manager=stand_in, vfs=stand_in, prepared=stand_in, status=stand_in,
        metrics=stand_in, hook=stand_in, sysfs_root=sysfs,
    )  # fmt: skip


def device(rdma: bool | None, pci: str = VF) -> ClaimDevice:
    return ClaimDevice("vf", "node-a", "0000-3b-02-0", pci, "net1", "", None, rdma=rdma)


@pytest.mark.parametrize(
    ("rdma", "in_kernel", "expected"),
    [(None, True, EXPECTED), (True, True, EXPECTED), (False, True, ()), (None, False, ())],
    ids=["unset-gives-them", "true-gives-them", "false-leaves-them-out", "vfio-has-none"],
)
def test_the_vfconfig_decides_which_vf_gets_its_rdma_devices(
    tmp_path: Path, rdma: bool | None, in_kernel: bool, expected: tuple[CharDevice, ...]
) -> None:
    sysfs, dev = rdma_tree(tmp_path)
    assert preparer(sysfs, dev)._rdma(device(rdma), in_kernel=in_kernel) == expected


@pytest.mark.parametrize("in_kernel", [True, False], ids=["no-rdma-device", "in-userspace"])
def test_rdma_true_on_a_vf_without_rdma_devices_is_refused(tmp_path: Path, in_kernel: bool) -> None:
    sysfs, dev = rdma_tree(tmp_path)
    (sysfs / "bus/pci/devices/0000:3b:02.1").mkdir()
    with pytest.raises(cdi.DeviceNodeMissing) as info:
        preparer(sysfs, dev)._rdma(device(True, "0000:3b:02.1"), in_kernel=in_kernel)
    assert info.value.field == "VfConfig.rdma"
    assert "has no RDMA device on node node-a" in info.value.message
    assert "rdmaCapable == true" in info.value.fix
