"""Keeps a watch (a socket the kernel pushes events on) running until the agent stops.

A watch coroutine runs forever once it has opened its socket; when it ends, it failed
(the socket closed, a read error, the netns vanished). :func:`keep_watching` then
reports the end and starts it again after a back-off, so a flapping socket is not
reopened in a tight loop. Shared by the PF link watch (rtnetlink) and the hardware
event sources (kernel uevents, inotify).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sriov_dra.backoff import Backoff

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 30.0


async def keep_watching(
    watch: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    opened: asyncio.Event,
    ended: Callable[[BaseException | None], None],
) -> None:
    """Run ``watch`` until ``stop``; each time it ends, call ``ended`` with its error and
    start it again after a back-off (0.5 s doubling up to 30 s, back to 0.5 s once a run
    had opened). ``watch`` sets ``opened`` once its socket is open; it is cleared here
    whenever the watch is down."""
    backoff = Backoff(base=BACKOFF_BASE_SECONDS, cap=BACKOFF_CAP_SECONDS)
    while not stop.is_set():
        task = asyncio.ensure_future(watch())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for running in (task, stopped):
                running.cancel()
            # Awaiting a failed watch raises its error: it is read from the task below.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if opened.is_set():
            backoff.reset("watch")
        opened.clear()
        if stop.is_set():
            return
        ended(task.exception() if not task.cancelled() else None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.next_delay("watch"))
