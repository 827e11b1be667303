"""What the agent does with the claims of its node as they change: program and release VFs.

The claim watcher calls :meth:`ClaimManager.reconcile` on every change (program the
VFs on allocation, release them on deallocation or deletion) and
:meth:`ClaimManager.claim_gone`, under the claim's lock
(:class:`~sriov_dra_agent.cluster.claim_locks.ClaimLocks`, shared with the kubelet
plugin and the attach socket, so nothing for one claim ever interleaves). The
kubelet's prepare (:mod:`sriov_dra_agent.kubelet.preparer`) calls :meth:`program`
too, and the watcher's resync :meth:`detach_dead`.

VF state lives in the VF records (:mod:`sriov_dra_agent.vf.records`); which claims
are prepared lives in the checkpoint with the CDI specs
(:mod:`sriov_dra_agent.kubelet.prepared_claims`). The API server learns the outcome
through ``status.devices`` conditions and Events; at the end of a claim's life,
condition Released on its ``status.devices`` entries tells the operator the VFs
can go to the next claim.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sriov_dra.claim_ref import ClaimRef
from sriov_dra.constants import ALLOCATION_ANNOTATION
from sriov_dra.errors import SriovDraError
from sriov_dra.naming import pci_address
from sriov_dra.release_signal import released_vfs
from sriov_dra_kube.client import KubeApi
from sriov_dra_kube.events import EventRecorder

from sriov_dra_agent.attach.netns import netns_alive
from sriov_dra_agent.cluster import claim_devices
from sriov_dra_agent.cluster.claim_devices import ClaimDevice, NodeScope, log_context
from sriov_dra_agent.cluster.claim_locks import ClaimLocks
from sriov_dra_agent.cluster.claim_status import ClaimStatus
from sriov_dra_agent.cluster.nad_cache import Nad, NadCache
from sriov_dra_agent.kubelet import cdi
from sriov_dra_agent.kubelet.prepared_claims import PreparedClaims
from sriov_dra_agent.metrics import AgentMetrics
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.records import VfRecord
from sriov_dra_agent.vf.vf_settings import VfSettings, settings_from_netconf

logger = logging.getLogger(__name__)

ANNOTATION_IGNORED: Final = "AllocationAnnotationIgnored"
"""Event reason: the allocation annotation disagrees with status.allocation."""


class ClaimManager:
    """Claims of one node: program, release, repair after a restart."""

    def __init__(
        self,
        scope: NodeScope,
        *,
        api: KubeApi,
        vfs: VfLifecycle,
        nads: NadCache,
        prepared: PreparedClaims,
        status: ClaimStatus,
        events: EventRecorder,
        metrics: AgentMetrics,
        dev_root: Path = Path("/dev"),
    ) -> None:
        self.scope = scope
        self.api = api
        self.vfs = vfs
        self.nads = nads
        self.prepared = prepared
        self.status = status
        self.events = events
        self.metrics = metrics
        self.dev_root = dev_root
        """Where the host's device nodes are seen (checked for ``addVhostMount``)."""
        self._programmed: dict[str, tuple[Any, ...]] = {}
        self._nads_used: dict[str, frozenset[tuple[str, str]]] = {}
        self._annotation_problems: dict[str, list[str]] = {}

    # -- helpers ---------------------------------------------------------------------------

    async def _check_annotation(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice]
    ) -> None:
        """Warn (Event + log, once per change) when the annotation disagrees with status."""
        uid = claim_devices.uid(claim)
        problems = claim_devices.annotation_mismatches(claim, devices, node=self.scope.node)
        if problems == self._annotation_problems.get(uid, []):
            return
        self._annotation_problems[uid] = problems
        if not problems:
            return
        message = (
            f"annotation {ALLOCATION_ANNOTATION} disagrees with status.allocation; node "
            f"{self.scope.node} follows status.allocation: {'; '.join(problems)}; fix: "
            "only the sriov-dra operator writes this annotation, undo the edit"
        )
        logger.warning(
            "allocation annotation ignored where it disagrees with status.allocation",
            extra=log_context(claim, node=self.scope.node, mismatches=problems),
        )
        await self.events.warning(claim, ANNOTATION_IGNORED, message)

    def claims_using_nad(self, namespace: str, name: str) -> list[str]:
        """UIDs of the claims whose VFs were programmed (or failed to be) from that NAD."""
        return [uid for uid, nads in self._nads_used.items() if (namespace, name) in nads]

    async def _warn(self, claim: Mapping[str, Any], exc: SriovDraError) -> None:
        # The recorder posts an unchanged warning once and only counts its repeats.
        await self.events.warning(claim, exc.reason, exc.describe())

    # -- program / release (claim watcher) ---------------------------------------------------

    async def program(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice]
    ) -> dict[str, SriovDraError]:
        """Program every device; returns the errors by device name (also kept for status)."""
        uid = claim_devices.uid(claim)
        owner = ClaimRef(
            uid=uid,
            namespace=str(claim_devices.meta(claim)["namespace"]),
            name=str(claim_devices.meta(claim)["name"]),
        )
        errors: dict[str, SriovDraError] = {}
        nads: dict[tuple[str, str], Nad] = {}
        self._nads_used[uid] = frozenset(d.nad for d in devices if d.nad is not None)
        signature: list[Any] = []
        for device in devices:
            try:
                if device.vhost:
                    cdi.check_vhost_nodes(self.dev_root, node=self.scope.node)
                if device.nad not in nads and device.nad is not None:
                    nads[device.nad] = await self.nads.sriov_conf(device.nad)
                nad = nads.get(device.nad) if device.nad else None
                signature.append((device, nad.resource_version if nad else ""))
            except SriovDraError as exc:
                errors[device.device] = exc
        key = tuple(signature)
        records_ok = all(
            (r := self.vfs.record(d.pci_address)) is not None and r.claim.uid == uid
            for d in devices
        )
        if not errors and records_ok and self._programmed.get(uid) == key:
            return {}
        for device in devices:
            if device.device in errors:
                continue
            nad = nads.get(device.nad) if device.nad else None
            extra = log_context(claim, vf=device.pci_address, request=device.request)
            try:
                desired = settings_from_netconf(nad.conf.raw) if nad else VfSettings()
                with self.metrics.timed("program"):
                    await asyncio.to_thread(
                        self.vfs.program,
                        device.pci_address,
                        owner,
                        device.request,
                        desired,
                        driver=device.driver,
                    )
            except SriovDraError as exc:
                logger.warning("programming VF failed: %s", exc.describe(), extra=extra)
                errors[device.device] = exc
            except Exception as exc:
                logger.exception("programming VF failed", extra=extra)
                errors[device.device] = SriovDraError(f"{type(exc).__name__}: {exc}")
        self.status.set_errors(uid, errors)
        if errors:
            self._programmed.pop(uid, None)
            for error in errors.values():
                await self._warn(claim, error)
        else:
            first = uid not in self._programmed
            self._programmed[uid] = key
            if first:
                names = ", ".join(f"{d.device} ({d.if_name})" for d in devices)
                await self.events.normal(
                    claim, "VfConfigured", f"node {self.scope.node} configured {names}"
                )
        return errors

    async def reconcile(self, claim: Mapping[str, Any]) -> None:
        """Bring this node in line with ``claim`` (caller holds the claim's lock)."""
        self.metrics.reconciles.inc()
        uid = claim_devices.uid(claim)
        releasing = claim_devices.is_deleting(claim) and not claim_devices.is_reserved(claim)
        try:
            devices = self.scope.devices(claim)
        except SriovDraError as exc:
            await self._warn(claim, exc)
            logger.warning("claim unusable: %s", exc.describe(), extra=log_context(claim))
            if not releasing:
                return
            # An unusable config must not keep a deleted claim's VF (and finalizer) forever.
            devices = []
        if devices and not releasing:
            await self._check_annotation(claim, devices)
            await self.program(claim, devices)
            await self.status.write(claim, devices)
            return
        self._annotation_problems.pop(uid, None)
        held = self.vfs.records_of(uid)
        prepared = uid in (await self.prepared.load()).claims
        if held or prepared:
            await self.release(claim, held)
        allocated_here = self.scope.results(claim)
        if claim_devices.is_deleting(claim) and allocated_here:
            await self._report_released(claim, allocated_here)

    async def release(self, claim: Mapping[str, Any], held: Sequence[VfRecord]) -> None:
        """Detach and restore every VF of the claim, forget its preparation."""
        uid = claim_devices.uid(claim)
        failures = []
        for record in held:
            extra = log_context(claim, pf=record.pf_name, vf=record.pci_address)
            try:
                with self.metrics.timed("release"):
                    await asyncio.to_thread(self.vfs.release, record.pci_address)
            except Exception as exc:
                logger.exception("restoring VF failed", extra=extra)
                failures.append(f"{record.pci_address}: {exc}")
        await self.prepared.forget(uid)
        self._programmed.pop(uid, None)
        self._nads_used.pop(uid, None)
        self._annotation_problems.pop(uid, None)
        self.status.forget(uid)
        if failures:
            message = "restoring VFs failed: " + "; ".join(failures)
            await self.events.warning(claim, "VfReleaseFailed", message)
            raise SriovDraError(message, fix="see the agent log; the agent retries")
        if held:
            await self.events.normal(
                claim,
                "VfReleased",
                f"node {self.scope.node} restored " + ", ".join(r.pci_address for r in held),
            )

    async def _report_released(
        self, claim: Mapping[str, Any], results: Sequence[Mapping[str, Any]]
    ) -> None:
        """Condition Released on this node's entries: the operator may hand the VFs on."""
        if {(str(r["pool"]), str(r["device"])) for r in results} <= released_vfs(claim):
            return
        await self.status.released(claim, results)
        logger.info("claim released", extra=log_context(claim))

    async def claim_gone(self, uid: str, namespace: str, name: str) -> None:
        """The claim no longer exists: restore whatever this node still holds for it."""
        held = self.vfs.records_of(uid)
        prepared = uid in (await self.prepared.load()).claims
        if not held and not prepared:
            return
        stub = {"metadata": {"uid": uid, "namespace": namespace, "name": name}}
        await self.release(stub, held)

    def held_claims(self) -> dict[str, tuple[str, str]]:
        """uid -> (namespace, name) of every claim this node holds VFs for."""
        return {r.claim.uid: (r.claim.namespace, r.claim.name) for r in self.vfs.records_all()}

    # -- start-up --------------------------------------------------------------------------

    async def _held_pairs(self) -> set[tuple[str, str]]:
        """(claim uid, VF PCI) pairs this node must keep: allocated here, or prepared."""
        pairs: set[tuple[str, str]] = set()
        claims, _ = await self.api.list_claims()
        for claim in claims:
            if claim_devices.is_deleting(claim) and not claim_devices.is_reserved(claim):
                continue
            # The results alone, not scope.devices(): a claim whose config this agent
            # refuses still holds its VFs until it is released.
            results = self.scope.results(claim)
            pairs.update((claim_devices.uid(claim), pci_address(str(r["device"]))) for r in results)
        for record in (await self.prepared.load()).claims.values():
            pairs.update((record.uid, d.pci_address) for d in record.devices)
        return pairs

    async def startup_sweep(self) -> dict[str, Any]:
        """Repair what a crash left before serving: half attaches/detaches, dead pod netns,
        VFs of claims that went away while the agent was down, stray CDI specs and
        device-info files."""
        try:
            keep = await self._held_pairs()
        except Exception as exc:
            # Without the API we cannot tell what went away: keep every VF, repair the rest.
            logger.warning("cannot list claims for the start-up sweep: %s", exc)
            keep = {(r.claim.uid, r.pci_address) for r in self.vfs.records_all()}
        report = await asyncio.to_thread(self.vfs.sweep, keep)
        stray = await self.prepared.remove_stray_specs()
        stray_device_info = await self.prepared.remove_stray_device_info()
        summary = {
            **report.model_dump(),
            "stray_cdi_specs": stray,
            "stray_device_info": stray_device_info,
        }
        logger.info("start-up sweep done", extra={"node": self.scope.node, **summary})
        return summary

    async def detach_dead(self, locks: ClaimLocks) -> list[str]:
        """Detach VFs whose pod netns died without an unprepare (periodic), update status.

        Only settled attachments are looked at, each under its claim's lock: an
        attach or detach in flight is never disturbed.
        """
        detached = []
        for candidate in self.vfs.records_all():
            att = candidate.attachment
            if att is None or att.phase != "attached":
                continue
            if netns_alive(att.netns, att.netns_id):
                continue
            uid = candidate.claim.uid
            async with locks.hold(uid):
                record = self.vfs.record(candidate.pci_address)
                if record is None or record.attachment != att:
                    continue
                with self.metrics.timed("detach"):
                    await asyncio.to_thread(self.vfs.detach, record.pci_address)
                detached.append(record.pci_address)
                logger.info(
                    "detached VF of a dead pod netns",
                    extra={"claim": record.claim.ref(), "uid": uid, "vf": record.pci_address},
                )
                claim = await self.api.get_claim(record.claim.namespace, record.claim.name)
                if claim is not None and claim_devices.uid(claim) == uid:
                    await self.status.write(claim)
        return detached
