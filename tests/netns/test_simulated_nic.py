"""The simulated SR-IOV NIC: real namespaces, bridges and veths, and discovery over its sysfs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from netns_helpers import Pod
from pyroute2 import netns
from sriov_dra_agent.vf import discovery
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_agent.vf.vf_settings import VfSettings

pytestmark = pytest.mark.netns


def _links(ns: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def test_discovery_over_the_simulated_sysfs(make_node: Callable[..., SimulatedNic]) -> None:
    nic = make_node("n1", (SimPf("simpf0", 8, 3), SimPf("simpf1", 4, 1)))
    inventory = discovery.discover("n1", nic.sysfs_root)
    assert [(pf.name, pf.pci_address, pf.total_vfs, pf.num_vfs) for pf in inventory.pfs] == [
        ("simpf0", "0000:3b:00.0", 8, 3),
        ("simpf1", "0000:3d:00.0", 4, 1),
    ]
    assert [
        (vf.pci_address, vf.vf_index, vf.netdev, vf.driver, vf.pcie_root) for vf in inventory.vfs()
    ] == [
        ("0000:3b:02.0", 0, "simpf0v0", "sriovsim-vf", "pci0000:3a"),
        ("0000:3b:02.1", 1, "simpf0v1", "sriovsim-vf", "pci0000:3a"),
        ("0000:3b:02.2", 2, "simpf0v2", "sriovsim-vf", "pci0000:3a"),
        ("0000:3d:02.0", 0, "simpf1v0", "sriovsim-vf", "pci0000:3c"),
    ]
    vf = inventory.vfs()[0]
    assert (vf.vendor, vf.device_id, vf.pf_device_id, vf.numa_node, vf.link_type) == (
        "8086",
        "1889",
        "1592",
        0,
        "ethernet",
    )
    assert all(vf.simulated for vf in inventory.vfs())
    # The host netns shows only PF and VF netdevs, as on a real node.
    assert _links(nic.host_ns) == sorted(
        ["lo", "simpf0", "simpf1", "simpf0v0", "simpf0v1", "simpf0v2", "simpf1v0"]
    )


def test_new_vfs_are_discovered_without_restart(make_node: Callable[..., SimulatedNic]) -> None:
    nic = make_node("n1", (SimPf("simpf0", 8, 2),))
    backend = SimulatedBackend(nic)
    assert len(backend.discover().vfs()) == 2
    nic.set_num_vfs("simpf0", 5)
    assert [vf.netdev for vf in backend.discover().vfs()] == [f"simpf0v{n}" for n in range(5)]
    assert "simpf0v4" in _links(nic.host_ns)
    nic.set_num_vfs("simpf0", 1)
    assert [vf.netdev for vf in backend.discover().vfs()] == ["simpf0v0"]
    assert "simpf0v4" not in _links(nic.host_ns)


def test_numvfs_beyond_total_is_refused(make_node: Callable[..., SimulatedNic]) -> None:
    nic = make_node("n1", (SimPf("simpf0", 4, 1),))
    with pytest.raises(ValueError, match=r"^sriov_numvfs of simpf0 must be 0..4, not 5$"):
        nic.set_num_vfs("simpf0", 5)


def test_build_is_idempotent_and_destroy_leaves_nothing(prefix: str, tmp_path: Path) -> None:
    nic = SimulatedNic("n1", prefix=prefix, root=tmp_path / "sim")
    nic.build((SimPf("simpf0", 4, 2),))
    nic.build((SimPf("simpf0", 4, 2),))
    assert sorted(ns for ns in netns.listnetns() if ns.startswith(prefix)) == [
        f"{prefix}-fabric",
        f"{prefix}-n1",
        f"{prefix}-n1-esw",
    ]
    assert _links(nic.esw_ns) == ["b0v0", "lo", "p0pf", "p0vf0", "p0vf1", "u0v0"]
    nic.destroy()
    assert [ns for ns in netns.listnetns() if ns.startswith(prefix)] == []
    assert not (tmp_path / "sim" / "n1").exists()


def test_fabric_outlives_the_first_node(make_node: Callable[..., SimulatedNic]) -> None:
    first = make_node("n1")
    make_node("n2")
    first.destroy()
    assert first.fabric_ns in netns.listnetns()
    assert len(_links(first.fabric_ns)) == 3  # lo, fv0 and n2's uplink


def test_vf_settings_in_simulation_are_applied_or_reported_unsupported(
    make_node: Callable[..., SimulatedNic],
) -> None:
    nic = make_node()
    backend = SimulatedBackend(nic)
    vf = backend.discover().vfs()[1]
    result = backend.apply_vf_settings(
        vf,
        VfSettings(
            mac="02:00:00:aa:bb:cc",
            vlan=100,
            qos=3,
            proto="802.1q",
            spoofchk=True,
            trust=True,
            link_state="disable",
            max_tx_rate=100,
        ),
    )
    assert result.applied == ("vlan", "proto", "mac", "link_state")
    assert sorted(result.unsupported) == ["max_tx_rate", "qos", "spoofchk", "trust"]
    assert nic.vf_vlan(vf.pci_address) == 100
    state = backend.read_vf_state(vf)
    assert (state.mac, state.vlan, state.link_state, state.trust) == (
        "02:00:00:aa:bb:cc",
        100,
        "disable",
        None,
    )
    show = subprocess.run(
        ["ip", "-n", nic.host_ns, "link", "show", "simpf0v1"], capture_output=True, text=True
    ).stdout
    assert "02:00:00:aa:bb:cc" in show
    port = subprocess.run(
        ["ip", "-n", nic.esw_ns, "link", "show", "p0vf1"], capture_output=True, text=True
    ).stdout
    assert "master b0v100" in port
    assert "state DOWN" in port


def test_vf_destroyed_with_its_pod_netns_is_recreated(
    make_node: Callable[..., SimulatedNic], make_pod: Callable[[], Pod]
) -> None:
    nic = make_node()
    backend = SimulatedBackend(nic)
    vf = backend.discover().vfs()[2]
    backend.apply_vf_settings(vf, VfSettings(vlan=7, mac="02:00:00:00:07:07"))
    pod = make_pod()
    subprocess.run(
        ["ip", "-n", nic.host_ns, "link", "set", "simpf0v2", "netns", str(pod.pid)], check=True
    )
    assert nic.ensure_vfs() == []  # still alive in the pod: never duplicated
    pod.kill()
    assert backend.host_netdev(vf) is None
    recreated: list[str] = []
    deadline = time.monotonic() + 5
    while not recreated and time.monotonic() < deadline:
        # The kernel tears a dead netns down asynchronously.
        recreated = backend.repair()
        time.sleep(0.02)
    assert recreated == ["simpf0v2"]
    assert backend.host_netdev(vf) == "simpf0v2"
    assert nic.vf_vlan(vf.pci_address) == 7
    assert backend.read_vf_state(vf).mac == "02:00:00:00:07:07"
