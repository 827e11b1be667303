"""Claims whose VFs vanished from the hardware: a Warning, a condition and a log line each.

A VF can go while a claim holds it: someone lowers ``sriov_numvfs``, a PF is removed
or reset. Every inventory discovery makes (the slice publisher's ``on_inventory``,
woken by :mod:`sriov_dra_agent.vf.hardware_events`) is compared with the VFs this
agent holds (:mod:`sriov_dra_agent.vf.vf_gone`). Each VF newly gone gets, once: a
JSON log line, the Warning Event ``VfGone`` on its claim (node, PF, VF and the fix),
and ``Ready``, ``VfConfigured`` and ``NetworkReady`` False with reason ``VfGone`` on
its ``status.devices`` entry. Nothing
is released here: the claim keeps its allocation until it is deleted, and unprepare
and release of a vanished VF do what is left (:mod:`sriov_dra_agent.vf.lifecycle`:
the pod's addresses released, the record forgotten).
"""

from __future__ import annotations

import asyncio
import logging

from sriov_dra.naming import device_name
from sriov_dra_kube.client import KubeApi
from sriov_dra_kube.events import EventRecorder

from sriov_dra_agent.cluster import claim_devices
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_status import ClaimStatus
from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.records import VfRecord, log_context
from sriov_dra_agent.vf.vf_gone import vanished, vf_gone

logger = logging.getLogger(__name__)


class VanishedVfs:
    """Warns the claims of this node whose VFs vanished, once per VF and claim."""

    def __init__(
        self,
        *,
        node: str,
        api: KubeApi,
        vfs: VfLifecycle,
        status: ClaimStatus,
        events: EventRecorder,
        locks: ClaimLocks,
    ) -> None:
        self.node = node
        self.api = api
        self.vfs = vfs
        self.status = status
        self.events = events
        self.locks = locks
        self._warned: set[tuple[str, str]] = set()
        """(claim uid, PCI address) already warned about."""
        self._pending: asyncio.Queue[VfRecord] = asyncio.Queue()

    def observe(self, inventory: Inventory) -> None:
        """Compare a fresh inventory with the held VFs; queue the newly vanished."""
        records = self.vfs.records_all()
        gone = vanished(records, inventory)
        held = {(r.claim.uid, r.pci_address) for r in records}
        gone_keys = {(r.claim.uid, r.pci_address) for r in gone}
        for record in gone:
            if (record.claim.uid, record.pci_address) not in self._warned:
                self._warned.add((record.claim.uid, record.pci_address))
                self._pending.put_nowait(record)
        back = {key for key in self._warned if key in held and key not in gone_keys}
        for uid, pci in sorted(back):
            logger.info(
                "VF vanished earlier is back on its PF; its claim keeps condition VfGone "
                "until it is allocated again",
                extra={"node": self.node, "uid": uid, "vf": pci},
            )
        # Released claims and returning VFs are warned again if they vanish again.
        self._warned &= held - back

    async def run(self, stop: asyncio.Event) -> None:
        """Report each queued VF until ``stop``."""
        while not stop.is_set():
            getting = asyncio.ensure_future(self._pending.get())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not getting.done():
                    getting.cancel()
            if getting.done() and not getting.cancelled():
                record = getting.result()
                try:
                    await self.report(record)
                except Exception:
                    # Told again after the next discovery, if the VF is still gone then.
                    self._warned.discard((record.claim.uid, record.pci_address))
                    logger.exception(
                        "reporting a vanished VF failed; retried on the next rescan",
                        extra=log_context(self.node, record, record.pci_address),
                    )

    async def report(self, record: VfRecord) -> None:
        """Log, set the device's condition and warn on the claim, under its lock."""
        error = vf_gone(self.node, record)
        logger.warning(
            "VF vanished from its PF while a claim holds it: %s",
            error.describe(),
            extra=log_context(self.node, record, record.pci_address, reason=error.reason),
        )
        uid = record.claim.uid
        async with self.locks.hold(uid):
            claim = await self.api.get_claim(record.claim.namespace, record.claim.name)
            if claim is None or claim_devices.uid(claim) != uid:
                return  # the claim is gone: its release follows, nothing to tell
            self.status.add_error(uid, device_name(record.pci_address), error)
            await self.status.write(claim)
            await self.events.warning(claim, error.reason, error.describe())
