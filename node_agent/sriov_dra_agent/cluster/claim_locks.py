"""One asyncio lock per claim UID, shared by the kubelet plugin, attach socket and claim watcher.

The kubelet may retry NodePrepareResources while the first call still runs, and
a container's createRuntime hook may ask to attach while an unprepare is under
way; work on one claim must never interleave, while different claims proceed
in parallel. Locks are not reentrant: code holding a claim's lock must not
call back into a server that takes it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ClaimLocks:
    """Per-claim mutual exclusion; a lock lives only while someone holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, claim_uid: str) -> AsyncIterator[None]:
        """Run the body with ``claim_uid``'s lock held."""
        lock, users = self._locks.get(claim_uid, (asyncio.Lock(), 0))
        self._locks[claim_uid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[claim_uid]
            if users == 1:
                del self._locks[claim_uid]
            else:
                self._locks[claim_uid] = (lock, users - 1)

    def held(self) -> list[str]:
        """UIDs of claims whose lock is held or awaited (for diagnostics and tests)."""
        return sorted(self._locks)

    def users(self, claim_uid: str) -> int:
        """How many tasks hold or await ``claim_uid``'s lock."""
        return self._locks.get(claim_uid, (None, 0))[1]
