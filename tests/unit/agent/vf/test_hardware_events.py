"""Live rediscovery's event source: which events mean a hardware change, and the debounce.

Pure parts on hand-made messages (a kernel uevent datagram parsed by pyroute2's own
uevent marshal, as the socket does; inotify records packed as the kernel packs them);
the shell's debounce loop and its inotify watch on a tmp directory (no root needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pyroute2.netlink.uevent import MarshalUevent
from sriov_dra_agent.vf.hardware_events import (
    IN_CREATE,
    IN_DELETE,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Debouncer,
    HardwareChange,
    HardwareEvents,
    inotify_records,
    link_change,
    tree_change,
    uevent_change,
)

NEW, DEL = "RTM_NEWLINK", "RTM_DELLINK"


def link(event: str, name: str | None, flags: int = 0) -> dict[str, object]:
    message: dict[str, object] = {"event": event, "index": 7, "flags": flags}
    if name is not None:
        message["IFLA_IFNAME"] = name
    return message


@pytest.mark.parametrize(
    ("message", "known", "want"),
    [
        (link(NEW, "simpf0v3"), None, ("add", "simpf0v3")),
        (link(DEL, "simpf0v3"), "simpf0v3", ("remove", "simpf0v3")),
        (link(DEL, None), "simpf0", ("remove", "simpf0")),
        (link(NEW, "net1"), "simpf0v3", ("rename", "simpf0v3 -> net1")),
        # A flag or carrier change of a netdev already known: device health's, not ours.
        (link(NEW, "simpf0", flags=0x1), "simpf0", None),
        # A deletion of a netdev never seen tells nothing new.
        (link(DEL, "lo"), None, None),
        ({"event": "RTM_NEWADDR", "index": 7, "IFLA_IFNAME": "x"}, None, None),
    ],
)
def test_link_messages_count_only_netdevs_coming_going_or_renamed(
    message: dict[str, object], known: str | None, want: tuple[str, str] | None
) -> None:
    change = link_change(message, known)
    assert (None if change is None else (change.action, change.name)) == want
    assert change is None or change.source == "netlink"


VETH = {"IFLA_LINKINFO": {"IFLA_INFO_KIND": "veth"}}


@pytest.mark.parametrize(
    ("message", "known", "virtual", "want"),
    [
        # A pod's veth on a real node: not a PF or VF.
        ({**link(NEW, "vethab12"), **VETH}, None, False, None),
        ({**link(DEL, "vethab12"), **VETH}, "vethab12", False, None),
        # A real NIC's netdev has no link kind: it counts either way.
        (link(NEW, "ens1f0v3"), None, False, ("add", "ens1f0v3")),
        # The simulated NIC's VFs are veths: they count where virtual links do.
        ({**link(NEW, "simpf0v3"), **VETH}, None, True, ("add", "simpf0v3")),
    ],
)
def test_virtual_netdevs_count_only_where_the_nic_is_made_of_them(
    message: dict[str, object], known: str | None, virtual: bool, want: tuple[str, str] | None
) -> None:
    change = link_change(message, known, virtual=virtual)
    assert (None if change is None else (change.action, change.name)) == want


def kernel_uevent(header: str, **fields: str) -> dict[str, str]:
    """A NETLINK_KOBJECT_UEVENT datagram as the kernel sends it, parsed as the socket does."""
    data = b"\0".join([header.encode(), *(f"{k}={v}".encode() for k, v in fields.items())])
    (message,) = MarshalUevent().parse(data + b"\0")
    return dict(message)


VF_DEVPATH = "/devices/pci0000:3a/0000:3a:00.0/0000:3b:02.1"


@pytest.mark.parametrize(
    ("action", "driver"),
    [("add", None), ("remove", None), ("bind", "vfio-pci"), ("unbind", None), ("change", None)],
)
def test_pci_uevents_are_hardware_changes_naming_the_function_and_driver(
    action: str, driver: str | None
) -> None:
    fields = {"ACTION": action, "DEVPATH": VF_DEVPATH, "SUBSYSTEM": "pci"}
    fields["PCI_SLOT_NAME"] = "0000:3b:02.1"
    if driver:
        fields["DRIVER"] = driver
    message = kernel_uevent(f"{action}@{VF_DEVPATH}", **fields, SEQNUM="4711")
    assert uevent_change(message) == HardwareChange("uevent", action, "0000:3b:02.1", driver)


def test_uevent_without_slot_name_is_named_by_its_devpath() -> None:
    message = kernel_uevent(f"remove@{VF_DEVPATH}", ACTION="remove", DEVPATH=VF_DEVPATH,
                            SUBSYSTEM="pci")  # fmt: skip
    change = uevent_change(message)
    assert change is not None and change.name == "0000:3b:02.1"


@pytest.mark.parametrize(
    "fields",
    [
        # Netdev uevents: rtnetlink says the same with the interface index.
        {"ACTION": "add", "SUBSYSTEM": "net", "DEVPATH": "/devices/virtual/net/veth0"},
        {"ACTION": "add", "SUBSYSTEM": "usb", "DEVPATH": "/devices/usb1/1-1"},
        {"ACTION": "online", "SUBSYSTEM": "pci", "DEVPATH": VF_DEVPATH},
        {},
    ],
)
def test_other_uevents_are_not_hardware_changes(fields: dict[str, str]) -> None:
    assert uevent_change(fields) is None


def inotify_event(mask: int, name: str) -> bytes:
    """One ``struct inotify_event`` with its name padded, as the kernel writes it."""
    raw = name.encode() + b"\0"
    raw += b"\0" * (-len(raw) % 16)
    return struct.pack("iIII", 1, mask, 0, len(raw)) + raw


def test_inotify_records_of_one_read_and_what_they_mean() -> None:
    data = (
        inotify_event(IN_CREATE, "0000:3b:02.4")
        + inotify_event(IN_DELETE, "0000:3b:02.3")
        + inotify_event(IN_MOVED_TO, "0000:3b:02.5")
    )
    records = inotify_records(data)
    assert records == [
        (IN_CREATE, "0000:3b:02.4"),
        (IN_DELETE, "0000:3b:02.3"),
        (IN_MOVED_TO, "0000:3b:02.5"),
    ]
    assert [tree_change(mask, name) for mask, name in records] == [
        HardwareChange("sysfs-tree", "add", "0000:3b:02.4"),
        HardwareChange("sysfs-tree", "remove", "0000:3b:02.3"),
        HardwareChange("sysfs-tree", "add", "0000:3b:02.5"),
    ]
    assert tree_change(0x2, "x") is None  # IN_MODIFY: a file written, no function came or went
    # Events were lost: rescan all the same.
    lost = tree_change(IN_Q_OVERFLOW, "")
    assert lost == HardwareChange("sysfs-tree", "overflow", "inotify queue")


CHANGE = HardwareChange("netlink", "add", "simpf0v1")


def bursts(times: list[float], debouncer: Debouncer) -> list[tuple[float, int]]:
    """(when, size) of each burst the debouncer gives for changes at ``times``, looking
    as the shell does: at each change and at each deadline."""
    out: list[tuple[float, int]] = []
    for now in times:
        deadline = debouncer.deadline()
        if deadline is not None and deadline <= now:
            out.append((deadline, len(debouncer.take(deadline))))
        debouncer.note(CHANGE, now)
    while (deadline := debouncer.deadline()) is not None:
        out.append((deadline, len(debouncer.take(deadline))))
    return out


def test_64_vfs_created_quickly_are_one_burst() -> None:
    # 64 VF netdevs and 64 PCI functions, 2 ms apart.
    times = [i * 0.002 for i in range(128)]
    got = bursts(times, Debouncer(quiet=0.25, max_wait=1.0))
    assert got == [(pytest.approx(times[-1] + 0.25), 128)]


def test_a_long_burst_is_cut_every_max_wait_and_nothing_is_lost() -> None:
    # One change every 50 ms for 3 s: quiet never comes, max_wait cuts it.
    times = [i * 0.05 for i in range(60)]
    got = bursts(times, Debouncer(quiet=0.25, max_wait=1.0))
    # Each burst is cut max_wait after its first change; a change at that very moment
    # opens the next burst.
    assert [size for _, size in got] == [20, 20, 20]
    assert [when for when, _ in got] == [pytest.approx(1.0), pytest.approx(2.0), pytest.approx(3.0)]


def test_separate_changes_are_separate_bursts_and_nothing_is_due_early() -> None:
    debouncer = Debouncer(quiet=0.25, max_wait=1.0)
    assert debouncer.deadline() is None and debouncer.take(100.0) == ()
    debouncer.note(CHANGE, 10.0)
    assert debouncer.take(10.2) == ()
    assert debouncer.take(10.25) == (CHANGE,)
    assert debouncer.deadline() is None
    assert bursts([0.0, 5.0, 10.0], Debouncer(quiet=0.25, max_wait=1.0)) == [
        (0.25, 1),
        (5.25, 1),
        (10.25, 1),
    ]


@contextlib.asynccontextmanager
async def running(events: HardwareEvents) -> AsyncIterator[HardwareEvents]:
    """``events`` run for the body (its tree watch open first, if it has one)."""
    stop = asyncio.Event()
    task = asyncio.create_task(events.run(stop))
    try:
        if events.tree is not None:
            async with asyncio.timeout(10):
                await events.watching["sysfs-tree"].wait()
        yield events
    finally:
        stop.set()
        await task


async def test_the_shell_calls_on_change_once_for_a_burst() -> None:
    called = asyncio.Event()
    calls: list[int] = []

    def on_change() -> None:
        calls.append(1)
        called.set()

    async with running(HardwareEvents(node="n1", on_change=on_change)) as events:
        for i in range(64):
            events.link_message({"event": NEW, "index": i, "IFLA_IFNAME": f"simpf0v{i}"}, None)
            # A flag change of a known netdev is no change.
            events.link_message({"event": NEW, "index": i, "IFLA_IFNAME": "simpf0"}, "simpf0")
        async with asyncio.timeout(10):
            await called.wait()
        assert calls == [1]
        assert (events.changes, events.bursts) == (64, 1)


def tree(tmp_path: Path) -> Path:
    devices = tmp_path / "bus/pci/devices"
    devices.mkdir(parents=True)
    return devices


async def test_tree_watch_sees_functions_created_and_removed(tmp_path: Path) -> None:
    devices = tree(tmp_path)
    woken = asyncio.Event()
    async with running(HardwareEvents(node="n1", on_change=woken.set, tree=devices)) as events:
        os.symlink("../../../devices/x/0000:3b:02.4", devices / "0000:3b:02.4")
        (devices / "0000:3b:02.4").unlink()
        async with asyncio.timeout(10):
            await woken.wait()
        assert events.changes == 2
        assert events.bursts == 1


async def test_a_watch_that_fails_is_reopened_and_asks_for_a_rescan(tmp_path: Path) -> None:
    devices = tree(tmp_path)
    woken = asyncio.Event()
    async with running(HardwareEvents(node="n1", on_change=woken.set, tree=devices)) as events:
        # The simulated NIC torn down and built again: the watch on the old directory
        # ends, and is reopened on the new one after the back-off.
        devices.rmdir()
        devices.mkdir()
        async with asyncio.timeout(30):
            await woken.wait()
        assert events.watching["sysfs-tree"].is_set()
        assert events.changes == 1, "the reopening, since a change may have been missed"
