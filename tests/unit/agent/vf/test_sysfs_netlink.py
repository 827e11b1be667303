"""The real backend without hardware: netlink messages encoded and decoded, driver binding
writes, and discovery over a fake sysfs tree laid out (with symlinks) like a real NIC's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from sriov_dra.errors import VfProgrammingError
from sriov_dra_agent.vf.backends.base import KERNEL_DEFAULT
from sriov_dra_agent.vf.backends.sysfs_netlink import (
    SysfsNetlinkBackend,
    driver_binding_writes,
    driver_restore_writes,
    encode_vf_request,
    parse_vf_state,
    vf_requests,
)
from sriov_dra_agent.vf.discovery import discover
from sriov_dra_agent.vf.vf_settings import VfSettings


def _decode(data: bytes) -> list[tuple[str, Any]]:
    msg = ifinfmsg(data)
    msg.decode()
    assert msg["index"] == 7
    (info,) = msg.get("IFLA_VFINFO_LIST").get_attrs("IFLA_VF_INFO")
    out = []
    for name, value in info["attrs"]:
        if name == "IFLA_VF_VLAN_LIST":
            value = [dict(v) for v in value.get_attrs("IFLA_VF_VLAN_INFO")]
        else:
            value = {k: v for k, v in dict(value).items() if k != "header"}
        out.append((name, value))
    return out


ENCODINGS = [
    (
        VfSettings(vlan=100, qos=2, proto="802.1q"),
        [("IFLA_VF_VLAN", {"vf": 3, "vlan": 100, "qos": 2})],
    ),
    (
        VfSettings(vlan=100, qos=0, proto="802.1ad"),
        [("IFLA_VF_VLAN_LIST", [{"vf": 3, "vlan": 100, "qos": 0, "proto": 0x88A8}])],
    ),
    (VfSettings(mac="02:11:22:33:44:55"), [("IFLA_VF_MAC", {"vf": 3, "mac": "02:11:22:33:44:55"})]),
    (
        VfSettings(min_tx_rate=0, max_tx_rate=1000),
        [("IFLA_VF_RATE", {"vf": 3, "min_tx_rate": 0, "max_tx_rate": 1000})],
    ),
    (VfSettings(spoofchk=False), [("IFLA_VF_SPOOFCHK", {"vf": 3, "spoofchk": 0})]),
    (VfSettings(trust=True), [("IFLA_VF_TRUST", {"vf": 3, "trust": 1})]),
    (VfSettings(link_state="disable"), [("IFLA_VF_LINK_STATE", {"vf": 3, "link_state": 2})]),
]


@pytest.mark.parametrize(
    ("changes", "want"), ENCODINGS, ids=["vlan", "qinq", "mac", "rate", "spoof", "trust", "link"]
)
def test_each_setting_encodes_to_its_kernel_attribute(
    changes: VfSettings, want: list[tuple[str, Any]]
) -> None:
    ((_, spec),) = vf_requests(3, changes)
    decoded = _decode(encode_vf_request(7, spec))
    assert [(name, value) for name, value in decoded] == [
        (name, {k: v for k, v in value.items()} if isinstance(value, dict) else value)
        for name, value in want
    ]
    assert spec != {}, "encoding must not consume the caller's spec (pyroute2 pops keys)"


def test_one_message_per_attribute_in_apply_order() -> None:
    changes = VfSettings(
        mac="02:11:22:33:44:55", vlan=5, qos=0, proto="802.1q", trust=False, link_state="auto"
    )
    assert [names for names, _ in vf_requests(0, changes)] == [
        ("vlan", "qos", "proto"),
        ("mac",),
        ("trust",),
        ("link_state",),
    ]


def _kernel_reply(vfs: list[dict[str, Any]]) -> Any:
    """Encode a link reply with IFLA_VFINFO_LIST, as the kernel sends it, then decode it."""
    msg = ifinfmsg()
    msg["index"] = 7
    infos = []
    for vf in vfs:
        n = vf["vf"]
        infos.append(
            (
                "IFLA_VF_INFO",
                {
                    "attrs": [
                        ("IFLA_VF_MAC", {"vf": n, "mac": vf["mac"]}),
                        ("IFLA_VF_VLAN", {"vf": n, "vlan": vf["vlan"], "qos": vf["qos"]}),
                        ("IFLA_VF_RATE", {"vf": n, "min_tx_rate": 0, "max_tx_rate": 500}),
                        ("IFLA_VF_SPOOFCHK", {"vf": n, "spoofchk": 1}),
                        ("IFLA_VF_LINK_STATE", {"vf": n, "link_state": 2}),
                        ("IFLA_VF_TRUST", {"vf": n, "trust": 0}),
                        (
                            "IFLA_VF_VLAN_LIST",
                            {
                                "attrs": [
                                    (
                                        "IFLA_VF_VLAN_INFO",
                                        {
                                            "vf": n,
                                            "vlan": vf["vlan"],
                                            "qos": vf["qos"],
                                            "proto": vf["proto"],
                                        },
                                    )
                                ]
                            },
                        ),
                    ]
                },
            )
        )
    msg["attrs"] = [("IFLA_IFNAME", "ens1f0"), ("IFLA_VFINFO_LIST", {"attrs": infos})]
    msg.encode()
    decoded = ifinfmsg(bytes(msg.data[: msg["header"]["length"]]))
    decoded.decode()
    return decoded


def test_vf_state_is_read_from_the_pf_reply() -> None:
    reply = _kernel_reply(
        [
            {"vf": 0, "mac": "02:00:00:00:00:00", "vlan": 0, "qos": 0, "proto": 0x8100},
            {"vf": 1, "mac": "02:AB:00:00:00:01", "vlan": 100, "qos": 3, "proto": 0x88A8},
        ]
    )
    assert parse_vf_state(reply, 1) == VfSettings(
        mac="02:ab:00:00:00:01",
        vlan=100,
        qos=3,
        proto="802.1ad",
        spoofchk=True,
        trust=False,
        link_state="disable",
        min_tx_rate=0,
        max_tx_rate=500,
    )


def test_missing_vf_in_reply_is_a_typed_error() -> None:
    reply = _kernel_reply([{"vf": 0, "mac": "02:00:00:00:00:00", "vlan": 0, "qos": 0, "proto": 0}])
    with pytest.raises(VfProgrammingError) as info:
        parse_vf_state(reply, 4)
    assert info.value.describe() == (
        "sriov_numvfs: the PF reports no VF 4; "
        "fix: check that the VF still exists (sriov_numvfs) and rediscover"
    )


PCI = "0000:3b:02.0"
OVERRIDE = f"bus/pci/devices/{PCI}/driver_override"
UNBIND = f"bus/pci/devices/{PCI}/driver/unbind"
PROBE = "bus/pci/drivers_probe"

BINDINGS = [
    ("iavf", "iavf", []),
    (
        "iavf",
        "vfio-pci",
        [
            ("bus/pci/devices/0000:3b:02.0/driver_override", "vfio-pci"),
            ("bus/pci/devices/0000:3b:02.0/driver/unbind", "0000:3b:02.0"),
            ("bus/pci/drivers_probe", "0000:3b:02.0"),
        ],
    ),
    (
        None,
        "iavf",
        [
            ("bus/pci/devices/0000:3b:02.0/driver_override", "iavf"),
            ("bus/pci/drivers_probe", "0000:3b:02.0"),
        ],
    ),
    # "default": unset the override, so the probe takes the kernel's own match.
    (
        "vfio-pci",
        KERNEL_DEFAULT,
        [(OVERRIDE, "\n"), (UNBIND, PCI), (PROBE, PCI)],
    ),
    (None, KERNEL_DEFAULT, [(OVERRIDE, "\n"), (PROBE, PCI)]),
    # Whether a kernel driver needs rebinding is the caller's call; asked, it rebinds.
    ("iavf", KERNEL_DEFAULT, [(OVERRIDE, "\n"), (UNBIND, PCI), (PROBE, PCI)]),
]


@pytest.mark.parametrize(
    ("current", "target", "want"),
    BINDINGS,
    ids=["already", "to-vfio", "unbound", "default-from-vfio", "default-unbound", "default-again"],
)
def test_driver_binding_writes(
    current: str | None, target: str, want: list[tuple[str, str]]
) -> None:
    assert driver_binding_writes(PCI, current, target) == want


# (current driver, current override, original driver, original override) -> writes
RESTORES = [
    (
        ("vfio-pci", "vfio-pci", "iavf", None),
        [(OVERRIDE, "iavf"), (UNBIND, PCI), (PROBE, PCI), (OVERRIDE, "\n")],
    ),
    # Found pinned to vfio-pci by its override: pinned again, nothing to unset.
    (
        ("iavf", None, "vfio-pci", "vfio-pci"),
        [(OVERRIDE, "vfio-pci"), (UNBIND, PCI), (PROBE, PCI)],
    ),
    # Found on vfio-pci by device ID (new_id), override unset: unset again.
    (
        ("iavf", None, "vfio-pci", None),
        [(OVERRIDE, "vfio-pci"), (UNBIND, PCI), (PROBE, PCI), (OVERRIDE, "\n")],
    ),
    (("iavf", None, None, None), [(UNBIND, PCI)]),
    (("iavf", None, None, "iavf"), [(UNBIND, PCI), (OVERRIDE, "iavf")]),
    # A crash after the rebind but before the override was unset.
    (("iavf", "iavf", "iavf", None), [(OVERRIDE, "\n")]),
    (("iavf", None, "iavf", None), []),
    ((None, None, None, None), []),
]


@pytest.mark.parametrize(
    ("state", "want"),
    RESTORES,
    ids=[
        "vfio-back-to-iavf",
        "back-to-pinned-vfio",
        "back-to-vfio-by-id",
        "back-to-unbound",
        "back-to-unbound-pinned",
        "override-left-over",
        "restored",
        "unbound-restored",
    ],
)
def test_driver_restore_writes(
    state: tuple[str | None, str | None, str | None, str | None], want: list[tuple[str, str]]
) -> None:
    current, current_override, original, original_override = state
    got = driver_restore_writes(
        PCI,
        current=current,
        current_override=current_override,
        original=original,
        original_override=original_override,
    )
    assert got == want


def _fake_sysfs(root: Path, *, num_vfs: int) -> None:
    """A real-looking tree: /sys/devices/pci0000:3a/0000:3a:00.0/<pci>, bus symlinks,
    driver symlinks into /sys/bus/pci/drivers, virtfnN/physfn, net/<ifname>/type."""
    parent = root / "devices/pci0000:3a/0000:3a:00.0"
    bus = root / "bus/pci/devices"
    bus.mkdir(parents=True)
    for name in ("ice", "iavf"):
        (root / "bus/pci/drivers" / name).mkdir(parents=True)
        (root / "bus/pci/drivers" / name / "unbind").write_text("")
    (root / "bus/pci/drivers_probe").write_text("")

    def device(pci: str, dev_id: str, driver: str, netdev: str) -> Path:
        path = parent / pci
        (path / "net" / netdev).mkdir(parents=True)
        (path / "net" / netdev / "type").write_text("1\n")
        (path / "vendor").write_text("0x8086\n")
        (path / "device").write_text(f"0x{dev_id}\n")
        (path / "numa_node").write_text("1\n")
        (path / "driver_override").write_text("(null)\n")
        os.symlink(os.path.relpath(root / "bus/pci/drivers" / driver, path), path / "driver")
        os.symlink(os.path.relpath(path, bus), bus / pci)
        return path

    pf = device("0000:3b:00.0", "1592", "ice", "ens1f0")
    (pf / "sriov_totalvfs").write_text("64\n")
    (pf / "sriov_numvfs").write_text(f"{num_vfs}\n")
    device("0000:3a:00.0", "2030", "iavf", "notsriov")  # a plain PCI device with a netdev
    for n in range(num_vfs):
        pci = f"0000:3b:{0x02 + n // 8:02x}.{n % 8}"
        vf = device(pci, "1889", "iavf", f"ens1f0v{n}")
        os.symlink("../0000:3b:00.0", vf / "physfn")
        os.symlink(f"../{pci}", pf / f"virtfn{n}")


def test_discovery_over_a_real_nic_layout(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=10)
    inventory = discover("node-a", tmp_path)
    (pf,) = inventory.pfs
    assert (pf.name, pf.pci_address, pf.vendor, pf.device_id, pf.total_vfs, pf.num_vfs) == (
        "ens1f0",
        "0000:3b:00.0",
        "8086",
        "1592",
        64,
        10,
    )
    assert (pf.numa_node, pf.link_type) == (1, "ethernet")
    # virtfn10 sorts numerically after virtfn9, not after virtfn1.
    assert [vf.vf_index for vf in pf.vfs] == list(range(10))
    assert pf.vfs[9].pci_address == "0000:3b:03.1"
    vf = pf.vfs[0]
    assert vf.model_dump() == {
        "pci_address": "0000:3b:02.0",
        "vf_index": 0,
        "pf_name": "ens1f0",
        "pf_pci_address": "0000:3b:00.0",
        "vendor": "8086",
        "device_id": "1889",
        "pf_device_id": "1592",
        "driver": "iavf",
        "netdev": "ens1f0v0",
        "numa_node": 1,
        "link_type": "ethernet",
        "eswitch_mode": "legacy",
        "rdma_capable": False,
        "pcie_root": "pci0000:3a",
        "simulated": False,
    }


def test_discovery_without_pci_tree_is_empty(tmp_path: Path) -> None:
    assert discover("node-a", tmp_path).pfs == ()


def test_vf_bound_to_vfio_has_no_netdev(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=2)
    vf_dir = tmp_path / "devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1"
    (vf_dir / "net/ens1f0v1/type").unlink()
    (vf_dir / "net/ens1f0v1").rmdir()
    (tmp_path / "bus/pci/drivers/vfio-pci").mkdir()
    (vf_dir / "driver").unlink()
    os.symlink("../../../../bus/pci/drivers/vfio-pci", vf_dir / "driver")
    vf = discover("node-a", tmp_path).vfs()[1]
    assert (vf.driver, vf.netdev) == ("vfio-pci", None)


def test_bind_driver_writes_override_unbind_probe_and_checks_the_result(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=1)
    backend = SysfsNetlinkBackend(node="node-a", sysfs_root=tmp_path)
    vf = backend.discover().vfs()[0]
    backend.bind_driver(vf, "iavf")  # already bound: writes nothing
    assert (tmp_path / "bus/pci/drivers_probe").read_text() == ""
    # Nothing in a plain directory tree rebinds the device, which is exactly the
    # failure a missing vfio-pci module gives on a real node.
    with pytest.raises(VfProgrammingError) as info:
        backend.bind_driver(vf, "vfio-pci")
    assert info.value.describe() == (
        "driver: VF 0000:3b:02.0 is bound to 'iavf', not 'vfio-pci', after drivers_probe; "
        "fix: load 'vfio-pci' and check dmesg for its probe error"
    )
    dev = tmp_path / "bus/pci/devices/0000:3b:02.0"
    assert (dev / "driver_override").read_text() == "vfio-pci"
    assert (tmp_path / "bus/pci/drivers/iavf/unbind").read_text() == "0000:3b:02.0"
    assert (tmp_path / "bus/pci/drivers_probe").read_text() == "0000:3b:02.0"


def _rebind_in_tree(root: Path, pci: str, driver: str | None) -> None:
    """What an admin's bind (or unbind) would leave in the fake tree."""
    link = root / "bus/pci/devices" / pci / "driver"
    link.unlink()
    if driver is not None:
        (root / "bus/pci/drivers" / driver).mkdir(exist_ok=True)
        (root / "bus/pci/drivers" / driver / "unbind").write_text("")
        os.symlink(os.path.relpath(root / "bus/pci/drivers" / driver, link.resolve().parent), link)


def test_driver_override_reads_unset_as_none(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=1)
    backend = SysfsNetlinkBackend(node="node-a", sysfs_root=tmp_path)
    vf = backend.discover().vfs()[0]
    assert backend.driver_override(vf) is None  # "(null)"
    (tmp_path / "bus/pci/devices" / PCI / "driver_override").write_text("vfio-pci\n")
    assert backend.driver_override(vf) == "vfio-pci"
    (tmp_path / "bus/pci/devices" / PCI / "driver_override").unlink()
    assert backend.driver_override(vf) is None


def test_bind_default_unsets_the_override_and_refuses_a_userspace_driver(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=1)
    _rebind_in_tree(tmp_path, PCI, "vfio-pci")
    backend = SysfsNetlinkBackend(node="node-a", sysfs_root=tmp_path)
    vf = backend.discover().vfs()[0]
    (tmp_path / OVERRIDE).write_text("vfio-pci\n")
    # Nothing rebinds in a plain tree: the VF stays on vfio-pci, as when vfio-pci
    # claims the VF's device ID on a real node.
    with pytest.raises(VfProgrammingError) as info:
        backend.bind_driver(vf, KERNEL_DEFAULT)
    assert info.value.describe() == (
        "driver: VF 0000:3b:02.0 is bound to userspace driver 'vfio-pci' after drivers_probe "
        "with driver_override unset; fix: remove the VF's ID from vfio-pci "
        "(echo '8086 1889' > /sys/bus/pci/drivers/vfio-pci/remove_id) and load the VF's "
        "kernel driver (e.g. iavf, mlx5_core) and check dmesg"
    )
    assert (tmp_path / OVERRIDE).read_text() == "\n"
    assert (tmp_path / "bus/pci/drivers/vfio-pci/unbind").read_text() == PCI
    assert (tmp_path / PROBE).read_text() == PCI


def test_bind_default_without_a_kernel_driver_is_an_error(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=1)
    _rebind_in_tree(tmp_path, PCI, None)
    backend = SysfsNetlinkBackend(node="node-a", sysfs_root=tmp_path)
    vf = backend.discover().vfs()[0]
    with pytest.raises(VfProgrammingError) as info:
        backend.bind_driver(vf, KERNEL_DEFAULT)
    assert info.value.describe() == (
        "driver: VF 0000:3b:02.0 has no driver after drivers_probe with driver_override "
        "unset; fix: load the VF's kernel driver (e.g. iavf, mlx5_core) and check dmesg"
    )
    assert (tmp_path / OVERRIDE).read_text() == "\n"
    assert (tmp_path / PROBE).read_text() == PCI


def test_restore_unsets_a_left_over_override_and_checks_the_driver(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=1)
    backend = SysfsNetlinkBackend(node="node-a", sysfs_root=tmp_path)
    vf = backend.discover().vfs()[0]
    (tmp_path / OVERRIDE).write_text("iavf\n")
    backend.restore_driver(vf, "iavf", None)  # bound as found: only the override goes
    assert (tmp_path / OVERRIDE).read_text() == "\n"
    assert (tmp_path / PROBE).read_text() == ""
    with pytest.raises(VfProgrammingError) as info:
        backend.restore_driver(vf, "vfio-pci", None)
    assert info.value.describe() == (
        "driver: VF 0000:3b:02.0 is bound to 'iavf', not its original driver 'vfio-pci', "
        "after restoring it; fix: load 'vfio-pci' and check dmesg for its probe error"
    )
    # Every write was made (the override unset last); only the check failed, and a
    # retry (the sweep's) makes them again since the VF is not on vfio-pci.
    assert (tmp_path / "bus/pci/drivers/iavf/unbind").read_text() == PCI
    assert (tmp_path / PROBE).read_text() == PCI
    assert (tmp_path / OVERRIDE).read_text() == "\n"


def test_host_netdev_comes_from_the_pci_device(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=2)
    backend = SysfsNetlinkBackend(node="node-a", sysfs_root=tmp_path)
    vfs = backend.discover().vfs()
    assert [backend.host_netdev(vf) for vf in vfs] == ["ens1f0v0", "ens1f0v1"]
    assert backend.repair() == []
    assert backend.host_netns() is None


def test_a_vf_with_an_rdma_device_is_rdma_capable(tmp_path: Path) -> None:
    _fake_sysfs(tmp_path, num_vfs=2)
    vf_dir = tmp_path / "devices/pci0000:3a/0000:3a:00.0/0000:3b:02.0"
    (vf_dir / "infiniband/mlx5_2").mkdir(parents=True)
    (tmp_path / "devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1/infiniband").mkdir()
    assert [vf.rdma_capable for vf in discover("node-a", tmp_path).vfs()] == [True, False]
