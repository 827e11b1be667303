"""Per-claim CDI specs: what the container runtime adds to containers that use a claim.

One spec file per prepared claim in the CDI directory (``/var/run/cdi``, the
dynamic spec dir), kind ``sriovnetwork.k8snetworkplumbingwg.io/vf``, one CDI
device per VF named ``<claimUID>-<device>``. A device carries the VF's PCI
address and pod interface name as environment variables, for VFs bound to
vfio-pci the ``/dev/vfio`` nodes, with ``addVhostMount`` ``/dev/vhost-net``
and ``/dev/net/tun`` (for DPDK virtio-user/vhost in the pod), and for an RDMA-capable
VF its RDMA character devices (:mod:`sriov_dra_agent.kubelet.rdma_devices`). The spec-level
``createRuntime`` hook runs our hook executable, which asks the agent to move the
VFs into the pod's network namespace (see :mod:`sriov_dra_agent.attach.hook`).

Building is pure (:func:`build_claim_spec`); writing and removing are atomic.
Name rules and the minimum ``cdiVersion`` follow cncf-tags/container-device-interface
(``pkg/parser/parser.go``, ``specs-go/version.go``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sriov_dra.constants import DRIVER_NAME
from sriov_dra.errors import SriovDraError

from sriov_dra_agent.atomic_file import remove_durably, write_atomically

CDI_VENDOR: Final = DRIVER_NAME
CDI_CLASS: Final = "vf"
CDI_KIND: Final = f"{CDI_VENDOR}/{CDI_CLASS}"
DEFAULT_CDI_DIR: Final = Path("/var/run/cdi")
HOOK_NAME: Final = "createRuntime"
DEFAULT_HOOK_TIMEOUT_SECONDS: Final = 30

ENV_PREFIX: Final = "SRIOVNETWORK_VF"
"""Env keys: ``SRIOVNETWORK_VF_DEVICE_<dev>``, ``..._IFNAME_<dev>``, ``..._VFIO_DEVICE_<dev>``,
``..._RDMA_{UVERB,UMAD,ISSM,CM}_<dev>``."""

_VENDOR_OR_CLASS: Final = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?$")
_DEVICE_NAME: Final = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")
_VFIO_GROUP: Final = re.compile(r"^(noiommu-)?[0-9]+$")
_SPEC_FILE: Final = re.compile(rf"^{re.escape(CDI_VENDOR)}-{CDI_CLASS}_(?P<uid>.+)\.json$")


VHOST_DEVICE_NODES: Final = ("/dev/vhost-net", "/dev/net/tun")
"""What ``addVhostMount: true`` gives the pod (as the Go driver: device nodes, not mounts)."""


class InvalidCdiSpec(SriovDraError):
    """A CDI name or field would be rejected by the container runtime. Permanent."""

    reason = "InvalidCdiSpec"


class DeviceNodeMissing(SriovDraError):
    """A device node the claim asks for is not on the node (the fix: load the module)."""

    reason = "DeviceNodeMissing"


def check_vhost_nodes(dev_root: Path, *, node: str) -> None:
    """Raise :class:`DeviceNodeMissing` unless ``addVhostMount``'s device nodes exist.

    ``dev_root`` is where the host's ``/dev`` is seen (``/dev`` in a privileged pod).
    A runtime would fail the container later with a bare "no such file"; this says
    which module is missing, on which node, at allocation time.
    """
    missing = [
        path for path in VHOST_DEVICE_NODES if not (dev_root / path.removeprefix("/dev/")).exists()
    ]
    if missing:
        raise DeviceNodeMissing(
            f"{', '.join(missing)} missing on node {node}",
            field="VfConfig.addVhostMount",
            fix=f"load the vhost_net and tun kernel modules on {node} "
            "(modprobe vhost_net tun), or set addVhostMount: false",
        )


@dataclass(frozen=True)
class CharDevice:
    """A character device node the pod gets, at the same path as on the host."""

    path: str
    """``/dev/infiniband/uverbs0``."""
    major: int
    minor: int
    kind: str
    """What it is for the env key: ``UVERB``, ``UMAD``, ``ISSM`` or ``CM``."""


@dataclass(frozen=True)
class CdiVf:
    """One VF of a claim, as its CDI device needs it."""

    device_name: str
    """ResourceSlice device name, e.g. ``0000-08-00-2``."""
    pci_address: str
    if_name: str = ""
    """Interface name in the pod; empty for a VF without netdev (vfio-pci)."""
    vfio_group: str | None = None
    """IOMMU group (``42`` or ``noiommu-0``) when bound to vfio-pci, else None."""
    vhost: bool = False
    """VfConfig ``addVhostMount``: add :data:`VHOST_DEVICE_NODES`."""
    rdma: tuple[CharDevice, ...] = ()
    """The VF's RDMA character devices (with ``rdma_cm``); empty for none."""


@dataclass(frozen=True)
class CdiHook:
    """The createRuntime hook: our executable, told which claim and which agent socket."""

    path: str
    """Absolute host path of the hook: the agent's installed wrapper, or ``sriov-dra``."""
    attach_socket: str
    """Host path of the agent's attach socket."""
    timeout_seconds: int = DEFAULT_HOOK_TIMEOUT_SECONDS
    subcommand: tuple[str, ...] = ("hook",)

    def args(self, claim_uid: str) -> list[str]:
        """OCI hook ``args`` (execv semantics: ``args[0]`` is the program name)."""
        # The hook gives up a little before the runtime kills it so that its
        # own error message, not a bare timeout, reaches the pod's events.
        client_timeout = max(1, self.timeout_seconds - 2)
        return [
            self.path,
            *self.subcommand,
            "--claim-uid",
            claim_uid,
            "--attach-socket",
            self.attach_socket,
            "--timeout",
            str(client_timeout),
        ]


def validate_vendor_or_class(value: str, *, field: str) -> None:
    """CDI vendor/class rule: starts with a letter, ends alphanumeric, ``_.-`` inside."""
    if not _VENDOR_OR_CLASS.match(value):
        raise InvalidCdiSpec(
            f"{value!r} is not a valid CDI vendor or class name",
            field=field,
            fix="use letters, digits, '_', '-' and '.', starting with a letter "
            "and ending with a letter or digit",
        )


def validate_device_name(value: str, *, field: str = "devices[].name") -> None:
    """CDI device name rule: alphanumeric first and last, ``_.:-`` inside."""
    if not _DEVICE_NAME.match(value):
        raise InvalidCdiSpec(
            f"{value!r} is not a valid CDI device name",
            field=field,
            fix="use letters, digits, '_', '-', '.' and ':', starting and ending "
            "with a letter or digit",
        )


def cdi_device_name(claim_uid: str, device_name: str) -> str:
    """CDI device name of one VF of a claim: ``<claimUID>-<device>``."""
    name = f"{claim_uid}-{device_name}"
    validate_device_name(name)
    return name


def qualified_device_id(name: str) -> str:
    """Fully-qualified CDI device ID, what ``cdi_device_ids`` carries to the kubelet."""
    validate_device_name(name)
    return f"{CDI_KIND}={name}"


def claim_cdi_device_ids(claim_uid: str, device_names: Sequence[str]) -> list[str]:
    """Qualified CDI IDs of a claim's VFs, in the given order."""
    return [qualified_device_id(cdi_device_name(claim_uid, d)) for d in device_names]


def spec_file_name(claim_uid: str) -> str:
    """File name of a claim's spec, as the CDI library names transient specs."""
    if not claim_uid or "/" in claim_uid:
        raise InvalidCdiSpec(
            f"claim UID {claim_uid!r} cannot name a CDI spec file",
            field="claim.uid",
            fix="pass the ResourceClaim's metadata.uid",
        )
    return f"{CDI_VENDOR}-{CDI_CLASS}_{claim_uid}.json"


def _env_suffix(device_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", device_name).upper()


def _device_edits(vf: CdiVf) -> dict[str, Any]:
    suffix = _env_suffix(vf.device_name)
    env = [f"{ENV_PREFIX}_DEVICE_{suffix}={vf.pci_address}"]
    if vf.if_name:
        env.append(f"{ENV_PREFIX}_IFNAME_{suffix}={vf.if_name}")
    edits: dict[str, Any] = {"env": env}
    if vf.vfio_group is not None:
        if not _VFIO_GROUP.match(vf.vfio_group):
            raise InvalidCdiSpec(
                f"{vf.vfio_group!r} is not an IOMMU group",
                field=f"vf {vf.device_name}: vfio_group",
                fix="pass the group number from /sys/bus/pci/devices/<pci>/iommu_group "
                "(or noiommu-<n>)",
            )
        group_path = f"/dev/vfio/{vf.vfio_group}"
        env.append(f"{ENV_PREFIX}_VFIO_DEVICE_{suffix}={group_path}")
        # The runtime de-duplicates device nodes by path, so several vfio VFs
        # in one claim may each list /dev/vfio/vfio.
        edits["deviceNodes"] = [{"path": group_path}, {"path": "/dev/vfio/vfio"}]
    if vf.vhost:
        nodes = edits.setdefault("deviceNodes", [])
        nodes.extend({"path": path} for path in VHOST_DEVICE_NODES)
    by_kind: dict[str, list[str]] = {}
    for device in vf.rdma:
        by_kind.setdefault(device.kind, []).append(device.path)
        edits.setdefault("deviceNodes", []).append(
            {"path": device.path, "type": "c", "major": device.major, "minor": device.minor}
        )
    env.extend(
        f"{ENV_PREFIX}_RDMA_{kind}_{suffix}={','.join(paths)}" for kind, paths in by_kind.items()
    )
    return edits


def minimum_cdi_version(spec: dict[str, Any]) -> str:
    """The lowest ``cdiVersion`` that accepts ``spec``'s fields (CDI ``specs-go/version.go``).

    Only the rules for fields this module can emit are needed: device names
    starting with a digit (0.5.0), device-node ``hostPath`` (0.5.0), annotations
    (0.6.0). Everything else we use (env, deviceNodes.path, hooks) is 0.3.0.
    """
    devices: list[dict[str, Any]] = spec.get("devices", [])
    all_edits = [spec.get("containerEdits", {})] + [d.get("containerEdits", {}) for d in devices]
    if spec.get("annotations") or any(d.get("annotations") for d in devices):
        return "0.6.0"
    if any(d["name"][:1].isdigit() for d in devices):
        return "0.5.0"
    if any(node.get("hostPath") for e in all_edits for node in e.get("deviceNodes", [])):
        return "0.5.0"
    return "0.3.0"


def build_claim_spec(claim_uid: str, vfs: Sequence[CdiVf], hook: CdiHook | None) -> dict[str, Any]:
    """The CDI spec for one claim: one device per VF, the attach hook at spec level.

    The hook sits in the spec-level edits so it runs once per container that
    uses any of the claim's devices, not once per VF. ``hook`` is None for a
    claim with nothing to attach (all VFs bound to vfio-pci).
    """
    if not vfs:
        raise InvalidCdiSpec(
            f"claim {claim_uid} has no VFs to describe",
            field="devices",
            fix="a CDI spec needs at least one device; do not write a spec for an empty claim",
        )
    validate_vendor_or_class(CDI_VENDOR, field="kind (vendor)")
    validate_vendor_or_class(CDI_CLASS, field="kind (class)")
    spec_file_name(claim_uid)
    names = [cdi_device_name(claim_uid, vf.device_name) for vf in vfs]
    if len(set(names)) != len(names):
        raise InvalidCdiSpec(
            f"claim {claim_uid} lists a VF twice: {sorted(names)}",
            field="devices",
            fix="pass each allocated device once",
        )
    devices = [
        {"name": name, "containerEdits": _device_edits(vf)}
        for name, vf in zip(names, vfs, strict=True)
    ]
    spec: dict[str, Any] = {"cdiVersion": "", "kind": CDI_KIND, "devices": devices}
    if hook is not None:
        if not hook.path.startswith("/"):
            raise InvalidCdiSpec(
                f"hook path {hook.path!r} is not absolute",
                field="containerEdits.hooks[].path",
                fix="configure the absolute host path of the sriov-dra executable",
            )
        if hook.timeout_seconds <= 0:
            raise InvalidCdiSpec(
                f"hook timeout {hook.timeout_seconds} is not positive",
                field="containerEdits.hooks[].timeout",
                fix="use a timeout of at least 1 second",
            )
        spec["containerEdits"] = {
            "hooks": [
                {
                    "hookName": HOOK_NAME,
                    "path": hook.path,
                    "args": hook.args(claim_uid),
                    "timeout": hook.timeout_seconds,
                }
            ]
        }
    spec["cdiVersion"] = minimum_cdi_version(spec)
    return spec


def write_claim_spec(cdi_dir: Path, claim_uid: str, spec: dict[str, Any]) -> Path:
    """Atomically (re)write a claim's spec file; returns its path."""
    path = cdi_dir / spec_file_name(claim_uid)
    cdi_dir.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(spec, indent=2) + "\n").encode()
    write_atomically(path, data, mode=0o644)
    return path


def remove_claim_spec(cdi_dir: Path, claim_uid: str) -> bool:
    """Remove a claim's spec file; False when there was none (idempotent)."""
    return remove_durably(cdi_dir / spec_file_name(claim_uid))


def claim_uids_with_specs(cdi_dir: Path) -> list[str]:
    """Claim UIDs that have a spec file of ours in ``cdi_dir`` (for the start-up sweep)."""
    if not cdi_dir.is_dir():
        return []
    uids: list[str] = []
    for path in cdi_dir.iterdir():
        match = _SPEC_FILE.match(path.name)
        if match:
            uids.append(match.group("uid"))
    return sorted(uids)
