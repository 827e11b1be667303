"""Device-info files of prepared VFs: content and name as the device-info spec says, written on
prepare, removed on unprepare and release, stray ones swept at start-up; Multus mode's CDI spec."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sriov_dra.claim_ref import ClaimRef
from sriov_dra_agent.cluster.claim_devices import NodeScope
from sriov_dra_agent.cluster.claim_manager import ClaimManager
from sriov_dra_agent.kubelet import device_info
from sriov_dra_agent.kubelet.cdi import CdiHook
from sriov_dra_agent.kubelet.prepared_claims import PreparedClaims
from sriov_dra_agent.kubelet.preparer import Preparer
from sriov_dra_agent.kubelet.rdma_devices import rdma_device_names
from sriov_dra_agent.vf.inventory import Inventory, PfInfo, VfInfo
from sriov_dra_agent.vf.resource_names import parse_resource_names

DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
NODE = "node-a"
PF_PCI = "0000:3b:00.0"
VF_PCI = ("0000:3b:02.0", "0000:3b:02.1")
UID = "4c0ffee0-0000-4000-8000-000000000001"


def test_the_file_is_named_and_filled_as_the_spec_says() -> None:
    assert device_info.file_name("example.com/sriov", VF_PCI[0]) == (
        "example.com-sriov-0000:3b:02.0-device.json"
    )
    assert device_info.pci_device_info(VF_PCI[0], PF_PCI, ("mlx5_2",)) == {
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": VF_PCI[0], "pf-pci-address": PF_PCI, "rdma-device": "mlx5_2"},
    }
    assert "rdma-device" not in device_info.pci_device_info(VF_PCI[0], PF_PCI)["pci"]
    with pytest.raises(ValueError, match="VF PCI address"):
        device_info.file_name("sriov_nic_1", "0000-3b-02-0")


def test_write_is_read_only_json_and_only_our_resource_names_are_listed(tmp_path: Path) -> None:
    directory = tmp_path / "devinfo/dp"  # created on first write, as the spec asks
    name = device_info.file_name("sriov_nic_1", VF_PCI[0])
    path = device_info.write_device_info(directory, name, device_info.pci_device_info(*VF_PCI))
    assert json.loads(path.read_text())["pci"]["pci-address"] == VF_PCI[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    # A device plugin's file for another resource shares the directory: never ours.
    (directory / "intel.com-sriov_netdevice-0000:5e:02.0-device.json").write_text("{}")
    (directory / "sriov_nic_1-notes.txt").write_text("")
    assert device_info.files_of(directory, {"sriov_nic_1"}) == [name]
    assert device_info.files_of(directory, set()) == []
    assert device_info.remove_device_info(directory, name)
    assert not device_info.remove_device_info(directory, name)


def test_rdma_device_names_come_from_the_functions_infiniband_directory(tmp_path: Path) -> None:
    (tmp_path / "bus/pci/devices" / VF_PCI[0] / "infiniband/mlx5_2").mkdir(parents=True)
    assert rdma_device_names(tmp_path, VF_PCI[0]) == ("mlx5_2",)
    assert rdma_device_names(tmp_path, VF_PCI[1]) == ()


# -- prepare / unprepare / sweep through the Preparer and PreparedClaims -----------------------


def inventory() -> Inventory:
    vfs = tuple(
        VfInfo(
            pci_address=pci, vf_index=i, pf_name="ens1f0", pf_pci_address=PF_PCI,
            vendor="15b3", device_id="101e", pf_device_id="101d", driver="mlx5_core",
            netdev=None,
        )
        for i, pci in enumerate(VF_PCI)
    )  # fmt: skip
    pf = PfInfo(
        name="ens1f0", pci_address=PF_PCI, vendor="15b3", device_id="101d",
        total_vfs=8, num_vfs=2, vfs=vfs,
    )  # fmt: skip
    return Inventory(node=NODE, pfs=(pf,))


def claim() -> dict[str, Any]:
    results = [
        {"request": "vf", "driver": DRIVER, "pool": NODE, "device": pci.replace(":", "-")
         .replace(".", "-")}
        for pci in VF_PCI
    ]  # fmt: skip
    return {
        "metadata": {"uid": UID, "namespace": "ns", "name": "claim-1"},
        "status": {"allocation": {"devices": {"results": results}}},
    }


async def _async(value: Any = None) -> Any:
    return value


class Node(SimpleNamespace):
    """The preparer's world: tmp dirs and stand-ins for the API, the manager and the VFs."""

    root: Path
    prepared: PreparedClaims

    @property
    def devinfo(self) -> Path:
        return self.root / "devinfo"

    def preparer(
        self,
        resource_name: str,
        *,
        agent_attaches: bool = True,
        published: dict[str, str] | None = None,
    ) -> Preparer:
        sysfs = self.root / "sys"
        (sysfs / "bus/pci/devices" / VF_PCI[0] / "infiniband/mlx5_2").mkdir(
            parents=True, exist_ok=True
        )
        return Preparer(
            NodeScope(NODE, DRIVER),
            api=cast(Any, SimpleNamespace(get_claim=lambda ns, name: _async(claim()))),
            manager=cast(Any, SimpleNamespace(
                program=lambda c, d: _async({}), dev_root=self.root / "dev",
            )),
            vfs=cast(Any, SimpleNamespace(
                record=lambda pci: None, records_of=lambda uid: [], discover=inventory,
            )),
            prepared=self.prepared,
            status=cast(Any, SimpleNamespace(write=lambda c, d=None: _async())),
            metrics=cast(Any, SimpleNamespace(timed=lambda name: nullcontext())),
            hook=CdiHook(path="/usr/bin/sriov-dra", attach_socket="/run/attach.sock"),
            sysfs_root=sysfs,
            resource_names=parse_resource_names(resource_name),
            published_resource_name=None if published is None else published.get,
            agent_attaches=agent_attaches,
        )  # fmt: skip

    def files(self) -> list[str]:
        return sorted(p.name for p in self.devinfo.iterdir()) if self.devinfo.is_dir() else []

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = json.loads(
            (self.root / "cdi" / f"{DRIVER}-vf_{UID}.json").read_text()
        )
        return spec


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    prepared = PreparedClaims(
        checkpoint_path=tmp_path / "checkpoint.json",
        cdi_dir=tmp_path / "cdi",
        device_info_dir=tmp_path / "devinfo",
        resource_names={"sriov_nic_1"},
    )
    yield Node(root=tmp_path, prepared=prepared)


REF = ClaimRef(uid=UID, namespace="ns", name="claim-1")
FILES = [f"sriov_nic_1-{pci}-device.json" for pci in VF_PCI]


async def test_prepare_writes_each_vfs_device_info_and_unprepare_removes_it(node: Node) -> None:
    preparer = node.preparer("ens1f0=sriov_nic_1")
    await preparer.prepare(REF)
    assert node.files() == FILES
    first = json.loads((node.devinfo / FILES[0]).read_text())
    assert first == {
        "type": "pci",
        "version": "1.1.0",
        "pci": {"pci-address": VF_PCI[0], "pf-pci-address": PF_PCI, "rdma-device": "mlx5_2"},
    }
    second = json.loads((node.devinfo / FILES[1]).read_text())
    assert second["pci"] == {"pci-address": VF_PCI[1], "pf-pci-address": PF_PCI}
    record = (await node.prepared.load()).claims[UID]
    assert [d.device_info_file for d in record.devices] == FILES
    await preparer.unprepare(REF)
    assert node.files() == []
    assert UID not in (await node.prepared.load()).claims


async def test_a_released_claim_loses_its_files_too(node: Node) -> None:
    await node.preparer("sriov_nic_1").prepare(REF)
    assert await node.prepared.forget(UID)  # what ClaimManager.release calls
    assert node.files() == []


async def test_vfs_without_a_resource_name_get_no_file(node: Node) -> None:
    await node.preparer("ens9f0=sriov_nic_1").prepare(REF)
    assert node.files() == []
    record = (await node.prepared.load()).claims[UID]
    assert [d.device_info_file for d in record.devices] == ["", ""]


async def test_the_start_up_sweep_removes_only_our_files_no_prepared_claim_records(
    node: Node,
) -> None:
    await node.preparer("sriov_nic_1").prepare(REF)
    # A crash between writing a claim's files and recording it leaves one behind.
    left = "sriov_nic_1-0000:3b:02.7-device.json"
    theirs = "intel.com-sriov_netdevice-0000:3b:02.6-device.json"
    info = device_info.pci_device_info(VF_PCI[0], PF_PCI)
    for name in (left, theirs):
        device_info.write_device_info(node.devinfo, name, info)
    manager = ClaimManager(
        NodeScope(NODE, DRIVER),
        api=cast(Any, SimpleNamespace(list_claims=lambda: _async(([claim()], "1")))),
        vfs=cast(Any, SimpleNamespace(
            records_all=lambda: [], sweep=lambda keep: SimpleNamespace(model_dump=dict),
        )),
        nads=cast(Any, None), prepared=node.prepared, status=cast(Any, None),
        events=cast(Any, None), metrics=cast(Any, None),
    )  # fmt: skip
    summary = await manager.startup_sweep()
    assert summary["stray_device_info"] == [left]
    assert node.files() == sorted([*FILES, theirs])


async def test_in_multus_mode_the_spec_has_no_hook_and_no_interface_name(node: Node) -> None:
    await node.preparer("sriov_nic_1", agent_attaches=False).prepare(REF)
    spec = node.spec()
    assert "containerEdits" not in spec  # no createRuntime hook: Multus attaches
    env = [e for d in spec["devices"] for e in d["containerEdits"]["env"]]
    assert not [e for e in env if "_IFNAME_" in e]
    assert f"SRIOVNETWORK_VF_DEVICE_0000_3B_02_0={VF_PCI[0]}" in env
    assert node.files() == FILES  # device-info as in the default mode


async def test_in_the_default_mode_the_spec_has_the_attach_hook(node: Node) -> None:
    await node.preparer("sriov_nic_1").prepare(REF)
    (hook,) = node.spec()["containerEdits"]["hooks"]
    assert hook["hookName"] == "createRuntime"
    assert hook["args"][:4] == ["/usr/bin/sriov-dra", "hook", "--claim-uid", UID]


async def test_the_name_the_slice_carries_wins_over_the_setting(node: Node) -> None:
    # A DeviceAttributes gave the first VF its resource name; the second has the setting's.
    node.prepared.resource_names = frozenset({"sriov_nic_1", "fast_nics"})
    await node.preparer("sriov_nic_1", published={"0000-3b-02-0": "fast_nics"}).prepare(REF)
    assert node.files() == [f"fast_nics-{VF_PCI[0]}-device.json", FILES[1]]
    await node.preparer("", published={"0000-3b-02-0": "fast_nics"}).unprepare(REF)
    assert node.files() == []


async def test_a_published_name_that_cannot_name_a_file_gets_none(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    await node.preparer("", published={"0000-3b-02-0": "bad\x00name"}).prepare(REF)
    assert node.files() == []
    assert "cannot name a file" in caplog.text
