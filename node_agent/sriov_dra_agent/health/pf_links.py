"""Watches the PF netdevs' links over netlink and keeps the node's device health.

Event driven: one rtnetlink socket in the netns holding the PF netdevs, joined to
the link multicast group before a dump, so no change between the dump and the
first event is lost. Every link's state is kept by interface index (a rename or a
netns move shows as a new name or a deletion); the PFs of the current inventory are
looked up by name when health is asked for (:mod:`sriov_dra.device_health`).

A change of a PF's link wakes whoever listens: the slice publisher
(``on_change``: republish with or without the taints) and the kubelet's health
streams (:meth:`PfLinkMonitor.wait_change`). When the socket fails, every link
becomes unknown (no taint, health ``UNKNOWN``) until the watch is back.

The same socket serves live rediscovery: every link message also goes to ``on_link``
with the name last seen at its index (:mod:`sriov_dra_agent.vf.hardware_events`
tells netdevs appearing or vanishing from mere flag changes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_LINK
from sriov_dra.device_health import DeviceHealth, PfLink, device_health, device_taints, link_up
from sriov_dra.naming import device_name

from sriov_dra_agent.restarting_watch import keep_watching
from sriov_dra_agent.vf.inventory import Inventory

logger = logging.getLogger(__name__)

NEW_LINK: Final = "RTM_NEWLINK"
DEL_LINK: Final = "RTM_DELLINK"


def _now() -> datetime:
    return datetime.now(UTC)


class PfLinkMonitor:
    """The link state of every netdev of one netns, and the device health derived from it."""

    def __init__(
        self,
        *,
        node: str,
        netns: str | None,
        on_change: Callable[[], None] | None = None,
        on_link: Callable[[Mapping[str, Any], str | None], None] | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.node = node
        self.netns = netns
        """Path of the netns holding the PF netdevs; None is the agent's own."""
        self._on_change = on_change
        self._on_link = on_link
        """Every link message with the name last seen at its index (live rediscovery)."""
        self._clock = clock
        self._links: dict[int, tuple[str, PfLink]] = {}
        self.inventory: Inventory | None = None
        self.version = 0
        """Bumped on every change of a PF's link or of the inventory's devices."""
        self._changed = asyncio.Event()
        """Set (and replaced by a fresh one) on every bump: wakes :meth:`wait_change`."""
        self.watching = asyncio.Event()
        """Set while the netlink watch runs (after its first dump)."""

    # --- what the others ask ----------------------------------------------------------

    def links(self) -> dict[str, PfLink]:
        """Netdev name -> link state, for every netdev of the netns seen now."""
        return {name: link for name, link in self._links.values()}

    def health(self, inventory: Inventory | None = None) -> dict[str, DeviceHealth]:
        """Device name -> health of every VF of ``inventory`` (default: the last one set)."""
        inventory = inventory or self.inventory
        if inventory is None:
            return {}
        pfs = {device_name(vf.pci_address): vf.pf_name for vf in inventory.vfs()}
        return device_health(pfs, self.links())

    def taints(self, inventory: Inventory) -> dict[str, list[dict[str, Any]]]:
        """Device name -> ResourceSlice taints (the publisher's ``taints`` hook)."""
        return device_taints(self.health(inventory))

    def set_inventory(self, inventory: Inventory) -> None:
        """Follow discovery (the publisher's ``on_inventory`` hook): new VFs join the stream."""
        before = self.inventory
        self.inventory = inventory
        if before is None or _device_pfs(before) != _device_pfs(inventory):
            self._bump()

    async def wait_change(self, seen: int) -> int:
        """Return :attr:`version` once it differs from ``seen``."""
        while self.version == seen:
            await self._changed.wait()
        return self.version

    # --- link events ------------------------------------------------------------------

    def observe(self, message: Mapping[str, Any]) -> None:
        """Apply one rtnetlink link message (a dump entry or an event)."""
        index = int(message["index"])
        name = message.get("IFLA_IFNAME")
        old = self._links.get(index)
        if self._on_link is not None:
            self._on_link(message, None if old is None else old[0])
        if message.get("event") == DEL_LINK or not name:
            if old is not None:
                del self._links[index]
                self._changed_pf(old[0], old[1].up, None)
            return
        up = link_up(int(message.get("flags", 0)))
        if old is not None and old[0] == name and old[1].up == up:
            return
        if old is not None and old[0] != name:
            self._changed_pf(old[0], old[1].up, None)
            old = None
        self._links[index] = (name, PfLink(up=up, since=self._clock()))
        self._changed_pf(name, None if old is None else old[1].up, up)

    def forget_links(self) -> None:
        """Every link unknown (the watch is down): no taints, health ``UNKNOWN``."""
        gone = list(self._links.values())
        self._links.clear()
        for name, link in gone:
            self._changed_pf(name, link.up, None)

    def _pf_names(self) -> set[str]:
        return {pf.name for pf in self.inventory.pfs} if self.inventory else set()

    def _changed_pf(self, name: str, before: bool | None, after: bool | None) -> None:
        if name not in self._pf_names():
            return
        state = {None: "unknown", True: "up", False: "down"}
        log = logger.warning if after is False else logger.info
        log(
            "PF link %s",
            state[after],
            extra={"node": self.node, "pf": name, "before": state[before], "after": state[after]},
        )
        self._bump()

    def _bump(self) -> None:
        self.version += 1
        if self._on_change is not None:
            self._on_change()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- the watch --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop``; a failed socket is reopened after a back-off."""

        def ended(error: BaseException | None) -> None:
            logger.warning(
                "PF link watch ended, health unknown until it is back: %s",
                error,
                extra={"node": self.node, "netns": self.netns},
            )
            self.forget_links()

        await keep_watching(self._watch, stop, opened=self.watching, ended=ended)

    async def _watch(self) -> None:
        options: dict[str, Any] = {"groups": RTMGRP_LINK}
        if self.netns is not None:
            options["netns"] = self.netns
        async with AsyncIPRoute(**options) as ipr:
            await ipr.bind(groups=RTMGRP_LINK)
            dumped = [link async for link in await ipr.link("dump")]
            seen = {int(link["index"]) for link in dumped}
            for index in [i for i in self._links if i not in seen]:
                name, link = self._links.pop(index)
                self._changed_pf(name, link.up, None)
            for link in dumped:
                self.observe(link)
            self.watching.set()
            logger.info(
                "watching PF links",
                extra={"node": self.node, "netns": self.netns, "links": len(dumped)},
            )
            while True:
                async for message in ipr.get():
                    if message.get("event") in (NEW_LINK, DEL_LINK):
                        self.observe(message)


def _device_pfs(inventory: Inventory) -> dict[str, str]:
    return {vf.pci_address: vf.pf_name for vf in inventory.vfs()}
