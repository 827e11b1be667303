"""A watch that fails is reported and started again; it never takes its loop down.

Before keep_watching, the PF link watch's loop re-raised its socket's first error and
ended: the agent's /healthz then said ``stopped: pf-links`` until a restart.
"""

from __future__ import annotations

import asyncio

from sriov_dra_agent.health.pf_links import PfLinkMonitor
from sriov_dra_agent.restarting_watch import keep_watching
from sriov_dra_agent.vf.inventory import Inventory, PfInfo


async def test_a_failing_watch_is_reported_and_run_again_until_it_opens() -> None:
    opened = asyncio.Event()
    runs: list[int] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def watch() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise OSError(f"socket closed ({len(runs)})")
        opened.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(
        keep_watching(watch, stop, opened=opened, ended=lambda e: errors.append(str(e)))
    )
    try:
        async with asyncio.timeout(10):
            await opened.wait()
        assert errors == ["socket closed (1)", "socket closed (2)"]
        assert not task.done()
    finally:
        stop.set()
        await task
    assert not opened.is_set(), "cleared once the watch is down"
    assert len(runs) == 3


async def test_the_pf_link_watch_survives_a_socket_error_and_forgets_the_links() -> None:
    monitor = PfLinkMonitor(node="n1", netns=None)
    pf = PfInfo(
        name="simpf0", pci_address="0000:3b:00.0", vendor="8086", device_id="1592",
        total_vfs=4, num_vfs=0,
    )  # fmt: skip
    monitor.set_inventory(Inventory(node="n1", pfs=(pf,)))
    failed = asyncio.Event()

    async def watch() -> None:
        monitor.observe({"event": "RTM_NEWLINK", "index": 3, "IFLA_IFNAME": "simpf0"})
        monitor.watching.set()
        await asyncio.sleep(0)
        failed.set()
        raise OSError("socket closed")

    monitor._watch = watch  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    try:
        async with asyncio.timeout(10):
            await failed.wait()
            while monitor.links():
                await monitor.wait_change(monitor.version)
        assert monitor.links() == {}, "unknown while the watch is down"
        assert not task.done(), "the watch loop goes on"
    finally:
        stop.set()
        await task
