"""What the agent did to each VF, on disk, so that any step can be undone after a crash.

One JSON file per VF (named by PCI address) in a state directory, replaced
atomically. A record is written *before* each change it describes (the original
state before programming, the attachment before moving), so a crash between any
two steps leaves enough to undo them. :meth:`RecordStore.start_put` writes while
the caller looks (not changes) at the kernel, and waits for the write before its
first change.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sriov_dra.claim_ref import ClaimRef

from sriov_dra_agent.atomic_file import write_atomically
from sriov_dra_agent.vf.backends.base import USERSPACE_DRIVERS
from sriov_dra_agent.vf.vf_settings import ApplyResult, VfSettings


@dataclass(frozen=True)
class NetworkData:
    """``status.devices[].networkData`` of one VF in a pod."""

    interface_name: str
    ips: tuple[str, ...] = ()
    """CIDR strings."""
    hardware_address: str = ""

    def as_status(self) -> dict[str, Any]:
        """The camelCase dict for ``networkData`` (the API takes at most 16 IPs)."""
        return {
            "interfaceName": self.interface_name,
            "ips": list(self.ips)[:16],
            "hardwareAddress": self.hardware_address,
        }


class Attachment(BaseModel):
    """A VF in (or on its way into or out of) a pod's netns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: Literal["attaching", "attached", "detaching"]
    netns: str
    netns_id: tuple[int, int] | None = None
    """(st_dev, st_ino) of the netns when attached: a reused /proc/<pid> path differs."""
    if_name: str
    mac: str | None = None
    mtu: int | None = None
    container_id: str
    """CNI_CONTAINERID: claim UID + request, so an address is tied to the claim."""
    ipam_conf: dict[str, Any] | None = None
    """The exact IPAM stdin used for ADD, kept for DEL even if the NAD changes."""
    ips: tuple[str, ...] = ()
    hardware_address: str = ""

    def network_data(self) -> NetworkData:
        """What the pod got: its interface, addresses and MAC."""
        return NetworkData(self.if_name, self.ips, self.hardware_address)


class VfRecord(BaseModel):
    """Everything needed to restore one VF."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pci_address: str
    pf_name: str
    vf_index: int
    claim: ClaimRef
    request: str
    host_ifname: str | None
    """The VF netdev's name in the host netns before we touched it (None: no netdev),
    or, when ``adopted_netdev``, the one the driver we bound gave it."""
    host_mac: str | None = None
    host_mtu: int | None = None
    adopted_netdev: bool = False
    """The host_* fields describe the netdev of the driver we bound (the VF had none):
    it goes away when the original driver is restored, so release does not wait for it."""
    original: VfSettings
    """PF-side settings before programming."""
    original_driver: str | None = None
    original_override: str | None = None
    """The VF's driver_override before we touched it (None: unset), restored on release."""
    driver: str | None = None
    """Driver we bound (``default``: the kernel's choice), None when we left the original."""
    desired: VfSettings = Field(default_factory=VfSettings)
    """Settings requested (written before applying, so a partial apply is restored)."""
    result: ApplyResult = Field(default_factory=ApplyResult)
    attachment: Attachment | None = None

    @property
    def held_driver(self) -> str | None:
        """The driver the VF is on while the claim holds it (``default``: a kernel one)."""
        return self.original_driver if self.driver is None else self.driver

    @property
    def userspace(self) -> bool:
        """Bound to vfio-pci or a DPDK driver: no netdev to attach, whatever the VfConfig said."""
        return self.held_driver in USERSPACE_DRIVERS


def log_context(node: str, record: VfRecord | None, pci: str, **more: Any) -> dict[str, Any]:
    """The ``extra`` of a log line about VF ``pci``: node, VF and, when held, its claim and PF."""
    ctx: dict[str, Any] = {"node": node, "vf": pci, **more}
    if record is not None:
        ctx.update(claim=record.claim.ref(), uid=record.claim.uid, pf=record.pf_name)
    return ctx


class RecordStore:
    """VF records in ``directory`` (created on first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, pci: str) -> Path:
        return self.directory / f"{pci}.json"

    def get(self, pci: str) -> VfRecord | None:
        try:
            return VfRecord.model_validate_json(self._path(pci).read_text())
        except FileNotFoundError:
            return None

    def put(self, record: VfRecord) -> None:
        """Write atomically and durably (see :func:`write_atomically`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(self._path(record.pci_address), record.model_dump_json().encode())

    def start_put(self, record: VfRecord) -> PendingPut:
        """Start :meth:`put` in a thread of its own; the caller waits before its next change."""
        return PendingPut(self, record)

    def delete(self, pci: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(pci).unlink()

    def all(self) -> list[VfRecord]:
        if not self.directory.is_dir():
            return []
        names = sorted(n for n in os.listdir(self.directory) if n.endswith(".json"))
        records = [self.get(name[: -len(".json")]) for name in names]
        return [r for r in records if r is not None]


class PendingPut:
    """A record write under way (:meth:`RecordStore.start_put`)."""

    def __init__(self, store: RecordStore, record: VfRecord) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._write, args=(store, record), name="vf-record-write"
        )
        self._thread.start()

    def _write(self, store: RecordStore, record: VfRecord) -> None:
        try:
            store.put(record)
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        """Return once the record is on disk; raise what the write raised. Idempotent."""
        self._thread.join()
        if self._error is not None:
            raise self._error

    def join(self) -> None:
        """Return once the write is over, written or not (before any other write)."""
        self._thread.join()
