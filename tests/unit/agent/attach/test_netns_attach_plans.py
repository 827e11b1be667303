"""Pure parts of attach: link step plans, CNI result/error parsing, VF records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import AttachError, DeviceBusy, IpamError
from sriov_dra_agent.attach.ipam import container_id, find_plugin, parse_error, parse_result
from sriov_dra_agent.attach.netns_attach import LinkView, Step, plan_back_to_host, plan_into_pod
from sriov_dra_agent.vf.records import Attachment, RecordStore, VfRecord
from sriov_dra_agent.vf.vf_settings import VfSettings

HOST = LinkView(index=9, name="ens1f0v1", mac="02:00:00:00:00:01", mtu=1500, up=False)

INTO_POD = [
    (
        HOST,
        None,
        "02:00:00:00:00:99",
        1400,
        [
            Step("move"),
            Step("rename", "net1"),
            Step("mac", "02:00:00:00:00:99"),
            Step("mtu", 1400),
            Step("up"),
        ],
    ),
    (
        LinkView(9, "ens1f0v1", "02:00:00:00:00:01", 1500, up=True),
        None,
        None,
        None,
        [Step("down"), Step("move"), Step("rename", "net1"), Step("up")],
    ),
    # Crashed after the move: finish from inside the pod.
    (
        None,
        LinkView(9, "ens1f0v1", "02:00:00:00:00:01", 1500, up=False),
        None,
        1500,
        [Step("rename", "net1"), Step("up")],
    ),
    (None, LinkView(9, "net1", "02:00:00:00:00:01", 1500, up=True), None, None, []),
    (
        None,
        LinkView(9, "net1", "02:00:00:00:00:01", 1500, up=False),
        "02:00:00:00:00:01",
        None,
        [Step("up")],
    ),
]


@pytest.mark.parametrize(
    ("in_host", "in_pod", "mac", "mtu", "want"),
    INTO_POD,
    ids=["fresh", "host-up", "after-move", "done", "down-in-pod"],
)
def test_plan_into_pod(
    in_host: LinkView | None,
    in_pod: LinkView | None,
    mac: str | None,
    mtu: int | None,
    want: list[Step],
) -> None:
    assert (
        plan_into_pod(in_host, in_pod, if_name="net1", mac=mac, mtu=mtu, name_taken=False) == want
    )


def test_plan_into_pod_refuses_a_taken_name() -> None:
    with pytest.raises(DeviceBusy, match=r"^ifName: interface name net1 is already used"):
        plan_into_pod(HOST, None, if_name="net1", mac=None, mtu=None, name_taken=True)


def test_plan_into_pod_needs_the_vf_somewhere() -> None:
    with pytest.raises(AttachError, match="neither in the host netns nor in the pod"):
        plan_into_pod(None, None, if_name="net1", mac=None, mtu=None, name_taken=False)


def test_plan_back_to_host_restores_name_mac_mtu_then_moves() -> None:
    in_pod = LinkView(4, "net1", "02:00:00:00:00:99", 1400, up=True)
    assert plan_back_to_host(
        in_pod, in_pod=True, host_name="ens1f0v1", host_mac="02:00:00:00:00:01", host_mtu=1500
    ) == [
        Step("down"),
        Step("rename", "ens1f0v1"),
        Step("mac", "02:00:00:00:00:01"),
        Step("mtu", 1500),
        Step("move"),
    ]
    assert (
        plan_back_to_host(
            HOST, in_pod=False, host_name="ens1f0v1", host_mac="02:00:00:00:00:01", host_mtu=1500
        )
        == []
    )


def test_parse_result_host_local_v1() -> None:
    out = json.dumps(
        {
            "cniVersion": "1.0.0",
            "ips": [{"address": "10.0.3.5/24", "gateway": "10.0.3.1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.50.0/24", "gw": "10.0.3.254"}],
            "dns": {},
        }
    )
    result = parse_result(out, plugin="host-local")
    assert [(ip.address, ip.gateway) for ip in result.ips] == [("10.0.3.5/24", "10.0.3.1")]
    assert [(r.dst, r.gw) for r in result.routes] == [
        ("0.0.0.0/0", None),
        ("192.168.50.0/24", "10.0.3.254"),
    ]


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ('{"cniVersion":"1.0.0","ips":[]}', "host-local returned no IP address"),
        ('{"ips":[{"address":"10.0.3.500/24"}]}', "host-local returned a bad address"),
        ("not json", "host-local returned an unreadable result"),
    ],
    ids=["no-ip", "bad-ip", "garbage"],
)
def test_parse_result_refuses_useless_results(out: str, message: str) -> None:
    with pytest.raises(IpamError, match=message):
        parse_result(out, plugin="host-local")


def test_parse_error_reads_the_cni_error_json_on_stdout() -> None:
    err = parse_error(
        '{"code":999,"msg":"failed to allocate for range 0: no IP addresses available in range '
        'set: 10.0.3.5-10.0.3.6"}',
        plugin="host-local",
        returncode=1,
        stderr="",
    )
    assert err.code == 999
    assert err.describe().endswith(
        "fix: widen the NAD's ipam range or release claims holding addresses"
    )
    env = parse_error(
        '{"code":4,"msg":"required env variables [CNI_NETNS] missing"}',
        plugin="host-local",
        returncode=1,
        stderr="",
    )
    assert (env.code, env.describe()) == (
        4,
        "spec.config.ipam (host-local): host-local: required env variables [CNI_NETNS] missing; "
        "fix: fix the NAD's ipam section",
    )
    crash = parse_error("", plugin="x", returncode=2, stderr="panic: boom\n")
    assert (crash.code, crash.message) == (0, "x exited 2: panic: boom")


def test_find_plugin_walks_cni_path(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    plugin = tmp_path / "b" / "host-local"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    assert find_plugin("host-local", f"{tmp_path / 'a'}:{tmp_path / 'b'}") == plugin


def test_container_id_ties_the_address_to_claim_and_request() -> None:
    assert container_id("6b1d-uid", "vf/first") == "6b1d-uid-vf-first"


def vf_record(**fields: Any) -> VfRecord:
    """A record of VF 0000:3b:02.1 held by claim ns/c, with ``fields`` on top."""
    base: dict[str, Any] = {
        "pci_address": "0000:3b:02.1",
        "pf_name": "ens1f0",
        "vf_index": 1,
        "claim": ClaimRef(uid="u", namespace="ns", name="c"),
        "request": "vf",
        "host_ifname": None,
        "original": VfSettings(),
    }
    return VfRecord(**(base | fields))


def test_records_round_trip_and_replace_atomically(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "vfs")
    assert store.all() == []
    record = vf_record(
        host_ifname="ens1f0v1",
        original=VfSettings(vlan=0, qos=0, proto="802.1q"),
        attachment=Attachment(
            phase="attaching",
            netns="/proc/1/ns/net",
            netns_id=(4, 4026531840),
            if_name="net1",
            container_id="u-vf",
            ipam_conf={"ipam": {"type": "host-local"}},
        ),
    )
    store.put(record)
    store.put(record)
    assert store.get("0000:3b:02.1") == record
    assert store.all() == [record]
    assert sorted(p.name for p in (tmp_path / "vfs").iterdir()) == ["0000:3b:02.1.json"]
    store.delete("0000:3b:02.1")
    store.delete("0000:3b:02.1")
    assert store.get("0000:3b:02.1") is None


@pytest.mark.parametrize(
    ("original", "bound", "held", "userspace"),
    [
        ("iavf", None, "iavf", False),
        ("vfio-pci", None, "vfio-pci", True),  # left on vfio-pci by an admin, driver ""
        ("iavf", "vfio-pci", "vfio-pci", True),
        ("vfio-pci", "default", "default", False),  # rebound to the kernel's driver
        (None, "igb_uio", "igb_uio", True),
        (None, None, None, False),
    ],
    ids=["kept-kernel", "kept-vfio", "bound-vfio", "default-from-vfio", "dpdk-uio", "unbound"],
)
def test_held_driver_and_userspace_follow_the_driver_we_bound_else_the_original(
    original: str | None, bound: str | None, held: str | None, userspace: bool
) -> None:
    record = vf_record(original_driver=original, driver=bound)
    assert (record.held_driver, record.userspace) == (held, userspace)
