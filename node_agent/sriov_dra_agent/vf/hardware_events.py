"""Wakes the slice publisher when the node's SR-IOV hardware changes (live rediscovery).

Three sources, each saying only *that* something may have changed (discovery then
says what):

- rtnetlink link messages of the netns holding the PF and VF netdevs, from the PF
  link watch of :mod:`sriov_dra_agent.health.pf_links` (one socket, not a second
  one): a netdev appearing, vanishing or renamed (VFs created or removed, a PF gone);
- kernel uevents (``NETLINK_KOBJECT_UEVENT``, real sysfs only): PCI ``add``/
  ``remove`` (``sriov_numvfs`` written: each VF is a PCI function that comes or
  goes), ``bind``/``unbind`` (a VF's driver changed, by us or by someone else);
- inotify on the simulated NIC's ``bus/pci/devices`` directory (sysfs itself
  supports no inotify; the simulated tree is a real directory): an entry created
  or deleted per simulated VF, wherever its netdev is (a pod's netns included).

Bursts are debounced (:class:`Debouncer`): writing ``sriov_numvfs=64`` makes one
event per VF and per netdev, and the publisher should rescan a handful of times,
not 128. The classification (:func:`link_change`, :func:`uevent_change`,
:func:`tree_change`, :func:`inotify_records`) and the debounce are pure; the
sockets and the inotify descriptor are thin shells around them.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from pyroute2.netlink.uevent import MONITOR_GROUP_KERNEL, AsyncUeventSocket

from sriov_dra_agent.restarting_watch import keep_watching

logger = logging.getLogger(__name__)

Source = Literal["netlink", "uevent", "sysfs-tree"]

QUIET_SECONDS: Final = 0.25
"""A burst ends once no event came for this long."""
MAX_WAIT_SECONDS: Final = 1.0
"""A burst that goes on is cut after this long, so a long one still rescans now and then."""

PCI_ACTIONS: Final = frozenset({"add", "remove", "bind", "unbind", "change", "move"})
"""Uevent actions of a PCI device that may change what discovery finds."""

IN_CREATE: Final = 0x100
IN_DELETE: Final = 0x200
IN_MOVED_FROM: Final = 0x40
IN_MOVED_TO: Final = 0x80
IN_DELETE_SELF: Final = 0x400
IN_Q_OVERFLOW: Final = 0x4000
IN_IGNORED: Final = 0x8000
TREE_MASK: Final = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF
_INOTIFY_HEADER: Final = struct.Struct("iIII")


@dataclass(frozen=True)
class HardwareChange:
    """One event that may have changed the node's PFs or VFs."""

    source: Source
    action: str
    """``add``, ``remove``, ``rename``, ``bind``, ``unbind``, ..."""
    name: str
    """The netdev or the PCI address (the directory entry) concerned."""
    driver: str | None = None
    """The driver a uevent names (``bind``), else None."""

    def describe(self) -> str:
        """``uevent bind 0000:3b:02.0 (vfio-pci)`` (for logs)."""
        driver = f" ({self.driver})" if self.driver else ""
        return f"{self.source} {self.action} {self.name}{driver}"


# --- classification (pure) ---------------------------------------------------------------


def link_change(
    message: Mapping[str, Any], known_name: str | None, *, virtual: bool = True
) -> HardwareChange | None:
    """What an rtnetlink link message says about the hardware, given the name last seen at
    its interface index (None: index not seen). Only a netdev appearing, vanishing or
    renamed counts; flag and carrier changes are device health's, not discovery's.

    ``virtual``: whether virtual netdevs (a link kind such as ``veth`` or ``bridge``) count.
    The simulated NIC's PFs and VFs are veths; on a real node virtual netdevs are the
    pods' and the CNI's, never a PF or VF, and come and go with every pod.
    """
    if not virtual and _link_kind(message) is not None:
        return None
    name = message.get("IFLA_IFNAME")
    if message.get("event") == "RTM_DELLINK" or not name:
        return None if known_name is None else HardwareChange("netlink", "remove", known_name)
    if message.get("event") != "RTM_NEWLINK":
        return None
    if known_name is None:
        return HardwareChange("netlink", "add", str(name))
    if known_name != name:
        return HardwareChange("netlink", "rename", f"{known_name} -> {name}")
    return None


def _link_kind(message: Mapping[str, Any]) -> str | None:
    """``IFLA_INFO_KIND`` of a link message (``veth``, ``bridge``); None for a NIC's netdev."""
    linkinfo = message.get("IFLA_LINKINFO")
    kind = None if linkinfo is None else linkinfo.get("IFLA_INFO_KIND")
    return None if kind is None else str(kind)


def uevent_change(fields: Mapping[str, Any]) -> HardwareChange | None:
    """What a kernel uevent says: a PCI function added, removed, (un)bound; else None.

    ``fields`` are the uevent's ``KEY=value`` pairs (``ACTION``, ``SUBSYSTEM``,
    ``DEVPATH``, ``PCI_SLOT_NAME``, ``DRIVER``). Netdev uevents are left to rtnetlink,
    which says the same with the interface index.
    """
    action = str(fields.get("ACTION") or "")
    if fields.get("SUBSYSTEM") != "pci" or action not in PCI_ACTIONS:
        return None
    name = str(fields.get("PCI_SLOT_NAME") or os.path.basename(str(fields.get("DEVPATH") or "")))
    driver = fields.get("DRIVER")
    return HardwareChange("uevent", action, name, str(driver) if driver else None)


def tree_change(mask: int, name: str) -> HardwareChange | None:
    """What an inotify event in the simulated ``bus/pci/devices`` says: a function added or
    removed (its entry created or deleted), or events lost (the queue overflowed); else None."""
    if mask & IN_Q_OVERFLOW:
        return HardwareChange("sysfs-tree", "overflow", "inotify queue")
    if mask & (IN_CREATE | IN_MOVED_TO):
        return HardwareChange("sysfs-tree", "add", name)
    if mask & (IN_DELETE | IN_MOVED_FROM):
        return HardwareChange("sysfs-tree", "remove", name)
    return None


def inotify_records(data: bytes) -> list[tuple[int, str]]:
    """(mask, name) of each ``struct inotify_event`` in one ``read()`` of an inotify fd."""
    out = []
    offset = 0
    while offset + _INOTIFY_HEADER.size <= len(data):
        _wd, mask, _cookie, length = _INOTIFY_HEADER.unpack_from(data, offset)
        start = offset + _INOTIFY_HEADER.size
        raw = data[start : start + length]
        out.append((mask, raw.split(b"\0", 1)[0].decode(errors="replace")))
        offset = start + length
    return out


@dataclass
class Debouncer:
    """Collects changes into bursts: a burst is due ``quiet`` seconds after its last change,
    or ``max_wait`` seconds after its first, whichever comes first. Pure: times are given."""

    quiet: float = QUIET_SECONDS
    max_wait: float = MAX_WAIT_SECONDS
    _changes: list[HardwareChange] = field(default_factory=list)
    _first: float = 0.0
    _last: float = 0.0

    def note(self, change: HardwareChange, now: float) -> None:
        """One more change, seen at ``now``."""
        if not self._changes:
            self._first = now
        self._last = now
        self._changes.append(change)

    def deadline(self) -> float | None:
        """When the pending burst is due; None when nothing is pending."""
        if not self._changes:
            return None
        return min(self._last + self.quiet, self._first + self.max_wait)

    def take(self, now: float) -> tuple[HardwareChange, ...]:
        """The pending burst if due at ``now`` (and start afresh), else ``()``."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return ()
        burst, self._changes = tuple(self._changes), []
        return burst


# --- the shells ------------------------------------------------------------------------------


class HardwareEvents:
    """Debounces hardware changes from every source into calls of ``on_change``."""

    def __init__(
        self,
        *,
        node: str,
        on_change: Callable[[], None],
        tree: Path | None = None,
        uevents: bool = False,
        virtual_links: bool = True,
        debouncer: Debouncer | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self._on_change = on_change
        self.tree = tree
        """Directory to watch with inotify (the simulated NIC's ``bus/pci/devices``)."""
        self.uevents = uevents
        """Listen to kernel uevents (real sysfs)."""
        self.virtual_links = virtual_links
        """Whether virtual netdevs' links count (the simulated NIC's are veths)."""
        self._debouncer = debouncer or Debouncer()
        self._clock = clock
        self._noted = asyncio.Event()
        self.changes = 0
        """Changes seen so far (every source)."""
        self.bursts = 0
        """Times ``on_change`` was called."""
        self.watching: dict[Source, asyncio.Event] = {
            "uevent": asyncio.Event(),
            "sysfs-tree": asyncio.Event(),
        }
        """Set while that source's socket or watch is open."""
        self._missed: set[Source] = set()
        """Sources whose watch failed since it last opened."""

    def notify(self, change: HardwareChange | None) -> None:
        """Count ``change`` into the current burst (None: nothing happened)."""
        if change is None:
            return
        self.changes += 1
        self._debouncer.note(change, self._clock())
        self._noted.set()

    def link_message(self, message: Mapping[str, Any], known_name: str | None) -> None:
        """The PF link watch's hook: every link message, with the name last seen at its index."""
        self.notify(link_change(message, known_name, virtual=self.virtual_links))

    async def run(self, stop: asyncio.Event) -> None:
        """Debounce, and watch uevents and the tree as configured, until ``stop``."""
        jobs = [self._debounce(stop)]
        if self.uevents:
            jobs.append(self._keep(stop, "uevent", self._watch_uevents))
        if self.tree is not None:
            jobs.append(self._keep(stop, "sysfs-tree", self._watch_tree))
        await asyncio.gather(*jobs)

    async def _debounce(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            deadline = self._debouncer.deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            self._noted.clear()
            await _first_of(stop.wait(), self._noted.wait(), seconds=timeout)
            burst = self._debouncer.take(self._clock())
            if not burst:
                continue
            self.bursts += 1
            logger.info(
                "hardware changed; rescanning",
                extra={
                    "node": self.node,
                    "changes": len(burst),
                    "first": [change.describe() for change in burst[:5]],
                    "bursts": self.bursts,
                },
            )
            self._on_change()

    async def _keep(
        self, stop: asyncio.Event, source: Source, watch: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``watch`` until ``stop``, reopened after a back-off when it fails."""

        def ended(error: BaseException | None) -> None:
            logger.warning(
                "hardware event watch ended; the periodic rescan covers it until it is back: %s",
                error,
                extra={"node": self.node, "source": source},
            )
            self._missed.add(source)

        await keep_watching(watch, stop, opened=self.watching[source], ended=ended)

    def _opened(self, source: Source) -> None:
        """``source``'s watch is open; after an outage, rescan (a change may have been missed)."""
        self.watching[source].set()
        if source in self._missed:
            self._missed.discard(source)
            self.notify(HardwareChange(source, "reopened", "watch"))

    async def _watch_uevents(self) -> None:
        sock = AsyncUeventSocket()
        try:
            await sock.bind(groups=MONITOR_GROUP_KERNEL)
            self._opened("uevent")
            logger.info("watching kernel uevents", extra={"node": self.node})
            while True:
                async for message in sock.get():
                    self.notify(uevent_change(message))
        finally:
            sock.close()

    async def _watch_tree(self) -> None:
        assert self.tree is not None
        queue: asyncio.Queue[bytes | OSError] = asyncio.Queue()
        fd = _inotify_watch(self.tree, TREE_MASK)
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                queue.put_nowait(os.read(fd, 64 * 1024))
            except BlockingIOError:
                return
            except OSError as exc:
                queue.put_nowait(exc)

        loop.add_reader(fd, readable)
        try:
            self._opened("sysfs-tree")
            logger.info("watching the simulated device tree", extra={"node": self.node})
            while True:
                data = await queue.get()
                if isinstance(data, OSError):
                    raise data
                for mask, name in inotify_records(data):
                    if mask & (IN_DELETE_SELF | IN_IGNORED):
                        raise OSError(f"{self.tree} was removed")
                    self.notify(tree_change(mask, name))
        finally:
            loop.remove_reader(fd)
            os.close(fd)


def _inotify_watch(path: Path, mask: int) -> int:
    """A non-blocking inotify descriptor watching ``path`` for ``mask``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"inotify_init1: {os.strerror(code)}")
    if libc.inotify_add_watch(fd, os.fsencode(path), ctypes.c_uint32(mask)) < 0:
        code = ctypes.get_errno()
        os.close(fd)
        raise OSError(code, f"inotify_add_watch {path}: {os.strerror(code)}")
    return fd


async def _first_of(*waits: Awaitable[Any], seconds: float | None = None) -> None:
    """Return when the first of ``waits`` is done, or after ``seconds``; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
