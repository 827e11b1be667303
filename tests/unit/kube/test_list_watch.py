"""The one list -> watch -> relist loop: where each watch resumes, and what makes it relist.

The list and the watch are scripted: each watch call plays the next script, a
list of events or an exception. When the scripts run out, the test's stop is
set and the loop ends; its back-off starts tiny so failures cost no time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from sriov_dra.backoff import Backoff
from sriov_dra.watch_events import WatchEvent
from sriov_dra_kube.list_watch import ListWatch

PATIENCE = 5.0
"""Seconds before a run gives up (a hang guard, not a measurement)."""

Script = list[WatchEvent] | BaseException


def obj(version: str, name: str = "x") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class Server:
    """Answers lists with versions "L1", "L2", ... and watches from ``scripts`` in turn."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.calls: list[str] = []
        self.seen: list[tuple[str, str]] = []
        self.stop = asyncio.Event()
        self._lists = 0

    async def relist(self) -> str:
        self._lists += 1
        self.calls.append(f"list->L{self._lists}")
        return f"L{self._lists}"

    async def watch(self, version: str, seconds: int) -> AsyncIterator[WatchEvent]:
        self.calls.append(f"watch@{version}")
        if not self.scripts:
            self.stop.set()
            await asyncio.Event().wait()
        script = self.scripts.pop(0)
        if isinstance(script, BaseException):
            raise script
        for event in script:
            yield event

    def on_event(self, kind: str, body: dict[str, Any]) -> None:
        self.seen.append((kind, body["metadata"]["resourceVersion"]))


async def run(server: Server, **options: Any) -> None:
    """Run the loop until the scripts run out or it returns by itself."""
    options.setdefault("backoff", Backoff(base=0.001, cap=0.001))
    loop = ListWatch(
        what="thing",
        relist=server.relist,
        watch=server.watch,
        on_event=server.on_event,
        timeout_seconds=60,
        **options,
    )
    task = asyncio.create_task(loop.run(server.stop))
    stopped = asyncio.create_task(server.stop.wait())
    first = asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    await asyncio.wait_for(first, PATIENCE)
    for pending in (task, stopped):
        pending.cancel()
    await asyncio.gather(task, stopped, return_exceptions=True)


async def test_a_watch_resumes_from_the_last_version_bookmarks_included() -> None:
    server = Server(
        [
            [WatchEvent("ADDED", obj("5")), WatchEvent("BOOKMARK", obj("9"))],
            [WatchEvent("MODIFIED", obj("12"))],
        ]
    )
    await run(server)
    assert server.calls == ["list->L1", "watch@L1", "watch@9", "watch@12"]
    assert server.seen == [("ADDED", "5"), ("MODIFIED", "12")]


async def test_410_relists_and_other_failures_relist_too() -> None:
    server = Server(
        [
            [WatchEvent("ADDED", obj("5"))],
            ApiException(status=410, reason="Gone"),
            ApiException(status=500, reason="etcd"),
            RuntimeError("connection reset"),
        ]
    )
    await run(server)
    assert server.calls == [
        "list->L1",
        "watch@L1",
        "watch@5",
        "list->L2",
        "watch@L2",
        "list->L3",
        "watch@L3",
        "list->L4",
        "watch@L4",
    ]


async def test_resume_from_watches_from_the_callers_list_without_listing_again() -> None:
    server = Server([[WatchEvent("MODIFIED", obj("31"))], ApiException(status=410, reason="Gone")])
    await run(server, resume_from="30")
    # The caller's own list (at version 30) stands in for the first list; a 410 still relists.
    assert server.calls == ["watch@30", "watch@31", "list->L1", "watch@L1"]
    assert server.seen == [("MODIFIED", "31")]


async def test_give_up_ends_the_loop_on_the_refusal_it_names() -> None:
    server = Server([ApiException(status=403, reason="Forbidden")])
    refused: list[int | None] = []

    def forbidden(exc: ApiException) -> bool:
        refused.append(exc.status)
        return exc.status == 403

    await run(server, give_up=forbidden)
    assert refused == [403]
    assert server.calls == ["list->L1", "watch@L1"]


async def test_relist_every_relists_on_schedule() -> None:
    server = Server([[WatchEvent("ADDED", obj("5"))], []])
    # Every relist is due at once: each watch that ends is followed by a list.
    await run(server, relist_every=0.0)
    assert server.calls == ["list->L1", "watch@L1", "list->L2", "watch@L2", "list->L3", "watch@L3"]


async def test_a_list_that_works_resets_the_back_off() -> None:
    class Flaky(Server):
        """Lists fail twice, then work."""

        failures = 2

        async def relist(self) -> str:
            if self.failures:
                self.failures -= 1
                self.calls.append("list failed")
                raise ApiException(status=503, reason="unavailable")
            return await super().relist()

    server = Flaky([])
    backoff = Backoff(base=0.001, cap=1.0)
    await run(server, backoff=backoff)
    assert server.calls == ["list failed", "list failed", "list->L1", "watch@L1"]
    # Reset by the list that worked: the next failure waits the base delay again.
    assert backoff.next_delay("thing") == 0.001
