"""Which claims this node has prepared: the checkpoint, the claims' CDI specs and their VFs'
device-info files, together.

Prepare adds a claim (its CDI spec and device-info files, then its checkpoint
record), unprepare and release forget it (files, then record), the start-up sweep
removes specs and device-info files no record names. Checkpoint updates are
serialised by one lock, so concurrent claims never lose each other's records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from sriov_dra_agent.kubelet import cdi, device_info
from sriov_dra_agent.kubelet.checkpoint import (
    Checkpoint,
    ClaimRecord,
    load_checkpoint,
    save_checkpoint,
)


class PreparedClaims:
    """The prepared claims of this node: ``checkpoint_path``, ``cdi_dir``, ``device_info_dir``.

    ``resource_names`` are the Multus resource names this agent gives VFs: device-info
    files under other names belong to device plugins and are never swept.
    """

    def __init__(
        self,
        *,
        checkpoint_path: Path,
        cdi_dir: Path,
        device_info_dir: Path = Path(device_info.DEFAULT_DEVICE_INFO_DIR),
        resource_names: Collection[str] = (),
    ) -> None:
        self.checkpoint_path = checkpoint_path
        self.cdi_dir = cdi_dir
        self.device_info_dir = device_info_dir
        self.resource_names = frozenset(resource_names)
        self._lock = asyncio.Lock()

    async def load(self) -> Checkpoint:
        """The checkpoint as last saved."""
        return await asyncio.to_thread(load_checkpoint, self.checkpoint_path)

    async def add(
        self,
        record: ClaimRecord,
        spec: dict[str, Any],
        device_infos: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """Write the claim's CDI spec and device-info files (by file name), then record it."""
        await asyncio.to_thread(cdi.write_claim_spec, self.cdi_dir, record.uid, spec)
        for name, info in (device_infos or {}).items():
            await asyncio.to_thread(device_info.write_device_info, self.device_info_dir, name, info)
        async with self._lock:
            current = await self.load()
            await asyncio.to_thread(
                save_checkpoint, self.checkpoint_path, current.with_claim(record)
            )

    async def forget(self, uid: str) -> bool:
        """Remove claim ``uid``'s CDI spec, device-info files and record; False when it was
        not prepared."""
        async with self._lock:
            checkpoint = await self.load()
            await asyncio.to_thread(cdi.remove_claim_spec, self.cdi_dir, uid)
            if uid not in checkpoint.claims:
                return False
            for device in checkpoint.claims[uid].devices:
                if device.device_info_file:
                    await asyncio.to_thread(
                        device_info.remove_device_info,
                        self.device_info_dir,
                        device.device_info_file,
                    )
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

    async def remove_stray_device_info(self) -> list[str]:
        """Remove our device-info files that no prepared claim records; returns their names.

        They are left by a crash between writing a claim's files and recording it.
        """
        checkpoint = await self.load()
        recorded = {
            device.device_info_file
            for record in checkpoint.claims.values()
            for device in record.devices
        }
        found = await asyncio.to_thread(
            device_info.files_of, self.device_info_dir, self.resource_names
        )
        stray = [name for name in found if name not in recorded]
        for name in stray:
            await asyncio.to_thread(device_info.remove_device_info, self.device_info_dir, name)
        return stray
