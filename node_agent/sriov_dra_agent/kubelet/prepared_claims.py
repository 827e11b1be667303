"""Which claims this node has prepared: the checkpoint and the claims' CDI specs, together.

Prepare adds a claim (its CDI spec, then its checkpoint record), unprepare and
release forget it (spec and record), the start-up sweep removes specs no record
names. Checkpoint updates are serialised by one lock, so concurrent claims never
lose each other's records.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sriov_dra_agent.kubelet import cdi
from sriov_dra_agent.kubelet.checkpoint import (
    Checkpoint,
    ClaimRecord,
    load_checkpoint,
    save_checkpoint,
)


class PreparedClaims:
    """The prepared claims of this node, in ``checkpoint_path`` and ``cdi_dir``."""

    def __init__(self, *, checkpoint_path: Path, cdi_dir: Path) -> None:
        self.checkpoint_path = checkpoint_path
        self.cdi_dir = cdi_dir
        self._lock = asyncio.Lock()

    async def load(self) -> Checkpoint:
        """The checkpoint as last saved."""
        return await asyncio.to_thread(load_checkpoint, self.checkpoint_path)

    async def add(self, record: ClaimRecord, spec: dict[str, Any]) -> None:
        """Write the claim's CDI spec, then record it as prepared."""
        await asyncio.to_thread(cdi.write_claim_spec, self.cdi_dir, record.uid, spec)
        async with self._lock:
            current = await self.load()
            await asyncio.to_thread(
                save_checkpoint, self.checkpoint_path, current.with_claim(record)
            )

    async def forget(self, uid: str) -> bool:
        """Remove claim ``uid``'s CDI spec and record; False when it was not prepared."""
        async with self._lock:
            checkpoint = await self.load()
            await asyncio.to_thread(cdi.remove_claim_spec, self.cdi_dir, uid)
            if uid not in checkpoint.claims:
                return False
            await asyncio.to_thread(
                save_checkpoint, self.checkpoint_path, checkpoint.without_claim(uid)
            )
            return True

    async def remove_stray_specs(self) -> list[str]:
        """Remove the CDI specs of claims the checkpoint does not hold; returns their UIDs."""
        checkpoint = await self.load()
        stray = [
            uid
            for uid in await asyncio.to_thread(cdi.claim_uids_with_specs, self.cdi_dir)
            if uid not in checkpoint.claims
        ]
        for uid in stray:
            await asyncio.to_thread(cdi.remove_claim_spec, self.cdi_dir, uid)
        return stray
