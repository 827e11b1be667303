"""Sockets made inside a pod's netns without a fork, and when the IPAM plugin runs.

A netns-free IPAM plugin (host-local) runs while the VF moves; any other (dhcp
looks at the interface in the pod) runs only while the VF is in the pod.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from netns_helpers import Pod, netconf
from sriov_dra.claim_ref import ClaimRef
from sriov_dra.errors import NetnsNotFound
from sriov_dra_agent.attach import ipam, netns_attach
from sriov_dra_agent.attach.netns import netns_socket
from sriov_dra_agent.attach.pod_network import PodNetwork
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimulatedNic
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.records import RecordStore, VfRecord

pytestmark = pytest.mark.netns

CLAIM = ClaimRef(uid="uid-1", namespace="default", name="claim-a")
VF1 = "0000:3b:02.1"

# A stand-in for the dhcp plugin: it answers only while CNI_IFNAME is in CNI_NETNS,
# and logs what it saw.
FAKE_DHCP = """#!/bin/sh
cat >/dev/null
if nsenter --net="$CNI_NETNS" ip link show "$CNI_IFNAME" >/dev/null 2>&1; then
  seen=present
else
  seen=absent
fi
echo "$CNI_COMMAND $seen" >>"$(dirname "$0")/seen.log"
if [ "$seen" = absent ]; then
  echo '{"cniVersion":"1.0.0","code":11,"msg":"no interface to ask dhcp on"}'
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.50/24"}]}'
fi
"""


def _thread_netns() -> int:
    return os.stat(f"/proc/self/task/{threading.get_native_id()}/ns/net").st_ino


def test_a_pod_socket_sees_the_pods_links_and_leaves_the_caller_in_its_netns(
    make_pod: Callable[[], Pod],
) -> None:
    pod = make_pod()
    pod.run("ip", "link", "add", "a0", "type", "veth", "peer", "name", "b0")
    before = _thread_netns()
    with netns_socket(pod.netns) as ipr:
        names = sorted(str(link.get("IFLA_IFNAME")) for link in ipr.link("dump"))
    assert names == ["a0", "b0", "lo"]
    assert _thread_netns() == before == os.stat("/proc/self/ns/net").st_ino


def test_a_path_that_is_no_netns_is_a_typed_error(tmp_path: Path) -> None:
    plain = tmp_path / "not-a-netns"
    plain.write_text("")
    with pytest.raises(NetnsNotFound) as info:
        netns_socket(str(plain))
    assert info.value.describe() == (
        f"netns: {plain} is not a network namespace; "
        "fix: pass a netns path such as /proc/<pid>/ns/net or /var/run/netns/<name>"
    )


def test_a_plugin_that_looks_into_the_pod_runs_while_the_vf_is_there(
    make_node: Callable[..., SimulatedNic], make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    plugins = tmp_path / "cni"
    plugins.mkdir()
    (plugins / "dhcp").write_text(FAKE_DHCP)
    (plugins / "dhcp").chmod(0o755)
    backend = SimulatedBackend(make_node())
    pods = PodNetwork(backend, cni_path=str(plugins))
    lifecycle = VfLifecycle(backend, pods, state_dir=tmp_path / "state")
    pod = make_pod()
    conf = {"cniVersion": "1.0.0", "name": "net-d", "type": "sriov", "ipam": {"type": "dhcp"}}
    try:
        data = lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
        assert data.ips == ("10.9.0.50/24",)
        lifecycle.detach(VF1)
    finally:
        pods.close()
    assert (plugins / "seen.log").read_text().splitlines() == ["ADD present", "DEL present"]
    assert pod.links() == ["lo"]


def test_every_change_waits_for_its_write_ahead_record(
    lifecycle: VfLifecycle,
    make_pod: Callable[[], Pod],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The attaching/detaching record is written while the lookups run, never after a change."""
    pod = make_pod()
    conf = netconf(tmp_path / "ipam")
    events: list[str] = []
    real_put, real_run, real_start = RecordStore.put, netns_attach._run, ipam.PluginRun.__init__

    def slow_put(self: RecordStore, record: VfRecord) -> None:
        time.sleep(0.2)  # a slow disk: a change that does not wait lands first
        real_put(self, record)
        events.append(f"written {record.attachment.phase if record.attachment else None}")

    def logged_run(*args: Any, **kwargs: Any) -> None:
        real_run(*args, **kwargs)
        if args[2]:
            events.append("netlink change")

    def logged_start(self: ipam.PluginRun, *args: Any, **kwargs: Any) -> None:
        real_start(self, *args, **kwargs)
        events.append(f"IPAM {self.command}")

    monkeypatch.setattr(RecordStore, "put", slow_put)
    monkeypatch.setattr(netns_attach, "_run", logged_run)
    monkeypatch.setattr(ipam.PluginRun, "__init__", logged_start)
    lifecycle.attach(VF1, CLAIM, "vf", netns=pod.netns, if_name="net1", netconf=conf)
    lifecycle.detach(VF1)
    first = events.index("written attaching")
    assert "netlink change" not in events[:first] and "IPAM ADD" not in events[:first]
    between = events[events.index("written detaching") - 1 : events.index("written detaching")]
    assert between == ["written attached"]
    assert events[-1] == "written None"
    assert events.count("IPAM ADD") == events.count("IPAM DEL") == 1
