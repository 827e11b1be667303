"""One list -> watch -> relist loop, as client-go's reflector runs it.

List to learn the state and a resourceVersion, then watch from that version,
following it through every event (bookmarks included) so that a watch the
server ends after its timeout resumes where it stopped. A 410 (the version is
too old: the server compacted it away) relists at once; any other failure
relists after a back-off that grows while failures repeat and resets after a
list that worked. ``relist_every`` relists on a schedule as well, for callers
that reconcile what they did not see (a resync).

The agent's claims and NADs and the node emulator's pods are watched here; the
stream itself is decoded by :mod:`sriov_dra.watch_events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sriov_dra.backoff import Backoff
from sriov_dra.watch_events import WatchEvent

from sriov_dra_kube.client import ApiException

logger = logging.getLogger(__name__)

Relist = Callable[[], Awaitable[str]]
"""Lists, hands what it found to the caller's state; returns the list's resourceVersion."""
Watch = Callable[[str, int], AsyncIterator[WatchEvent]]
"""Watches from a resourceVersion for at most that many seconds."""
OnEvent = Callable[[str, dict[str, Any]], None]
"""Takes one (type, object) watch event; bookmarks never reach it."""


def _no_give_up(exc: ApiException) -> bool:
    return False


@dataclass
class ListWatch:
    """List, then watch, until ``stop``; see the module docstring."""

    what: str
    """Names the watched objects in log lines ("claim", "NAD", "pod")."""
    relist: Relist
    watch: Watch
    on_event: OnEvent
    timeout_seconds: int
    """How long one watch request runs before the server ends it (then it resumes)."""
    relist_every: float | None = None
    """Seconds between scheduled relists; None: only after a 410 or a failure."""
    give_up: Callable[[ApiException], bool] = _no_give_up
    """True for a refusal that ends the loop for good (say, a 403 the caller handles)."""
    backoff: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))
    """The wait after a failure, growing while failures repeat."""
    resume_from: str = ""
    """The resourceVersion of a list the caller already made: the first watch starts there
    instead of listing the same state again ('' lists first)."""

    async def run(self, stop: asyncio.Event) -> None:
        """Keep listing and watching until ``stop`` is set (or :attr:`give_up` says so)."""
        version = self.resume_from
        deadline = float("inf")
        if version and self.relist_every is not None:
            deadline = time.monotonic() + self.relist_every
        while not stop.is_set():
            try:
                if not version or time.monotonic() >= deadline:
                    version = await self.relist()
                    self.backoff.reset(self.what)
                    if self.relist_every is not None:
                        deadline = time.monotonic() + self.relist_every
                version = await self._watch_once(version, deadline)
            except ApiException as exc:
                version = ""
                if exc.status == 410:
                    continue
                if self.give_up(exc):
                    return
                logger.warning(
                    "%s watch failed; relisting",
                    self.what,
                    extra={"status": exc.status, "error": str(exc.reason)},
                )
                await self._pause(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("%s watch broke; relisting", self.what, extra={"error": repr(exc)})
                version = ""
                await self._pause(stop)

    async def _watch_once(self, version: str, deadline: float) -> str:
        """One watch request from ``version``; the version to resume from."""
        timeout = self.timeout_seconds
        if deadline != float("inf"):
            timeout = max(1, min(timeout, int(deadline - time.monotonic())))
        async for kind, obj in self.watch(version, timeout):
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind != "BOOKMARK":
                self.on_event(kind, obj)
        return version

    async def _pause(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=self.backoff.next_delay(self.what))
