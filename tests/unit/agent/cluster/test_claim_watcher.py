"""A claim whose reconcile raises is retried after its back-off, not only at the next resync.

The watcher runs for real (watches, workers, resync loop) against an in-memory
claim list and a claim manager whose reconcile fails on demand. The resync
interval is an hour, so any retry seen here comes from the back-off.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from sriov_dra.constants import NODE_LABEL
from sriov_dra.jsonlog import JsonFormatter
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_manager import ClaimManager
from sriov_dra_agent.cluster.claim_watcher import ClaimWatcher
from sriov_dra_agent.cluster.nad_cache import NadCache
from sriov_dra_kube.client import KubeApi

NODE = "node-a"
DRIVER = "sriovnetwork.k8snetworkplumbingwg.io"
FIRST = 0.01
"""Seconds: the first retry delay in these tests."""
PATIENCE = 5.0
"""Seconds before a wait in these tests gives up (a hang guard, not a measurement)."""


def claim(generation: int = 1) -> dict[str, Any]:
    """A claim allocated from this node's pool, with the node label the operator keeps."""
    return {
        "metadata": {
            "uid": "u-1",
            "namespace": "ns",
            "name": "c",
            "generation": generation,
            "labels": {NODE_LABEL: NODE},
        },
        "status": {
            "allocation": {
                "devices": {
                    "results": [
                        {"request": "vf", "driver": DRIVER, "pool": NODE, "device": "0000-3b-02-0"}
                    ]
                }
            }
        },
    }


class Claims:
    """The claim calls of KubeApi over a list; watches stay open and quiet."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items
        self.selectors: list[str] = []
        """The label selector of every list call."""

    async def list_claims(self, *, label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        self.selectors.append(label_selector)
        key, _, value = label_selector.partition("=")
        return [i for i in self.items if i["metadata"].get("labels", {}).get(key) == value], "1"

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next(
            (
                i
                for i in self.items
                if (i["metadata"]["namespace"], i["metadata"]["name"]) == (namespace, name)
            ),
            None,
        )

    async def watch_claims(
        self, resource_version: str, *, label_selector: str = "", timeout_seconds: int = 120
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        await asyncio.Event().wait()
        yield "BOOKMARK", {}  # not reached: the watch stays open and quiet until cancelled


class Nads:
    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """The watcher registers for NAD changes; none happen here."""


class Manager:
    """Reconcile fails while ``failures`` says so for that generation; records every call."""

    def __init__(self, failures: dict[int, int]) -> None:
        self.failures = failures
        self.calls: list[tuple[str, int]] = []
        self.called = asyncio.Event()

    def record(self, call: tuple[str, int]) -> None:
        self.calls.append(call)
        self.called.set()

    async def reconcile(self, body: dict[str, Any]) -> None:
        generation = body["metadata"]["generation"]
        self.record(("reconcile", generation))
        if self.failures.get(generation, 0) > 0:
            self.failures[generation] -= 1
            raise RuntimeError("netns not there yet")

    async def claim_gone(self, uid: str, namespace: str, name: str) -> None:
        self.record(("gone", 0))

    held: dict[str, tuple[str, str]] = {}
    """uid -> (namespace, name) of the claims this node holds VFs for."""

    def held_claims(self) -> dict[str, tuple[str, str]]:
        return dict(self.held)

    def claims_using_nad(self, namespace: str, name: str) -> list[str]:
        return []

    async def detach_dead(self, locks: ClaimLocks) -> list[str]:
        return []


@asynccontextmanager
async def running(
    manager: Manager, items: list[dict[str, Any]], *, resync_seconds: float = 3600.0
) -> AsyncIterator[ClaimWatcher]:
    watcher = ClaimWatcher(
        cast(KubeApi, Claims(items)),
        cast(ClaimManager, manager),
        ClaimLocks(),
        cast(NadCache, Nads()),
        node=NODE,
        resync_seconds=resync_seconds,
        retry_first_seconds=FIRST,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        yield watcher
    finally:
        stop.set()
        await task


async def until(manager: Manager, condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not condition():
            manager.called.clear()
            await manager.called.wait()

    await asyncio.wait_for(wait(), PATIENCE)


async def quiet() -> None:
    """Give pending retries far more than their back-off to show up."""
    await asyncio.sleep(FIRST * 20)


def retry_lines(caplog: pytest.LogCaptureFixture) -> Iterator[dict[str, Any]]:
    formatter = JsonFormatter()
    for record in caplog.records:
        if record.name == "sriov_dra_agent.cluster.claim_watcher" and hasattr(
            record, "retry_in_seconds"
        ):
            yield json.loads(formatter.format(record))


async def test_a_failing_reconcile_is_retried_after_a_doubling_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    manager = Manager(failures={1: 2})
    async with running(manager, [claim()]):
        await until(manager, lambda: len(manager.calls) >= 3)
        await quiet()
    assert manager.calls == [("reconcile", 1)] * 3
    lines = list(retry_lines(caplog))
    assert [(line["uid"], line["claim"], line["retry_in_seconds"]) for line in lines] == [
        ("u-1", "ns/c", FIRST),
        ("u-1", "ns/c", FIRST * 2),
    ]
    assert lines[0]["level"] == "error"
    assert "netns not there yet" in lines[0]["exception"]


async def test_success_resets_the_back_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    manager = Manager(failures={1: 2, 2: 1})
    async with running(manager, [claim()]) as watcher:
        await until(manager, lambda: len(manager.calls) >= 3)
        watcher.offer("MODIFIED", claim(2))
        await until(manager, lambda: len(manager.calls) >= 5)
        await quiet()
    assert manager.calls == [("reconcile", 1)] * 3 + [("reconcile", 2)] * 2
    assert [line["retry_in_seconds"] for line in retry_lines(caplog)] == [FIRST, FIRST * 2, FIRST]


async def test_a_newer_object_replaces_the_pending_retry() -> None:
    manager = Manager(failures={1: 1_000})
    async with running(manager, [claim()]) as watcher:
        await until(manager, lambda: len(manager.calls) >= 1)
        watcher.offer("MODIFIED", claim(2))
        await until(manager, lambda: ("reconcile", 2) in manager.calls)
        await quiet()
    # Generation 1 may have been retried before generation 2 arrived, never after.
    assert manager.calls[-1] == ("reconcile", 2)
    assert manager.calls.count(("reconcile", 2)) == 1


async def test_deleting_the_claim_cancels_its_retry_and_forgets_its_back_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    manager = Manager(failures={1: 1_000, 3: 1})
    items = [claim()]
    async with running(manager, items) as watcher:
        await until(manager, lambda: len(manager.calls) >= 3)
        items.clear()
        watcher.offer("DELETED", claim())
        await until(manager, lambda: ("gone", 0) in manager.calls)
        await quiet()
        after_delete = list(manager.calls)
        failed_before = len(list(retry_lines(caplog)))
        # The same uid failing again starts from the first delay.
        watcher.offer("MODIFIED", claim(3))
        await until(manager, lambda: manager.calls.count(("reconcile", 3)) == 2)
    assert after_delete[-1] == ("gone", 0)
    assert after_delete.count(("gone", 0)) == 1
    delays = [line["retry_in_seconds"] for line in retry_lines(caplog)]
    assert delays[:failed_before] == [FIRST * 2**i for i in range(failed_before)]
    assert delays[failed_before:] == [FIRST]


# -- only the node's label is watched; a DELETED is verified --------------------------------


def unlabelled(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` after someone removed the node label (it still exists, still allocated here)."""
    return {**body, "metadata": {k: v for k, v in body["metadata"].items() if k != "labels"}}


async def test_a_claim_that_only_lost_its_label_is_reconciled_not_released() -> None:
    manager = Manager(failures={})
    items = [claim()]
    async with running(manager, items) as watcher:
        await until(manager, lambda: len(manager.calls) >= 1)
        items[0] = unlabelled(claim(2))
        # What a label-filtered watch says when the label goes.
        watcher.offer("DELETED", items[0])
        await until(manager, lambda: len(manager.calls) >= 2)
        await quiet()
    assert manager.calls == [("reconcile", 1), ("reconcile", 2)]


async def test_a_claim_deleted_and_recreated_under_its_name_is_released() -> None:
    manager = Manager(failures={})
    items = [claim()]
    async with running(manager, items) as watcher:
        await until(manager, lambda: len(manager.calls) >= 1)
        recreated = claim(2)
        recreated["metadata"]["uid"] = "u-2"
        items[0] = recreated
        watcher.offer("DELETED", claim())
        await until(manager, lambda: len(manager.calls) >= 2)
    assert manager.calls == [("reconcile", 1), ("gone", 0)]


async def test_the_resync_lists_by_label_and_checks_held_claims_it_did_not_list() -> None:
    manager = Manager(failures={})
    manager.held = {"u-1": ("ns", "c"), "u-gone": ("ns", "gone")}
    items = [unlabelled(claim())]
    async with running(manager, items, resync_seconds=FIRST) as watcher:
        await until(manager, lambda: ("gone", 0) in manager.calls and len(manager.calls) >= 2)
        api = cast(Claims, watcher.api)
    # Only this node's label is ever listed (the watch's first list and the resyncs).
    assert set(api.selectors) == {f"{NODE_LABEL}={NODE}"}
    # The held claim that still exists is reconciled as it is; the vanished one released.
    assert ("reconcile", 1) in manager.calls
    assert ("gone", 0) in manager.calls
