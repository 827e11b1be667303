"""Attach and detach VFs into pods' netns on the simulated NIC, with real host-local IPAM."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from netns_helpers import Pod, held_ips, netconf
from pyroute2 import IPRoute
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import DeviceBusy, IpamError, NetnsNotFound
from sriov_dra.nad import parse_nad_config
from sriov_dra_agent.attach import ipam, netns, netns_attach, pod_network
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimulatedNic
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.vf_settings import VfSettings, settings_from_netconf

pytestmark = pytest.mark.netns

CLAIM = ClaimRef(uid="uid-1", namespace="default", name="claim-a")
OTHER = ClaimRef(uid="uid-2", namespace="default", name="claim-b")
VF1 = "0000:3b:02.1"
VF2 = "0000:3b:02.2"


def _host_link(hw: VfLifecycle, name: str) -> str:
    ns = hw.backend.host_netns()
    assert ns is not None
    return subprocess.run(
        ["ip", "-n", Path(ns).name, "-o", "link", "show", name], capture_output=True, text=True
    ).stdout


def _assert_vf_home(hw: VfLifecycle, name: str, mac: str) -> None:
    """The VF is back in the host netns, down, with its own name, MAC and MTU."""
    line = _host_link(hw, name)
    assert line, f"{name} is not in the host netns"
    assert f"link/ether {mac}" in line
    assert "mtu 1500" in line
    assert ",UP" not in line and "<UP" not in line


def _original_mac(hw: VfLifecycle, pci: str) -> str:
    nic = hw.backend.nic  # type: ignore[attr-defined]
    return str(nic.tree.read_marker(pci)["mac"])


def test_attach_configures_the_vf_and_detach_restores_it(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    original_mac = _original_mac(lifecycle, VF1)
    result = lifecycle.program(VF1, CLAIM, "vf", settings_from_netconf(conf))
    assert result.applied == ("vlan", "qos", "proto")
    data = lifecycle.attach(
        VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf,
        mac="02:00:00:00:10:01", mtu=1400,
    )  # fmt: skip
    assert data.as_status() == {
        "interfaceName": "net1",
        "ips": ["10.9.0.5/24"],
        "hardwareAddress": "02:00:00:00:10:01",
    }
    assert pod.links() == ["lo", "net1"]
    link = pod.run("ip", "-o", "link", "show", "net1").stdout
    assert "mtu 1400" in link and "link/ether 02:00:00:00:10:01" in link and "UP" in link
    assert "inet 10.9.0.5/24" in pod.run("ip", "-o", "-4", "addr", "show", "net1").stdout
    assert "10.10.0.0/16 via 10.9.0.1 dev net1" in pod.run("ip", "route").stdout
    assert _host_link(lifecycle, "simpf0v1") == ""
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "uid-1-vf/net1"}
    # Re-running the attach changes nothing and answers the same.
    again = lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
    assert again == data
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "uid-1-vf/net1"}

    lifecycle.detach(VF1)
    lifecycle.detach(VF1)  # idempotent
    assert pod.links() == ["lo"]
    assert held_ips(tmp_path / "ipam") == {}
    _assert_vf_home(lifecycle, "simpf0v1", original_mac)
    # Detach keeps the claim's PF-side settings; release restores them.
    nic = lifecycle.backend.nic  # type: ignore[attr-defined]
    assert nic.vf_vlan(VF1) == 100
    lifecycle.release(VF1)
    assert nic.vf_vlan(VF1) == 0
    assert lifecycle.records_all() == []


def test_nad_mac_is_the_pods_mac_in_every_pod_and_the_host_gets_the_original_back(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    """As sriov-cni: the NAD's mac is both the PF-side admin MAC and net1's MAC."""
    nad_mac = "02:00:00:5e:00:42"
    conf = {**netconf(tmp_path / "ipam"), "mac": nad_mac.upper()}
    parsed = parse_nad_config(json.dumps(conf), nad="default/net-a")
    original_mac = _original_mac(lifecycle, VF1)
    assert original_mac != nad_mac
    lifecycle.program(VF1, CLAIM, "vf", settings_from_netconf(parsed.raw))
    nic = lifecycle.backend.nic  # type: ignore[attr-defined]
    assert nic.tree.read_marker(VF1)["admin_mac"] == nad_mac
    # The second pod gets the VF after detach put the original MAC back on the netdev.
    for _ in range(2):
        pod = make_pod()
        data = lifecycle.attach(
            VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf, mac=parsed.mac
        )
        assert data.hardware_address == nad_mac
        assert f"link/ether {nad_mac}" in pod.run("ip", "-o", "link", "show", "net1").stdout
        lifecycle.detach(VF1)
        _assert_vf_home(lifecycle, "simpf0v1", original_mac)
    lifecycle.release(VF1)
    _assert_vf_home(lifecycle, "simpf0v1", original_mac)


def test_two_vfs_of_one_claim_get_distinct_names(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    a = lifecycle.attach(VF1, CLAIM, "a", netns=pod.netns, if_name="net1", netconf=conf)
    b = lifecycle.attach(VF2, CLAIM, "b", netns=pod.netns, if_name="net2", netconf=conf)
    assert (a.interface_name, a.ips, b.interface_name, b.ips) == (
        "net1",
        ("10.9.0.5/24",),
        "net2",
        ("10.9.0.6/24",),
    )
    assert pod.links() == ["lo", "net1", "net2"]
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "uid-1-a/net1", "10.9.0.6": "uid-1-b/net2"}
    for pci in (VF1, VF2):
        lifecycle.release(pci)
    assert pod.links() == ["lo"]
    assert held_ips(tmp_path / "ipam") == {}


def _ping(src: Pod, dst: str) -> bool:
    done = src.run("ping", "-c", "2", "-i", "0.2", "-W", "1", dst, check=False)
    return bool(done.returncode == 0)


def test_same_vlan_reaches_across_nodes_and_other_vlans_do_not(
    make_node: Callable[..., SimulatedNic],
    make_lifecycle: Callable[..., VfLifecycle],
    make_pod: Callable[[], Pod],
    tmp_path: Path,
) -> None:
    n1 = make_lifecycle(SimulatedBackend(make_node("n1")), tmp_path / "s1")
    n2 = make_lifecycle(SimulatedBackend(make_node("n2")), tmp_path / "s2")
    vlan100_n1 = netconf(tmp_path / "ipam-n1", start="10.9.0.10", end="10.9.0.19")
    vlan100_n2 = netconf(tmp_path / "ipam-n2", start="10.9.0.20", end="10.9.0.29")
    vlan200_n2 = {**netconf(tmp_path / "ipam-n2b", start="10.9.0.30", end="10.9.0.39"), "vlan": 200}
    pods = {name: make_pod() for name in ("a", "b", "c")}
    plan: list[tuple[VfLifecycle, str, dict[str, Any], Pod]] = [
        (n1, VF1, vlan100_n1, pods["a"]),
        (n2, VF1, vlan100_n2, pods["b"]),
        (n2, VF2, vlan200_n2, pods["c"]),
    ]
    ips = []
    for index, (hw, pci, conf, pod) in enumerate(plan):
        claim = ClaimRef(uid=f"uid-{index}", namespace="default", name=f"c{index}")
        hw.program(pci, claim, "vf", settings_from_netconf(conf))
        ips.append(
            hw.attach(pci, claim, "vf", netns=pod.netns, if_name="net1", netconf=conf).ips[0]
        )
    assert ips == ["10.9.0.10/24", "10.9.0.20/24", "10.9.0.30/24"]
    assert _ping(pods["a"], "10.9.0.20")
    assert not _ping(pods["a"], "10.9.0.30")
    assert not _ping(pods["b"], "10.9.0.30")
    for hw, pci, _, _ in plan:
        hw.release(pci)


def test_detach_after_the_pod_netns_died_recreates_the_vf(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    original_mac = _original_mac(lifecycle, VF1)
    lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf, mtu=1400)
    pod.kill()
    lifecycle.detach(VF1)
    _assert_vf_home(lifecycle, "simpf0v1", original_mac)
    assert held_ips(tmp_path / "ipam") == {}
    record = lifecycle.record(VF1)
    assert record is not None and record.attachment is None


def test_ipam_exhausted_leaves_the_vf_home_and_no_address(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam", start="10.9.0.5", end="10.9.0.5")
    ipam.ipam_add(conf, container="someone-else", ifname="net1", netns="/dev/null")
    with pytest.raises(IpamError, match="no IP addresses available in range set"):
        lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
    assert pod.links() == ["lo"]
    _assert_vf_home(lifecycle, "simpf0v1", _original_mac(lifecycle, VF1))
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "someone-else/net1"}
    record = lifecycle.record(VF1)
    assert record is not None and record.attachment is None


def test_missing_netns_is_a_typed_error_and_touches_nothing(
    lifecycle: VfLifecycle, tmp_path: Path
) -> None:
    with pytest.raises(NetnsNotFound) as info:
        lifecycle.attach(VF1, CLAIM, "vf", netns="/proc/999999999/ns/net", if_name="net1")
    assert info.value.describe() == (
        "netns: network namespace /proc/999999999/ns/net does not exist; "
        "fix: the pod's sandbox is gone; the runtime will retry with a new one"
    )
    assert "simpf0v1" in _host_link(lifecycle, "simpf0v1")


def test_interface_name_taken_in_the_pod_fails_and_returns_the_vf(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    pod = make_pod()
    pod.run("ip", "link", "add", "net1", "type", "veth", "peer", "name", "other")
    conf = netconf(tmp_path / "ipam")
    with pytest.raises(DeviceBusy) as info:
        lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
    assert info.value.describe() == (
        "ifName: interface name net1 is already used in the pod; "
        "fix: give each VF of the pod a distinct ifName in the VfConfig"
    )
    assert pod.links() == ["lo", "net1", "other"]
    assert held_ips(tmp_path / "ipam") == {}
    _assert_vf_home(lifecycle, "simpf0v1", _original_mac(lifecycle, VF1))


def test_vf_held_by_another_claim_is_busy(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod]
) -> None:
    lifecycle.program(VF1, CLAIM, "vf", VfSettings(vlan=5))
    with pytest.raises(DeviceBusy) as info:
        lifecycle.attach(VF1, OTHER, "vf", netns=make_pod().netns, if_name="net1")
    assert info.value.describe() == (
        "device: VF 0000:3b:02.1 is held by claim default/claim-a (uid uid-1); "
        "fix: release claim default/claim-a first, or wait for the agent to release it"
    )


def test_a_claims_vf_serves_one_live_pod_at_a_time(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod]
) -> None:
    first, second = make_pod(), make_pod()
    lifecycle.attach(VF1, CLAIM, "vf", netns=first.netns, if_name="net1")
    with pytest.raises(DeviceBusy, match="is attached to another pod netns"):
        lifecycle.attach(VF1, CLAIM, "vf", netns=second.netns, if_name="net1")
    first.kill()
    # The first pod is gone: the next pod gets the same VF.
    data = lifecycle.attach(VF1, CLAIM, "vf", netns=second.netns, if_name="net1")
    assert data.interface_name == "net1"
    assert second.links() == ["lo", "net1"]
    lifecycle.release(VF1)


class Crash(BaseException):
    """Stands in for the agent being killed: no except-Exception handler sees it."""


def _crash_after(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> None:
    real = getattr(module, name)

    def crashing(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise Crash(name)

    monkeypatch.setattr(module, name, crashing)


ATTACH_STEPS = [
    (netns_attach, "move_into_pod"),
    (ipam.PendingAdd, "result"),
    (netns_attach, "configure_addresses"),
]


@pytest.mark.parametrize(("module", "step"), ATTACH_STEPS, ids=[step for _, step in ATTACH_STEPS])
@pytest.mark.parametrize("recovery", ["sweep", "rerun"])
def test_crash_during_attach_leaks_nothing(
    lifecycle: VfLifecycle,
    make_lifecycle: Callable[..., VfLifecycle],
    make_pod: Callable[[], Pod],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    step: str,
    recovery: str,
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    lifecycle.program(VF1, CLAIM, "vf", settings_from_netconf(conf))
    with monkeypatch.context() as patch:
        _crash_after(patch, module, step)
        with pytest.raises(Crash):
            lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
    restarted = make_lifecycle(lifecycle.backend, tmp_path / "state-n1")
    if recovery == "rerun":
        data = restarted.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
        assert pod.links() == ["lo", "net1"]
        assert list(held_ips(tmp_path / "ipam").values()) == ["uid-1-vf/net1"]
        assert data.ips == (f"{next(iter(held_ips(tmp_path / 'ipam')))}/24",)
        restarted.detach(VF1)
    else:
        report = restarted.sweep({(CLAIM.uid, VF1)})
        assert report.detached == (VF1,) and report.failed == {}
    assert pod.links() == ["lo"]
    assert held_ips(tmp_path / "ipam") == {}
    _assert_vf_home(restarted, "simpf0v1", _original_mac(restarted, VF1))
    record = restarted.record(VF1)
    assert record is not None and record.attachment is None


DETACH_STEPS = [(ipam.PendingDel, "done"), (netns_attach, "move_to_host")]


@pytest.mark.parametrize(("module", "step"), DETACH_STEPS, ids=[s for _, s in DETACH_STEPS])
def test_crash_during_detach_or_release_is_finished_by_the_sweep(
    lifecycle: VfLifecycle,
    make_lifecycle: Callable[..., VfLifecycle],
    make_pod: Callable[[], Pod],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    step: str,
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    lifecycle.program(VF1, CLAIM, "vf", settings_from_netconf(conf))
    lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
    with monkeypatch.context() as patch:
        _crash_after(patch, module, step)
        with pytest.raises(Crash):
            lifecycle.release(VF1)
    restarted = make_lifecycle(lifecycle.backend, tmp_path / "state-n1")
    report = restarted.sweep(set())  # the claim is no longer prepared
    assert report.released == (VF1,) and report.failed == {}
    assert pod.links() == ["lo"]
    assert held_ips(tmp_path / "ipam") == {}
    _assert_vf_home(restarted, "simpf0v1", _original_mac(restarted, VF1))
    assert lifecycle.backend.nic.vf_vlan(VF1) == 0  # type: ignore[attr-defined]
    assert restarted.records_all() == []


def test_sweep_keeps_healthy_attachments_and_detaches_dead_pods(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    alive, dead = make_pod(), make_pod()
    conf = netconf(tmp_path / "ipam")
    lifecycle.attach(VF1, CLAIM, "a", netns=alive.netns, if_name="net1", netconf=conf)
    lifecycle.attach(VF2, OTHER, "a", netns=dead.netns, if_name="net1", netconf=conf)
    dead.kill()
    report = lifecycle.sweep({(CLAIM.uid, VF1), (OTHER.uid, VF2)})
    assert (report.detached, report.released, report.failed) == ((VF2,), (), {})
    assert alive.links() == ["lo", "net1"]
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "uid-1-a/net1"}
    assert "simpf0v2" in _host_link(lifecycle, "simpf0v2")
    lifecycle.release(VF1)
    lifecycle.release(VF2)


def _count_sockets(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Record the netns of every socket the attach code opens in another netns from now on."""
    opened: list[str | None] = []
    real = netns.netns_socket

    def counting(path: str) -> IPRoute:
        opened.append(path)
        return real(path)

    monkeypatch.setattr(netns, "netns_socket", counting)
    monkeypatch.setattr(pod_network, "netns_socket", counting)
    return opened


def test_attach_and_detach_open_one_pod_socket_each_and_reuse_the_host_socket(
    lifecycle: VfLifecycle,
    make_pod: Callable[[], Pod],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    lifecycle.program(VF1, CLAIM, "vf", settings_from_netconf(conf))  # opens the host socket
    opened = _count_sockets(monkeypatch)
    for _ in range(3):
        data = lifecycle.attach(
            VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf, mtu=1400
        )
        assert len(data.ips) == 1 and data.ips[0].startswith("10.9.0.")
        lifecycle.detach(VF1)
    # One pod socket per attach and one per detach, nothing more.
    assert opened == [pod.netns] * 6
    _assert_vf_home(lifecycle, "simpf0v1", _original_mac(lifecycle, VF1))


def test_threads_attaching_at_once_each_keep_their_own_host_socket(
    lifecycle: VfLifecycle,
    make_pod: Callable[[], Pod],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conf = netconf(tmp_path / "ipam")
    pods = {VF1: make_pod(), VF2: make_pod()}
    claims = {VF1: CLAIM, VF2: OTHER}
    opened = _count_sockets(monkeypatch)

    def cycles(pci: str) -> list[str]:
        names = []
        for _ in range(4):
            data = lifecycle.attach(
                pci, claims[pci], "vf", netns=pods[pci].netns, if_name="net1", netconf=conf
            )
            names.append(data.interface_name)
            lifecycle.detach(pci)
        return names

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(cycles, [VF1, VF2]))
    assert results == [["net1"] * 4] * 2
    host = lifecycle.backend.host_netns()
    # At most one host socket per thread, however many cycles.
    assert 1 <= opened.count(host) <= 2
    in_pods = Counter(n for n in opened if n != host)
    assert in_pods == {pods[VF1].netns: 8, pods[VF2].netns: 8}
    assert held_ips(tmp_path / "ipam") == {}
    lifecycle.release(VF1)
    lifecycle.release(VF2)
