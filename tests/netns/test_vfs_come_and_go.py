"""VFs that come and go under the agent, on real kernel objects.

- The event source on a simulated NIC: ``sriov_numvfs`` raised to 64 and lowered again
  wakes the publisher a handful of times (netlink link messages through the PF link
  watch's socket, inotify on the simulated tree), never once per event; a PF removed
  (hot-unplug) is seen with its VFs.
- A real kernel uevent: a PCI ``change`` uevent asked of a PCI device of this machine
  reaches the uevent socket and is classified (no SR-IOV NIC here to add VFs to).
- The VF lifecycle when a held VF vanishes (one attached into a pod with a host-local
  address, one only programmed): detach and release succeed at once, the address is
  released, no record stays; the VF number comes back fresh for the next claim.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from netns_helpers import Pod, held_ips, netconf
from sriov_dra.claim_ref import ClaimRef
from sriov_dra_agent.health.pf_links import PfLinkMonitor
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic
from sriov_dra_agent.vf.hardware_events import HardwareEvents
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.vf_settings import settings_from_netconf

pytestmark = pytest.mark.netns

CLAIM = ClaimRef(uid="uid-1", namespace="default", name="claim-a")
NEXT = ClaimRef(uid="uid-2", namespace="default", name="claim-b")
VF2, VF3 = "0000:3b:02.2", "0000:3b:02.3"
SETTLED_SECONDS = 3.0


class Watched:
    """A simulated NIC's PF link watch and hardware event source, counting wake-ups."""

    def __init__(self, nic: SimulatedNic) -> None:
        self.nic = nic
        self.woken = asyncio.Event()
        self.events = HardwareEvents(
            node=nic.node, on_change=self.woken.set, tree=SimulatedBackend(nic).hotplug_dir()
        )
        self.links = PfLinkMonitor(
            node=nic.node, netns=nic.host_netns_path, on_link=self.events.link_message
        )

    async def settled(self) -> int:
        """Wait (bounded) for a wake-up, then until none came for :data:`SETTLED_SECONDS`
        (longer than any debounce deadline: the events were all sent); the wake-ups so far."""
        async with asyncio.timeout(60):
            await self.woken.wait()
            while True:
                self.woken.clear()
                try:
                    async with asyncio.timeout(SETTLED_SECONDS):
                        await self.woken.wait()
                except TimeoutError:
                    return self.events.bursts


@pytest.fixture
async def watched(make_node: Callable[..., SimulatedNic]) -> AsyncIterator[Watched]:
    pfs = (SimPf("simpf0", total_vfs=64, num_vfs=4), SimPf("simpf1", total_vfs=2, num_vfs=2))
    nic = await asyncio.to_thread(make_node, pfs=pfs)
    watch = Watched(nic)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(watch.links.run(stop)),
        asyncio.create_task(watch.events.run(stop)),
    ]
    try:
        async with asyncio.timeout(30):
            await watch.links.watching.wait()
            await watch.events.watching["sysfs-tree"].wait()
        await watch.settled()  # the first dump: every netdev is new to the watch
        yield watch
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def test_64_vfs_added_and_removed_wake_the_publisher_a_handful_of_times(
    watched: Watched,
) -> None:
    before, changes = watched.events.bursts, watched.events.changes
    await asyncio.to_thread(watched.nic.set_num_vfs, "simpf0", 64)
    added = await watched.settled() - before
    added_changes = watched.events.changes - changes
    # 60 VF netdevs and 60 tree entries appeared.
    assert added_changes >= 120
    assert 1 <= added <= 8, f"{added} wake-ups for {added_changes} events"

    before, changes = watched.events.bursts, watched.events.changes
    await asyncio.to_thread(watched.nic.set_num_vfs, "simpf0", 2)
    removed = await watched.settled() - before
    removed_changes = watched.events.changes - changes
    assert removed_changes >= 124
    assert 1 <= removed <= 8, f"{removed} wake-ups for {removed_changes} events"
    print(
        f"sriov_numvfs 4->64: {added_changes} events, {added} wake-ups; "
        f"64->2: {removed_changes} events, {removed} wake-ups"
    )


async def test_a_vf_whose_netdev_is_in_a_pod_is_seen_going_by_the_tree(
    watched: Watched,
    make_pod: Callable[[], Pod],
    make_lifecycle: Callable[..., VfLifecycle],
    tmp_path: Path,
) -> None:
    lifecycle = make_lifecycle(SimulatedBackend(watched.nic), tmp_path / "state")
    pod = make_pod()
    await asyncio.to_thread(lifecycle.attach, VF3, CLAIM, "vf", netns=pod.netns, if_name="net1")
    await watched.settled()  # the VF netdev left the host netns
    before = watched.events.changes
    # Only VF 3 goes, and its netdev is in the pod: the host netns sees nothing of it.
    await asyncio.to_thread(watched.nic.set_num_vfs, "simpf0", 3)
    await watched.settled()
    assert watched.events.changes - before == 1
    assert pod.links() == ["lo"]


async def test_a_pf_removed_wakes_the_publisher_and_takes_its_vfs_along(
    watched: Watched,
) -> None:
    backend = SimulatedBackend(watched.nic)
    assert [pf.name for pf in backend.discover().pfs] == ["simpf0", "simpf1"]
    before = watched.events.changes
    await asyncio.to_thread(watched.nic.remove_pf, "simpf1")
    await watched.settled()
    # Its 2 VF netdevs and the PF netdev, and their 3 entries in the tree.
    assert watched.events.changes - before == 6
    inventory = backend.discover()
    assert [pf.name for pf in inventory.pfs] == ["simpf0"]
    assert {vf.pf_name for vf in inventory.vfs()} == {"simpf0"}
    assert "simpf1" not in watched.links.links()
    # Built again, it is back (without its VFs' memory: a new PCI function).
    again = (SimPf("simpf0", total_vfs=64, num_vfs=4), SimPf("simpf1", total_vfs=2, num_vfs=1))
    await asyncio.to_thread(watched.nic.build, again)
    await watched.settled()
    assert [vf.pf_name for vf in backend.discover().vfs()].count("simpf1") == 1


async def test_where_virtual_links_do_not_count_veths_coming_are_no_change(
    make_node: Callable[..., SimulatedNic],
) -> None:
    # As on a real node, where veths are the pods': the simulated VFs (veths) do not count.
    nic = await asyncio.to_thread(make_node, pfs=(SimPf("simpf0", total_vfs=8, num_vfs=2),))
    events = HardwareEvents(node=nic.node, on_change=lambda: None, virtual_links=False)
    arrived = asyncio.Event()

    def on_link(message: Mapping[str, Any], known: str | None) -> None:
        events.link_message(message, known)
        if message.get("IFLA_IFNAME") == "simpf0v5":
            arrived.set()

    links = PfLinkMonitor(node=nic.node, netns=nic.host_netns_path, on_link=on_link)
    stop = asyncio.Event()
    task = asyncio.create_task(links.run(stop))
    try:
        async with asyncio.timeout(30):
            await links.watching.wait()
        dumped = events.changes  # lo only: a loopback has no link kind
        await asyncio.to_thread(nic.set_num_vfs, "simpf0", 6)
        async with asyncio.timeout(30):
            await arrived.wait()
        assert (dumped, events.changes) == (1, 1)
    finally:
        stop.set()
        await task


async def test_a_kernel_uevent_reaches_the_socket() -> None:
    devices = sorted(os.listdir("/sys/bus/pci/devices"))
    if not devices:
        pytest.fail("this machine has no PCI device to ask a uevent of")
    woken = asyncio.Event()
    events = HardwareEvents(node="n1", on_change=woken.set, uevents=True)
    stop = asyncio.Event()
    task = asyncio.create_task(events.run(stop))
    try:
        async with asyncio.timeout(10):
            await events.watching["uevent"].wait()
        # "change" re-announces the device as it is; nothing on the machine changes.
        await asyncio.to_thread(
            Path(f"/sys/bus/pci/devices/{devices[0]}/uevent").write_text, "change"
        )
        async with asyncio.timeout(10):
            await woken.wait()
        assert events.changes >= 1
    finally:
        stop.set()
        await task


def test_vanished_vfs_detach_and_release_at_once_and_leak_nothing(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    nic: SimulatedNic = lifecycle.backend.nic  # type: ignore[attr-defined]
    conf = netconf(tmp_path / "ipam")
    pod = make_pod()
    lifecycle.program(VF3, CLAIM, "a", settings_from_netconf(conf))
    lifecycle.attach(VF3, CLAIM, "a", netns=pod.netns, if_name="net1", netconf=conf)
    lifecycle.program(VF2, CLAIM, "b", settings_from_netconf(conf))
    assert held_ips(tmp_path / "ipam") == {"10.9.0.5": "uid-1-a/net1"}

    nic.set_num_vfs("simpf0", 2)  # VFs 2 and 3 go, VF 3's end in the pod with it
    assert not lifecycle.backend.present(VF3) and not lifecycle.backend.present(VF2)
    assert pod.links() == ["lo"]

    lifecycle.detach(VF3)  # unprepare: no netdev to wait for, the address goes
    assert held_ips(tmp_path / "ipam") == {}
    record = lifecycle.record(VF3)
    assert record is not None and record.attachment is None
    lifecycle.release(VF3)  # the claim deleted: nothing to restore, the record goes
    lifecycle.release(VF2)
    assert lifecycle.records_all() == []

    # The VFs come back as new functions: the next claim gets one like any other.
    nic.set_num_vfs("simpf0", 4)
    lifecycle.program(VF3, NEXT, "vf", settings_from_netconf(conf))
    record = lifecycle.record(VF3)
    assert record is not None and record.claim == NEXT
    assert record.original.vlan == 0


def test_sweep_releases_a_vanished_attached_vf_of_a_claim_no_longer_prepared(
    lifecycle: VfLifecycle, make_pod: Callable[[], Pod], tmp_path: Path
) -> None:
    nic: SimulatedNic = lifecycle.backend.nic  # type: ignore[attr-defined]
    conf = netconf(tmp_path / "ipam")
    lifecycle.attach(VF3, CLAIM, "a", netns=make_pod().netns, if_name="net1", netconf=conf)
    nic.set_num_vfs("simpf0", 3)
    report = lifecycle.sweep(prepared=())
    assert report.released == (VF3,) and report.failed == {}
    assert lifecycle.records_all() == []
    assert held_ips(tmp_path / "ipam") == {}
