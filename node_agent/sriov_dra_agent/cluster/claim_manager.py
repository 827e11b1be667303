"""What the agent does with the claims of its node: the one place that ties it together.

Three callers, one set of operations, all run under the claim's lock
(:class:`~sriov_dra_agent.cluster.claim_locks.ClaimLocks`, shared with the kubelet
plugin and the attach socket, so nothing for one claim ever interleaves):

- the claim watcher: :meth:`reconcile` on every change (program VFs on
  allocation, release them on deallocation or deletion), :meth:`claim_gone`;
- the kubelet plugin: :meth:`prepare` / :meth:`unprepare` (the ``ClaimPreparer``);
- the attach socket: :meth:`attach` (the ``Attacher``), called by our OCI hook.

VF state lives in the VF records (:mod:`vf_records`); which claims are prepared
lives in the checkpoint (:mod:`checkpoint`) together with the CDI specs. The
API server learns the outcome through ``status.devices`` conditions, Events and,
at the end of a claim's life, the released annotation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sriov_dra.constants import ALLOCATION_ANNOTATION, RELEASED_ANNOTATION
from sriov_dra.errors import NadNotFound, SriovDraError
from sriov_dra.nad import SriovNetConf, parse_nad_config
from sriov_dra.naming import pci_address

from sriov_dra_agent.attach.netns import netns_alive
from sriov_dra_agent.cluster import claim_devices
from sriov_dra_agent.cluster.claim_devices import ClaimDevice
from sriov_dra_agent.cluster.device_status import DeviceState, DeviceStatusWriter
from sriov_dra_agent.cluster.events import EventRecorder
from sriov_dra_agent.cluster.kube_api import KubeApi
from sriov_dra_agent.cluster.nad_cache import NadCache
from sriov_dra_agent.kubelet import cdi
from sriov_dra_agent.kubelet.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from sriov_dra_agent.metrics import AgentMetrics
from sriov_dra_agent.vf.inventory import Inventory
from sriov_dra_agent.vf.lifecycle import VfLifecycle
from sriov_dra_agent.vf.records import ClaimRef as RecordClaim
from sriov_dra_agent.vf.records import VfRecord
from sriov_dra_agent.vf.vf_settings import VfSettings, settings_from_netconf

logger = logging.getLogger(__name__)

ANNOTATION_IGNORED: Final = "AllocationAnnotationIgnored"
"""Event reason: the allocation annotation disagrees with status.allocation."""


@dataclass(frozen=True)
class ManagerConfig:
    node: str
    driver: str
    cdi_dir: Path
    checkpoint_path: Path
    hook_path: str
    attach_socket: Path
    cni_data_dir: Path
    sysfs_root: Path | None = None
    dev_root: Path = Path("/dev")
    """Where the host's device nodes are seen (checked for ``addVhostMount``)."""
    nad_namespaces: frozenset[str] = frozenset()
    """Namespaces whose NADs any claim may use besides its own (``"*"``: all), as the
    operator's ``--nad-namespaces``; the agent refuses any other cross-namespace NAD."""


@dataclass(frozen=True)
class _Nad:
    conf: SriovNetConf
    resource_version: str


def _ctx(claim: Mapping[str, Any], **more: Any) -> dict[str, Any]:
    return {"claim": claim_devices.ref(claim), "uid": claim_devices.uid(claim), **more}


class ClaimManager:
    """Claims of one node: program, prepare, attach, detach, unprepare, release."""

    def __init__(
        self,
        config: ManagerConfig,
        *,
        api: KubeApi,
        hardware: VfLifecycle,
        status: DeviceStatusWriter,
        events: EventRecorder,
        metrics: AgentMetrics,
        nads: NadCache | None = None,
    ) -> None:
        self.config = config
        self.api = api
        self.nads = nads or NadCache(api, on_fetch=metrics.nad_fetches.inc)
        self.hw = hardware
        self.status = status
        self.events = events
        self.metrics = metrics
        self.checkpoint_lock = asyncio.Lock()
        self._errors: dict[str, dict[str, SriovDraError]] = {}
        self._programmed: dict[str, tuple[Any, ...]] = {}
        self._nads_used: dict[str, frozenset[tuple[str, str]]] = {}
        self._annotation_problems: dict[str, list[str]] = {}

    # -- helpers ---------------------------------------------------------------------------

    def devices(self, claim: Mapping[str, Any]) -> list[ClaimDevice]:
        """This node's VFs of ``claim`` as ``status.allocation`` configures them.

        Raises :class:`~sriov_dra.errors.InvalidVfConfig` naming the field.
        """
        return claim_devices.claim_devices(
            claim,
            node=self.config.node,
            driver=self.config.driver,
            nad_namespaces=self.config.nad_namespaces,
        )

    async def _check_annotation(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice]
    ) -> None:
        """Warn (Event + log, once per change) when the annotation disagrees with status."""
        uid = claim_devices.uid(claim)
        problems = claim_devices.annotation_mismatches(claim, devices, node=self.config.node)
        if problems == self._annotation_problems.get(uid, []):
            return
        self._annotation_problems[uid] = problems
        if not problems:
            return
        message = (
            f"annotation {ALLOCATION_ANNOTATION} disagrees with status.allocation; node "
            f"{self.config.node} follows status.allocation: {'; '.join(problems)}; fix: "
            "only the sriov-dra operator writes this annotation, undo the edit"
        )
        logger.warning(
            "allocation annotation ignored where it disagrees with status.allocation",
            extra=_ctx(claim, node=self.config.node, mismatches=problems),
        )
        await self.events.warning(claim, ANNOTATION_IGNORED, message)

    async def nad(self, device: ClaimDevice) -> _Nad | None:
        if device.nad is None:
            return None
        namespace, name = device.nad
        obj = await self.nads.get(namespace, name)
        if obj is None:
            raise NadNotFound(
                f"NetworkAttachmentDefinition {namespace}/{name} does not exist",
                field="VfConfig.netAttachDefName",
                fix=f"create NetworkAttachmentDefinition {namespace}/{name}",
            )
        config = (obj.get("spec") or {}).get("config") or ""
        conf = parse_nad_config(config, nad=f"{namespace}/{name}")
        return _Nad(conf, str(obj["metadata"].get("resourceVersion", "")))

    def claims_using_nad(self, namespace: str, name: str) -> list[str]:
        """UIDs of the claims whose VFs were programmed (or failed to be) from that NAD."""
        return [uid for uid, nads in self._nads_used.items() if (namespace, name) in nads]

    def ipam_conf(self, nad: _Nad | None) -> dict[str, Any] | None:
        if nad is None or not nad.conf.ipam:
            return None
        conf = nad.conf.ipam_stdin()
        ipam_section = dict(conf["ipam"])
        if ipam_section.get("type") == "host-local" and "dataDir" not in ipam_section:
            # Per-agent default, so that simulated nodes sharing a host keep apart.
            ipam_section["dataDir"] = str(self.config.cni_data_dir)
        conf["ipam"] = ipam_section
        return conf

    async def _warn(self, claim: Mapping[str, Any], exc: SriovDraError) -> None:
        # The recorder posts an unchanged warning once and only counts its repeats.
        await self.events.warning(claim, exc.reason, exc.describe())

    async def load_checkpoint(self) -> Any:
        return await asyncio.to_thread(load_checkpoint, self.config.checkpoint_path)

    def records_of(self, uid: str) -> list[VfRecord]:
        return [r for r in self.hw.records_all() if r.claim.uid == uid]

    def vf_state_counts(self, inventory: Inventory | None, prepared: set[str]) -> dict[str, int]:
        """VFs per state for the metrics gauge."""
        records = self.hw.records_all()
        counts = {"programmed": 0, "prepared": 0, "attached": 0}
        for record in records:
            if record.attachment is not None and record.attachment.phase == "attached":
                counts["attached"] += 1
            elif record.claim.uid in prepared:
                counts["prepared"] += 1
            else:
                counts["programmed"] += 1
        total = len(inventory.vfs()) if inventory is not None else len(records)
        counts["free"] = max(total - len(records), 0)
        return counts

    # -- status ----------------------------------------------------------------------------

    def _states(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice]
    ) -> list[DeviceState]:
        uid = claim_devices.uid(claim)
        errors = self._errors.get(uid, {})
        states = []
        for device in devices:
            record = self.hw.record(device.pci_address)
            mine = record is not None and record.claim.uid == uid
            error = errors.get(device.device)
            network = None
            if mine and record is not None and record.attachment is not None:
                att = record.attachment
                if att.phase == "attached":
                    network = att.network_data()
            data: dict[str, Any] = {"pciAddress": device.pci_address, "ifName": device.if_name}
            if device.nad:
                data["networkAttachmentDefinition"] = "/".join(device.nad)
            if error is not None:
                states.append(
                    DeviceState(device, False, error.reason, error.describe(), network, data=data)
                )
            elif mine and record is not None:
                result = record.result
                parts = [f"VF {device.pci_address} of PF {record.pf_name} configured"]
                done = sorted({*result.applied, *result.unchanged})
                if done:
                    parts.append(f"settings in effect: {', '.join(done)}")
                if result.unsupported:
                    unsupported = "; ".join(f"{k}: {v}" for k, v in result.unsupported.items())
                    parts.append(f"not applied (unsupported here): {unsupported}")
                    data["unsupported"] = dict(result.unsupported)
                if record.pf_name:
                    data["pf"] = record.pf_name
                states.append(
                    DeviceState(device, True, "Configured", "; ".join(parts), network, data=data)
                )
            else:
                states.append(
                    DeviceState(device, False, "Pending", "the agent has not configured the VF yet",
                                network, data=data)
                )  # fmt: skip
        return states

    async def write_status(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice] | None = None
    ) -> None:
        """Apply this node's ``status.devices`` entries of ``claim`` (best effort)."""
        try:
            # Inside: a config this agent now refuses must not fail an unprepare.
            if devices is None:
                devices = self.devices(claim)
            await self.status.write(claim, self._states(claim, devices))
        except Exception as exc:
            logger.warning("could not write status.devices: %s", exc, extra=_ctx(claim))

    # -- program / release (claim watcher) ---------------------------------------------------

    async def program(
        self, claim: Mapping[str, Any], devices: Sequence[ClaimDevice]
    ) -> dict[str, SriovDraError]:
        """Program every device; returns the errors by device name (also kept for status)."""
        uid = claim_devices.uid(claim)
        owner = RecordClaim(
            uid=uid,
            namespace=str(claim_devices.meta(claim)["namespace"]),
            name=str(claim_devices.meta(claim)["name"]),
        )
        errors: dict[str, SriovDraError] = {}
        nads: dict[tuple[str, str], _Nad | None] = {}
        self._nads_used[uid] = frozenset(d.nad for d in devices if d.nad is not None)
        signature: list[Any] = []
        for device in devices:
            try:
                if device.vhost:
                    cdi.check_vhost_nodes(self.config.dev_root, node=self.config.node)
                if device.nad not in nads and device.nad is not None:
                    nads[device.nad] = await self.nad(device)
                nad = nads.get(device.nad) if device.nad else None
                signature.append((device, nad.resource_version if nad else ""))
            except SriovDraError as exc:
                errors[device.device] = exc
        key = tuple(signature)
        records_ok = all(
            (r := self.hw.record(d.pci_address)) is not None and r.claim.uid == uid for d in devices
        )
        if not errors and records_ok and self._programmed.get(uid) == key:
            return {}
        for device in devices:
            if device.device in errors:
                continue
            nad = nads.get(device.nad) if device.nad else None
            extra = _ctx(claim, vf=device.pci_address, request=device.request)
            try:
                desired = settings_from_netconf(nad.conf.raw) if nad else VfSettings()
                with self.metrics.timed("program"):
                    await asyncio.to_thread(
                        self.hw.program,
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
        self._errors[uid] = errors
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
                    claim, "VfConfigured", f"node {self.config.node} configured {names}"
                )
        return errors

    async def reconcile(self, claim: Mapping[str, Any]) -> None:
        """Bring this node in line with ``claim`` (caller holds the claim's lock)."""
        self.metrics.reconciles.inc()
        uid = claim_devices.uid(claim)
        releasing = claim_devices.is_deleting(claim) and not claim_devices.is_reserved(claim)
        try:
            devices = self.devices(claim)
        except SriovDraError as exc:
            await self._warn(claim, exc)
            logger.warning("claim unusable: %s", exc.describe(), extra=_ctx(claim))
            if not releasing:
                return
            # An unusable config must not keep a deleted claim's VF (and finalizer) forever.
            devices = []
        if devices and not releasing:
            await self._check_annotation(claim, devices)
            await self.program(claim, devices)
            await self.write_status(claim, devices)
            return
        self._annotation_problems.pop(uid, None)
        held = self.records_of(uid)
        prepared = uid in (await self.load_checkpoint()).claims
        if held or prepared:
            await self.release(claim, held)
        allocated_here = claim_devices.our_results(
            claim, node=self.config.node, driver=self.config.driver
        )
        if claim_devices.is_deleting(claim) and (allocated_here or held):
            await self._mark_released(claim)

    async def release(self, claim: Mapping[str, Any], held: Sequence[VfRecord]) -> None:
        """Detach and restore every VF of the claim, forget its preparation."""
        uid = claim_devices.uid(claim)
        failures = []
        for record in held:
            extra = _ctx(claim, pf=record.pf_name, vf=record.pci_address)
            try:
                with self.metrics.timed("release"):
                    await asyncio.to_thread(self.hw.release, record.pci_address)
            except Exception as exc:
                logger.exception("restoring VF failed", extra=extra)
                failures.append(f"{record.pci_address}: {exc}")
        await self.forget_prepared(uid)
        self._errors.pop(uid, None)
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
                f"node {self.config.node} restored " + ", ".join(r.pci_address for r in held),
            )

    async def _mark_released(self, claim: Mapping[str, Any]) -> None:
        uid = claim_devices.uid(claim)
        annotations = claim_devices.meta(claim).get("annotations") or {}
        if annotations.get(RELEASED_ANNOTATION) == uid:
            return
        meta = claim_devices.meta(claim)
        try:
            await self.api.patch_claim_metadata(
                str(meta["namespace"]),
                str(meta["name"]),
                {"annotations": {RELEASED_ANNOTATION: uid}},
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return
            raise
        logger.info("claim released", extra=_ctx(claim))

    async def claim_gone(self, uid: str, namespace: str, name: str) -> None:
        """The claim no longer exists: restore whatever this node still holds for it."""
        held = self.records_of(uid)
        prepared = uid in (await self.load_checkpoint()).claims
        if not held and not prepared:
            return
        stub = {"metadata": {"uid": uid, "namespace": namespace, "name": name}}
        await self.release(stub, held)

    def held_claims(self) -> dict[str, tuple[str, str]]:
        """uid -> (namespace, name) of every claim this node holds VFs for."""
        return {r.claim.uid: (r.claim.namespace, r.claim.name) for r in self.hw.records_all()}

    # -- shared with the preparer -----------------------------------------------------------

    async def forget_prepared(self, uid: str) -> bool:
        async with self.checkpoint_lock:
            checkpoint = await self.load_checkpoint()
            await asyncio.to_thread(cdi.remove_claim_spec, self.config.cdi_dir, uid)
            if uid not in checkpoint.claims:
                return False
            await asyncio.to_thread(
                save_checkpoint, self.config.checkpoint_path, checkpoint.without_claim(uid)
            )
            return True

    async def detach_claim(self, uid: str) -> list[str]:
        detached = []
        for record in self.records_of(uid):
            if record.attachment is None:
                continue
            with self.metrics.timed("detach"):
                await asyncio.to_thread(self.hw.detach, record.pci_address)
            detached.append(record.pci_address)
        return detached

    # -- start-up --------------------------------------------------------------------------

    async def _held_pairs(self) -> set[tuple[str, str]]:
        """(claim uid, VF PCI) pairs this node must keep: allocated here, or prepared."""
        pairs: set[tuple[str, str]] = set()
        claims, _ = await self.api.list_claims()
        for claim in claims:
            if claim_devices.is_deleting(claim) and not claim_devices.is_reserved(claim):
                continue
            # The results alone, not self.devices(): a claim whose config this agent
            # refuses still holds its VFs until it is released.
            results = claim_devices.our_results(
                claim, node=self.config.node, driver=self.config.driver
            )
            pairs.update((claim_devices.uid(claim), pci_address(str(r["device"]))) for r in results)
        for record in (await self.load_checkpoint()).claims.values():
            pairs.update((record.uid, d.pci_address) for d in record.devices)
        return pairs

    async def startup_sweep(self) -> dict[str, Any]:
        """Repair what a crash left before serving: half attaches/detaches, dead pod netns,
        VFs of claims that went away while the agent was down, stray CDI specs."""
        try:
            keep = await self._held_pairs()
        except Exception as exc:
            # Without the API we cannot tell what went away: keep every VF, repair the rest.
            logger.warning("cannot list claims for the start-up sweep: %s", exc)
            keep = {(r.claim.uid, r.pci_address) for r in self.hw.records_all()}
        report = await asyncio.to_thread(self.hw.sweep, keep)
        checkpoint = await self.load_checkpoint()
        stray = [
            uid
            for uid in await asyncio.to_thread(cdi.claim_uids_with_specs, self.config.cdi_dir)
            if uid not in checkpoint.claims
        ]
        for uid in stray:
            await asyncio.to_thread(cdi.remove_claim_spec, self.config.cdi_dir, uid)
        summary = {**report.model_dump(), "stray_cdi_specs": stray}
        logger.info("start-up sweep done", extra={"node": self.config.node, **summary})
        return summary

    async def detach_dead(self, locks: Any) -> list[str]:
        """Detach VFs whose pod netns died without an unprepare (periodic), update status.

        Only settled attachments are looked at, each under its claim's lock: an
        attach or detach in flight is never disturbed.
        """
        detached = []
        for candidate in self.hw.records_all():
            att = candidate.attachment
            if att is None or att.phase != "attached":
                continue
            if netns_alive(att.netns, att.netns_id):
                continue
            uid = candidate.claim.uid
            async with locks.hold(uid):
                record = self.hw.record(candidate.pci_address)
                if record is None or record.attachment != att:
                    continue
                with self.metrics.timed("detach"):
                    await asyncio.to_thread(self.hw.detach, record.pci_address)
                detached.append(record.pci_address)
                logger.info(
                    "detached VF of a dead pod netns",
                    extra={"claim": record.claim.ref(), "uid": uid, "vf": record.pci_address},
                )
                claim = await self.api.get_claim(record.claim.namespace, record.claim.name)
                if claim is not None and claim_devices.uid(claim) == uid:
                    await self.write_status(claim)
        return detached
