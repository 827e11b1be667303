"""Per-claim CDI specs: content, naming rules, minimum cdiVersion, atomic write/remove."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from sriov_dra_agent.kubelet.cdi import (
    CDI_KIND,
    CdiHook,
    CdiVf,
    DeviceNodeMissing,
    InvalidCdiSpec,
    build_claim_spec,
    cdi_device_name,
    check_vhost_nodes,
    claim_cdi_device_ids,
    claim_uids_with_specs,
    minimum_cdi_version,
    qualified_device_id,
    remove_claim_spec,
    spec_file_name,
    validate_device_name,
    validate_vendor_or_class,
    write_claim_spec,
)

UID = "3f2b8c1e-6d0a-4a55-9c1b-2f4e8a9d7b10"
HOOK = CdiHook(path="/opt/sriov-dra/bin/sriov-dra", attach_socket="/run/sriov-dra/attach.sock")
NETDEV_VFS = [
    CdiVf(device_name="0000-08-00-2", pci_address="0000:08:00.2", if_name="net1"),
    CdiVf(device_name="0000-08-00-3", pci_address="0000:08:00.3", if_name="net2"),
]


def test_netdev_claim_spec_has_env_per_vf_and_one_spec_level_hook() -> None:
    spec = build_claim_spec(UID, NETDEV_VFS, HOOK)

    assert spec == {
        "cdiVersion": "0.5.0",
        "kind": "sriovnetwork.k8snetworkplumbingwg.io/vf",
        "devices": [
            {
                "name": f"{UID}-0000-08-00-2",
                "containerEdits": {
                    "env": [
                        "SRIOVNETWORK_VF_DEVICE_0000_08_00_2=0000:08:00.2",
                        "SRIOVNETWORK_VF_IFNAME_0000_08_00_2=net1",
                    ]
                },
            },
            {
                "name": f"{UID}-0000-08-00-3",
                "containerEdits": {
                    "env": [
                        "SRIOVNETWORK_VF_DEVICE_0000_08_00_3=0000:08:00.3",
                        "SRIOVNETWORK_VF_IFNAME_0000_08_00_3=net2",
                    ]
                },
            },
        ],
        "containerEdits": {
            "hooks": [
                {
                    "hookName": "createRuntime",
                    "path": "/opt/sriov-dra/bin/sriov-dra",
                    "args": [
                        "/opt/sriov-dra/bin/sriov-dra",
                        "hook",
                        "--claim-uid",
                        UID,
                        "--attach-socket",
                        "/run/sriov-dra/attach.sock",
                        "--timeout",
                        "28",
                    ],
                    "timeout": 30,
                }
            ]
        },
    }


def test_vfio_vf_gets_group_and_container_device_nodes_and_no_ifname() -> None:
    vf = CdiVf(device_name="0000-08-00-4", pci_address="0000:08:00.4", vfio_group="42")

    spec = build_claim_spec(UID, [vf], hook=None)

    assert spec["devices"][0]["containerEdits"] == {
        "env": [
            "SRIOVNETWORK_VF_DEVICE_0000_08_00_4=0000:08:00.4",
            "SRIOVNETWORK_VF_VFIO_DEVICE_0000_08_00_4=/dev/vfio/42",
        ],
        "deviceNodes": [{"path": "/dev/vfio/42"}, {"path": "/dev/vfio/vfio"}],
    }
    assert "containerEdits" not in spec


def test_noiommu_group_path() -> None:
    vf = CdiVf(device_name="0000-08-00-4", pci_address="0000:08:00.4", vfio_group="noiommu-0")
    edits = build_claim_spec(UID, [vf], hook=None)["devices"][0]["containerEdits"]
    assert edits["deviceNodes"][0] == {"path": "/dev/vfio/noiommu-0"}


def test_device_ids_are_qualified_names_of_the_spec_devices() -> None:
    spec = build_claim_spec(UID, NETDEV_VFS, HOOK)
    ids = claim_cdi_device_ids(UID, [vf.device_name for vf in NETDEV_VFS])
    assert ids == [f"{CDI_KIND}={device['name']}" for device in spec["devices"]]
    assert ids[0] == f"sriovnetwork.k8snetworkplumbingwg.io/vf={UID}-0000-08-00-2"


@pytest.mark.parametrize(
    ("spec", "version"),
    [
        ({"devices": [{"name": "a-1", "containerEdits": {"env": ["A=1"]}}]}, "0.3.0"),
        ({"devices": [{"name": "3f2b-1"}]}, "0.5.0"),
        (
            {"devices": [{"name": "a", "containerEdits": {"deviceNodes": [{"hostPath": "/x"}]}}]},
            "0.5.0",
        ),
        ({"annotations": {"a": "b"}, "devices": [{"name": "a"}]}, "0.6.0"),
        ({"devices": [{"name": "a", "annotations": {"a": "b"}}]}, "0.6.0"),
    ],
    ids=["letter-name", "digit-name", "hostPath", "spec-annotations", "device-annotations"],
)
def test_minimum_cdi_version(spec: dict[str, Any], version: str) -> None:
    assert minimum_cdi_version(spec) == version


def test_uid_starting_with_a_letter_needs_only_0_3_0() -> None:
    spec = build_claim_spec("c" + UID[1:], NETDEV_VFS[:1], HOOK)
    assert spec["cdiVersion"] == "0.3.0"


@pytest.mark.parametrize(
    "name",
    ["a", "0", "3f2b8c1e-0000-08-00-2", "a_b.c:d-e", "A9"],
    ids=["letter", "digit", "uid-device", "all-separators", "upper"],
)
def test_valid_device_names(name: str) -> None:
    validate_device_name(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "devices[].name: '' is not a valid CDI device name"),
        ("-a", "devices[].name: '-a' is not a valid CDI device name"),
        ("a-", "devices[].name: 'a-' is not a valid CDI device name"),
        ("a/b", "devices[].name: 'a/b' is not a valid CDI device name"),
        ("a b", "devices[].name: 'a b' is not a valid CDI device name"),
    ],
    ids=["empty", "leading-dash", "trailing-dash", "slash", "space"],
)
def test_invalid_device_names(name: str, message: str) -> None:
    with pytest.raises(InvalidCdiSpec) as err:
        validate_device_name(name)
    assert err.value.describe() == (
        f"{message}; fix: use letters, digits, '_', '-', '.' and ':', starting and ending "
        "with a letter or digit"
    )


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("sriovnetwork.k8snetworkplumbingwg.io", True),
        ("vf", True),
        ("1vendor", False),
        ("vendor.", False),
        ("ven:dor", False),
    ],
    ids=["driver", "class", "leading-digit", "trailing-dot", "colon"],
)
def test_vendor_and_class_rules(value: str, ok: bool) -> None:
    if ok:
        validate_vendor_or_class(value, field="kind")
        return
    with pytest.raises(InvalidCdiSpec, match=r"^kind: .* is not a valid CDI vendor or class name"):
        validate_vendor_or_class(value, field="kind")


def test_cdi_device_name_validates_the_combined_name() -> None:
    with pytest.raises(InvalidCdiSpec) as err:
        cdi_device_name(UID, "0000:08:00.2/")
    assert err.value.message == f"'{UID}-0000:08:00.2/' is not a valid CDI device name"


def test_qualified_device_id_validates_the_name() -> None:
    with pytest.raises(InvalidCdiSpec):
        qualified_device_id("bad name")


@pytest.mark.parametrize(
    ("vfs", "hook", "message"),
    [
        ([], HOOK, f"devices: claim {UID} has no VFs to describe"),
        (
            [NETDEV_VFS[0], NETDEV_VFS[0]],
            HOOK,
            f"devices: claim {UID} lists a VF twice: ['{UID}-0000-08-00-2', '{UID}-0000-08-00-2']",
        ),
        (
            NETDEV_VFS,
            CdiHook(path="sriov-dra", attach_socket="/run/a.sock"),
            "containerEdits.hooks[].path: hook path 'sriov-dra' is not absolute",
        ),
        (
            NETDEV_VFS,
            CdiHook(path="/bin/sriov-dra", attach_socket="/run/a.sock", timeout_seconds=0),
            "containerEdits.hooks[].timeout: hook timeout 0 is not positive",
        ),
        (
            [CdiVf(device_name="0000-08-00-4", pci_address="0000:08:00.4", vfio_group="x")],
            None,
            "vf 0000-08-00-4: vfio_group: 'x' is not an IOMMU group",
        ),
    ],
    ids=["no-vfs", "duplicate-vf", "relative-hook", "zero-timeout", "bad-iommu-group"],
)
def test_build_refuses_bad_input(vfs: list[CdiVf], hook: CdiHook | None, message: str) -> None:
    with pytest.raises(InvalidCdiSpec) as err:
        build_claim_spec(UID, vfs, hook)
    assert err.value.describe().split("; fix: ")[0] == message


def test_spec_file_name_follows_the_cdi_transient_naming() -> None:
    assert spec_file_name(UID) == f"sriovnetwork.k8snetworkplumbingwg.io-vf_{UID}.json"
    with pytest.raises(InvalidCdiSpec, match=r"^claim.uid: claim UID 'a/b' cannot name"):
        spec_file_name("a/b")


def test_write_then_rewrite_then_remove(tmp_path: Path) -> None:
    cdi_dir = tmp_path / "cdi"
    first = build_claim_spec(UID, NETDEV_VFS[:1], HOOK)
    second = build_claim_spec(UID, NETDEV_VFS, HOOK)

    path = write_claim_spec(cdi_dir, UID, first)
    assert path == cdi_dir / spec_file_name(UID)
    assert json.loads(path.read_text()) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o644

    write_claim_spec(cdi_dir, UID, second)
    assert json.loads(path.read_text()) == second
    assert sorted(p.name for p in cdi_dir.iterdir()) == [path.name], "no temp files left"
    assert claim_uids_with_specs(cdi_dir) == [UID]

    assert remove_claim_spec(cdi_dir, UID) is True
    assert remove_claim_spec(cdi_dir, UID) is False
    assert list(cdi_dir.iterdir()) == []
    assert claim_uids_with_specs(cdi_dir) == []


def test_claim_uids_with_specs_ignores_other_files(tmp_path: Path) -> None:
    (tmp_path / "nvidia.com-gpu.json").write_text("{}")
    (tmp_path / f".sriovnetwork.k8snetworkplumbingwg.io-vf_{UID}.json.x.tmp").write_text("")
    write_claim_spec(tmp_path, "c-1", build_claim_spec("c-1", NETDEV_VFS[:1], None))
    assert claim_uids_with_specs(tmp_path) == ["c-1"]
    assert claim_uids_with_specs(tmp_path / "missing") == []


def test_add_vhost_mount_adds_vhost_net_and_tun_device_nodes() -> None:
    vfs = [
        CdiVf(device_name="0000-08-00-2", pci_address="0000:08:00.2", if_name="net1", vhost=True),
        CdiVf(device_name="0000-08-00-3", pci_address="0000:08:00.3", vfio_group="7", vhost=True),
        CdiVf(device_name="0000-08-00-4", pci_address="0000:08:00.4", if_name="net3"),
    ]
    netdev, vfio, plain = (d["containerEdits"] for d in build_claim_spec(UID, vfs, HOOK)["devices"])
    assert netdev["deviceNodes"] == [{"path": "/dev/vhost-net"}, {"path": "/dev/net/tun"}]
    assert vfio["deviceNodes"] == [
        {"path": "/dev/vfio/7"},
        {"path": "/dev/vfio/vfio"},
        {"path": "/dev/vhost-net"},
        {"path": "/dev/net/tun"},
    ]
    assert "deviceNodes" not in plain


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        (["vhost-net", "net/tun"], ""),
        (["net/tun"], "/dev/vhost-net"),
        ([], "/dev/vhost-net, /dev/net/tun"),
    ],
    ids=["both", "no-vhost-net", "none"],
)
def test_vhost_device_nodes_are_checked_on_the_node(
    present: list[str], missing: str, tmp_path: Path
) -> None:
    for name in present:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    if not missing:
        check_vhost_nodes(tmp_path, node="node-a")
        return
    with pytest.raises(DeviceNodeMissing) as info:
        check_vhost_nodes(tmp_path, node="node-a")
    assert str(info.value) == (
        f"VfConfig.addVhostMount: {missing} missing on node node-a; fix: load the vhost_net "
        "and tun kernel modules on node-a (modprobe vhost_net tun), or set addVhostMount: false"
    )
