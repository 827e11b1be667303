"""The container runtime's part of CDI, emulated: resolve device IDs, run createRuntime hooks.

A CRI runtime (containerd, CRI-O) gets the CDI device IDs from the kubelet,
looks them up in the spec files of its CDI directories, merges the spec-level
and device-level ``containerEdits`` into the container's OCI spec, and runc
runs the ``createRuntime`` hooks in the runtime namespace with the container's
OCI state on stdin. This module does the same with the spec files of one
simulated node's CDI directory and a real process standing in for the container.

Resolution is pure (:func:`resolve`); hook execution is the shell (:func:`run_hooks`).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

OCI_VERSION: Final = "1.2.0"
DEFAULT_HOOK_TIMEOUT: Final = 60.0
"""runc has no default hook timeout; the emulation bounds a hook that names none."""
_QUALIFIED: Final = re.compile(
    r"^(?P<vendor>[A-Za-z][A-Za-z0-9_.-]*)/(?P<class>[A-Za-z][A-Za-z0-9_-]*)"
    r"=(?P<name>[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?)$"
)
_SPEC_SUFFIXES: Final = (".json", ".yaml", ".yml")


class CdiError(Exception):
    """A device ID that cannot be resolved or a spec that cannot be read."""


class HookFailed(Exception):
    """A createRuntime hook exited non-zero, timed out or could not be started."""


@dataclass(frozen=True)
class QualifiedName:
    """``vendor/class=name`` as the CDI parser splits it."""

    kind: str
    name: str


def parse_qualified_name(device_id: str) -> QualifiedName:
    """Split a fully-qualified CDI device name; CdiError when it is not one."""
    match = _QUALIFIED.match(device_id)
    if match is None:
        raise CdiError(f"invalid CDI device name {device_id!r} (want vendor.com/class=name)")
    return QualifiedName(f"{match['vendor']}/{match['class']}", match["name"])


@dataclass
class ContainerEdits:
    """The merged ``containerEdits`` of every resolved device."""

    env: list[str] = field(default_factory=list)
    device_nodes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[dict[str, Any]] = field(default_factory=list)
    net_devices: list[dict[str, Any]] = field(default_factory=list)

    def add(self, edits: Mapping[str, Any] | None) -> None:
        if not edits:
            return
        self.env.extend(edits.get("env") or [])
        self.device_nodes.extend(edits.get("deviceNodes") or [])
        self.mounts.extend(edits.get("mounts") or [])
        self.hooks.extend(edits.get("hooks") or [])
        self.net_devices.extend(edits.get("netDevices") or [])

    def hooks_named(self, hook_name: str) -> list[dict[str, Any]]:
        """The hooks for one OCI lifecycle point, in injection order."""
        return [h for h in self.hooks if h.get("hookName") == hook_name]


def load_specs(cdi_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every spec file in ``cdi_dir`` (JSON or YAML), sorted by name; CdiError on a bad one."""
    specs: list[tuple[Path, dict[str, Any]]] = []
    if not cdi_dir.is_dir():
        return specs
    for path in sorted(cdi_dir.iterdir()):
        if path.suffix not in _SPEC_SUFFIXES or path.name.startswith("."):
            continue
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise CdiError(f"failed to read CDI spec {path}: {exc}") from exc
        if not isinstance(data, dict) or "kind" not in data or "devices" not in data:
            raise CdiError(f"CDI spec {path} has no kind or no devices")
        specs.append((path, data))
    return specs


def resolve(
    device_ids: Iterable[str], specs: Sequence[tuple[Path, Mapping[str, Any]]]
) -> ContainerEdits:
    """Merge the edits for ``device_ids``: each spec's own edits once, then each device's.

    Raises CdiError listing every ID no spec defines ("unresolvable CDI devices",
    as the runtimes say).
    """
    by_name: dict[tuple[str, str], tuple[int, Mapping[str, Any]]] = {}
    for index, (_, spec) in enumerate(specs):
        for device in spec.get("devices") or []:
            by_name.setdefault((spec["kind"], device.get("name", "")), (index, device))
    edits = ContainerEdits()
    unresolved = []
    used_specs: list[int] = []
    devices: list[Mapping[str, Any]] = []
    for device_id in device_ids:
        qualified = parse_qualified_name(device_id)
        found = by_name.get((qualified.kind, qualified.name))
        if found is None:
            unresolved.append(device_id)
            continue
        index, device = found
        if index not in used_specs:
            used_specs.append(index)
        devices.append(device)
    if unresolved:
        raise CdiError(f"unresolvable CDI devices {', '.join(unresolved)}")
    for index in used_specs:
        edits.add(specs[index][1].get("containerEdits"))
    for device in devices:
        edits.add(device.get("containerEdits"))
    return edits


def oci_state(container_id: str, pid: int, bundle: Path, annotations: Mapping[str, str]) -> str:
    """The OCI state JSON a runtime passes to hooks on stdin (status ``creating``)."""
    return json.dumps(
        {
            "ociVersion": OCI_VERSION,
            "id": container_id,
            "status": "creating",
            "pid": pid,
            "bundle": str(bundle),
            "annotations": dict(annotations),
        }
    )


def write_bundle(
    bundle: Path,
    *,
    args: Sequence[str],
    edits: ContainerEdits,
    netns_path: str,
    annotations: Mapping[str, str],
    hostname: str,
) -> None:
    """A minimal OCI bundle (config.json and an empty rootfs) describing the container."""
    (bundle / "rootfs").mkdir(parents=True, exist_ok=True)
    hooks: dict[str, list[dict[str, Any]]] = {}
    for hook in edits.hooks:
        entry = {k: v for k, v in hook.items() if k != "hookName"}
        hooks.setdefault(hook["hookName"], []).append(entry)
    config = {
        "ociVersion": OCI_VERSION,
        "process": {"args": list(args), "env": list(edits.env), "cwd": "/"},
        "root": {"path": "rootfs"},
        "hostname": hostname,
        "mounts": edits.mounts,
        "hooks": hooks,
        "annotations": dict(annotations),
        "linux": {
            "namespaces": [{"type": "network", "path": netns_path}],
            "devices": edits.device_nodes,
        },
    }
    tmp = bundle / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(bundle / "config.json")


async def run_hooks(hooks: Sequence[Mapping[str, Any]], state: str, hook_name: str) -> None:
    """Run ``hooks`` in order like runc: argv from ``args``, env exactly ``env``, state on stdin.

    The first failure stops the sequence and raises HookFailed with runc's wording.
    """
    for number, hook in enumerate(hooks):
        path = hook["path"]
        args = list(hook.get("args") or [path])
        timeout = float(hook.get("timeout") or DEFAULT_HOOK_TIMEOUT)
        env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
        prefix = f"error running {hook_name} hook #{number} ({path})"
        try:
            proc = await asyncio.create_subprocess_exec(
                args[0],
                *args[1:],
                executable=path,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise HookFailed(f"{prefix}: {exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(state.encode()), timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise HookFailed(f"{prefix}: timed out after {timeout:g}s") from exc
        if proc.returncode != 0:
            raise HookFailed(
                f"{prefix}: exit status {proc.returncode}, "
                f"stdout: {_tail(stdout)}, stderr: {_tail(stderr)}"
            )


def _tail(data: bytes, limit: int = 600) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= limit else "..." + text[-limit:]
