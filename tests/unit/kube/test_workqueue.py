"""The work queue de-duplicates and never runs one key in two workers at once."""

from __future__ import annotations

import asyncio

from sriov_dra_kube.workqueue import WorkQueue


async def test_duplicates_collapse_and_a_key_added_while_running_runs_again() -> None:
    queue = WorkQueue()
    seen: list[str] = []
    running: set[str] = set()
    overlap: list[str] = []
    release = asyncio.Event()

    async def process(key: str) -> None:
        if key in running:
            overlap.append(key)
        running.add(key)
        seen.append(key)
        if len(seen) == 1:
            await release.wait()
        running.discard(key)

    for key in ("a", "a", "b", "a"):
        queue.add(key)
    workers = [asyncio.create_task(queue.run_worker(process)) for _ in range(3)]
    await asyncio.sleep(0.01)
    queue.add("a")  # "a" is being processed: must run once more afterwards, not concurrently
    queue.add("a")
    release.set()
    await asyncio.sleep(0.01)
    for worker in workers:
        worker.cancel()
    assert sorted(seen) == ["a", "a", "b"]
    assert overlap == []
    assert len(queue) == 0


async def test_add_after_is_superseded_by_add() -> None:
    queue = WorkQueue()
    seen: list[str] = []

    async def process(key: str) -> None:
        seen.append(key)

    worker = asyncio.create_task(queue.run_worker(process))
    queue.add_after("a", 0.05)
    queue.add("a")
    # Sleep past the timer's time: had add() left the timer running, "a" would come twice.
    # The loop fires timers in deadline order, so this holds however slow the machine is.
    await asyncio.sleep(0.2)
    queue.close()
    worker.cancel()
    assert seen == ["a"]
