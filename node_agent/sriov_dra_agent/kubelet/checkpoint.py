"""The agent's checkpoint: which claims are prepared here, with what, and how far attach got.

A versioned JSON file (by default ``<kubelet-plugins-dir>/<driver>/checkpoint.json``)
written atomically, so that an agent restarted at any point finds exactly the
state of its last completed write. The records are plain data; what the blobs
(``original_state``, ``attach``) mean is the business of the code that fills them.

A missing file is an empty checkpoint (first start). A file that cannot be read
back is an error, never an empty checkpoint: forgetting prepared claims would
leak VFs and IPs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator
from sriov_dra.errors import SriovDraError

from sriov_dra_agent.atomic_file import write_atomically

CHECKPOINT_VERSION: Final = 1
CHECKPOINT_FILE_NAME: Final = "checkpoint.json"


class CheckpointCorrupt(SriovDraError):
    """The checkpoint file exists but cannot be used. Permanent until someone looks."""

    reason = "CheckpointCorrupt"


class DeviceRecord(BaseModel):
    """One prepared device (VF) of a claim."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool_name: str
    device_name: str
    request_names: tuple[str, ...] = ()
    cdi_device_ids: tuple[str, ...] = ()
    pci_address: str = ""
    if_name: str = ""
    device_info_file: str = ""
    """Name of the VF's device-info file in the device-info directory; empty for none."""
    original_state: dict[str, JsonValue] = Field(default_factory=dict)
    """The VF's settings before we touched it, to restore on unprepare."""


class ClaimRecord(BaseModel):
    """One prepared claim."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str = Field(min_length=1)
    namespace: str
    name: str
    devices: tuple[DeviceRecord, ...] = ()
    attach: dict[str, JsonValue] = Field(default_factory=dict)
    """Attach progress (netns, container, IPAM results...), owned by the attacher."""


class Checkpoint(BaseModel):
    """All prepared claims of this node, keyed by claim UID."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = CHECKPOINT_VERSION
    claims: dict[str, ClaimRecord] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _keys_are_uids(self) -> Checkpoint:
        for key, record in self.claims.items():
            if key != record.uid:
                raise ValueError(f"claims[{key!r}] holds the record of claim uid {record.uid!r}")
        return self

    def with_claim(self, record: ClaimRecord) -> Checkpoint:
        """A copy with ``record`` added or replaced."""
        return Checkpoint(version=self.version, claims={**self.claims, record.uid: record})

    def without_claim(self, uid: str) -> Checkpoint:
        """A copy without claim ``uid`` (unchanged if absent)."""
        return Checkpoint(
            version=self.version, claims={k: v for k, v in self.claims.items() if k != uid}
        )

    def claim_holding(self, pool_name: str, device_name: str) -> ClaimRecord | None:
        """The prepared claim that holds a device, if any."""
        for record in self.claims.values():
            for device in record.devices:
                if device.pool_name == pool_name and device.device_name == device_name:
                    return record
        return None


def _corrupt(path: Path, problem: str) -> CheckpointCorrupt:
    return CheckpointCorrupt(
        problem,
        field=str(path),
        fix="inspect the file; if it cannot be repaired, move it aside and restart the agent, "
        "whose start-up sweep then rebuilds the node state from the cluster and the kernel",
    )


def load_checkpoint(path: Path) -> Checkpoint:
    """Read the checkpoint; empty when the file does not exist, CheckpointCorrupt when unusable."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Checkpoint()
    try:
        raw: Any = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _corrupt(path, f"checkpoint is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise _corrupt(path, f"checkpoint is a JSON {type(raw).__name__}, not an object")
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _corrupt(path, f"checkpoint has no integer version (found {version!r})")
    if version < 1:
        raise _corrupt(path, f"checkpoint version {version} does not exist")
    if version > CHECKPOINT_VERSION:
        raise _corrupt(
            path,
            f"checkpoint version {version} was written by a newer agent "
            f"(this one reads up to {CHECKPOINT_VERSION})",
        )
    try:
        return Checkpoint.model_validate(raw)
    except ValidationError as exc:
        raise _corrupt(path, f"checkpoint does not match version {version}: {exc}") from exc


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Atomically replace the checkpoint file (durable when this returns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (checkpoint.model_dump_json(indent=2) + "\n").encode())
