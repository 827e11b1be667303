"""A de-duplicating work queue of keys (claim uids), like client-go's.

A key is processed by at most one worker at a time; adding it while it is being
processed marks it dirty and it is processed once more afterwards. So watch
events, NAD changes and freed devices can all "kick" a claim freely without
piling up work or racing two reconciles of one claim. The operator's claim
workers and the agent's claim watcher both run on it; a delayed add
(:meth:`WorkQueue.add_after`) is how either retries a key after a back-off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class WorkQueue:
    """FIFO of keys with de-duplication, in-flight tracking and delayed re-adds."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        """Process ``key`` soon (no-op if already queued)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        """Process ``key`` after ``delay`` seconds unless something adds it sooner."""
        if key in self._timers or key in self._queued:
            return
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def cancel_after(self, key: str) -> None:
        """Drop a pending delayed add of ``key`` (it went away: nothing to retry)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued) + len(self._dirty)

    async def run_worker(self, process: Callable[[str], Awaitable[None]]) -> None:
        """Process keys forever, one at a time per worker."""
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._processing.add(key)
            try:
                await process(key)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
                self._queue.task_done()

    def close(self) -> None:
        """Cancel pending delayed adds."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
