"""The PF link monitor on real kernel objects: a simulated NIC's uplinks down and up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from pyroute2 import IPRoute
from sriov_dra.device_health import Health
from sriov_dra_agent.health.pf_links import PfLinkMonitor
from sriov_dra_agent.vf.backends.simulated import SimulatedBackend
from sriov_dra_agent.vf.backends.simulated_nic import SimPf, SimulatedNic

pytestmark = pytest.mark.netns

PFS = (SimPf("simpf0", 4, 2), SimPf("simpf1", 4, 2))


@pytest.fixture
async def watched(
    make_node: Callable[..., SimulatedNic],
) -> AsyncIterator[tuple[SimulatedNic, PfLinkMonitor]]:
    # pyroute2's synchronous IPRoute runs a loop of its own: not in this one's thread.
    nic = await asyncio.to_thread(make_node, pfs=PFS)
    monitor = PfLinkMonitor(node=nic.node, netns=nic.host_netns_path)
    monitor.set_inventory(await asyncio.to_thread(SimulatedBackend(nic).discover))
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        yield nic, monitor
    finally:
        stop.set()
        await task


def by_pf(monitor: PfLinkMonitor) -> dict[str, set[Health]]:
    out: dict[str, set[Health]] = {}
    for entry in monitor.health().values():
        out.setdefault(entry.pf, set()).add(entry.health)
    return out


async def until(monitor: PfLinkMonitor, want: dict[str, set[Health]]) -> None:
    """Wait for the health ``want`` (bounded: a missed event fails, it never hangs)."""
    async with asyncio.timeout(30):
        seen = monitor.version
        while by_pf(monitor) != want:
            seen = await monitor.wait_change(seen)


async def test_uplink_down_and_up_through_netlink_events(
    watched: tuple[SimulatedNic, PfLinkMonitor],
) -> None:
    nic, monitor = watched
    await until(monitor, {"simpf0": {Health.HEALTHY}, "simpf1": {Health.HEALTHY}})
    await asyncio.to_thread(nic.set_uplink, "simpf0", False)
    await until(monitor, {"simpf0": {Health.UNHEALTHY}, "simpf1": {Health.HEALTHY}})
    assert set(monitor.taints(monitor.inventory)) == {  # type: ignore[arg-type]
        name for name, entry in monitor.health().items() if entry.pf == "simpf0"
    }
    await asyncio.to_thread(nic.set_uplink, "simpf0", True)
    await until(monitor, {"simpf0": {Health.HEALTHY}, "simpf1": {Health.HEALTHY}})
    assert monitor.taints(monitor.inventory) == {}  # type: ignore[arg-type]


async def test_a_pf_netdev_that_goes_away_is_unknown_not_tainted(
    watched: tuple[SimulatedNic, PfLinkMonitor],
) -> None:
    nic, monitor = watched
    await until(monitor, {"simpf0": {Health.HEALTHY}, "simpf1": {Health.HEALTHY}})

    def delete_pf() -> None:
        with IPRoute(netns=nic.host_ns, flags=0) as host:
            (index,) = host.link_lookup(ifname="simpf1")
            host.link("del", index=index)

    await asyncio.to_thread(delete_pf)
    await until(monitor, {"simpf0": {Health.HEALTHY}, "simpf1": {Health.UNKNOWN}})
    assert monitor.taints(monitor.inventory) == {}  # type: ignore[arg-type]
